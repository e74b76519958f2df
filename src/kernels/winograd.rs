//! 3 x 3, stride-1 convolutions by Winograd's minimal filtering F(2x2, 3x3) (Lavin
//! and Gray, "Fast Algorithms for Convolutional Neural Networks", CVPR 2016): each 2 x 2 tile of
//! output comes from the 4 x 4 tile of input under it with 16 multiplications per pair of input
//! and output channels, where im2col + GEMM spends 36.
//!
//! For each tile the input is transformed, `V = Bᵀ d B`, and each filter once, `U = G g Gᵀ`;
//! the 16 positions of the 4 x 4 transforms are then 16 independent matrix products
//! `M[ξ] = U[ξ] [c_out x c_in] * V[ξ] [c_in x tiles]`, and the output is `Y = Aᵀ M A`. Tiles are
//! taken in blocks of whole tile rows (across samples on small maps), one rayon task per block,
//! so a block's transforms and products stay in the core's caches; with fewer blocks than
//! threads (one face), in smaller blocks.
//!
//! Why: vgg-lite is eight 3 x 3, stride-1 convolutions, and its inference was the GEMMs (64% of
//! the samples in gemm's microkernel, 11% in im2col: `perf`, session 18), where ONNX Runtime ran
//! 1.8x (batch 256) to 3.2x (batch 1) as fast. In training, the forward pass and the input
//! gradient (itself a 3 x 3, stride-1 convolution: [`input_gradient_geometry`]) run here too;
//! the weight gradient stays an im2col product.
//!
//! Values: the transforms add and subtract before multiplying, so results differ from the
//! im2col path by rounding (the tests: within 1e-5 of Burn's, relative to the largest output).
//! A tile's sums do not depend on the block it falls in (see [`Tiling::new`]), so the output does
//! not depend on the thread count.

use gemm::Parallelism;
use multiversion::multiversion;

use super::Sliding;
use super::epilogue::Epilogue;
use super::flex::{self, UninitParts};
use super::matmul::{matmul, same_sums_at_any_width};
use super::reuse::ScratchBuffer;

/// At least this many input channels: with fewer (a net's first layer on grey faces), im2col's
/// product is small and the transforms would cost more than they save.
const MIN_INPUT_CHANNELS: usize = 8;
/// At least this many output tiles in the pass: the filters' transform is paid once per pass
/// and per channel pair, about as much as the products save on five tiles.
const MIN_TILES: usize = 64;

/// Whether F(2x2, 3x3) computes this convolution: a 3 x 3 window with stride 1 (the caller has
/// checked groups 1 and no dilation), enough input channels and tiles.
pub(super) fn applies(g: &Sliding, batch: usize, c_in: usize) -> bool {
    let tiles = batch * g.output[0].div_ceil(2) * g.output[1].div_ceil(2);
    g.kernel == [3, 3] && g.stride == [1, 1] && c_in >= MIN_INPUT_CHANNELS && tiles >= MIN_TILES
}

/// The output `[batch, c_out, oh, ow]` (row-major values) for input `x` `[batch, c_in, h, w]`,
/// weights `[c_out, c_in, 3, 3]` and one bias per output channel, each value written through
/// `epilogue`; `g` is a geometry [`applies`] accepted.
pub(super) fn forward(
    x: &[f32],
    [batch, c_in, h, w]: [usize; 4],
    weight: &[f32],
    bias: &[f32],
    g: &Sliding,
    epilogue: &Epilogue,
) -> Vec<f32> {
    let c_out = bias.len();
    assert_eq!(weight.len(), c_out * c_in * 9, "winograd: weights [c_out, c_in, 3, 3]");
    assert_eq!(x.len(), batch * c_in * h * w, "winograd: input [batch, c_in, h, w]");
    let u = transform_filters(weight, c_out, c_in);
    let t = Tiling::new(batch, g, c_in, c_out);
    let write_block = |s: &mut Scratch, block: usize, out: UninitParts| {
        let rows = block * t.rows_per_block..((block + 1) * t.rows_per_block).min(t.tile_rows);
        let tiles = rows.len() * t.tw;
        transform_input(x, [c_in, h, w], g, &t, rows.clone(), s);
        for xi in 0..16 {
            // M[ξ] [c_out x tiles] = U[ξ] [c_out x c_in] * V[ξ] [c_in x tiles]
            let m = &mut s.m[xi * c_out * t.block_tiles..][..c_out * tiles];
            let v = &s.v[xi * c_in * t.block_tiles..][..c_in * t.block_tiles];
            let u = &u[xi * c_out * c_in..][..c_out * c_in];
            matmul(Parallelism::None, [c_out, tiles, c_in], m, false, u, (c_in, 1), v, (t.block_tiles, 1));
        }
        transform_output(bias, g, &t, rows, s, epilogue, out);
    };
    let scratch = || Scratch::new(&t, c_in, c_out);
    // SAFETY: the blocks cover the tile rows, a tile row covers its two output rows (one when
    // `oh` is odd and it is the last) in every channel, and `transform_output` writes all of
    // them (`ow` values each).
    unsafe { flex::write_parts_in_parallel(batch * c_out * g.output[0] * g.output[1], t.blocks, scratch, write_block) }
}

/// The input gradient of a 3 x 3, stride-1 convolution of geometry `g`, seen as a convolution
/// of the output gradient (`g.output` in, `g.input` out) with [`flipped_filters`]: input
/// position `y` takes output-gradient rows `y - 2 + pad .. y + pad`, so the padding before is
/// `2 - pad`. `None` for other windows.
pub(super) fn input_gradient_geometry(g: &Sliding) -> Option<Sliding> {
    if g.kernel != [3, 3] || g.stride != [1, 1] || g.pad[0] > 2 || g.pad[1] > 2 {
        return None;
    }
    Some(Sliding { input: g.output, kernel: [3, 3], stride: [1, 1], pad: [2 - g.pad[0], 2 - g.pad[1]], output: g.input })
}

/// Filters `[c_out, c_in, 3, 3]` turned 180 degrees, with input and output channels swapped:
/// `[c_in, c_out, 3, 3]`, the filters of [`input_gradient_geometry`]'s convolution.
pub(super) fn flipped_filters(weight: &[f32], c_out: usize, c_in: usize) -> Vec<f32> {
    let mut flipped = vec![0f32; weight.len()];
    for o in 0..c_out {
        for i in 0..c_in {
            let (src, dst) = (&weight[(o * c_in + i) * 9..][..9], &mut flipped[(i * c_out + o) * 9..][..9]);
            for (d, s) in dst.iter_mut().zip(src.iter().rev()) {
                *d = *s;
            }
        }
    }
    flipped
}

/// How the output tiles are cut into blocks.
#[derive(Debug, Clone, Copy)]
struct Tiling {
    /// Tile rows and columns per sample: `ceil(oh / 2)`, `ceil(ow / 2)`.
    th: usize,
    tw: usize,
    /// Tile rows of the whole batch (`batch * th`); tile row `r` is row `r % th` of sample `r / th`.
    tile_rows: usize,
    rows_per_block: usize,
    blocks: usize,
    /// The widest block's tiles: the row stride of the scratch matrices.
    block_tiles: usize,
}

impl Tiling {
    fn new(batch: usize, g: &Sliding, c_in: usize, c_out: usize) -> Self {
        let (th, tw) = (g.output[0].div_ceil(2), g.output[1].div_ceil(2));
        // Blocks of about 12,288 / (c_in + c_out) tiles keep a block's V and M (16 values per
        // tile and channel) near 0.75 MiB; at least 64 tiles keep the products wide. (vgg-lite
        // at batch 256, session 19: 356-381 images/s with this budget, 342-355 with twice it,
        // 318-342 with four times; half of it was as fast.)
        let wanted = (12_288 / (c_in + c_out)).clamp(64, 512);
        let tile_rows = batch * th;
        let mut rows_per_block = wanted.div_ceil(tw).clamp(1, tile_rows);
        // Fewer blocks than threads (one face): smaller blocks, so that every thread has one,
        // when the products (`k` = c_in, `m` = c_out) sum the same at the narrower width.
        let threads = rayon::current_num_threads();
        if tile_rows.div_ceil(rows_per_block) < threads {
            let split = tile_rows.div_ceil(threads);
            let narrowest = (tile_rows - (tile_rows.div_ceil(split) - 1) * split) * tw;
            if same_sums_at_any_width(c_out, c_in, narrowest) {
                rows_per_block = split;
            }
        }
        Tiling {
            th,
            tw,
            tile_rows,
            rows_per_block,
            blocks: tile_rows.div_ceil(rows_per_block),
            block_tiles: (rows_per_block * tw).max(2),
        }
    }
}

/// One task's buffers.
struct Scratch {
    /// The input transforms `V[ξ][c_in][block_tiles]` (at least that many values; kept by the
    /// thread between calls, [`ScratchBuffer`]: `transform_input` writes the block's tiles before
    /// the products read them).
    v: ScratchBuffer,
    /// The products `M[ξ][c_out][tiles]` (row stride the block's own tile count; the same: the
    /// products write what `transform_output` reads).
    m: ScratchBuffer,
    /// Four input rows with their padding (`2 * tw + 2` values each), then `Bᵀ d` of them.
    d: Vec<f32>,
    bt_d: Vec<f32>,
    /// `Aᵀ M` of one output channel's tile row: 2 x 4 rows of `tw` values.
    a_m: Vec<f32>,
    /// One output row (`2 * tw` values) before the bias and epilogue.
    y: Vec<f32>,
}

impl Scratch {
    fn new(t: &Tiling, c_in: usize, c_out: usize) -> Self {
        let width = 2 * t.tw + 2;
        Scratch {
            v: ScratchBuffer::at_least(16 * c_in * t.block_tiles),
            m: ScratchBuffer::at_least(16 * c_out * t.block_tiles),
            d: vec![0.0; 4 * width],
            bt_d: vec![0.0; 4 * width],
            a_m: vec![0.0; 8 * t.tw],
            y: vec![0.0; 2 * t.tw],
        }
    }
}

/// `U = G g Gᵀ` for every (output, input) channel pair, laid out `[16][c_out][c_in]` so that
/// position ξ's matrix is contiguous. `G` = [[1, 0, 0], [½, ½, ½], [½, -½, ½], [0, 0, 1]].
fn transform_filters(weight: &[f32], c_out: usize, c_in: usize) -> Vec<f32> {
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
fn transform_input(
    x: &[f32],
    [c_in, h, w]: [usize; 3],
    g: &Sliding,
    t: &Tiling,
    rows: std::ops::Range<usize>,
    s: &mut Scratch,
) {
    let width = 2 * t.tw + 2;
    let ld = t.block_tiles;
    // Padded column X is input column X - pad_left; tile tx reads padded columns 2tx..2tx+4.
    let (lo, hi) = (g.pad[1].min(width), (g.pad[1] + w).min(width));
    for ch in 0..c_in {
        for (r, tile_row) in rows.clone().enumerate() {
            let (n, ty) = (tile_row / t.th, tile_row % t.th);
            let plane = &x[(n * c_in + ch) * h * w..][..h * w];
            for (i, padded) in s.d.chunks_exact_mut(width).enumerate() {
                match (2 * ty + i).checked_sub(g.pad[0]).filter(|&iy| iy < h) {
                    Some(iy) => {
                        padded[..lo].fill(0.0);
                        padded[lo..hi].copy_from_slice(&plane[iy * w..iy * w + (hi - lo)]);
                        padded[hi..].fill(0.0);
                    }
                    None => padded.fill(0.0),
                }
            }
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
                let [v0, v1, v2, v3] = four_mut(&mut s.v, [start(0), start(1), start(2), start(3)], t.tw);
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

/// The `len` values from each of `starts` (increasing, at least `len` apart) as four slices.
fn four_mut(v: &mut [f32], starts: [usize; 4], len: usize) -> [&mut [f32]; 4] {
    let (a, rest) = v[starts[0]..].split_at_mut(starts[1] - starts[0]);
    let (b, rest) = rest.split_at_mut(starts[2] - starts[1]);
    let (c, d) = rest.split_at_mut(starts[3] - starts[2]);
    [&mut a[..len], &mut b[..len], &mut c[..len], &mut d[..len]]
}

/// `Y = Aᵀ M A` for every output channel and tile of the tile rows `rows`, plus the bias and
/// through `epilogue`, into the output rows the tiles cover. `Aᵀ` = [[1, 1, 1, 0], [0, 1, -1, -1]].
/// Compiled for AVX2 and AVX-512 too (see [`transform_input`]).
#[cfg_attr(feature = "avx512", multiversion(targets("x86_64+avx512f+avx2+avx", "x86_64+avx2+avx")))]
#[cfg_attr(not(feature = "avx512"), multiversion(targets("x86_64+avx2+avx")))]
fn transform_output(
    bias: &[f32],
    g: &Sliding,
    t: &Tiling,
    rows: std::ops::Range<usize>,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::epilogue::Activation;
    use crate::kernels::tests::{assert_close, random_input};
    use burn::nn::PaddingConfig2d;
    use burn::nn::conv::Conv2dConfig;
    use burn::prelude::*;

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().try_to_vec::<f32>().unwrap()
    }

    /// Against Burn's convolution: "same" and "valid" padding, odd and even sizes, blocks that
    /// span samples (small maps) and blocks within one (large maps), widths that are not
    /// multiples of the SIMD width; the same bits on 1 and 3 threads.
    #[test]
    fn matches_burn_and_does_not_depend_on_the_thread_count() {
        let device = Device::flex();
        // (batch, c_in, c_out, size, padding)
        let cases = [
            (1, 8, 16, [48, 48], PaddingConfig2d::Same), // vgg-lite's first stage, one face
            (3, 16, 24, [12, 12], PaddingConfig2d::Same), // blocks across samples
            (3, 9, 5, [7, 11], PaddingConfig2d::Same),   // odd sizes: a half tile at the edges
            (16, 12, 7, [6, 6], PaddingConfig2d::Valid),
            (16, 64, 80, [3, 3], PaddingConfig2d::Same), // a 3 x 3 map: half of each tile outside
            (3, 192, 192, [10, 10], PaddingConfig2d::Same), // a block across samples; 3 threads split it
        ];
        for (k, (batch, c_in, c_out, size, padding)) in cases.into_iter().enumerate() {
            let conv = Conv2dConfig::new([c_in, c_out], [3, 3]).with_padding(padding).init(&device);
            let x = random_input([batch, c_in, size[0], size[1]], &device, 40 + k as u64);
            let g = Sliding::new(&conv.padding, size, [3, 3], [1, 1]).unwrap();
            assert!(applies(&g, batch, c_in), "case {k}");
            let run = |threads: usize| {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                let (xs, ws) = (values(x.clone()), values(conv.weight.val()));
                let bs = values(conv.bias.as_ref().unwrap().val());
                let out = pool.install(|| forward(&xs, [batch, c_in, size[0], size[1]], &ws, &bs, &g, &Epilogue::NONE));
                Tensor::<4>::from_data(TensorData::new(out, [batch, c_out, g.output[0], g.output[1]]), &device)
            };
            let one = run(1);
            assert_close(&one, &conv.forward(x.clone()), 1e-5, &format!("case {k}"));
            let bits = |t: Tensor<4>| values(t).iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(one), bits(run(3)), "case {k}: 1 and 3 threads");
        }
    }

    /// Through the convolution's entry point with a batch norm's affine map and ReLU as the
    /// epilogue: close to the layers one by one (Burn's convolution, the map, Burn's ReLU).
    #[test]
    fn the_epilogue_is_applied_to_every_value() {
        let device = Device::flex();
        let conv = Conv2dConfig::new([16, 8], [3, 3]).with_padding(PaddingConfig2d::Same).init(&device);
        let x = random_input([2, 16, 12, 12], &device, 50);
        let scale: Vec<f32> = (0..8).map(|c| 0.5 + c as f32 * 0.25).collect();
        let shift: Vec<f32> = (0..8).map(|c| c as f32 * 0.1 - 0.4).collect();
        let epilogue = Epilogue { affine: Some((&scale, &shift)), act: Some(Activation::Relu) };
        let ours = crate::kernels::conv2d::inference(&conv, &x, &epilogue).expect("the kernels cover it");
        let ours = Tensor::<4>::from_primitive::<burn::backend::flex::Flex>(ours);
        let s = Tensor::<1>::from_data(TensorData::new(scale.clone(), [8]), &device).reshape([1, 8, 1, 1]);
        let t = Tensor::<1>::from_data(TensorData::new(shift.clone(), [8]), &device).reshape([1, 8, 1, 1]);
        let expected = burn::tensor::activation::relu(conv.forward(x) * s + t);
        assert_close(&ours, &expected, 1e-5, "conv + affine + relu");
    }

    #[test]
    fn small_inputs_are_left_to_im2col() {
        let g = Sliding::new(&PaddingConfig2d::Same, [48, 48], [3, 3], [1, 1]).unwrap();
        assert!(!applies(&g, 1, 1), "one input channel");
        let g = Sliding::new(&PaddingConfig2d::Same, [6, 6], [3, 3], [1, 1]).unwrap();
        assert!(!applies(&g, 1, 64), "9 tiles");
        let g = Sliding::new(&PaddingConfig2d::Same, [48, 48], [5, 5], [1, 1]).unwrap();
        assert!(!applies(&g, 4, 64), "5 x 5");
        let g = Sliding::new(&PaddingConfig2d::Same, [48, 48], [3, 3], [2, 2]).unwrap();
        assert!(!applies(&g, 4, 64), "stride 2");
    }
}
