//! The forward pass of a 1 x 1 convolution whose product has only a few columns (a few faces
//! through a net's deepest layers: EfficientNet-Lite0's 6 x 6, 3 x 3 and 2 x 2 maps at 48 px) as dot
//! products: each output value is one weight row (`k` values, read in place) times one input
//! position (its `k` channels, gathered into a row once per call), and the threads split the
//! output channels, so that each weight is read once, by one thread.
//!
//! Why: [`super::forward`]'s product `W [c_out x k] * X [k x width]` has `width` = samples x
//! positions, 36, 9 or 4 for one face on those maps. gemm writes it row-major, so `width` is its
//! vector dimension: 4 columns fill half of an AVX2 register and 9 one and an eighth, and before
//! multiplying it packs all of `W` (1152 x 192 in the 2 x 2 stages) for 4 uses of each weight; the
//! bands of rows that spread one face over the threads gave each thread the whole of `W` to pack.
//! `perf record ferkit bench --models efficientnet-lite0:1 --infer-batches 1` (AMD EPYC, session
//! 31) put 38% of one face's inference in gemm's `x1x6` microkernel, the one for 8 columns or fewer.
//! ONNX Runtime keeps its weights packed from the session's start and splits such a product by
//! output channel.
//!
//! Each output sums its `k` products in eight lanes (lane `l`: the terms `i` with `i % 8 == l`, in
//! order, as fused multiply-adds), then the lanes in a fixed order, then the last `k % 8` terms
//! in order: the order depends on `k` alone, so the bits do not depend on the thread count or on
//! how the channels are split. It needs AVX2 and FMA, checked at run time; on other CPUs these
//! convolutions stay with gemm. Training's forward pass takes it too, for batches that small (at
//! most ten faces on 2 x 2 maps); its backward pass stays with gemm.

use burn::backend::flex::FlexTensor;

use super::super::Sliding;
use super::super::epilogue::Epilogue;
use super::super::flex;
use super::Shapes;

/// At most this many columns (samples x positions) in the product: a 6 x 6 map of one face, a
/// 3 x 3 map of four, a 2 x 2 map of ten. Wider products reuse each weight gemm packs often
/// enough to pay for packing it. Chosen on EfficientNet-Lite0 at 48 and 96 px, batches 1 to 8,
/// with limits 0 (gemm), 16, 40 and 64 built in turn and alternated four times (session 31, AMD
/// EPYC; docs/speed.md): 40 and 64 each won some rounds, 40 beat 16 from two faces up at 96 px
/// (their 3 x 3 maps); the smaller of the two equals keeps wider products with gemm.
pub(in crate::kernels) const MAX_WIDTH: usize = 40;

/// Output channels per task (a multiple of [`ROWS`]): a few tasks per thread, each a contiguous
/// block of weight rows.
pub(in crate::kernels) const CHANNELS_PER_TASK: usize = 32;

/// Weight rows multiplied together per step of the dot products: with [`COLUMNS`], 2 x 4
/// accumulators (eight, enough to keep both of an AVX2 core's FMA units busy through their
/// latency), 2 + 4 loads per 8 fused multiply-adds.
const ROWS: usize = 2;
/// Input positions multiplied together per step (see [`ROWS`]).
const COLUMNS: usize = 4;
const _: () = assert!(CHANNELS_PER_TASK.is_multiple_of(ROWS));

/// Whether [`forward`] computes this convolution: 1 x 1, stride 1, unpadded, a product of at most
/// [`MAX_WIDTH`] columns, on a CPU with AVX2 and FMA. The choice depends on the shapes and the
/// CPU alone, not on the thread count.
pub(super) fn applies(s: &Shapes, g: &Sliding) -> bool {
    let pointwise = g.kernel == [1, 1] && g.stride == [1, 1] && g.pad == [0, 0];
    pointwise && s.batch > 0 && s.batch * s.p <= MAX_WIDTH && s.c_out > 0 && s.k > 0 && has_avx2_fma()
}

pub(in crate::kernels) fn has_avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The output `[batch, c_out, p]` for input `x` `[batch, k, p]` (a 1 x 1 convolution's channels
/// are its `k`), weights `[c_out, k]` and a bias per output channel, each value written through
/// `epilogue`. Only where [`applies`] holds.
pub(super) fn forward(
    x: &[f32],
    weight: &[f32],
    bias: &[f32],
    s: Shapes,
    g: Sliding,
    epilogue: &Epilogue,
) -> FlexTensor {
    let (k, p, width) = (s.k, s.p, s.batch * s.p);
    assert!(x.len() == width * k && weight.len() == s.c_out * k && bias.len() == s.c_out);
    // The input positions as rows: row `j * p + i` holds position `i` of sample `j`, all k channels.
    let mut positions = vec![0f32; width * k];
    for (j, sample) in x.chunks_exact(k * p).enumerate() {
        for (c, plane) in sample.chunks_exact(p).enumerate() {
            for (i, &v) in plane.iter().enumerate() {
                positions[(j * p + i) * k + c] = v;
            }
        }
    }
    let tasks = s.c_out.div_ceil(CHANNELS_PER_TASK);
    let write_task = |product: &mut Vec<f32>, task: usize, out: flex::UninitParts| {
        let channels = task * CHANNELS_PER_TASK..((task + 1) * CHANNELS_PER_TASK).min(s.c_out);
        let product = &mut product[..channels.len() * width];
        dot_products(&weight[channels.start * k..channels.end * k], &positions, k, product);
        for (c, row) in channels.zip(product.chunks_exact(width)) {
            for (j, values) in row.chunks_exact(p).enumerate() {
                // SAFETY: channel c's plane of sample j belongs to this task alone (one task per
                // block of channels).
                let dst = unsafe { out.part((j * s.c_out + c) * p, p) };
                epilogue.write(c, bias[c], values, dst);
            }
        }
    };
    let scratch = || vec![0f32; CHANNELS_PER_TASK * width];
    // SAFETY: the tasks' channel blocks cover the channels, and each writes its channels' planes
    // of every sample (above).
    let out = unsafe { flex::write_parts_in_parallel(s.batch * s.c_out * p, tasks, scratch, write_task) };
    flex::tensor(out, &[s.batch, s.c_out, g.output[0], g.output[1]])
}

/// `product[r * width + j] = dot(weights row r, positions row j)` for the `product.len() / width`
/// rows of `weights` and the `width` rows of `positions`, all rows `k` long; see the module's doc
/// for the order of the sums.
pub(in crate::kernels) fn dot_products(weights: &[f32], positions: &[f32], k: usize, product: &mut [f32]) {
    let width = positions.len() / k;
    let rows = weights.len() / k;
    assert!(rows * width == product.len() && weights.len() == rows * k && positions.len() == width * k);
    // Checked here too, not only by the caller's `applies` (a cached flag: cheap).
    assert!(has_avx2_fma(), "small_maps: this CPU has no AVX2 + FMA");
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the CPU has AVX2 and FMA (checked above); the first assert bounds every row.
    unsafe {
        x86::dot_products(weights, positions, k, rows, width, product)
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("small_maps::applies is false off x86-64")
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{COLUMNS, ROWS};

    /// See [`super::dot_products`].
    ///
    /// # Safety
    /// The CPU has AVX2 and FMA; `weights` holds `rows` rows and `positions` `width` rows of `k`
    /// values, `product` `rows * width` values.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn dot_products(
        weights: &[f32],
        positions: &[f32],
        k: usize,
        rows: usize,
        width: usize,
        product: &mut [f32],
    ) {
        let (w, x) = (weights.as_ptr(), positions.as_ptr());
        let mut r = 0;
        while r < rows {
            let r_step = (rows - r).min(ROWS);
            let mut j = 0;
            while j < width {
                let j_step = (width - j).min(COLUMNS);
                // SAFETY: rows r..r + r_step and columns j..j + j_step are inside the slices.
                unsafe {
                    let (w, x) = (w.add(r * k), x.add(j * k));
                    let out = product.as_mut_ptr().add(r * width + j);
                    match (r_step, j_step) {
                        (2, 4) => block::<2, 4>(w, x, k, out, width),
                        (2, 3) => block::<2, 3>(w, x, k, out, width),
                        (2, 2) => block::<2, 2>(w, x, k, out, width),
                        (2, _) => block::<2, 1>(w, x, k, out, width),
                        (_, 4) => block::<1, 4>(w, x, k, out, width),
                        (_, 3) => block::<1, 3>(w, x, k, out, width),
                        (_, 2) => block::<1, 2>(w, x, k, out, width),
                        _ => block::<1, 1>(w, x, k, out, width),
                    }
                }
                j += j_step;
            }
            r += r_step;
        }
    }

    /// `R` weight rows (from `w`, `k` apart) times `C` position rows (from `x`, `k` apart) into
    /// `out[r * width + c]`.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn block<const R: usize, const C: usize>(
        w: *const f32,
        x: *const f32,
        k: usize,
        out: *mut f32,
        width: usize,
    ) {
        let lanes = k / 8 * 8;
        // SAFETY (all below): reads stay within the R and C rows of k values; the caller owns
        // out's R x C values.
        unsafe {
            let mut acc = [[_mm256_setzero_ps(); C]; R];
            let mut i = 0;
            while i < lanes {
                let mut xs = [_mm256_setzero_ps(); C];
                for (c, v) in xs.iter_mut().enumerate() {
                    *v = _mm256_loadu_ps(x.add(c * k + i));
                }
                for (r, acc) in acc.iter_mut().enumerate() {
                    let wv = _mm256_loadu_ps(w.add(r * k + i));
                    for (a, &xv) in acc.iter_mut().zip(&xs) {
                        *a = _mm256_fmadd_ps(wv, xv, *a);
                    }
                }
                i += 8;
            }
            for (r, acc) in acc.iter().enumerate() {
                for (c, &a) in acc.iter().enumerate() {
                    let mut sum = sum_lanes(a);
                    for t in lanes..k {
                        sum = (*w.add(r * k + t)).mul_add(*x.add(c * k + t), sum);
                    }
                    *out.add(r * width + c) = sum;
                }
            }
        }
    }

    /// `((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7))` of the eight lanes.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn sum_lanes(v: __m256) -> f32 {
        let quad = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let pair = _mm_add_ps(quad, _mm_movehl_ps(quad, quad));
        _mm_cvtss_f32(_mm_add_ss(pair, _mm_shuffle_ps(pair, pair, 1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::conv2d::{conv2d, tests::assert_same_bits_on_1_2_and_3_threads};
    use crate::kernels::tests::{assert_close, random_input};
    use burn::nn::PaddingConfig2d;
    use burn::nn::conv::Conv2dConfig;
    use burn::prelude::*;

    /// The dot products against a sum in f64: each within a few ulp of the sum's magnitude, for
    /// every block shape (rows 1 and 2, columns 1 to 4) and `k` with and without a tail.
    #[test]
    fn dot_products_are_the_sums_to_rounding() {
        if !has_avx2_fma() {
            eprintln!("skipped: this CPU has no AVX2 + FMA (the kernel is not used on it)");
            return;
        }
        for (rows, width, k) in [(5, 7, 24), (3, 9, 20), (1, 1, 7), (6, 4, 1152), (2, 16, 3), (3, 6, 16), (4, 10, 9)] {
            let weights: Vec<f32> = (0..rows * k).map(|i| ((i * 37 % 101) as f32 - 50.0) / 17.0).collect();
            let positions: Vec<f32> = (0..width * k).map(|i| ((i * 53 % 89) as f32 - 44.0) / 13.0).collect();
            let mut product = vec![f32::NAN; rows * width];
            dot_products(&weights, &positions, k, &mut product);
            for r in 0..rows {
                for j in 0..width {
                    let terms = (0..k).map(|i| weights[r * k + i] as f64 * positions[j * k + i] as f64);
                    let (exact, magnitude) = terms.fold((0f64, 0f64), |(s, m), t| (s + t, m + t.abs()));
                    let got = product[r * width + j] as f64;
                    assert!((got - exact).abs() <= 1e-6 * magnitude, "{rows}x{width}x{k} ({r}, {j}): {got} vs {exact}");
                }
            }
        }
    }

    /// One to three faces on the maps EfficientNet-Lite0's last stages have (2 x 2 to 6 x 6),
    /// with and without bias, channels over several tasks with a partial last one: Burn's
    /// convolution's values within 1e-5, and the same bits on 1, 2 and 3 threads.
    #[test]
    fn matches_burn_and_does_not_depend_on_the_thread_count() {
        if !has_avx2_fma() {
            eprintln!("skipped: this CPU has no AVX2 + FMA (the kernel is not used on it)");
            return;
        }
        let device = Device::flex();
        // (c_in, c_out, map side, batch)
        let cases = [
            (192, 1152, 2, 1),
            (80, 75, 3, 1),
            (20, 33, 2, 2),
            (1152, 320, 2, 1),
            (24, 40, 4, 1),
            (40, 240, 6, 1),
            (36, 50, 3, 3),
        ];
        for (i, (c_in, c_out, side, batch)) in cases.into_iter().enumerate() {
            for bias in [true, false] {
                let conv = Conv2dConfig::new([c_in, c_out], [1, 1])
                    .with_padding(PaddingConfig2d::Same)
                    .with_bias(bias)
                    .init(&device);
                let x = random_input([batch, c_in, side, side], &device, 40 + i as u64);
                let g = Sliding::new(&conv.padding, [side, side], [1, 1], [1, 1]).unwrap();
                assert!(applies(&Shapes::new([batch, c_in, side, side], c_out, &g), &g), "case {i}");
                let what = format!("case {i}, bias {bias}");
                assert_close(&conv2d(&conv, x.clone()), &conv.forward(x.clone()), 1e-5, &what);
                assert_same_bits_on_1_2_and_3_threads(&conv, &x, &what);
            }
        }
    }

    /// Wider products, and convolutions that are not 1 x 1, stride 1, unpadded, stay with gemm.
    #[test]
    fn applies_to_narrow_pointwise_products_only() {
        let shapes = |batch, c_in, side, kernel: usize, stride: usize| {
            let g = Sliding::new(&PaddingConfig2d::Same, [side, side], [kernel; 2], [stride; 2]).unwrap();
            applies(&Shapes::new([batch, c_in, side, side], 8, &g), &g)
        };
        let ok = has_avx2_fma();
        assert_eq!(shapes(1, 16, 6, 1, 1), ok, "36 columns");
        assert_eq!(shapes(10, 16, 2, 1, 1), ok, "40 columns");
        assert!(!shapes(1, 16, 7, 1, 1), "49 columns");
        assert!(!shapes(11, 16, 2, 1, 1), "44 columns");
        assert!(!shapes(1, 16, 3, 3, 1), "3 x 3");
        assert!(!shapes(1, 16, 4, 1, 2), "stride 2");
    }
}
