//! The one call into the `gemm` crate that the convolution kernels share.

use std::mem::MaybeUninit;

use gemm::{Parallelism, gemm};

/// `dst[m x n] (+)= lhs[m x k] * rhs[k x n]`, each given by (row stride, column stride).
#[allow(clippy::too_many_arguments)]
pub(super) fn matmul(
    parallelism: Parallelism,
    [m, n, k]: [usize; 3],
    dst: &mut [f32],
    accumulate: bool,
    lhs: &[f32],
    lhs_strides: (usize, usize),
    rhs: &[f32],
    rhs_strides: (usize, usize),
) {
    matmul_into(parallelism, [m, n, k], dst, n, accumulate, lhs, lhs_strides, rhs, rhs_strides);
}

/// [`matmul`] into `m` rows of `n` values that are `dst_rs` apart in `dst` (some of the columns
/// of a wider matrix).
#[allow(clippy::too_many_arguments)]
pub(super) fn matmul_into(
    parallelism: Parallelism,
    [m, n, k]: [usize; 3],
    dst: &mut [f32],
    dst_rs: usize,
    accumulate: bool,
    lhs: &[f32],
    (lhs_rs, lhs_cs): (usize, usize),
    rhs: &[f32],
    (rhs_rs, rhs_cs): (usize, usize),
) {
    assert!(dst_rs >= n && dst.len() >= (m - 1) * dst_rs + n && lhs.len() > (m - 1) * lhs_rs + (k - 1) * lhs_cs);
    assert!(rhs.len() > (k - 1) * rhs_rs + (n - 1) * rhs_cs);
    // SAFETY: the asserts keep every index gemm computes from the strides inside the slices.
    unsafe {
        gemm_at(
            parallelism,
            [m, n, k],
            dst.as_mut_ptr(),
            dst_rs,
            accumulate,
            lhs,
            (lhs_rs, lhs_cs),
            rhs,
            (rhs_rs, rhs_cs),
        )
    }
}

/// The one call into gemm: `dst` (row stride `dst_rs`) `(+)= lhs * rhs`; with `accumulate`
/// false, `dst` is written without being read.
///
/// # Safety
/// Every index the sizes and strides give stays inside `dst`, `lhs` and `rhs`.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_at(
    parallelism: Parallelism,
    [m, n, k]: [usize; 3],
    dst: *mut f32,
    dst_rs: usize,
    accumulate: bool,
    lhs: &[f32],
    (lhs_rs, lhs_cs): (usize, usize),
    rhs: &[f32],
    (rhs_rs, rhs_cs): (usize, usize),
) {
    // SAFETY: passed on from the caller.
    unsafe {
        gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_rs as isize,
            accumulate,
            lhs.as_ptr(),
            lhs_cs as isize,
            lhs_rs as isize,
            rhs.as_ptr(),
            rhs_cs as isize,
            rhs_rs as isize,
            if accumulate { 1.0 } else { 0.0 },
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// Whether a product `[m x k] * [k x n]` sums every output in the same order at any width `n`
/// from `narrowest` columns up, so that splitting its columns across tasks changes no bit.
/// gemm 0.19 (`gemm-common/src/gemm.rs`, `cache.rs`) sums over `k` in blocks of `kc`, which it
/// takes from `k` and the caches alone, except when both `m` and `n` are at most 64 (then
/// `kc = min(k, 512)`); the two agree when `k <= 512`. (The right-hand side's row stride must
/// also stay at least 2: with 1, gemm takes its matrix-vector kernels.)
pub(super) fn same_sums_at_any_width(m: usize, k: usize, narrowest: usize) -> bool {
    k <= 512 || m > 64 || narrowest > 64
}

/// `dst[m x n] = lhs[m x k] * rhs[k x n]` into values not yet written (`dst` row-major, `n`
/// values a row): gemm writes every value without reading it (`read_dst` false).
pub(super) fn matmul_uninit(
    parallelism: Parallelism,
    [m, n, k]: [usize; 3],
    dst: &mut [MaybeUninit<f32>],
    lhs: &[f32],
    (lhs_rs, lhs_cs): (usize, usize),
    rhs: &[f32],
    (rhs_rs, rhs_cs): (usize, usize),
) {
    assert!(m > 0 && n > 0 && k > 0 && dst.len() >= m * n);
    assert!(lhs.len() > (m - 1) * lhs_rs + (k - 1) * lhs_cs && rhs.len() > (k - 1) * rhs_rs + (n - 1) * rhs_cs);
    // SAFETY: the asserts keep every index gemm computes from the strides inside the slices; with
    // `accumulate` false gemm only writes `dst` (`MaybeUninit<f32>` is laid out as `f32`).
    unsafe {
        gemm_at(
            parallelism,
            [m, n, k],
            dst.as_mut_ptr().cast::<f32>(),
            n,
            false,
            lhs,
            (lhs_rs, lhs_cs),
            rhs,
            (rhs_rs, rhs_cs),
        )
    }
}
