//! The three transforms of F(m x m, r x r), written once for any of the algorithms' matrices
//! ([`Minimal`]: [`super::f2x3`], [`super::f4x3`], [`super::f2x5`]). The products between them
//! are the parent module's.
//!
//! Input: `B` is applied along each padded input row once ([`row_transform`]): a tile row's n
//! input rows overlap the next one's by n - m, so each row serves n / m tile rows. The rows'
//! transforms are kept by phase (row modulo m) apart ([`row_transforms_len`]), so that `Bᵀ` then
//! combines them for all the tiles of a sample's run of tile rows at once: V's row for one channel
//! holds those tiles one after the other, and for tile-row offset `k` the rows `m ty + k` are
//! consecutive rows of one phase. Output: `Aᵀ` down the rows for all the block's tiles at once,
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

/// One of Winograd's minimal filtering algorithms F(m x m, r x r): its output tiles are m x m
/// (`T` = m), its input tiles n x n (n = m + r - 1), and it is given by three matrices, each
/// applied to one row or column of values.
pub(super) trait Minimal<const R: usize, const N: usize, const T: usize> {
    /// `G g` of one row or column of a filter.
    fn g(g: [f32; R]) -> [f32; N];
    /// `Bᵀ d` of one row or column of an input tile.
    fn bt(d: [f32; N]) -> [f32; N];
    /// `Aᵀ m` of one row or column of a product.
    fn at(m: [f32; N]) -> [f32; T];
}

/// `U = G g Gᵀ` for every (output, input) channel pair of `weight` (`[c_out, c_in, r, r]`), laid
/// out `[c_out][n²][c_in]`: position ξ's matrix `[c_out x c_in]` is every `n² c_in`-th row of
/// `c_in` values, and each output channel's part is written by one rayon task.
///
/// Why this layout and loop: written pair by pair into `[n²][c_out][c_in]`, each pair's n²
/// values went to n² places `c_out c_in` values apart; that took 3% of vgg-lite's inference at
/// batch 1 with F(2x2, 3x3) and 20% with F(4x4, 3x3) (`perf`, AMD EPYC Zen 4, session 40). Here
/// each filter tap is first gathered across the input channels, and `G` is applied to runs of
/// input channels at once (vectorised), writing runs of `c_in` consecutive values.
pub(super) fn transform_filters<M: Minimal<R, N, T>, const R: usize, const N: usize, const T: usize>(
    weight: &[f32],
    c_out: usize,
    c_in: usize,
) -> Vec<f32> {
    use rayon::prelude::*;
    let mut u = vec![0f32; N * N * c_out * c_in];
    u.par_chunks_mut(N * N * c_in)
        .enumerate()
        .for_each(|(o, u)| transform_filters_of::<M, R, N, T>(&weight[o * c_in * R * R..][..c_in * R * R], c_in, u));
    u
}

/// [`transform_filters`] of one output channel: `filters` `[c_in, r, r]` into `u` `[n²][c_in]`.
#[cfg_attr(feature = "avx512", multiversion(targets("x86_64+avx512f+avx2+avx", "x86_64+avx2+avx")))]
#[cfg_attr(not(feature = "avx512"), multiversion(targets("x86_64+avx2+avx")))]
fn transform_filters_of<M: Minimal<R, N, T>, const R: usize, const N: usize, const T: usize>(
    filters: &[f32],
    c_in: usize,
    u: &mut [f32],
) {
    // taps[k][i]: tap k (row-major in the window) of input channel i's filter.
    let mut taps = vec![0f32; R * R * c_in];
    for (i, filter) in filters.chunks_exact(R * R).enumerate() {
        for (k, &value) in filter.iter().enumerate() {
            taps[k * c_in + i] = value;
        }
    }
    // G g: columns[r][col][i], G applied down each of the filter's R columns.
    let mut columns = vec![0f32; N * R * c_in];
    for col in 0..R {
        let taps: [&[f32]; R] = std::array::from_fn(|k| &taps[(k * R + col) * c_in..][..c_in]);
        let mut dst = super::disjoint_mut::<N>(&mut columns, std::array::from_fn(|r| (r * R + col) * c_in), c_in);
        for i in 0..c_in {
            for (dst, value) in dst.iter_mut().zip(M::g(std::array::from_fn(|k| taps[k][i]))) {
                dst[i] = value;
            }
        }
    }
    // (G g) Gᵀ: G applied along each row r, into u[r n + col].
    for r in 0..N {
        let row: [&[f32]; R] = std::array::from_fn(|col| &columns[(r * R + col) * c_in..][..c_in]);
        let mut dst = super::disjoint_mut::<N>(u, std::array::from_fn(|col| (r * N + col) * c_in), c_in);
        for i in 0..c_in {
            for (dst, value) in dst.iter_mut().zip(M::g(std::array::from_fn(|col| row[col][i]))) {
                dst[i] = value;
            }
        }
    }
}

/// The length of the rows' transforms in `Scratch::rows`: `[phase][j][row][tx]`, padded input
/// row `side * r + phase` of a run of tile rows at row `r`, for [`run_rows`] rows.
pub(super) fn row_transforms_len(t: &Tiling, n: usize) -> usize {
    t.side * n * run_rows(t.rows_per_block, n, t.side) * t.tw
}

/// How many rows of each phase a run of `tile_rows` tile rows reads: its input rows run from
/// `side * ty` to `side * (ty + tile_rows - 1) + n`.
fn run_rows(tile_rows: usize, n: usize, side: usize) -> usize {
    tile_rows + (n - 1) / side
}

/// `V = Bᵀ d B` for every input channel and tile of the tile rows `rows`, into `s.v`
/// (`[n²][c_in][block_tiles]`, tile `(row - rows.start) * tw + tx`).
#[cfg_attr(feature = "avx512", multiversion(targets("x86_64+avx512f+avx2+avx", "x86_64+avx2+avx")))]
#[cfg_attr(not(feature = "avx512"), multiversion(targets("x86_64+avx2+avx")))]
pub(super) fn transform_input<M: Minimal<R, N, T>, const R: usize, const N: usize, const T: usize>(
    x: &[f32],
    [c_in, h, w]: [usize; 3],
    g: &Sliding,
    t: &Tiling,
    rows: Rows,
    s: &mut Scratch,
) {
    let (tw, ld) = (t.tw, t.block_tiles);
    let stride = run_rows(t.rows_per_block, N, T);
    let at = |phase: usize, j: usize, r: usize| ((phase * N + j) * stride + r) * tw;
    for ch in 0..c_in {
        // The block's tile rows, a sample's run at a time.
        let mut first = rows.start;
        while first < rows.end {
            let (n, ty) = (first / t.th, first % t.th);
            let count = (t.th - ty).min(rows.end - first);
            let plane = &x[(n * c_in + ch) * h * w..][..h * w];
            for r in 0..run_rows(count, N, T) {
                for phase in 0..T {
                    let out = disjoint_mut(&mut s.rows, std::array::from_fn(|j| at(phase, j, r)), tw);
                    row_transform::<M, R, N, T>(plane, [h, w], g, T * (ty + r) + phase, &mut s.padded, out);
                }
            }
            // Bᵀ down the rows, for the run's tiles at once: V[i][j] from rows T ty + k, k < n.
            let len = count * tw;
            let offset = (first - rows.start) * tw;
            for j in 0..N {
                let d: [&[f32]; N] = std::array::from_fn(|k| &s.rows[at(k % T, j, k / T)..][..len]);
                let starts: [usize; N] = std::array::from_fn(|i| ((i * N + j) * c_in + ch) * ld + offset);
                map_columns(d, disjoint_mut(&mut s.v, starts, len), len, M::bt);
            }
            first += count;
        }
    }
}

/// `B` along padded input row `padded_row` of one plane (input row `padded_row - pad`, zeros in
/// the padding): `out[j][tx]` (`tw` values each) is `(d B)[j]` of tile column `tx`'s n values,
/// padded columns `T tx .. T tx + n`. `scratch` holds the padded row, then its columns by phase
/// (column modulo T) apart, so that the n values of every tile are n runs of consecutive values.
#[inline(always)]
fn row_transform<M: Minimal<R, N, T>, const R: usize, const N: usize, const T: usize>(
    plane: &[f32],
    [h, w]: [usize; 2],
    g: &Sliding,
    padded_row: usize,
    scratch: &mut [f32],
    out: [&mut [f32]; N],
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
    let groups = phase_len(tw, N, T);
    let mut phases = disjoint_mut::<T>(halves, std::array::from_fn(|p| p * groups), groups);
    for (k, group) in padded.as_chunks::<T>().0[..groups].iter().enumerate() {
        for (phase, &value) in phases.iter_mut().zip(group) {
            phase[k] = value;
        }
    }
    // Value k of tile tx: padded column T tx + k, the (tx + k / T)-th of phase k % T.
    let runs: [&[f32]; N] = std::array::from_fn(|k| &phases[k % T][k / T..][..tw]);
    map_columns(runs, out, tw, M::bt);
}

/// `dst[l][c] = f(src[0][c], .., src[K - 1][c])[l]` for `c < len`: a map applied to every column
/// of K runs of values, into L runs. In blocks of [`LANES`] columns gathered into arrays, so that
/// the compiler applies `f` to a whole block with vector instructions; written column by column
/// (the transforms' loops), it compiled to scalar code whose stores were most of the input
/// transform's time (`perf annotate` of a vgg-lite training step, session 40: the transforms
/// 32% of the samples before, 29% after). The same operations on each value, so the same bits.
#[inline(always)]
fn map_columns<const K: usize, const L: usize>(
    src: [&[f32]; K],
    mut dst: [&mut [f32]; L],
    len: usize,
    f: impl Fn([f32; K]) -> [f32; L],
) {
    let mut c = 0;
    while c + LANES <= len {
        let x: [[f32; LANES]; K] = std::array::from_fn(|k| src[k][c..c + LANES].try_into().expect("LANES values"));
        let mut y = [[0f32; LANES]; L];
        for lane in 0..LANES {
            let values = f(std::array::from_fn(|k| x[k][lane]));
            for (y, value) in y.iter_mut().zip(values) {
                y[lane] = value;
            }
        }
        for (dst, y) in dst.iter_mut().zip(&y) {
            dst[c..c + LANES].copy_from_slice(y);
        }
        c += LANES;
    }
    for c in c..len {
        let values = f(std::array::from_fn(|k| src[k][c]));
        for (dst, value) in dst.iter_mut().zip(values) {
            dst[c] = value;
        }
    }
}

/// Columns per block of [`map_columns`]: one AVX2 register of f32. The runs are short (a row of
/// 4 x 4 tiles on a 48 x 48 map is 12 tiles), and blocks of 16 left more of them to the scalar
/// tail (the transforms' share of the same profile: 30% with 16).
const LANES: usize = 8;

#[cfg(test)]
mod tests {
    use super::*;

    /// Blocks and the tail give what applying the map column by column gives, bit for bit.
    #[test]
    fn map_columns_is_the_map_of_each_column() {
        let len = 3 * LANES + 5;
        let src: Vec<Vec<f32>> =
            (0..3).map(|k| (0..len).map(|c| ((c * 7 + k * 13) % 17) as f32 / 3.0 - 2.5).collect()).collect();
        let f = |[a, b, c]: [f32; 3]| [a * 0.5 - b, a + b * 0.25 - c, c * 1.5];
        let mut out = vec![vec![0f32; len]; 3];
        let [o0, o1, o2] = &mut out[..] else { unreachable!() };
        map_columns([&src[0][..], &src[1][..], &src[2][..]], [&mut o0[..], &mut o1[..], &mut o2[..]], len, f);
        for c in 0..len {
            let expected = f([src[0][c], src[1][c], src[2][c]]);
            for l in 0..3 {
                assert_eq!(out[l][c].to_bits(), expected[l].to_bits(), "column {c}, run {l}");
            }
        }
    }
}

/// Values of each phase of a padded row: tile `tx` reads `tx .. tx + (n - 1) / side + 1` of them.
pub(super) fn phase_len(tw: usize, n: usize, side: usize) -> usize {
    tw + (n - 1) / side
}

/// `Y = Aᵀ M A` for every output channel and tile of the tile rows `rows`, plus the bias and
/// through `epilogue`, into the output rows the tiles cover. `Aᵀ` first, down the rows for all
/// the block's tiles at once (`s.a_m`: `[T][n][block_tiles]`), then `A` along each tile row.
#[cfg_attr(feature = "avx512", multiversion(targets("x86_64+avx512f+avx2+avx", "x86_64+avx2+avx")))]
#[cfg_attr(not(feature = "avx512"), multiversion(targets("x86_64+avx2+avx")))]
pub(super) fn transform_output<M: Minimal<R, N, T>, const R: usize, const N: usize, const T: usize>(
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
            let dst = disjoint_mut::<T>(a_m, std::array::from_fn(|p| (p * N + j) * ld), tiles);
            map_columns(column, dst, tiles, M::at);
        }
        // (Aᵀ M) A: output rows T ty .. T ty + T, columns T tx .. T tx + T of each tile.
        for (r, tile_row) in rows.clone().enumerate() {
            let (n, ty) = (tile_row / t.th, tile_row % t.th);
            for p in 0..T {
                let oy = T * ty + p;
                if oy >= oh {
                    continue;
                }
                let row: [&[f32]; N] = std::array::from_fn(|j| &a_m[(p * N + j) * ld + r * tw..][..tw]);
                let groups = &mut y.as_chunks_mut::<T>().0[..tw];
                for (tx, group) in groups.iter_mut().enumerate() {
                    *group = M::at(std::array::from_fn(|j| row[j][tx]));
                }
                // SAFETY: this output row of this channel belongs to this tile row, which belongs
                // to this block alone.
                let dst = unsafe { out.part(((n * c_out + o) * oh + oy) * ow, ow) };
                epilogue.write(o, bias_o, &y[..ow], dst);
            }
        }
    }
}

/// The matrix of a linear map of K values to L, from the map itself: column `k` is the image of
/// the k-th unit vector (`G` from [`Minimal::g`], `Aᵀ` from [`Minimal::at`], and so on).
fn matrix_of<const K: usize, const L: usize>(map: impl Fn([f32; K]) -> [f32; L]) -> [[f32; K]; L] {
    let columns: [[f32; L]; K] = std::array::from_fn(|k| map(std::array::from_fn(|j| if j == k { 1.0 } else { 0.0 })));
    std::array::from_fn(|row| std::array::from_fn(|k| columns[k][row]))
}

/// `dŶ = A dY Aᵀ` (the adjoint of [`transform_output`]'s `Aᵀ M A`) of every output channel's
/// gradient tile in the tile rows `rows`, into `s.m` (`[n²][c_out][block_tiles]`, tile
/// `(row - rows.start) * tw + tx`); outputs past the map's last row or column count as zeros.
/// The tiles' T² values are first gathered into T² runs over the block (`s.a_m`), then `Aᵀ`'s
/// columns applied along each tile row (`(dY A)[p][j]`, T x n runs) and down them (`A (dY A)`),
/// each a loop over all the block's tiles.
#[cfg_attr(feature = "avx512", multiversion(targets("x86_64+avx512f+avx2+avx", "x86_64+avx2+avx")))]
#[cfg_attr(not(feature = "avx512"), multiversion(targets("x86_64+avx2+avx")))]
pub(super) fn transform_output_gradient<M: Minimal<R, N, T>, const R: usize, const N: usize, const T: usize>(
    dy: &[f32],
    c_out: usize,
    g: &Sliding,
    t: &Tiling,
    rows: Rows,
    s: &mut Scratch,
) {
    let [oh, ow] = g.output;
    let (tw, ld, tiles) = (t.tw, t.block_tiles, rows.len() * t.tw);
    // Aᵀ is T x n: A's row i is (Aᵀ[0][i], .., Aᵀ[T - 1][i]).
    let at = matrix_of::<N, T>(M::at);
    for o in 0..c_out {
        let (runs, right) = s.a_m.split_at_mut(T * T * ld);
        // runs[T p + q][tile]: the tile's output (T ty + p, T tx + q).
        let mut runs = disjoint_mut::<T>(runs, std::array::from_fn(|p| p * T * ld), T * ld);
        for (r, tile_row) in rows.clone().enumerate() {
            let (n, ty) = (tile_row / t.th, tile_row % t.th);
            for (p, runs) in runs.iter_mut().enumerate() {
                let mut phases = disjoint_mut::<T>(runs, std::array::from_fn(|q| q * ld + r * tw), tw);
                let oy = T * ty + p;
                if oy >= oh {
                    phases.iter_mut().for_each(|phase| phase.fill(0.0));
                    continue;
                }
                let row = &dy[((n * c_out + o) * oh + oy) * ow..][..ow];
                for tx in 0..tw {
                    for (q, phase) in phases.iter_mut().enumerate() {
                        let ox = T * tx + q;
                        phase[tx] = if ox < ow { row[ox] } else { 0.0 };
                    }
                }
            }
        }
        let runs: [[&[f32]; T]; T] = std::array::from_fn(|p| std::array::from_fn(|q| &runs[p][q * ld..][..tiles]));
        // (dY A)[p][j] = Σ_q dY[p][q] Aᵀ[q][j].
        let mut right = disjoint_mut::<N>(right, std::array::from_fn(|j| j * T * ld), T * ld);
        for (j, right) in right.iter_mut().enumerate() {
            for (p, runs) in runs.iter().enumerate() {
                let dst = &mut right[p * ld..][..tiles];
                for c in 0..tiles {
                    dst[c] = (1..T).fold(runs[0][c] * at[0][j], |sum, q| sum + runs[q][c] * at[q][j]);
                }
            }
        }
        // (A dY A)[i][j] = Σ_p Aᵀ[p][i] (dY A)[p][j].
        for i in 0..N {
            for (j, right) in right.iter().enumerate() {
                let right: [&[f32]; T] = std::array::from_fn(|p| &right[p * ld..][..tiles]);
                let dst = &mut s.m[((i * N + j) * c_out + o) * ld..][..tiles];
                for c in 0..tiles {
                    dst[c] = (1..T).fold(at[0][i] * right[0][c], |sum, p| sum + at[p][i] * right[p][c]);
                }
            }
        }
    }
}

/// `dg = Gᵀ dU G` for every (output, input) channel pair of `du` (`[n²][c_out][c_in]`, as
/// [`transform_filters`] lays `U` out): the weight gradient `[c_out, c_in, r, r]`.
pub(super) fn filters_gradient<M: Minimal<R, N, T>, const R: usize, const N: usize, const T: usize>(
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
