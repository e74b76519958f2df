//! The transforms of Winograd's F(2x2, 3x3) (Lavin and Gray, CVPR 2016, section 4.1): each
//! 2 x 2 output tile from the 4 x 4 input tile under it, with
//! `G` = [[1, 0, 0], [½, ½, ½], [½, -½, ½], [0, 0, 1]],
//! `Bᵀ` = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]] and
//! `Aᵀ` = [[1, 1, 1, 0], [0, 1, -1, -1]]. The products between them are the parent module's.

use multiversion::multiversion;

use super::super::Sliding;
use super::super::epilogue::Epilogue;
use super::super::flex::UninitParts;
use super::{Rows, Scratch, Tiling, disjoint_mut, pad_rows, padded_width};

/// `U = G g Gᵀ` for every (output, input) channel pair, laid out `[16][c_out][c_in]` so that
/// position ξ's matrix is contiguous. `G` = [[1, 0, 0], [½, ½, ½], [½, -½, ½], [0, 0, 1]].
pub(super) fn transform_filters(weight: &[f32], c_out: usize, c_in: usize) -> Vec<f32> {
    let mut u = vec![0f32; 16 * c_out * c_in];
    for o in 0..c_out {
        for i in 0..c_in {
            let g = &weight[(o * c_in + i) * 9..][..9];
            // G g: 4 x 3, G applied down each of the filter's columns.
            let mut gg = [[0f32; 3]; 4];
            for col in 0..3 {
                let (g0, g1, g2) = (g[col], g[3 + col], g[6 + col]);
                gg[0][col] = g0;
                gg[1][col] = 0.5 * (g0 + g1 + g2);
                gg[2][col] = 0.5 * (g0 - g1 + g2);
                gg[3][col] = g2;
            }
            // (G g) Gᵀ: 4 x 4, G applied along each row.
            for (r, &[a, b, c]) in gg.iter().enumerate() {
                let row = [a, 0.5 * (a + b + c), 0.5 * (a - b + c), c];
                for (col, v) in row.into_iter().enumerate() {
                    u[((r * 4 + col) * c_out + o) * c_in + i] = v;
                }
            }
        }
    }
    u
}

/// `V = Bᵀ d B` for every input channel and tile of the tile rows `rows`, into `s.v`
/// (`[16][c_in][block_tiles]`, tile `(row - rows.start) * tw + tx`).
/// `Bᵀ` = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]].
///
/// Compiled for AVX2 and AVX-512 too, as is [`transform_output`] (the same operations on the
/// same values: the same bits). Why: on plain x86-64 the two transforms were a third of
/// vgg-lite's inference at batch 256 (`perf`, AMD EPYC Zen 4, session 33: 17.4% and 15.8% of
/// the samples beside gemm's main microkernel's 35.9%). In profiles of a whole `ferkit bench`
/// run (training and inference), compiling so took the output transform from 11.0% to 8.7% of
/// the samples (gemm's 31.3% and 33.2%); this one stayed at 12.7%: its rows are short (3 to 24
/// tiles) and its columns interleaved in pairs, and its time goes to loop overhead, not
/// arithmetic. Storing the padded rows de-interleaved (evens, then odds) made it slower (18.5%):
/// the scatter into two halves did not vectorise.
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
    let width = padded_width(t, 4);
    let ld = t.block_tiles;
    for ch in 0..c_in {
        for (r, tile_row) in rows.clone().enumerate() {
            let (n, ty) = (tile_row / t.th, tile_row % t.th);
            let plane = &x[(n * c_in + ch) * h * w..][..h * w];
            pad_rows(plane, [h, w], g, ty, &mut s.d, width);
            // Bᵀ d down the columns, every column at once.
            let (d, bt_d) = (&s.d, &mut s.bt_d);
            let (d0, d1, d2, d3) = (&d[..width], &d[width..2 * width], &d[2 * width..3 * width], &d[3 * width..]);
            let (t0, rest) = bt_d.split_at_mut(width);
            let (t1, rest) = rest.split_at_mut(width);
            let (t2, t3) = rest.split_at_mut(width);
            let d = d0.iter().zip(d1).zip(d2).zip(d3);
            for ((((t0, t1), t2), t3), (((d0, d1), d2), d3)) in t0.iter_mut().zip(t1).zip(t2).zip(t3).zip(d) {
                *t0 = d0 - d2;
                *t1 = d1 + d2;
                *t2 = d2 - d1;
                *t3 = d1 - d3;
            }
            // (Bᵀ d) B along the rows: tile tx takes columns 2tx..2tx+4, the pairs tx and tx + 1.
            for (i, row) in s.bt_d.chunks_exact(width).enumerate() {
                let start = |j: usize| ((i * 4 + j) * c_in + ch) * ld + r * t.tw;
                let [v0, v1, v2, v3] = disjoint_mut(&mut s.v, [start(0), start(1), start(2), start(3)], t.tw);
                let pairs = row.chunks_exact(2).zip(row[2..].chunks_exact(2));
                for ((((v0, v1), v2), v3), (p, q)) in v0.iter_mut().zip(v1).zip(v2).zip(v3).zip(pairs) {
                    let (a, b, c, d) = (p[0], p[1], q[0], q[1]);
                    *v0 = a - c;
                    *v1 = b + c;
                    *v2 = c - b;
                    *v3 = b - d;
                }
            }
        }
    }
}

/// `Y = Aᵀ M A` for every output channel and tile of the tile rows `rows`, plus the bias and
/// through `epilogue`, into the output rows the tiles cover. `Aᵀ` = [[1, 1, 1, 0], [0, 1, -1, -1]].
/// Compiled for AVX2 and AVX-512 too (see [`transform_input`]).
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
    let (tiles, tw) = (rows.len() * t.tw, t.tw);
    let (m, a_m, y) = (&s.m, &mut s.a_m, &mut s.y);
    for (o, &bias_o) in bias.iter().enumerate() {
        for (r, tile_row) in rows.clone().enumerate() {
            let (n, ty) = (tile_row / t.th, tile_row % t.th);
            // Row o of M[ξ] (c_out rows of `tiles` values from ξ * c_out * block_tiles), this
            // tile row's part.
            let mm = |xi: usize| &m[xi * c_out * t.block_tiles + o * tiles + r * tw..][..tw];
            // Aᵀ M, for every tile at once: a_m[i][j] (i = 0, 1; j = 0..4), tw values each.
            let (a0, a1) = a_m.split_at_mut(4 * tw);
            for j in 0..4 {
                let (m0, m1, m2, m3) = (mm(j), mm(4 + j), mm(8 + j), mm(12 + j));
                let (s0, s1) = (&mut a0[j * tw..(j + 1) * tw], &mut a1[j * tw..(j + 1) * tw]);
                for ((((a, b), c), d), (s0, s1)) in m0.iter().zip(m1).zip(m2).zip(m3).zip(s0.iter_mut().zip(s1)) {
                    *s0 = a + b + c;
                    *s1 = b - c - d;
                }
            }
            // (Aᵀ M) A: output rows 2ty and 2ty + 1, columns 2tx and 2tx + 1 of each tile.
            for (i, a_i) in [&*a0, &*a1].into_iter().enumerate() {
                let oy = 2 * ty + i;
                if oy >= oh {
                    continue;
                }
                let (s0, s1, s2, s3) = (&a_i[..tw], &a_i[tw..2 * tw], &a_i[2 * tw..3 * tw], &a_i[3 * tw..]);
                let (pairs, _) = y.as_chunks_mut::<2>();
                for (pair, (((a, b), c), d)) in pairs.iter_mut().zip(s0.iter().zip(s1).zip(s2).zip(s3)) {
                    pair[0] = a + b + c;
                    pair[1] = b - c - d;
                }
                // SAFETY: this output row of this channel belongs to this tile row, which belongs
                // to this block alone.
                let dst = unsafe { out.part(((n * c_out + o) * oh + oy) * ow, ow) };
                epilogue.write(o, bias_o, &y[..ow], dst);
            }
        }
    }
}
