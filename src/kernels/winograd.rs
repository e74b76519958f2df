//! 3 x 3 and 5 x 5, stride-1 convolutions by Winograd's minimal filtering F(2x2, 3x3),
//! F(4x4, 3x3) and F(2x2, 5x5) (Lavin and Gray, "Fast Algorithms for Convolutional Neural
//! Networks", CVPR 2016): each m x m tile of output comes from the n x n tile of input under it
//! (n = m + r - 1: 4, 6 and 6) with n² multiplications per pair of input and output channels,
//! where im2col + GEMM spends 36, 144 and 100. A 3 x 3 window takes F(4x4, 3x3) where its tiles
//! need fewer multiplications than F(2x2, 3x3)'s (maps of 7 x 7 or more, and 3 x 3 ones), and
//! either only in passes large enough to beat im2col ([`Algorithm::of`]).
//!
//! For each tile the input is transformed, `V = Bᵀ d B`, and each filter once, `U = G g Gᵀ`;
//! the n² positions of the transforms are then n² independent matrix products
//! `M[ξ] = U[ξ] [c_out x c_in] * V[ξ] [c_in x tiles]`, and the output is `Y = Aᵀ M A`. Tiles are
//! taken in blocks of whole tile rows (across samples on small maps), one rayon task per block,
//! so a block's transforms and products stay in the core's caches; with fewer blocks than
//! threads (one face), in smaller blocks. The algorithms' matrices are in [`f2x3`], [`f4x3`] and
//! [`f2x5`], the transforms written once for all in [`transform`]; tiling, blocks and products
//! are here.
//!
//! Why: vgg-lite is eight 3 x 3, stride-1 convolutions, and its inference was the GEMMs (64% of
//! the samples in gemm's microkernel, 11% in im2col: `perf`, session 18), where ONNX Runtime ran
//! 1.8x (batch 256) to 3.2x (batch 1) as fast. The notebook's search (`ferkit reproduce`'s
//! longest step) trains nets whose second convolution is 5 x 5 on 24 x 24 maps with up to 128
//! input channels: that layer's three products were about 90% of the multiply-adds of a training
//! step of the plan's heaviest stand-in (session 36), and cnn1's second layer is a 5 x 5 one too.
//! In training, the forward pass, the input gradient (itself a stride-1 convolution of the same
//! window: [`input_gradient_geometry`]) and the weight gradient ([`weight_gradient`]) run here.
//!
//! Values: the transforms add and subtract before multiplying, so results differ from the
//! im2col path by rounding (the tests: within 1e-5 of Burn's, relative to the largest output).
//! F(4x4, 3x3)'s larger tiles round more: its points are chosen for that ([`f4x3`]).
//! F(2x2, 5x5) takes its finite points at 0, ±1 and ±½, whose rounding error in f32 was half that
//! of 0, ±1 and ±2 (4.4e-6 against 8.2e-6 of the largest output over 200 random 6 x 6 tiles, one
//! channel). A tile's sums do not depend on the block it falls in (see [`Tiling::new`]), so the
//! output does not depend on the thread count.

mod f2x3;
mod f2x5;
mod f4x3;
mod transform;

use f2x3::F2x3;
use f2x5::F2x5;
use f4x3::F4x3;
use transform::Minimal;

use gemm::Parallelism;
use rayon::prelude::*;

use std::borrow::Cow;
use std::sync::OnceLock;

use super::Sliding;
use super::epilogue::Epilogue;
use super::flex::{self, UninitParts};
use super::matmul::{matmul, same_sums_at_any_width};
use super::reuse::ScratchBuffer;

/// At least this many input channels: with fewer (a net's first layer on grey faces), im2col's
/// product is small and the transforms would cost more than they save.
const MIN_INPUT_CHANNELS: usize = 8;
/// At least this many 2 x 2 output tiles in the pass for F(2x2, 5x5): the filters' transform is
/// paid once per pass and per channel pair, about as much as the products save on five tiles.
const MIN_TILES: usize = 64;
/// For 3 x 3 windows, at least this many output tiles of the algorithm in the pass, and at least
/// [`MIN_PRODUCT_MULTIPLY_ADDS`] in its products; otherwise im2col + GEMM computes the layer.
/// Why: timed layer by layer in vgg-lite (`ferkit bench` at batches 1 to 64, Winograd against
/// im2col, AMD EPYC Zen 4, session 40), passes of 72 tiles were slower by Winograd on every map,
/// and passes of 144 tiles were faster only with deep channels (128 -> 256 on 6 x 6 maps at 16
/// faces: 75M multiply-adds in the products), not with shallow ones (32 -> 64 and 64 -> 64 on
/// one face's 24 x 24 maps, 4.7M and 9.4M, were 1.4 to 2 times as slow as im2col). (The unit
/// tests keep the old bounds, so that small cases take every path.)
const MIN_TILES_3X3: usize = if cfg!(test) { MIN_TILES } else { 128 };
const MIN_PRODUCT_MULTIPLY_ADDS: usize = if cfg!(test) { 0 } else { 32 << 20 };

/// The window side r (3 or 5) of the square windows Winograd covers here; `None` for others.
fn window_side(kernel: [usize; 2]) -> Option<usize> {
    match kernel {
        [3, 3] => Some(3),
        [5, 5] => Some(5),
        _ => None,
    }
}

/// Which minimal filtering algorithm computes a convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Algorithm {
    F2x3,
    F4x3,
    F2x5,
}

/// How many [`Algorithm`]s there are.
const ALGORITHMS: usize = 3;
// `Algorithm::index` numbers the variants in order: the last is ALGORITHMS - 1.
const _: () = assert!(Algorithm::F2x5 as usize + 1 == ALGORITHMS);

/// One layer's filters transformed by each algorithm that has run it, each made on first use and
/// then kept (a `conv2d::WeightPack` holds one: an inference net's layer, whose weights no longer
/// change); `[c_out][n²][c_in]` f32 each ([`transform::transform_filters`]).
#[derive(Debug, Default)]
pub(super) struct KeptFilters([OnceLock<Vec<f32>>; ALGORITHMS]);

impl KeptFilters {
    /// The filters transformed by `algorithm` (`len` values), made by `transform` on the first
    /// call; `None` for a transform of another length (another layer's).
    fn get(&self, algorithm: Algorithm, len: usize, transform: impl FnOnce() -> Vec<f32>) -> Option<&[f32]> {
        let u = self.0[algorithm.index()].get_or_init(transform);
        (u.len() == len).then_some(u.as_slice())
    }
}

impl Algorithm {
    /// A number of its own below [`ALGORITHMS`] (where [`KeptFilters`] keeps its filters).
    fn index(self) -> usize {
        self as usize
    }

    /// The algorithm for a stride-1 convolution of geometry `g` with a 3 x 3 or 5 x 5 window over
    /// `batch` samples of `c_in` channels into `c_out`, or `None` where im2col is the faster:
    /// for 3 x 3, F(4x4, 3x3) where its 36 multiplications per 4 x 4 tile come to fewer than
    /// F(2x2, 3x3)'s 16 per 2 x 2 tile over the output map (tiles at the edges count whole: on a
    /// 6 x 6 map both spend 144, on a 3 x 3 map 36 against 64, on 48 x 48 5,184 against 9,216),
    /// each only with [`MIN_TILES_3X3`] tiles and [`MIN_PRODUCT_MULTIPLY_ADDS`]; for 5 x 5,
    /// F(2x2, 5x5) with [`MIN_TILES`] tiles.
    pub(super) fn of(g: &Sliding, batch: usize, c_in: usize, c_out: usize) -> Option<Self> {
        let [oh, ow] = g.output;
        let (tiles2, tiles4) = (batch * oh.div_ceil(2) * ow.div_ceil(2), batch * oh.div_ceil(4) * ow.div_ceil(4));
        let pays =
            |tiles: usize, n2: usize| tiles >= MIN_TILES_3X3 && tiles * n2 * c_in * c_out >= MIN_PRODUCT_MULTIPLY_ADDS;
        match window_side(g.kernel)? {
            3 if 36 * tiles4 < 16 * tiles2 && pays(tiles4, 36) => Some(Algorithm::F4x3),
            3 if pays(tiles2, 16) => Some(Algorithm::F2x3),
            5 if tiles2 >= MIN_TILES => Some(Algorithm::F2x5),
            _ => None,
        }
    }

    /// The algorithms that compute a stride-1 convolution with this window at all.
    #[cfg(test)]
    fn for_window(kernel: [usize; 2]) -> &'static [Algorithm] {
        match window_side(kernel) {
            Some(3) => &[Algorithm::F2x3, Algorithm::F4x3],
            Some(5) => &[Algorithm::F2x5],
            _ => &[],
        }
    }
}

/// A block's tile rows (of the whole batch).
type Rows = std::ops::Range<usize>;

/// Whether Winograd computes this convolution of `c_in` channels into `c_out`: a 3 x 3 or 5 x 5
/// window with stride 1 (the caller has checked groups 1 and no dilation), enough input
/// channels, tiles and arithmetic ([`Algorithm::of`]).
pub(super) fn applies(g: &Sliding, batch: usize, c_in: usize, c_out: usize) -> bool {
    g.stride == [1, 1] && c_in >= MIN_INPUT_CHANNELS && Algorithm::of(g, batch, c_in, c_out).is_some()
}

/// The output `[batch, c_out, oh, ow]` (row-major values) for input `x` `[batch, c_in, h, w]`,
/// weights `[c_out, c_in, r, r]` and one bias per output channel, each value written through
/// `epilogue`; `g` is a geometry [`applies`] accepted. With `kept` (an inference net's layer's,
/// for these weights), the filters' transform is made once and kept there.
pub(super) fn forward(
    x: &[f32],
    dims: [usize; 4],
    weight: &[f32],
    bias: &[f32],
    g: &Sliding,
    epilogue: &Epilogue,
    kept: Option<&KeptFilters>,
) -> Vec<f32> {
    let algorithm = Algorithm::of(g, dims[0], dims[1], bias.len()).expect("winograd: a geometry `applies` accepted");
    forward_with(algorithm, x, dims, weight, bias, g, epilogue, kept)
}

/// [`forward`] by the given algorithm.
fn forward_with(
    algorithm: Algorithm,
    x: &[f32],
    dims: [usize; 4],
    weight: &[f32],
    bias: &[f32],
    g: &Sliding,
    epilogue: &Epilogue,
    kept: Option<&KeptFilters>,
) -> Vec<f32> {
    let c_in = dims[1];
    let c_out = bias.len();
    match algorithm {
        Algorithm::F2x3 => {
            let u = filters::<F2x3, 3, 4, 2>(algorithm, weight, c_out, c_in, kept);
            forward_by::<F2x3, 3, 4, 2>(x, dims, &u, bias, g, epilogue)
        }
        Algorithm::F4x3 => {
            let u = filters::<F4x3, 3, 6, 4>(algorithm, weight, c_out, c_in, kept);
            forward_by::<F4x3, 3, 6, 4>(x, dims, &u, bias, g, epilogue)
        }
        Algorithm::F2x5 => {
            let u = filters::<F2x5, 5, 6, 2>(algorithm, weight, c_out, c_in, kept);
            forward_by::<F2x5, 5, 6, 2>(x, dims, &u, bias, g, epilogue)
        }
    }
}

/// `weight`'s filters transformed by `M` ([`transform::transform_filters`]): `kept`'s, made there
/// on first use, or made for this pass alone.
fn filters<'p, M: Minimal<R, N, T>, const R: usize, const N: usize, const T: usize>(
    algorithm: Algorithm,
    weight: &[f32],
    c_out: usize,
    c_in: usize,
    kept: Option<&'p KeptFilters>,
) -> Cow<'p, [f32]> {
    assert_eq!(weight.len(), c_out * c_in * R * R, "winograd: weights [c_out, c_in, r, r]");
    let transform = || transform::transform_filters::<M, R, N, T>(weight, c_out, c_in);
    match kept.and_then(|k| k.get(algorithm, N * N * c_out * c_in, transform)) {
        Some(u) => Cow::Borrowed(u),
        None => Cow::Owned(transform()),
    }
}

/// [`forward`] by the algorithm `M`, F(T x T, R x R) on input tiles of side N, with the filters
/// `u` transformed by `M` ([`filters`]).
fn forward_by<M: Minimal<R, N, T>, const R: usize, const N: usize, const T: usize>(
    x: &[f32],
    [batch, c_in, h, w]: [usize; 4],
    u: &[f32],
    bias: &[f32],
    g: &Sliding,
    epilogue: &Epilogue,
) -> Vec<f32> {
    let c_out = bias.len();
    assert_eq!(u.len(), N * N * c_out * c_in, "winograd: transformed filters [c_out, n², c_in]");
    assert_eq!(x.len(), batch * c_in * h * w, "winograd: input [batch, c_in, h, w]");
    let t = Tiling::new(batch, g, c_in, c_out, N, T, true);
    let write_block = |s: &mut Scratch, block: usize, out: UninitParts| {
        let rows = t.block_rows(block);
        let tiles = rows.len() * t.tw;
        transform::transform_input::<M, R, N, T>(x, [c_in, h, w], g, &t, rows.clone(), s);
        for xi in 0..N * N {
            // M[ξ] [c_out x tiles] = U[ξ] [c_out x c_in] * V[ξ] [c_in x tiles]
            let m = &mut s.m[xi * c_out * t.block_tiles..][..c_out * tiles];
            let v = &s.v[xi * c_in * t.block_tiles..][..c_in * t.block_tiles];
            // U[ξ]: row o at o n² c_in + ξ c_in ([`transform::transform_filters`]).
            let u = &u[xi * c_in..];
            matmul(Parallelism::None, [c_out, tiles, c_in], m, false, u, (N * N * c_in, 1), v, (t.block_tiles, 1));
        }
        transform::transform_output::<M, R, N, T>(bias, g, &t, rows, s, epilogue, out);
    };
    let scratch = || Scratch::new(&t, c_in, c_out, N);
    // SAFETY: the blocks cover the tile rows, a tile row covers its T output rows (fewer when it
    // is the last and T does not divide `oh`) in every channel, and `transform_output` writes all
    // of them (`ow` values each).
    unsafe { flex::write_parts_in_parallel(batch * c_out * g.output[0] * g.output[1], t.blocks, scratch, write_block) }
}

/// Blocks' weight-gradient sums are added in this many groups, one rayon task each, then the
/// groups' sums in order: the split depends on the shapes alone, so the result does not depend
/// on the thread count.
const WEIGHT_GRADIENT_GROUPS: usize = 8;

/// The weight gradient `[c_out, c_in, r, r]` of the convolution [`forward`] computes, from its
/// input `x` `[batch, c_in, h, w]` and the output gradient `dy` `[batch, c_out, oh, ow]`; `g` is
/// a geometry [`applies`] accepted. With `Y = Aᵀ [U ⊙ V] A` and `U = G g Gᵀ` (Lavin and Gray,
/// section 5), `dU = Σ_tiles (A dY Aᵀ) ⊙ V` and `dg = Gᵀ dU G`: per position ξ, the product
/// `dU[ξ] [c_out x c_in] = dŶ[ξ] [c_out x tiles] * V[ξ]ᵀ [tiles x c_in]` over every tile of the
/// batch, n² multiplications per tile and channel pair where im2col's product spends r² per
/// output position (four per tile).
pub(super) fn weight_gradient(x: &[f32], dims: [usize; 4], dy: &[f32], c_out: usize, g: &Sliding) -> Vec<f32> {
    let algorithm = Algorithm::of(g, dims[0], dims[1], c_out).expect("winograd: a geometry `applies` accepted");
    weight_gradient_with(algorithm, x, dims, dy, c_out, g)
}

/// [`weight_gradient`] by the given algorithm.
fn weight_gradient_with(
    algorithm: Algorithm,
    x: &[f32],
    dims: [usize; 4],
    dy: &[f32],
    c_out: usize,
    g: &Sliding,
) -> Vec<f32> {
    match algorithm {
        Algorithm::F2x3 => weight_gradient_by::<F2x3, 3, 4, 2>(x, dims, dy, c_out, g),
        Algorithm::F4x3 => weight_gradient_by::<F4x3, 3, 6, 4>(x, dims, dy, c_out, g),
        Algorithm::F2x5 => weight_gradient_by::<F2x5, 5, 6, 2>(x, dims, dy, c_out, g),
    }
}

/// [`weight_gradient`] by the algorithm `M`, F(T x T, R x R) on input tiles of side N.
fn weight_gradient_by<M: Minimal<R, N, T>, const R: usize, const N: usize, const T: usize>(
    x: &[f32],
    [batch, c_in, h, w]: [usize; 4],
    dy: &[f32],
    c_out: usize,
    g: &Sliding,
) -> Vec<f32> {
    let [oh, ow] = g.output;
    assert_eq!(x.len(), batch * c_in * h * w, "winograd: input [batch, c_in, h, w]");
    assert_eq!(dy.len(), batch * c_out * oh * ow, "winograd: output gradient [batch, c_out, oh, ow]");
    let t = Tiling::new(batch, g, c_in, c_out, N, T, false);
    let groups = t.blocks.min(WEIGHT_GRADIENT_GROUPS);
    let group_sums: Vec<Vec<f32>> = (0..groups)
        .into_par_iter()
        .map(|group| {
            let mut s = Scratch::new(&t, c_in, c_out, N);
            let mut du = vec![0f32; N * N * c_out * c_in];
            for block in group * t.blocks / groups..(group + 1) * t.blocks / groups {
                let rows = t.block_rows(block);
                let tiles = rows.len() * t.tw;
                transform::transform_input::<M, R, N, T>(x, [c_in, h, w], g, &t, rows.clone(), &mut s);
                transform::transform_output_gradient::<M, R, N, T>(dy, c_out, g, &t, rows, &mut s);
                for xi in 0..N * N {
                    // dU[ξ] [c_out x c_in] += dŶ[ξ] [c_out x tiles] * V[ξ]ᵀ [tiles x c_in]
                    let du = &mut du[xi * c_out * c_in..][..c_out * c_in];
                    let dy_hat = &s.m[xi * c_out * t.block_tiles..][..c_out * t.block_tiles];
                    let v = &s.v[xi * c_in * t.block_tiles..][..c_in * t.block_tiles];
                    let strides = ((t.block_tiles, 1), (1, t.block_tiles));
                    matmul(Parallelism::None, [c_out, c_in, tiles], du, true, dy_hat, strides.0, v, strides.1);
                }
            }
            du
        })
        .collect();
    // The groups' sums added in group order.
    let mut group_sums = group_sums.into_iter();
    let mut du = group_sums.next().expect("at least one block");
    for part in group_sums {
        du.iter_mut().zip(&part).for_each(|(t, v)| *t += v);
    }
    transform::filters_gradient::<M, R, N, T>(&du, c_out, c_in)
}

/// The input gradient of a 3 x 3 or 5 x 5, stride-1 convolution of geometry `g`, seen as a
/// convolution of the output gradient (`g.output` in, `g.input` out) with [`flipped_filters`]:
/// input position `y` takes output-gradient rows `y - (r - 1) + pad .. y + pad`, so the padding
/// before is `r - 1 - pad`. `None` for other windows.
pub(super) fn input_gradient_geometry(g: &Sliding) -> Option<Sliding> {
    let r = window_side(g.kernel)?;
    if g.stride != [1, 1] || g.pad[0] > r - 1 || g.pad[1] > r - 1 {
        return None;
    }
    Some(Sliding {
        input: g.output,
        kernel: g.kernel,
        stride: [1, 1],
        pad: [r - 1 - g.pad[0], r - 1 - g.pad[1]],
        output: g.input,
    })
}

/// Filters `[c_out, c_in, r, r]` turned 180 degrees, with input and output channels swapped:
/// `[c_in, c_out, r, r]`, the filters of [`input_gradient_geometry`]'s convolution.
pub(super) fn flipped_filters(weight: &[f32], c_out: usize, c_in: usize) -> Vec<f32> {
    let taps = weight.len() / (c_out * c_in);
    assert_eq!(taps * c_out * c_in, weight.len(), "flipped_filters: weights [c_out, c_in, r, r]");
    let mut flipped = vec![0f32; weight.len()];
    for o in 0..c_out {
        for i in 0..c_in {
            let (src, dst) = (&weight[(o * c_in + i) * taps..][..taps], &mut flipped[(i * c_out + o) * taps..][..taps]);
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
    /// The output tiles' side m (2 or 4).
    side: usize,
    /// Tile rows and columns per sample: `ceil(oh / m)`, `ceil(ow / m)`.
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
    /// The blocks for output tiles of side `side` and input tiles of side `n`.
    /// `split_for_threads`: with fewer blocks than threads, smaller blocks (the output's
    /// products; not the weight gradient's, whose sums run over a block's tiles).
    fn new(
        batch: usize,
        g: &Sliding,
        c_in: usize,
        c_out: usize,
        n: usize,
        side: usize,
        split_for_threads: bool,
    ) -> Self {
        let (th, tw) = (g.output[0].div_ceil(side), g.output[1].div_ceil(side));
        // Blocks of about 196,608 / n² / (c_in + c_out) tiles keep a block's V and M (n² values
        // per tile and channel) near 0.75 MiB; at least 64 tiles keep the products wide.
        // (vgg-lite at batch 256, F(2x2, 3x3), session 19: 356-381 images/s with this budget,
        // 342-355 with twice it, 318-342 with four times; half of it was as fast.)
        let wanted = (196_608 / (n * n) / (c_in + c_out)).clamp(64, 512);
        let tile_rows = batch * th;
        let mut rows_per_block = wanted.div_ceil(tw).clamp(1, tile_rows);
        // As many blocks as a multiple of the threads, of equal size (give or take a tile row),
        // so that every thread gets the same work, when the products (`k` = c_in, `m` = c_out)
        // sum the same at the narrower width. Why: without it one face had one block (one
        // thread idle), and two faces on vgg-lite's 24 x 24 maps two blocks of 11 and 1 tile
        // rows; there im2col's products ran faster than Winograd's (session 40).
        let threads = rayon::current_num_threads();
        let blocks = tile_rows.div_ceil(rows_per_block);
        if split_for_threads && !blocks.is_multiple_of(threads) {
            let split = tile_rows.div_ceil(blocks.next_multiple_of(threads).min(tile_rows));
            let narrowest = (tile_rows - (tile_rows.div_ceil(split) - 1) * split) * tw;
            if same_sums_at_any_width(c_out, c_in, narrowest) {
                rows_per_block = split;
            }
        }
        Tiling {
            side,
            th,
            tw,
            tile_rows,
            rows_per_block,
            blocks: tile_rows.div_ceil(rows_per_block),
            block_tiles: (rows_per_block * tw).max(2),
        }
    }

    /// Block `block`'s tile rows.
    fn block_rows(&self, block: usize) -> Rows {
        block * self.rows_per_block..((block + 1) * self.rows_per_block).min(self.tile_rows)
    }
}

/// One task's buffers, for input tiles of side n.
struct Scratch {
    /// The input transforms `V[ξ][c_in][block_tiles]` (at least that many values; kept by the
    /// thread between calls, [`ScratchBuffer`]: `transform_input` writes the block's tiles before
    /// the products read them).
    v: ScratchBuffer,
    /// The products `M[ξ][c_out][tiles]` (row stride the block's own tile count; the same: the
    /// products write what `transform_output` reads).
    m: ScratchBuffer,
    /// A run of padded input rows' `d B` ([`transform::row_transforms_len`]).
    rows: Vec<f32>,
    /// One padded input row ([`padded_width`] values), then its columns by phase.
    padded: Vec<f32>,
    /// `Aᵀ M` of one output channel over the block: m x n rows of `block_tiles` values; in the
    /// weight gradient, an output gradient's m² runs over the block's tiles, then m x n more.
    a_m: Vec<f32>,
    /// One output row (`m * tw` values) before the bias and epilogue.
    y: Vec<f32>,
}

impl Scratch {
    fn new(t: &Tiling, c_in: usize, c_out: usize, n: usize) -> Self {
        let width = padded_width(t, n);
        Scratch {
            v: ScratchBuffer::at_least(n * n * c_in * t.block_tiles),
            m: ScratchBuffer::at_least(n * n * c_out * t.block_tiles),
            rows: vec![0.0; transform::row_transforms_len(t, n)],
            padded: vec![0.0; 2 * width],
            a_m: vec![0.0; t.side * (n + t.side) * t.block_tiles],
            y: vec![0.0; t.side * t.tw],
        }
    }
}

/// A padded input row's length: tile `tx` reads its columns `m tx .. m tx + n`, and the row is
/// cut into whole groups of m (one value of each phase, [`transform::phase_len`] groups).
fn padded_width(t: &Tiling, n: usize) -> usize {
    t.side * transform::phase_len(t.tw, n, t.side)
}

/// One input row into `padded`, `pad_left` zeros before it and zeros after it to the end (the
/// row cut short where `padded` ends).
fn pad_row(row: &[f32], pad_left: usize, padded: &mut [f32]) {
    let width = padded.len();
    let (lo, hi) = (pad_left.min(width), (pad_left + row.len()).min(width));
    padded[..lo].fill(0.0);
    padded[lo..hi].copy_from_slice(&row[..hi - lo]);
    padded[hi..].fill(0.0);
}

/// The `len` values from each of `starts` (increasing, at least `len` apart) as K slices.
#[inline(always)]
fn disjoint_mut<const K: usize>(mut v: &mut [f32], starts: [usize; K], len: usize) -> [&mut [f32]; K] {
    // (a loop, not `starts.map(..)`: that call was left out of line, and with it the lengths the
    // callers' loops need to drop their bounds checks)
    let mut parts: [&mut [f32]; K] = std::array::from_fn(|_| Default::default());
    let mut offset = 0;
    for (part, start) in parts.iter_mut().zip(starts) {
        let (_, tail) = std::mem::take(&mut v).split_at_mut(start - offset);
        let (this, after) = tail.split_at_mut(len);
        (*part, v, offset) = (this, after, start + len);
    }
    parts
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

    /// Against Burn's convolution, both windows and every algorithm for each (F(2x2, 3x3) and
    /// F(4x4, 3x3) for 3 x 3): "same" and "valid" padding, odd and even sizes, blocks that span
    /// samples (small maps) and blocks within one (large maps), widths that are not multiples of
    /// the SIMD width, maps smaller than the window; the same bits on 1 and 3 threads.
    #[test]
    fn matches_burn_and_does_not_depend_on_the_thread_count() {
        let device = Device::flex();
        // (batch, c_in, c_out, size, kernel, padding)
        let cases = [
            (1, 8, 16, [48, 48], 3, PaddingConfig2d::Same), // vgg-lite's first stage, one face
            (3, 16, 24, [12, 12], 3, PaddingConfig2d::Same), // blocks across samples
            (3, 9, 5, [7, 11], 3, PaddingConfig2d::Same),   // odd sizes: a half tile at the edges
            (16, 12, 7, [6, 6], 3, PaddingConfig2d::Valid),
            (16, 64, 80, [3, 3], 3, PaddingConfig2d::Same), // a 3 x 3 map: half of each tile outside
            (3, 192, 192, [10, 10], 3, PaddingConfig2d::Same), // a block across samples; 3 threads split it
            (2, 48, 32, [24, 24], 5, PaddingConfig2d::Same), // the search's second convolution
            (8, 32, 64, [6, 6], 5, PaddingConfig2d::Same),  // cnn1's second convolution
            (3, 9, 5, [7, 11], 5, PaddingConfig2d::Same),   // odd sizes
            (16, 12, 7, [9, 8], 5, PaddingConfig2d::Valid),
            (32, 16, 8, [2, 3], 5, PaddingConfig2d::Same), // a map smaller than the window
            (3, 192, 160, [10, 10], 5, PaddingConfig2d::Same), // a block across samples; 3 threads split it
            (4, 8, 8, [9, 10], 5, PaddingConfig2d::Explicit(1, 3, 2, 0)), // uneven padding
        ];
        for (k, (batch, c_in, c_out, size, kernel, padding)) in cases.into_iter().enumerate() {
            let conv = Conv2dConfig::new([c_in, c_out], [kernel, kernel]).with_padding(padding).init(&device);
            let x = random_input([batch, c_in, size[0], size[1]], &device, 40 + k as u64);
            let g = Sliding::new(&conv.padding, size, [kernel, kernel], [1, 1]).unwrap();
            assert!(applies(&g, batch, c_in, c_out), "case {k}");
            let expected = conv.forward(x.clone());
            for &algorithm in Algorithm::for_window([kernel, kernel]) {
                let run = |threads: usize, kept: Option<&KeptFilters>| {
                    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                    let (xs, ws) = (values(x.clone()), values(conv.weight.val()));
                    let bs = values(conv.bias.as_ref().unwrap().val());
                    let dims = [batch, c_in, size[0], size[1]];
                    let out = pool.install(|| forward_with(algorithm, &xs, dims, &ws, &bs, &g, &Epilogue::NONE, kept));
                    Tensor::<4>::from_data(TensorData::new(out, [batch, c_out, g.output[0], g.output[1]]), &device)
                };
                let one = run(1, None);
                assert_close(&one, &expected, 1e-5, &format!("case {k}, {algorithm:?}"));
                let bits = |t: Tensor<4>| values(t).iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(one.clone()), bits(run(3, None)), "case {k}, {algorithm:?}: 1 and 3 threads");
                // With kept filters: the first pass keeps the filters' transform, the second
                // reads it back; the same bits as without.
                let kept = KeptFilters::default();
                assert_eq!(bits(one.clone()), bits(run(2, Some(&kept))), "case {k}, {algorithm:?}: making them");
                let held = kept.get(algorithm, 0, || unreachable!("the transform is kept")).is_none();
                assert!(held, "case {k}, {algorithm:?}: the transform is kept");
                assert_eq!(bits(one), bits(run(2, Some(&kept))), "case {k}, {algorithm:?}: from the kept ones");
            }
        }
    }

    /// The input gradient's convolution (the output gradient by the flipped filters, padded
    /// `r - 1 - pad`) gives Burn's input gradient, for both windows.
    #[test]
    fn the_input_gradient_is_a_convolution_by_the_flipped_filters() {
        let device = Device::flex();
        for (k, (kernel, padding, size)) in [
            (3, PaddingConfig2d::Same, [10, 9]),
            (5, PaddingConfig2d::Same, [12, 12]),
            (5, PaddingConfig2d::Valid, [13, 11]),
        ]
        .into_iter()
        .enumerate()
        {
            let (batch, c_in, c_out) = (4, 8, 12);
            let conv = Conv2dConfig::new([c_in, c_out], [kernel, kernel]).with_padding(padding).init(&device);
            let g = Sliding::new(&conv.padding, size, [kernel, kernel], [1, 1]).unwrap();
            let gb = input_gradient_geometry(&g).unwrap();
            assert_eq!(gb.output, size, "case {k}");
            let dy = random_input([batch, c_out, g.output[0], g.output[1]], &device, 60 + k as u64);
            let w = values(conv.weight.val());
            let dx = forward(
                &values(dy.clone()),
                [batch, c_out, g.output[0], g.output[1]],
                &flipped_filters(&w, c_out, c_in),
                &vec![0.0; c_in],
                &gb,
                &Epilogue::NONE,
                None,
            );
            // Burn's input gradient: the transposed convolution of dy by the same weights.
            let expected = burn::tensor::module::conv_transpose2d(
                dy,
                conv.weight.val(),
                None,
                burn::tensor::ops::ConvTransposeOptions::new([1, 1], g.pad, [0, 0], [1, 1], 1),
            );
            let dx = Tensor::<4>::from_data(TensorData::new(dx, [batch, c_in, size[0], size[1]]), &device);
            assert_close(&dx, &expected, 1e-5, &format!("case {k}"));
        }
    }

    /// The weight gradient against Burn's (autodiff through its convolution), both windows and
    /// every algorithm for each: "same" and "valid", odd sizes (a half tile at the edges), blocks
    /// across samples; the same bits on 1 and 3 threads.
    #[test]
    fn the_weight_gradient_matches_burn_and_does_not_depend_on_the_thread_count() {
        let device = Device::flex().autodiff();
        // (batch, c_in, c_out, size, kernel, padding)
        let cases = [
            (3, 16, 24, [12, 12], 3, PaddingConfig2d::Same),
            (3, 9, 33, [7, 11], 3, PaddingConfig2d::Same),
            (4, 8, 12, [13, 10], 3, PaddingConfig2d::Valid),
            (2, 24, 32, [24, 24], 5, PaddingConfig2d::Same), // the search's second convolution
            (3, 9, 10, [7, 11], 5, PaddingConfig2d::Same),
            (16, 16, 8, [6, 6], 5, PaddingConfig2d::Same), // cnn1's: blocks across samples
            (4, 8, 12, [13, 11], 5, PaddingConfig2d::Valid),
        ];
        for (k, (batch, c_in, c_out, size, kernel, padding)) in cases.into_iter().enumerate() {
            let conv = Conv2dConfig::new([c_in, c_out], [kernel, kernel]).with_padding(padding).init(&device);
            let g = Sliding::new(&conv.padding, size, [kernel, kernel], [1, 1]).unwrap();
            assert!(applies(&g, batch, c_in, c_out), "case {k}");
            let x = random_input([batch, c_in, size[0], size[1]], &device, 70 + k as u64);
            let dy = random_input([batch, c_out, g.output[0], g.output[1]], &device, 80 + k as u64);
            let grads = (conv.forward(x.clone()) * dy.clone()).sum().backward();
            let expected = conv.weight.val().grad(&grads).unwrap();
            for &algorithm in Algorithm::for_window([kernel, kernel]) {
                let run = |threads: usize| {
                    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                    let (xs, dys) = (values(x.clone().inner()), values(dy.clone().inner()));
                    let dims = [batch, c_in, size[0], size[1]];
                    pool.install(|| weight_gradient_with(algorithm, &xs, dims, &dys, c_out, &g))
                };
                let one = run(1);
                let shape = [c_out, c_in, kernel, kernel];
                let ours = Tensor::<4>::from_data(TensorData::new(one.clone(), shape), &Device::flex());
                assert_close(&ours, &expected, 1e-5, &format!("case {k}, {algorithm:?}"));
                let bits = |v: Vec<f32>| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(one), bits(run(3)), "case {k}, {algorithm:?}: 1 and 3 threads");
            }
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
        let ours = crate::kernels::conv2d::inference(&conv, &x, &epilogue, None).expect("the kernels cover it");
        let ours = Tensor::<4>::from_primitive::<burn::backend::flex::Flex>(ours);
        let s = Tensor::<1>::from_data(TensorData::new(scale.clone(), [8]), &device).reshape([1, 8, 1, 1]);
        let t = Tensor::<1>::from_data(TensorData::new(shift.clone(), [8]), &device).reshape([1, 8, 1, 1]);
        let expected = burn::tensor::activation::relu(conv.forward(x) * s + t);
        assert_close(&ours, &expected, 1e-5, "conv + affine + relu");
    }

    #[test]
    fn small_inputs_are_left_to_im2col() {
        let g = Sliding::new(&PaddingConfig2d::Same, [48, 48], [3, 3], [1, 1]).unwrap();
        assert!(!applies(&g, 1, 1, 64), "one input channel");
        let g = Sliding::new(&PaddingConfig2d::Same, [6, 6], [3, 3], [1, 1]).unwrap();
        assert!(!applies(&g, 1, 64, 64), "9 tiles");
        let g = Sliding::new(&PaddingConfig2d::Same, [48, 48], [7, 7], [1, 1]).unwrap();
        assert!(!applies(&g, 4, 64, 64), "7 x 7");
        let g = Sliding::new(&PaddingConfig2d::Same, [48, 48], [3, 3], [2, 2]).unwrap();
        assert!(!applies(&g, 4, 64, 64), "stride 2");
    }

    /// F(4x4, 3x3) where it spends fewer multiplications than F(2x2, 3x3) and has the tiles,
    /// F(2x2, 3x3) on a 6 x 6 map (a tie) and where F(4x4, 3x3) has too few tiles (the unit tests'
    /// bounds: 64 tiles, no bound on the products).
    #[test]
    fn the_larger_tiles_where_they_need_fewer_multiplications() {
        let of = |size: usize, batch: usize| {
            let g = Sliding::new(&PaddingConfig2d::Same, [size, size], [3, 3], [1, 1]).unwrap();
            Algorithm::of(&g, batch, 64, 64)
        };
        assert_eq!(of(48, 1), Some(Algorithm::F4x3));
        assert_eq!(of(12, 8), Some(Algorithm::F4x3));
        assert_eq!(of(3, 64), Some(Algorithm::F4x3), "one 4 x 4 tile against four 2 x 2 ones");
        assert_eq!(of(6, 16), Some(Algorithm::F2x3), "144 multiplications each");
        assert_eq!(of(12, 4), Some(Algorithm::F2x3), "36 tiles of 4 x 4, 144 of 2 x 2");
        assert_eq!(of(6, 1), None);
        let g = Sliding::new(&PaddingConfig2d::Same, [12, 12], [5, 5], [1, 1]).unwrap();
        assert_eq!(Algorithm::of(&g, 4, 64, 64), Some(Algorithm::F2x5));
    }
}
