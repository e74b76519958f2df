//! The transforms of Winograd's F(2x2, 5x5): each 2 x 2 output tile from the 6 x 6 input tile
//! under it, 36 multiplications per channel pair where im2col + GEMM spends 100. The matrices are
//! Toom-Cook's (Lavin and Gray, CVPR 2016, section 4) for the points 0, 1, -1, ½, -½ and ∞,
//! derived and checked against direct correlation in exact rationals (sympy, session 36):
//!
//! ```text
//! G  = [[   4,    0,    0,    0,    0],      Bᵀ = [[¼,  0, -5/4,    0, 1, 0],
//!       [ 2/3,  2/3,  2/3,  2/3,  2/3],            [0, -¼,   -¼,    1, 1, 0],
//!       [ 2/3, -2/3,  2/3, -2/3,  2/3],            [0,  ¼,   -¼,   -1, 1, 0],
//!       [-8/3, -4/3, -2/3, -1/3, -1/6],            [0, -½,   -1,    ½, 1, 0],
//!       [-8/3,  4/3, -2/3,  1/3, -1/6],            [0,  ½,   -1,   -½, 1, 0],
//!       [   0,    0,    0,    0,    1]]            [0,  ¼,    0, -5/4, 0, 1]]
//!
//! Aᵀ = [[1, 1,  1, 1,  1, 0],
//!       [0, 1, -1, ½, -½, 1]]
//! ```
//!
//! The products between the transforms are the parent module's.

use multiversion::multiversion;

use super::super::Sliding;
use super::super::epilogue::Epilogue;
use super::super::flex::UninitParts;
use super::{Rows, Scratch, Tiling, disjoint_mut, pad_row, padded_width};

/// `G`, 6 x 5.
const G: [[f32; 5]; 6] = [
    [4.0, 0.0, 0.0, 0.0, 0.0],
    [2.0 / 3.0; 5],
    [2.0 / 3.0, -2.0 / 3.0, 2.0 / 3.0, -2.0 / 3.0, 2.0 / 3.0],
    [-8.0 / 3.0, -4.0 / 3.0, -2.0 / 3.0, -1.0 / 3.0, -1.0 / 6.0],
    [-8.0 / 3.0, 4.0 / 3.0, -2.0 / 3.0, 1.0 / 3.0, -1.0 / 6.0],
    [0.0, 0.0, 0.0, 0.0, 1.0],
];

/// `Bᵀ d` of six values.
#[inline(always)]
fn bt([d0, d1, d2, d3, d4, d5]: [f32; 6]) -> [f32; 6] {
    [
        0.25 * d0 - 1.25 * d2 + d4,
        -0.25 * (d1 + d2) + d3 + d4,
        0.25 * (d1 - d2) - d3 + d4,
        -0.5 * d1 - d2 + 0.5 * d3 + d4,
        0.5 * d1 - d2 - 0.5 * d3 + d4,
        0.25 * d1 - 1.25 * d3 + d5,
    ]
}

/// `Aᵀ m` of six values.
#[inline(always)]
fn at([m0, m1, m2, m3, m4, m5]: [f32; 6]) -> [f32; 2] {
    [m0 + m1 + m2 + m3 + m4, m1 - m2 + 0.5 * (m3 - m4) + m5]
}

/// `U = G g Gᵀ` for every (output, input) channel pair, laid out `[36][c_out][c_in]` so that
/// position ξ's matrix is contiguous.
pub(super) fn transform_filters(weight: &[f32], c_out: usize, c_in: usize) -> Vec<f32> {
    let mut u = vec![0f32; 36 * c_out * c_in];
    for o in 0..c_out {
        for i in 0..c_in {
            let g = &weight[(o * c_in + i) * 25..][..25];
            // G g: 6 x 5.
            let mut gg = [[0f32; 5]; 6];
            for (row, coefficients) in gg.iter_mut().zip(&G) {
                for (col, v) in row.iter_mut().enumerate() {
                    *v = (0..5).map(|k| coefficients[k] * g[k * 5 + col]).sum();
                }
            }
            // (G g) Gᵀ: 6 x 6.
            for (r, row) in gg.iter().enumerate() {
                for (col, coefficients) in G.iter().enumerate() {
                    let v: f32 = (0..5).map(|k| row[k] * coefficients[k]).sum();
                    u[((r * 6 + col) * c_out + o) * c_in + i] = v;
                }
            }
        }
    }
    u
}

/// The ring's layout in `Scratch::d`: `[parity][j][row][tx]`, padded input row `2 m + parity`
/// of a run of tile rows at row `m`, for `t.rows_per_block + 2` rows.
pub(super) fn row_transforms_len(t: &Tiling) -> usize {
    2 * 6 * (t.rows_per_block + 2) * t.tw
}

/// `V = Bᵀ d B` for every input channel and tile of the tile rows `rows`, into `s.v`
/// (`[36][c_in][block_tiles]`, tile `(row - rows.start) * tw + tx`). Compiled for AVX2 and
/// AVX-512 too, as F(2x2, 3x3)'s transforms are (the same operations on the same values: the
/// same bits).
///
/// `B` is applied along each padded input row once ([`row_transform`]; a tile row's six input
/// rows overlap the next one's by four), into `s.d` with even and odd rows apart
/// ([`row_transforms_len`]). `Bᵀ` then combines them for all the tiles of a sample's run of tile
/// rows at once: V's row for channel `ch` holds those tiles one after the other, and for
/// tile-row offset `k` the rows `2 ty + k` are consecutive rows of one parity. (Down the columns
/// first, then along the rows tile by tile, the transform took 12.7% of a training step of the
/// search's heaviest stand-in beside gemm's 30.8%: `perf`, AMD EPYC Zen 4, session 36.)
#[cfg_attr(feature = "avx512", multiversion(targets("x86_64+avx512f+avx2+avx", "x86_64+avx2+avx")))]
#[cfg_attr(not(feature = "avx512"), multiversion(targets("x86_64+avx2+avx")))]
pub(super) fn transform_input(
    x: &[f32],
    [c_in, h, w]: [usize; 3],
    g: &Sliding,
    t: &Tiling,
    rows: Rows,
    s: &mut Scratch,
) {
    let (tw, ld) = (t.tw, t.block_tiles);
    let width = padded_width(t, 6);
    let run_rows = t.rows_per_block + 2;
    let at = |parity: usize, j: usize, m: usize| ((parity * 6 + j) * run_rows + m) * tw;
    for ch in 0..c_in {
        // The block's tile rows, a sample's run at a time.
        let mut first = rows.start;
        while first < rows.end {
            let (n, ty) = (first / t.th, first % t.th);
            let count = (t.th - ty).min(rows.end - first);
            let plane = &x[(n * c_in + ch) * h * w..][..h * w];
            for m in 0..count + 2 {
                for parity in 0..2 {
                    let out = disjoint_mut(&mut s.d, std::array::from_fn(|j| at(parity, j, m)), tw);
                    row_transform(plane, [h, w], g, 2 * (ty + m) + parity, tw, &mut s.bt_d[..2 * width], out);
                }
            }
            // Bᵀ down the rows, for the run's tiles at once: V[i][j] from rows 2ty + k, k = 0..6.
            let len = count * tw;
            let offset = (first - rows.start) * tw;
            for j in 0..6 {
                let d: [&[f32]; 6] = std::array::from_fn(|k| &s.d[at(k % 2, j, k / 2)..][..len]);
                let [d0, d1, d2, d3, d4, d5] = d;
                let starts: [usize; 6] = std::array::from_fn(|i| ((i * 6 + j) * c_in + ch) * ld + offset);
                let [v0, v1, v2, v3, v4, v5] = disjoint_mut(&mut s.v, starts, len);
                // (cut to `len` here, where the compiler sees it, so that the loop has no bounds
                // checks and vectorises)
                let (v0, v1, v2, v3, v4, v5) =
                    (&mut v0[..len], &mut v1[..len], &mut v2[..len], &mut v3[..len], &mut v4[..len], &mut v5[..len]);
                let (d0, d1, d2, d3, d4, d5) = (&d0[..len], &d1[..len], &d2[..len], &d3[..len], &d4[..len], &d5[..len]);
                for c in 0..len {
                    [v0[c], v1[c], v2[c], v3[c], v4[c], v5[c]] = bt([d0[c], d1[c], d2[c], d3[c], d4[c], d5[c]]);
                }
            }
            first += count;
        }
    }
}

/// `B` along padded input row `padded_row` of one plane (input row `padded_row - pad`, zeros in
/// the padding): `out[j][tx]` (`tw` values each) is `(d B)[j]` of tile column `tx`'s six
/// values, padded columns `2tx .. 2tx + 6`. `scratch` holds the padded row, then its even and
/// odd columns apart, so that the six values of every tile are six runs of consecutive values.
#[inline(always)]
fn row_transform(
    plane: &[f32],
    [h, w]: [usize; 2],
    g: &Sliding,
    padded_row: usize,
    tw: usize,
    scratch: &mut [f32],
    out: [&mut [f32]; 6],
) {
    let [t0, t1, t2, t3, t4, t5] = out;
    let (t0, t1, t2, t3, t4, t5) =
        (&mut t0[..tw], &mut t1[..tw], &mut t2[..tw], &mut t3[..tw], &mut t4[..tw], &mut t5[..tw]);
    let Some(iy) = padded_row.checked_sub(g.pad[0]).filter(|&iy| iy < h) else {
        for t in [t0, t1, t2, t3, t4, t5] {
            t.fill(0.0);
        }
        return;
    };
    let (padded, halves) = scratch.split_at_mut(scratch.len() / 2);
    pad_row(&plane[iy * w..][..w], g.pad[1], padded);
    let pairs = tw + 2;
    let (even, odd) = halves.split_at_mut(pairs);
    for (k, pair) in padded.chunks_exact(2).take(pairs).enumerate() {
        (even[k], odd[k]) = (pair[0], pair[1]);
    }
    let (e0, e1, e2) = (&even[..tw], &even[1..tw + 1], &even[2..tw + 2]);
    let (o0, o1, o2) = (&odd[..tw], &odd[1..tw + 1], &odd[2..tw + 2]);
    for tx in 0..tw {
        [t0[tx], t1[tx], t2[tx], t3[tx], t4[tx], t5[tx]] = bt([e0[tx], o0[tx], e1[tx], o1[tx], e2[tx], o2[tx]]);
    }
}

/// `Y = Aᵀ M A` for every output channel and tile of the tile rows `rows`, plus the bias and
/// through `epilogue`, into the output rows the tiles cover. `Aᵀ` first, down the rows for all
/// the block's tiles at once (`s.a_m`: `[2][6][block_tiles]`), then `A` along each tile row.
/// Compiled for AVX2 and AVX-512 too.
#[cfg_attr(feature = "avx512", multiversion(targets("x86_64+avx512f+avx2+avx", "x86_64+avx2+avx")))]
#[cfg_attr(not(feature = "avx512"), multiversion(targets("x86_64+avx2+avx")))]
pub(super) fn transform_output(
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
        // Aᵀ M: a_m[p][j] from row o of M[6i + j], i = 0..6 (c_out rows of `tiles` values from
        // ξ * c_out * block_tiles).
        for j in 0..6 {
            let column: [&[f32]; 6] = std::array::from_fn(|i| &m[(6 * i + j) * c_out * ld + o * tiles..][..tiles]);
            let [m0, m1, m2, m3, m4, m5] = column;
            let (m0, m1, m2, m3, m4, m5) =
                (&m0[..tiles], &m1[..tiles], &m2[..tiles], &m3[..tiles], &m4[..tiles], &m5[..tiles]);
            let [s0, s1] = disjoint_mut(a_m, [j * ld, (6 + j) * ld], tiles);
            let (s0, s1) = (&mut s0[..tiles], &mut s1[..tiles]);
            for c in 0..tiles {
                [s0[c], s1[c]] = at([m0[c], m1[c], m2[c], m3[c], m4[c], m5[c]]);
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
                let row: [&[f32]; 6] = std::array::from_fn(|j| &a_m[(p * 6 + j) * ld + r * tw..][..tw]);
                let [r0, r1, r2, r3, r4, r5] = row;
                let (r0, r1, r2, r3, r4, r5) = (&r0[..tw], &r1[..tw], &r2[..tw], &r3[..tw], &r4[..tw], &r5[..tw]);
                let pairs = &mut y.as_chunks_mut::<2>().0[..tw];
                for tx in 0..tw {
                    pairs[tx] = at([r0[tx], r1[tx], r2[tx], r3[tx], r4[tx], r5[tx]]);
                }
                // SAFETY: this output row of this channel belongs to this tile row, which belongs
                // to this block alone.
                let dst = unsafe { out.part(((n * c_out + o) * oh + oy) * ow, ow) };
                epilogue.write(o, bias_o, &y[..ow], dst);
            }
        }
    }
}
