//! The three transforms of F(2x2, r x r), written once for any of the algorithms' matrices
//! ([`Minimal`]: [`super::f2x3`], [`super::f2x5`]). The products between them are the parent
//! module's.
//!
//! Input: `B` is applied along each padded input row once ([`row_transform`]): a tile row's n
//! input rows overlap the next one's by n - 2, so each row serves n / 2 tile rows. The rows'
//! transforms are kept with even and odd rows apart ([`row_transforms_len`]), so that `Bᵀ` then
//! combines them for all the tiles of a sample's run of tile rows at once: V's row for one channel
//! holds those tiles one after the other, and for tile-row offset `k` the rows `2 ty + k` are
//! consecutive rows of one parity. Output: `Aᵀ` down the rows for all the block's tiles at once,
//! then `A` along each tile row.
//!
//! Why: done tile row by tile row (down the columns first, then along the rows with a stride of
//! 2), the input transform of F(2x2, 5x5) took 12.7% of a training step of the search's heaviest
//! stand-in beside gemm's 30.8% (`perf`, AMD EPYC Zen 4, session 36), and F(2x2, 3x3)'s 12.7% of
//! a whole vgg-lite `ferkit bench` run (session 33): its runs were `tw` values (3 to 24 tiles), and
//! its time went to loop overhead, not arithmetic. Compiled for AVX2 and AVX-512 too (the same
//! operations on the same values: the same bits).

use multiversion::multiversion;

use super::super::Sliding;
use super::super::epilogue::Epilogue;
use super::super::flex::UninitParts;
use super::{Rows, Scratch, Tiling, disjoint_mut, pad_row};

/// One of Winograd's minimal filtering algorithms F(2x2, r x r): its input tiles are n x n
/// (n = r + 1), and it is given by three matrices, each applied to one row or column of values.
pub(super) trait Minimal<const R: usize, const N: usize> {
    /// `G g` of one row or column of a filter.
    fn g(g: [f32; R]) -> [f32; N];
    /// `Bᵀ d` of one row or column of an input tile.
    fn bt(d: [f32; N]) -> [f32; N];
    /// `Aᵀ m` of one row or column of a product.
    fn at(m: [f32; N]) -> [f32; 2];
}

/// `U = G g Gᵀ` for every (output, input) channel pair of `weight` (`[c_out, c_in, r, r]`), laid
/// out `[n²][c_out][c_in]` so that position ξ's matrix is contiguous.
pub(super) fn transform_filters<M: Minimal<R, N>, const R: usize, const N: usize>(
    weight: &[f32],
    c_out: usize,
    c_in: usize,
) -> Vec<f32> {
    let mut u = vec![0f32; N * N * c_out * c_in];
    for o in 0..c_out {
        for i in 0..c_in {
            let g = &weight[(o * c_in + i) * R * R..][..R * R];
            // G g: n x r, G applied down each of the filter's columns.
            let columns: [[f32; N]; R] = std::array::from_fn(|col| M::g(std::array::from_fn(|k| g[k * R + col])));
            // (G g) Gᵀ: n x n, G applied along each row.
            for r in 0..N {
                let row = M::g(std::array::from_fn(|col| columns[col][r]));
                for (col, v) in row.into_iter().enumerate() {
                    u[((r * N + col) * c_out + o) * c_in + i] = v;
                }
            }
        }
    }
    u
}

/// The length of the rows' transforms in `Scratch::rows`: `[parity][j][row][tx]`, padded input row
/// `2 m + parity` of a run of tile rows at row `m`, for `rows_per_block + n / 2 - 1` rows.
pub(super) fn row_transforms_len(t: &Tiling, n: usize) -> usize {
    2 * n * (t.rows_per_block + n / 2 - 1) * t.tw
}

/// `V = Bᵀ d B` for every input channel and tile of the tile rows `rows`, into `s.v`
/// (`[n²][c_in][block_tiles]`, tile `(row - rows.start) * tw + tx`).
#[cfg_attr(feature = "avx512", multiversion(targets("x86_64+avx512f+avx2+avx", "x86_64+avx2+avx")))]
#[cfg_attr(not(feature = "avx512"), multiversion(targets("x86_64+avx2+avx")))]
pub(super) fn transform_input<M: Minimal<R, N>, const R: usize, const N: usize>(
    x: &[f32],
    [c_in, h, w]: [usize; 3],
    g: &Sliding,
    t: &Tiling,
    rows: Rows,
    s: &mut Scratch,
) {
    let (tw, ld) = (t.tw, t.block_tiles);
    let run_rows = t.rows_per_block + N / 2 - 1;
    let at = |parity: usize, j: usize, m: usize| ((parity * N + j) * run_rows + m) * tw;
    for ch in 0..c_in {
        // The block's tile rows, a sample's run at a time.
        let mut first = rows.start;
        while first < rows.end {
            let (n, ty) = (first / t.th, first % t.th);
            let count = (t.th - ty).min(rows.end - first);
            let plane = &x[(n * c_in + ch) * h * w..][..h * w];
            for m in 0..count + N / 2 - 1 {
                for parity in 0..2 {
                    let out = disjoint_mut(&mut s.rows, std::array::from_fn(|j| at(parity, j, m)), tw);
                    row_transform::<M, R, N>(plane, [h, w], g, 2 * (ty + m) + parity, &mut s.padded, out);
                }
            }
            // Bᵀ down the rows, for the run's tiles at once: V[i][j] from rows 2ty + k, k < n.
            let len = count * tw;
            let offset = (first - rows.start) * tw;
            for j in 0..N {
                let d: [&[f32]; N] = std::array::from_fn(|k| &s.rows[at(k % 2, j, k / 2)..][..len]);
                let starts: [usize; N] = std::array::from_fn(|i| ((i * N + j) * c_in + ch) * ld + offset);
                let mut v = disjoint_mut(&mut s.v, starts, len);
                for c in 0..len {
                    let column = M::bt(std::array::from_fn(|k| d[k][c]));
                    for (v, value) in v.iter_mut().zip(column) {
                        v[c] = value;
                    }
                }
            }
            first += count;
        }
    }
}

/// `B` along padded input row `padded_row` of one plane (input row `padded_row - pad`, zeros in
/// the padding): `out[j][tx]` (`tw` values each) is `(d B)[j]` of tile column `tx`'s n values,
/// padded columns `2tx .. 2tx + n`. `scratch` holds the padded row, then its even and odd
/// columns apart, so that the n values of every tile are n runs of consecutive values.
#[inline(always)]
fn row_transform<M: Minimal<R, N>, const R: usize, const N: usize>(
    plane: &[f32],
    [h, w]: [usize; 2],
    g: &Sliding,
    padded_row: usize,
    scratch: &mut [f32],
    mut out: [&mut [f32]; N],
) {
    let Some(iy) = padded_row.checked_sub(g.pad[0]).filter(|&iy| iy < h) else {
        for t in out {
            t.fill(0.0);
        }
        return;
    };
    let tw = out[0].len();
    let (padded, halves) = scratch.split_at_mut(scratch.len() / 2);
    pad_row(&plane[iy * w..][..w], g.pad[1], padded);
    let pairs = tw + N / 2 - 1;
    let (even, odd) = halves.split_at_mut(pairs);
    for (k, pair) in padded.chunks_exact(2).take(pairs).enumerate() {
        (even[k], odd[k]) = (pair[0], pair[1]);
    }
    // Value k of tile tx: padded column 2tx + k, the (tx + k / 2)-th even or odd one.
    let runs: [&[f32]; N] = std::array::from_fn(|k| &[&*even, &*odd][k % 2][k / 2..][..tw]);
    for tx in 0..tw {
        let transformed = M::bt(std::array::from_fn(|k| runs[k][tx]));
        for (t, value) in out.iter_mut().zip(transformed) {
            t[tx] = value;
        }
    }
}

/// `Y = Aᵀ M A` for every output channel and tile of the tile rows `rows`, plus the bias and
/// through `epilogue`, into the output rows the tiles cover. `Aᵀ` first, down the rows for all
/// the block's tiles at once (`s.a_m`: `[2][n][block_tiles]`), then `A` along each tile row.
#[cfg_attr(feature = "avx512", multiversion(targets("x86_64+avx512f+avx2+avx", "x86_64+avx2+avx")))]
#[cfg_attr(not(feature = "avx512"), multiversion(targets("x86_64+avx2+avx")))]
pub(super) fn transform_output<M: Minimal<R, N>, const R: usize, const N: usize>(
    bias: &[f32],
    g: &Sliding,
    t: &Tiling,
    rows: Rows,
    s: &mut Scratch,
    epilogue: &Epilogue,
    out: UninitParts,
) {
    let ([oh, ow], c_out) = (g.output, bias.len());
    let (tiles, tw, ld) = (rows.len() * t.tw, t.tw, t.block_tiles);
    let (m, a_m, y) = (&s.m, &mut s.a_m, &mut s.y);
    for (o, &bias_o) in bias.iter().enumerate() {
        // Aᵀ M: a_m[p][j] from row o of M[n i + j], i < n (c_out rows of `tiles` values from
        // ξ * c_out * block_tiles).
        for j in 0..N {
            let column: [&[f32]; N] = std::array::from_fn(|i| &m[(N * i + j) * c_out * ld + o * tiles..][..tiles]);
            let [s0, s1] = disjoint_mut(a_m, [j * ld, (N + j) * ld], tiles);
            for c in 0..tiles {
                [s0[c], s1[c]] = M::at(std::array::from_fn(|i| column[i][c]));
            }
        }
        // (Aᵀ M) A: output rows 2ty and 2ty + 1, columns 2tx and 2tx + 1 of each tile.
        for (r, tile_row) in rows.clone().enumerate() {
            let (n, ty) = (tile_row / t.th, tile_row % t.th);
            for p in 0..2 {
                let oy = 2 * ty + p;
                if oy >= oh {
                    continue;
                }
                let row: [&[f32]; N] = std::array::from_fn(|j| &a_m[(p * N + j) * ld + r * tw..][..tw]);
                let pairs = &mut y.as_chunks_mut::<2>().0[..tw];
                for (tx, pair) in pairs.iter_mut().enumerate() {
                    *pair = M::at(std::array::from_fn(|j| row[j][tx]));
                }
                // SAFETY: this output row of this channel belongs to this tile row, which belongs
                // to this block alone.
                let dst = unsafe { out.part(((n * c_out + o) * oh + oy) * ow, ow) };
                epilogue.write(o, bias_o, &y[..ow], dst);
            }
        }
    }
}

/// The matrix of a linear map of R values to N, from the map itself: column `k` is the image of
/// the k-th unit vector (`G` from [`Minimal::g`], `Aᵀ` from [`Minimal::at`], and so on).
fn matrix_of<const R: usize, const N: usize>(map: impl Fn([f32; R]) -> [f32; N]) -> [[f32; R]; N] {
    let columns: [[f32; N]; R] = std::array::from_fn(|k| map(std::array::from_fn(|j| if j == k { 1.0 } else { 0.0 })));
    std::array::from_fn(|row| std::array::from_fn(|k| columns[k][row]))
}

/// `dŶ = A dY Aᵀ` (the adjoint of [`transform_output`]'s `Aᵀ M A`) of every output channel's
/// gradient tile in the tile rows `rows`, into `s.m` (`[n²][c_out][block_tiles]`, tile
/// `(row - rows.start) * tw + tx`); outputs past the map's last row or column count as zeros.
/// The tiles' four values are first gathered into four runs over the block (`s.a_m`), so that
/// each of the n² positions is one loop over all the block's tiles.
#[cfg_attr(feature = "avx512", multiversion(targets("x86_64+avx512f+avx2+avx", "x86_64+avx2+avx")))]
#[cfg_attr(not(feature = "avx512"), multiversion(targets("x86_64+avx2+avx")))]
pub(super) fn transform_output_gradient<M: Minimal<R, N>, const R: usize, const N: usize>(
    dy: &[f32],
    c_out: usize,
    g: &Sliding,
    t: &Tiling,
    rows: Rows,
    s: &mut Scratch,
) {
    let [oh, ow] = g.output;
    let (tw, ld, tiles) = (t.tw, t.block_tiles, rows.len() * t.tw);
    // Aᵀ is 2 x n: A's row i is (Aᵀ[0][i], Aᵀ[1][i]).
    let at = matrix_of::<N, 2>(M::at);
    for o in 0..c_out {
        // runs[2p + q][tile]: the tile's output (2ty + p, 2tx + q).
        let [r00, r01, r10, r11] = disjoint_mut(&mut s.a_m, [0, ld, 2 * ld, 3 * ld], tiles);
        for (r, tile_row) in rows.clone().enumerate() {
            let (n, ty) = (tile_row / t.th, tile_row % t.th);
            for (p, (even, odd)) in [(&mut *r00, &mut *r01), (&mut *r10, &mut *r11)].into_iter().enumerate() {
                let (even, odd) = (&mut even[r * tw..][..tw], &mut odd[r * tw..][..tw]);
                let oy = 2 * ty + p;
                if oy >= oh {
                    even.fill(0.0);
                    odd.fill(0.0);
                    continue;
                }
                let row = &dy[((n * c_out + o) * oh + oy) * ow..][..ow];
                for tx in 0..tw {
                    even[tx] = row[2 * tx];
                    odd[tx] = if 2 * tx + 1 < ow { row[2 * tx + 1] } else { 0.0 };
                }
            }
        }
        let (r00, r01, r10, r11) = (&r00[..tiles], &r01[..tiles], &r10[..tiles], &r11[..tiles]);
        for i in 0..N {
            for j in 0..N {
                let (a0, a1, b0, b1) = (at[0][i], at[1][i], at[0][j], at[1][j]);
                let dst = &mut s.m[((i * N + j) * c_out + o) * ld..][..tiles];
                for c in 0..tiles {
                    dst[c] = a0 * (r00[c] * b0 + r01[c] * b1) + a1 * (r10[c] * b0 + r11[c] * b1);
                }
            }
        }
    }
}

/// `dg = Gᵀ dU G` for every (output, input) channel pair of `du` (`[n²][c_out][c_in]`, as
/// [`transform_filters`] lays `U` out): the weight gradient `[c_out, c_in, r, r]`.
pub(super) fn filters_gradient<M: Minimal<R, N>, const R: usize, const N: usize>(
    du: &[f32],
    c_out: usize,
    c_in: usize,
) -> Vec<f32> {
    let g = matrix_of::<R, N>(M::g);
    let mut dw = vec![0f32; c_out * c_in * R * R];
    for o in 0..c_out {
        for i in 0..c_in {
            let d = |a: usize, b: usize| du[((a * N + b) * c_out + o) * c_in + i];
            // (Gᵀ dU)[k][b], then (Gᵀ dU G)[k][l].
            let left: [[f32; N]; R] =
                std::array::from_fn(|k| std::array::from_fn(|b| (0..N).map(|a| g[a][k] * d(a, b)).sum()));
            let out = &mut dw[(o * c_in + i) * R * R..][..R * R];
            for k in 0..R {
                for l in 0..R {
                    out[k * R + l] = (0..N).map(|b| left[k][b] * g[b][l]).sum();
                }
            }
        }
    }
    dw
}
