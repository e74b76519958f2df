//! Depthwise 2-D convolution (one filter per channel: groups = input channels = output
//! channels), forward and backward, on Flex tensors `[batch, channels, height, width]`.
//!
//! Why: EfficientNet's MBConv blocks are built around these, and Burn's grouped convolution
//! on Flex treats each channel as a convolution of its own. Two paths, chosen by the output
//! width:
//!
//! - Wide maps (at least [`SHORT_ROW`] columns): one `(sample, channel)` plane per task. Forward,
//!   the plane is first copied with its zero padding and each row split into its stride's column
//!   phases ([`Phases`]), so that an output row is `kernel x kernel` contiguous scaled rows at any
//!   stride, summed 8 outputs at a time in registers (compiled for AVX2 and AVX-512 by
//!   `multiversion`); until session 20 it added each tap's scaled row into the output row in
//!   memory, strided at stride 2, about 9% of a `fast`-preset training step (`perf`, AMD EPYC).
//!   Backward, each tap's scaled row is added into the gradient row.
//! - Small maps (EfficientNet's 8x8 to 2x2 stages at 64x64 input, whose rows are too short for
//!   vector code): channel-last. A task takes one sample and [`LANES`] channels, lays them out
//!   as `[position][channel]`, and sums every in-image `(output, tap, input)` triple for all its
//!   channels at once. Its functions are compiled for AVX-512, AVX2 and plain x86-64 by the
//!   `multiversion` crate and picked at run time (multiversion 0.9 runs its AVX-512 copy only on
//!   CPUs with the whole Ice Lake set of AVX-512 extensions; Skylake and Cascade Lake Xeons run
//!   the AVX2 copy). Until session 15 small maps went plane by plane through the same triples
//!   with scalar sums, which took about 40% of a `fast`-preset training step (`perf record`, AMD
//!   EPYC) in a chain of dependent additions.
//!
//! Every output value is the sum of its terms in one fixed order (the sorted triples; for the
//! weight gradient, samples in order), whatever the thread count; the channel-last path keeps
//! the order of the plane-by-plane triple loop it replaced, and the wide maps' forward row path
//! that of the row loop it replaced (for any bias but -0.0 and finite weights: see
//! [`forward_plane`]), so their results are the same bits (the tests check them). Rust never
//! fuses `a * b + c` into one FMA instruction, so the AVX-512, AVX2 and baseline copies agree bit
//! for bit too. A seed still fixes a run.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::{Flex, FlexTensor};
use burn::nn::conv::Conv2d;
use rayon::prelude::*;

use super::flex::{self, TrackedTensor, UninitParts};
use super::epilogue::Epilogue;
use super::{SHORT_ROW, Sliding};
use multiversion::multiversion;
use std::mem::MaybeUninit;

/// Whether `conv` on an input of `channels` channels is depthwise, the case computed here.
pub fn is_depthwise(conv: &Conv2d, channels: usize) -> bool {
    let [c_out, per_group, _, _] = conv.weight.dims();
    conv.groups > 1 && conv.groups == channels && c_out == channels && per_group == 1 && conv.dilation == [1, 1]
}

/// For every `(ky, kx)` and output row `oy`: the input row it reads (if inside), and for the
/// output columns `inside` the first input column. Calls `f(kernel index, oy, iy, inside, ix0)`.
#[inline(always)]
fn for_each_tap(g: &Sliding, mut f: impl FnMut(usize, usize, usize, std::ops::Range<usize>, usize)) {
    let [kh, kw] = g.kernel;
    for ky in 0..kh {
        for kx in 0..kw {
            let inside = g.taps_inside(1, kx);
            if inside.is_empty() {
                continue;
            }
            let ix0 = inside.start * g.stride[1] + kx - g.pad[1];
            for oy in 0..g.output[0] {
                if let Some(iy) = g.source(0, oy, ky) {
                    f(ky * kw + kx, oy, iy, inside.clone(), ix0);
                }
            }
        }
    }
}

/// For small maps, every `[output position, kernel tap, input position]` triple that falls
/// inside the image, sorted by field `by` (what the pass using them sums into, so that it adds
/// into memory once per destination: see [`accumulate`]): a task is then one short loop instead
/// of a few calls per output row (a 2 x 2 map under a 5 x 5 kernel has 16 triples but 10 row
/// visits). `None` for wide maps, which go row by row ([`Phases`] forward, [`for_each_tap`]
/// backward).
fn small_map(g: &Sliding, by: usize) -> Option<Vec<[u32; 3]>> {
    if g.output[1] >= SHORT_ROW {
        return None;
    }
    let (w, ow, sx) = (g.input[1], g.output[1], g.stride[1]);
    let mut triples = Vec::new();
    for_each_tap(g, |k, oy, iy, inside, ix0| {
        for (j, ox) in inside.enumerate() {
            triples.push([(oy * ow + ox) as u32, k as u32, (iy * w + ix0 + j * sx) as u32]);
        }
    });
    // Stable: a fixed order within each destination, so sums do not vary between runs.
    triples.sort_by_key(|t| t[by]);
    Some(triples)
}

/// Fields of a [`small_map`] triple.
const OUTPUT: usize = 0;
const TAP: usize = 1;
const INPUT: usize = 2;

/// Channels per task of the small-map path: one AVX-512 register, two AVX2 registers.
const LANES: usize = 16;
/// One position's values for a task's [`LANES`] channels (zeros past the last channel).
type Lanes = [f32; LANES];

/// For `triples` sorted by field `dest`: `out[t[dest]] += sum of a[t[fa]] * b[t[fb]]` over each
/// destination's triples, the sum kept in registers and added to memory once per destination,
/// lane by lane (one lane per channel).
#[inline(always)]
fn accumulate(triples: &[[u32; 3]], [dest, fa, fb]: [usize; 3], a: &[Lanes], b: &[Lanes], out: &mut [Lanes]) {
    let mut t = 0;
    while t < triples.len() {
        let at = triples[t][dest];
        let mut sum = [0f32; LANES];
        while t < triples.len() && triples[t][dest] == at {
            let (x, y) = (&a[triples[t][fa] as usize], &b[triples[t][fb] as usize]);
            for l in 0..LANES {
                sum[l] += x[l] * y[l];
            }
            t += 1;
        }
        let out = &mut out[at as usize];
        for l in 0..LANES {
            out[l] += sum[l];
        }
    }
}

/// How many of `count` channels and `len` positions [`gather`] and [`scatter`] move in 4 x 4
/// blocks (SSE registers, baseline x86-64); the rest one value at a time.
#[inline(always)]
fn in_blocks(count: usize, len: usize) -> (usize, usize) {
    if cfg!(target_arch = "x86_64") { (count / 4 * 4, len / 4 * 4) } else { (0, 0) }
}

/// Four rows of four values transposed: row `i` of the result holds value `i` of each row.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn transpose4(rows: [std::arch::x86_64::__m128; 4]) -> [std::arch::x86_64::__m128; 4] {
    use std::arch::x86_64::*;
    // SAFETY: SSE is part of baseline x86-64.
    unsafe {
        // a: r0[0] r1[0] r0[1] r1[1], b: r2[0] r3[0] r2[1] r3[1]; c, d: the same for values 2, 3.
        let (a, b) = (_mm_unpacklo_ps(rows[0], rows[1]), _mm_unpacklo_ps(rows[2], rows[3]));
        let (c, d) = (_mm_unpackhi_ps(rows[0], rows[1]), _mm_unpackhi_ps(rows[2], rows[3]));
        [_mm_movelh_ps(a, b), _mm_movehl_ps(b, a), _mm_movelh_ps(c, d), _mm_movehl_ps(d, c)]
    }
}

/// Planes `first..first + count` of `values` (`len` values each) laid out channel-last into
/// `lanes`: `len` positions of [`LANES`] values, the lanes past `count` zero.
///
/// Why blocks: one value at a time, this transpose (and [`scatter`]'s) took most of the
/// small-map forward pass's samples, several times its sums (`perf annotate`, Intel Xeon,
/// session 23); 4 x 4 blocks move four values per load and store. Pure data movement: the same
/// bits either way.
#[inline(always)]
fn gather(values: &[f32], first: usize, len: usize, count: usize, lanes: &mut Vec<Lanes>) {
    // A buffer used before: every lane below `count` is written below, those past it zeroed here.
    lanes.resize(len, [0f32; LANES]);
    if count < LANES {
        lanes.iter_mut().for_each(|position| position[count..].fill(0.0));
    }
    let (whole, blocked) = in_blocks(count, len);
    #[cfg(target_arch = "x86_64")]
    for l0 in (0..whole).step_by(4) {
        use std::arch::x86_64::{_mm_loadu_ps, _mm_storeu_ps};
        let plane = |i: usize| &values[(first + l0 + i) * len..(first + l0 + i + 1) * len];
        let planes = [plane(0), plane(1), plane(2), plane(3)];
        for p0 in (0..blocked).step_by(4) {
            // SAFETY: each plane has `len >= p0 + 4` values.
            let rows = planes.map(|plane| unsafe { _mm_loadu_ps(plane[p0..p0 + 4].as_ptr()) });
            for (i, column) in transpose4(rows).into_iter().enumerate() {
                // SAFETY: `l0 + 4 <= count <= LANES`.
                unsafe { _mm_storeu_ps(lanes[p0 + i][l0..l0 + 4].as_mut_ptr(), column) };
            }
        }
    }
    for l in 0..count {
        let from = if l < whole { blocked } else { 0 };
        for (p, &v) in values[(first + l) * len..(first + l + 1) * len].iter().enumerate().skip(from) {
            lanes[p][l] = v;
        }
    }
}

/// Writes the first `count` lanes of channel-last `lanes` back into planes `first..first + count`
/// (`len` values each, every one written) of the vector behind `planes`, in 4 x 4 blocks where
/// it can (see [`gather`]).
///
/// SAFETY: those planes are written by the calling task alone.
#[inline(always)]
unsafe fn scatter(lanes: &[Lanes], planes: UninitParts, first: usize, len: usize, count: usize) {
    let (whole, blocked) = in_blocks(count, len);
    #[cfg(target_arch = "x86_64")]
    for l0 in (0..whole).step_by(4) {
        use std::arch::x86_64::{_mm_loadu_ps, _mm_storeu_ps};
        // SAFETY: four distinct planes, each written by this task alone (the caller's promise).
        let plane = |i: usize| unsafe { planes.part((first + l0 + i) * len, len) };
        let mut dest = [plane(0), plane(1), plane(2), plane(3)];
        for p0 in (0..blocked).step_by(4) {
            // SAFETY: `l0 + 4 <= count <= LANES`.
            let rows = [0, 1, 2, 3].map(|i| unsafe { _mm_loadu_ps(lanes[p0 + i][l0..l0 + 4].as_ptr()) });
            for (plane, row) in dest.iter_mut().zip(transpose4(rows)) {
                // SAFETY: each plane has `len >= p0 + 4` values; `MaybeUninit<f32>` is laid out as `f32`.
                unsafe { _mm_storeu_ps(plane[p0..p0 + 4].as_mut_ptr().cast::<f32>(), row) };
            }
        }
    }
    for l in 0..count {
        let from = if l < whole { blocked } else { 0 };
        let plane = unsafe { planes.part((first + l) * len, len) };
        for (p, v) in plane.iter_mut().enumerate().skip(from) {
            v.write(lanes[p][l]);
        }
    }
}

/// The number of `(sample, channel block)` tasks of the small-map path over `n` samples of `c`
/// channels: every block of [`LANES`] channels of every sample.
fn block_count(n: usize, c: usize) -> usize {
    n * c.div_ceil(LANES)
}

/// Task `task` of [`block_count`]'s: its sample and its channels.
fn block(task: usize, c: usize) -> (usize, std::ops::Range<usize>) {
    let per_sample = c.div_ceil(LANES);
    let (sample, block) = (task / per_sample, task % per_sample);
    (sample, block * LANES..((block + 1) * LANES).min(c))
}

/// The channel-last buffers of a small-map task ([`gather`]'s and the sums'), made once per rayon
/// job (`map_init`'s split) and reused by that job's tasks. Until session 32 every task allocated
/// and zeroed three (the weight gradient one, plus two per sample): malloc and free were about 5%
/// of EfficientNet-Lite0's inference at batch 256 in `perf` (AMD EPYC Zen 4; memset another 2.5%),
/// and reusing them gained about 4% there (docs/speed.md, session 32).
#[derive(Debug, Default)]
struct LaneBuffers {
    kernels: Vec<Lanes>,
    source: Vec<Lanes>,
    sums: Vec<Lanes>,
}

/// The body of [`forward_block`] and [`input_gradient_block`], which differ in which field of a
/// triple is summed into (`order`), in their start values and in which buffer is source or
/// destination: gathers the task's kernels (`weight`, `[c, taps]`) and its `count` planes of
/// `source` (`source_len` values each) channel-last, sums each destination position's terms onto
/// `start` (one start value per lane), and writes the `dest_len` positions of the result into
/// planes `first..first + count` of the vector behind `dest` (every value of them). Inlined into
/// both, so that the triple fields in `order` stay constants in each copy's inner loop.
///
/// SAFETY: those planes of `dest` are written by the calling task alone.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn sum_into_planes(
    triples: &[[u32; 3]],
    order: [usize; 3],
    weight: &[f32],
    (source, source_len): (&[f32], usize),
    start: Lanes,
    (first, count): (usize, usize),
    channel: usize,
    g: &Sliding,
    (dest, dest_len): (UninitParts, usize),
    buffers: &mut LaneBuffers,
) {
    let LaneBuffers { kernels, source: st, sums } = buffers;
    gather(weight, channel, g.kernel[0] * g.kernel[1], count, kernels);
    gather(source, first, source_len, count, st);
    sums.clear();
    sums.resize(dest_len, start);
    accumulate(triples, order, kernels, st, sums);
    unsafe { scatter(sums, dest, first, dest_len, count) };
}

/// One task of the small-map forward pass: writes the output planes `first..first + count`
/// (`planes` is `(first, count)`; one sample's channels `channel..channel + count`,
/// `count <= LANES`) of the vector behind `out` (`[n, c, oh, ow]`). `x` is the whole input
/// `[n, c, h, w]`, `weight` `[c, taps]`, `bias` the task's `count` channels' biases.
///
/// SAFETY: those planes are written by the calling task alone.
#[cfg_attr(feature = "avx512", multiversion(targets("x86_64+avx512f+avx2+avx", "x86_64+avx2+avx")))]
#[cfg_attr(not(feature = "avx512"), multiversion(targets("x86_64+avx2+avx")))]
#[allow(clippy::too_many_arguments)]
unsafe fn forward_block(
    triples: &[[u32; 3]],
    x: &[f32],
    weight: &[f32],
    bias: &[f32],
    planes: (usize, usize),
    channel: usize,
    g: &Sliding,
    out: UninitParts,
    buffers: &mut LaneBuffers,
) {
    let mut start = [0f32; LANES];
    start[..planes.1].copy_from_slice(bias);
    let ([h, w], [oh, ow]) = (g.input, g.output);
    let order = [OUTPUT, TAP, INPUT];
    unsafe { sum_into_planes(triples, order, weight, (x, h * w), start, planes, channel, g, (out, oh * ow), buffers) };
}

/// One task of the small-map input gradient: writes the planes `first..first + count` (`planes`
/// is `(first, count)`) of the vector behind `dx` (`[n, c, h, w]`; one sample's channels
/// `channel..channel + count`, `count <= LANES`), from the whole output gradient `dy`
/// (`[n, c, oh, ow]`) and `weight` (`[c, taps]`).
///
/// SAFETY: those planes are written by the calling task alone.
#[cfg_attr(feature = "avx512", multiversion(targets("x86_64+avx512f+avx2+avx", "x86_64+avx2+avx")))]
#[cfg_attr(not(feature = "avx512"), multiversion(targets("x86_64+avx2+avx")))]
#[allow(clippy::too_many_arguments)]
unsafe fn input_gradient_block(
    triples: &[[u32; 3]],
    dy: &[f32],
    weight: &[f32],
    planes: (usize, usize),
    channel: usize,
    g: &Sliding,
    dx: UninitParts,
    buffers: &mut LaneBuffers,
) {
    let ([h, w], [oh, ow]) = (g.input, g.output);
    let order = [INPUT, TAP, OUTPUT];
    let start = [0f32; LANES];
    unsafe { sum_into_planes(triples, order, weight, (dy, oh * ow), start, planes, channel, g, (dx, h * w), buffers) };
}

/// One task of the small-map weight gradient: writes the taps of `channels` (at most `LANES`),
/// summed over the `n` samples in order, into the vector behind `dw` (`[c, taps]`), from the
/// whole input `x` (`[n, c, h, w]`) and output gradient `dy` (`[n, c, oh, ow]`).
///
/// SAFETY: those channels' taps are written by the calling task alone.
#[cfg_attr(feature = "avx512", multiversion(targets("x86_64+avx512f+avx2+avx", "x86_64+avx2+avx")))]
#[cfg_attr(not(feature = "avx512"), multiversion(targets("x86_64+avx2+avx")))]
#[allow(clippy::too_many_arguments)]
unsafe fn weight_gradient_block(
    triples: &[[u32; 3]],
    x: &[f32],
    dy: &[f32],
    [n, c]: [usize; 2],
    channels: std::ops::Range<usize>,
    g: &Sliding,
    dw: UninitParts,
    buffers: &mut LaneBuffers,
) {
    let (taps, [h, w], [oh, ow]) = (g.kernel[0] * g.kernel[1], g.input, g.output);
    let count = channels.len();
    let LaneBuffers { kernels: xt, source: dyt, sums: dwt } = buffers;
    dwt.clear();
    dwt.resize(taps, [0f32; LANES]);
    for sample in 0..n {
        let first = sample * c + channels.start;
        gather(x, first, h * w, count, xt);
        gather(dy, first, oh * ow, count, dyt);
        accumulate(triples, [TAP, OUTPUT, INPUT], dyt, xt, dwt);
    }
    unsafe { scatter(dwt, dw, channels.start, taps, count) };
}

// The row-by-row path for wider maps: one `(sample, channel)` plane per call.

/// How the forward row path lays out an input plane: zero padding around it, each padded row
/// split into its `stride` column phases (phase `p` holds padded columns `p, p + stride, ...`),
/// so that the taps of a kernel column `kx` over an output row are the contiguous values
/// `phase[kx % sx][ox + kx / sx]` for consecutive `ox`, at any column stride `sx` (`stride[1]`).
#[derive(Debug, Clone)]
struct Phases {
    /// Padded rows: `(oh - 1) * stride[0] + kh`.
    rows: usize,
    /// Values per phase: `ow + (kw - 1) / stride[1]`.
    width: usize,
    /// Per tap `(ky, kx)` in kernel order: where its value for output `(0, 0)` is in the layout
    /// (output `(oy, ox)` adds `oy * stride[0] * row_len + ox`).
    taps: Vec<usize>,
}

impl Phases {
    fn of(g: &Sliding) -> Self {
        let ([kh, kw], sx) = (g.kernel, g.stride[1]);
        let width = g.output[1] + (kw - 1) / sx;
        let taps = (0..kh * kw).map(|k| (k / kw) * sx * width + (k % kw % sx) * width + k % kw / sx).collect();
        Phases { rows: (g.output[0] - 1) * g.stride[0] + kh, width, taps }
    }

    /// Values per padded row (all its phases).
    fn row_len(&self, g: &Sliding) -> usize {
        g.stride[1] * self.width
    }

    /// Lays `input` (one plane) out into `buffer`, zeros where the taps fall in the padding.
    /// Only the padding is zeroed (whole rows above and below the image, and each phase's ends):
    /// every other value is copied over.
    fn fill(&self, g: &Sliding, input: &[f32], buffer: &mut Vec<f32>) {
        let ([h, w], sx, row_len) = (g.input, g.stride[1], self.row_len(g));
        // `resize` keeps what the buffer held from the plane before, all of which is overwritten.
        buffer.resize(self.rows * row_len, 0.0);
        for (r, dst) in buffer.chunks_exact_mut(row_len).enumerate() {
            let Some(iy) = r.checked_sub(g.pad[0]).filter(|&iy| iy < h) else {
                dst.fill(0.0);
                continue;
            };
            let src = &input[iy * w..(iy + 1) * w];
            for (phase, dst) in dst.chunks_exact_mut(self.width).enumerate() {
                // Padded column j * sx + phase is input column j * sx + phase - pad, from the
                // first j where that is not negative, while it is inside the row.
                let first = g.pad[1].saturating_sub(phase).div_ceil(sx).min(self.width);
                let from = (first * sx + phase).saturating_sub(g.pad[1]);
                let len = if from < w { (w - from).div_ceil(sx).min(self.width - first) } else { 0 };
                dst[..first].fill(0.0);
                if sx == 1 {
                    dst[first..first + len].copy_from_slice(&src[from..from + len]);
                } else {
                    let values = src[from.min(w)..].iter().step_by(sx);
                    dst[first..first + len].iter_mut().zip(values).for_each(|(d, &v)| *d = v);
                }
                dst[first + len..].fill(0.0);
            }
        }
    }
}

/// Output values per register block of the row path: one AVX2 register.
const ROW_BLOCK: usize = 8;

/// Writes every value of one output plane `out`: `bias` plus the taps of `kernel` over the plane
/// laid out by [`Phases::fill`] in `phased`, tap by tap in kernel order (as the triples of the
/// small-map path and the row loop before session 20), [`ROW_BLOCK`] outputs at a time kept in
/// registers.
///
/// Taps in the padding add `weight * 0.0`, which leaves every sum as it was (a sum that starts
/// from a bias other than `-0.0` is never `-0.0`, and `x + 0.0 == x` for every other `x`), so
/// the values are the same bits as skipping them; the convolution passes `+0.0` when it has no
/// bias. (An infinite weight would make its padding taps NaN where skipping gave infinity.)
#[cfg_attr(feature = "avx512", multiversion(targets("x86_64+avx512f+avx2+avx", "x86_64+avx2+avx")))]
#[cfg_attr(not(feature = "avx512"), multiversion(targets("x86_64+avx2+avx")))]
fn forward_plane(phased: &[f32], phases: &Phases, kernel: &[f32], g: &Sliding, bias: f32, out: &mut [MaybeUninit<f32>]) {
    let ([oh, ow], sy) = (g.output, g.stride[0]);
    let row_step = sy * phases.row_len(g);
    for oy in 0..oh {
        let (row, first_row) = (&mut out[oy * ow..(oy + 1) * ow], &phased[oy * row_step..]);
        let mut blocks = row.chunks_exact_mut(ROW_BLOCK);
        for (b, dst) in blocks.by_ref().enumerate() {
            let mut sum = [bias; ROW_BLOCK];
            for (&wk, &tap) in kernel.iter().zip(&phases.taps) {
                let src = &first_row[tap + b * ROW_BLOCK..][..ROW_BLOCK];
                for l in 0..ROW_BLOCK {
                    sum[l] += wk * src[l];
                }
            }
            dst.iter_mut().zip(sum).for_each(|(d, v)| {
                d.write(v);
            });
        }
        let first = ow - blocks.into_remainder().len();
        for ox in first..ow {
            let mut sum = bias;
            for (&wk, &tap) in kernel.iter().zip(&phases.taps) {
                sum += wk * first_row[tap + ox];
            }
            row[ox].write(sum);
        }
    }
}

/// Adds one plane's input gradient, from its output gradient `dy`, into `dx`.
fn input_gradient_plane(dy: &[f32], kernel: &[f32], g: &Sliding, dx: &mut [f32]) {
    let (w, ow, sx) = (g.input[1], g.output[1], g.stride[1]);
    for_each_tap(g, |k, oy, iy, inside, ix0| {
        let (wk, src) = (kernel[k], &dy[oy * ow..(oy + 1) * ow][inside]);
        let dst = &mut dx[iy * w + ix0..iy * w + w];
        if sx == 1 {
            dst.iter_mut().zip(src).for_each(|(d, &v)| *d += wk * v);
        } else {
            dst.iter_mut().step_by(sx).zip(src).for_each(|(d, &v)| *d += wk * v);
        }
    });
}

/// Adds one plane's contribution to its channel's weight gradient `dw` (one value per tap).
fn weight_gradient_plane(input: &[f32], dy: &[f32], g: &Sliding, dw: &mut [f32]) {
    let (w, ow, sx) = (g.input[1], g.output[1], g.stride[1]);
    for_each_tap(g, |k, oy, iy, inside, ix0| {
        let src = &input[iy * w + ix0..iy * w + w];
        let dy = dy[oy * ow..(oy + 1) * ow][inside].iter();
        dw[k] += if sx == 1 {
            dy.zip(src).map(|(d, v)| d * v).sum::<f32>()
        } else {
            dy.zip(src.iter().step_by(sx)).map(|(d, v)| d * v).sum::<f32>()
        };
    });
}

/// The output for input `x`, weights `[channels, 1, kh, kw]` and a bias per channel, each plane
/// put through `epilogue` as soon as its task has summed it (while it is in cache).
///
/// The output vector is not zeroed first ([`flex::write_in_parallel`]): both paths write every
/// value of their planes.
pub(super) fn forward(x: &FlexTensor, weight: &FlexTensor, bias: &FlexTensor, g: Sliding, epilogue: &Epilogue) -> FlexTensor {
    let [n, c, h, w] = flex::dims4(x);
    let ([oh, ow], taps) = (g.output, g.kernel[0] * g.kernel[1]);
    let (x, weight, bias) = (flex::values(x), flex::values(weight), flex::values(bias));
    let len = n * c * oh * ow;
    let out = if let Some(triples) = small_map(&g, OUTPUT) {
        let write_block = |buffers: &mut LaneBuffers, task: usize, out: UninitParts| {
            let (sample, channels) = block(task, c);
            let planes = (sample * c + channels.start, channels.len());
            let bias = &bias[channels.clone()];
            // SAFETY: the task's own planes of `out`.
            unsafe { forward_block(&triples, &x, &weight, bias, planes, channels.start, &g, out, buffers) }
            for (l, channel) in channels.enumerate() {
                // SAFETY: the task's own planes of `out`, every value of which forward_block has
                // just written.
                epilogue.apply(channel, unsafe { flex::assume_written(out.part((planes.0 + l) * oh * ow, oh * ow)) });
            }
        };
        // SAFETY: the tasks write disjoint planes and, together, every plane.
        unsafe { flex::write_parts_in_parallel(len, block_count(n, c), LaneBuffers::default, write_block) }
    } else {
        let phases = Phases::of(&g);
        let write_plane = |phased: &mut Vec<f32>, plane: usize, out: &mut [MaybeUninit<f32>]| {
            let channel = plane % c;
            phases.fill(&g, &x[plane * h * w..(plane + 1) * h * w], phased);
            forward_plane(phased, &phases, &weight[channel * taps..(channel + 1) * taps], &g, bias[channel], out);
            // SAFETY: forward_plane wrote every value of the plane.
            epilogue.apply(channel, unsafe { flex::assume_written(out) });
        };
        // SAFETY: `write_plane` writes every value of its plane.
        unsafe { flex::write_in_parallel(len, oh * ow, Vec::new, write_plane) }
    };
    flex::tensor(out, &[n, c, oh, ow])
}

/// Gradients of the input, the weight and the bias, each when wanted (in that order).
fn backward(
    x: &FlexTensor,
    weight: &FlexTensor,
    grad: &FlexTensor,
    g: Sliding,
    wanted: [bool; 3],
) -> [Option<FlexTensor>; 3] {
    let dims = flex::dims4(x);
    let [n, c, h, w] = dims;
    let ([oh, ow], taps) = (g.output, g.kernel[0] * g.kernel[1]);
    let (x, weight, dy) = (flex::values(x), flex::values(weight), flex::values(grad));

    // None of the vectors below is zeroed first ([`flex::write_in_parallel`]): the small-map
    // tasks write every value of their planes or taps, and the row tasks, which add into theirs,
    // zero them first, in parallel and while they are in cache.
    let dx = wanted[0].then(|| {
        let dx = if let Some(triples) = small_map(&g, INPUT) {
            let write_block = |buffers: &mut LaneBuffers, task: usize, dx: UninitParts| {
                let (sample, channels) = block(task, c);
                let planes = (sample * c + channels.start, channels.len());
                // SAFETY: the task's own planes of `dx`.
                unsafe { input_gradient_block(&triples, &dy, &weight, planes, channels.start, &g, dx, buffers) }
            };
            // SAFETY: the tasks write disjoint planes and, together, every plane.
            unsafe { flex::write_parts_in_parallel(n * c * h * w, block_count(n, c), LaneBuffers::default, write_block) }
        } else {
            let write_plane = |_: &mut (), plane: usize, dx: &mut [MaybeUninit<f32>]| {
                let kernel = &weight[(plane % c) * taps..(plane % c + 1) * taps];
                input_gradient_plane(&dy[plane * oh * ow..(plane + 1) * oh * ow], kernel, &g, flex::zeroed(dx));
            };
            // SAFETY: `write_plane` zeroes its whole plane before adding into it.
            unsafe { flex::write_in_parallel(n * c * h * w, h * w, || (), write_plane) }
        };
        flex::tensor(dx, &dims)
    });

    let dw = wanted[1].then(|| {
        let dw = if let Some(triples) = small_map(&g, TAP) {
            // One task per block of channels, summing over the samples in order.
            let write_block = |buffers: &mut LaneBuffers, task: usize, dw: UninitParts| {
                let (_, channels) = block(task, c);
                // SAFETY: the task's own channels of `dw`.
                unsafe { weight_gradient_block(&triples, &x, &dy, [n, c], channels, &g, dw, buffers) }
            };
            // SAFETY: the tasks write disjoint channels' taps and, together, every channel's.
            unsafe { flex::write_parts_in_parallel(c * taps, block_count(1, c), LaneBuffers::default, write_block) }
        } else {
            let write_channel = |_: &mut (), channel: usize, dw: &mut [MaybeUninit<f32>]| {
                let dw = flex::zeroed(dw);
                for sample in 0..n {
                    let plane = sample * c + channel;
                    let (input, dy) = (&x[plane * h * w..(plane + 1) * h * w], &dy[plane * oh * ow..(plane + 1) * oh * ow]);
                    weight_gradient_plane(input, dy, &g, dw);
                }
            };
            // SAFETY: `write_channel` zeroes its channel's taps before adding into them.
            unsafe { flex::write_in_parallel(c * taps, taps, || (), write_channel) }
        };
        flex::tensor(dw, &[c, 1, g.kernel[0], g.kernel[1]])
    });

    let db = wanted[2].then(|| {
        let db = (0..c)
            .into_par_iter()
            .map(|channel| {
                (0..n).map(|sample| dy[(sample * c + channel) * oh * ow..][..oh * ow].iter().sum::<f32>()).sum::<f32>()
            })
            .collect();
        flex::tensor(db, &[c])
    });
    [dx, dw, db]
}

#[derive(Debug)]
struct DepthwiseBackward;

impl Backward<Flex, 3> for DepthwiseBackward {
    /// The input, the weight and the window geometry.
    type State = (FlexTensor, FlexTensor, Sliding);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<Flex>(&ops.node);
        let (x, weight, g) = ops.state;
        let wanted = ops.parents.each_ref().map(|p| p.is_some());
        let results = backward(&x, &weight, &grad, g, wanted);
        for (node, grad) in ops.parents.into_iter().zip(results) {
            if let (Some(node), Some(grad)) = (node, grad) {
                grads.register::<Flex>(node.id, grad);
            }
        }
    }
}

/// [`forward`] on tracked tensors, with its backward step registered.
pub(super) fn tracked(x: TrackedTensor, weight: TrackedTensor, bias: TrackedTensor, g: Sliding) -> TrackedTensor {
    let out = forward(x.primitive(), weight.primitive(), bias.primitive(), g, &Epilogue::NONE);
    match DepthwiseBackward
        .prepare::<NoCheckpointing>([x.node(), weight.node(), bias.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish((x.primitive().clone(), weight.primitive().clone(), g), out),
        OpsKind::UnTracked(prep) => prep.finish(out),
    }
}

#[cfg(test)]
mod tests {
    use crate::kernels::conv2d::conv2d;
    use crate::kernels::tests::{assert_close, random_input};
    use crate::kernels::{SHORT_ROW, flex};
    use burn::nn::PaddingConfig2d;
    use burn::nn::conv::Conv2dConfig;
    use burn::prelude::*;

    /// Ours and Burn's grouped convolution agree on output, the three gradients and the
    /// inference output.
    fn check(channels: usize, kernel: usize, stride: usize, bias: bool, size: [usize; 2]) {
        let device = Device::flex().autodiff();
        device.seed(7);
        let conv = Conv2dConfig::new([channels, channels], [kernel, kernel])
            .with_groups(channels)
            .with_stride([stride, stride])
            .with_padding(PaddingConfig2d::Same)
            .with_bias(bias)
            .init(&device);
        let x = random_input([3, channels, size[0], size[1]], &device, 8).require_grad();
        assert!(super::is_depthwise(&conv, channels) && flex::tracked(&x).is_some());
        let (ours, burns) = (conv2d(&conv, x.clone()), conv.forward(x.clone()));
        assert_close(&ours, &burns, 1e-5, "output");
        let weights = random_input(ours.dims(), &device, 9);
        let ours_grads = (ours * weights.clone()).sum().backward();
        let burns_grads = (burns * weights).sum().backward();
        assert_close(&x.grad(&ours_grads).unwrap(), &x.grad(&burns_grads).unwrap(), 1e-5, "input gradient");
        let w = conv.weight.val();
        assert_close(&w.grad(&ours_grads).unwrap(), &w.grad(&burns_grads).unwrap(), 1e-4, "weight gradient");
        if let Some(b) = &conv.bias {
            let b = b.val();
            assert_close(&b.grad(&ours_grads).unwrap(), &b.grad(&burns_grads).unwrap(), 1e-4, "bias gradient");
        }
        let (inference, plain) = (conv.valid(), x.inner());
        assert_close(&conv2d(&inference, plain.clone()), &inference.forward(plain), 1e-5, "inference output");
    }

    #[test]
    fn matches_burn_for_efficientnets_depthwise_convolutions() {
        check(4, 3, 1, false, [7, 6]);
        check(3, 3, 2, false, [8, 9]); // stride 2, the odd extra padding at the end
        check(2, 5, 2, true, [11, 10]);
        check(5, 5, 1, true, [5, 5]);
        // Maps at least SHORT_ROW wide go row by row instead of through `small_map`.
        check(3, 3, 1, false, [5, SHORT_ROW + 3]);
        check(2, 5, 2, true, [6, 2 * SHORT_ROW + 3]);
        // Small maps go channel-last in blocks of LANES channels: two blocks, the second partial.
        check(super::LANES + 4, 5, 2, true, [8, 8]);
        check(super::LANES + 1, 3, 1, false, [4, 4]);
        // Most taps in the padding (2x2 and 1x1 maps under a 5x5 kernel), and a tall narrow map.
        check(super::LANES + 3, 5, 1, true, [2, 2]);
        check(super::LANES + 3, 5, 2, false, [1, 1]);
        check(super::LANES - 1, 3, 2, true, [40, 6]);
    }

    /// The plane-by-plane scalar loop over the triples that the channel-last path replaced
    /// (session 14's code): per plane, each destination's terms summed in triple order, then
    /// added to memory once. Returns the output, the input gradient and the weight gradient.
    fn plane_by_plane(
        x: &[f32],
        w: &[f32],
        b: &[f32],
        dy: &[f32],
        dims: [usize; 4],
        g: super::Sliding,
    ) -> [Vec<f32>; 3] {
        use super::{INPUT, OUTPUT, TAP, small_map};
        let [n, c, h, wd] = dims;
        let ([oh, ow], taps) = (g.output, g.kernel[0] * g.kernel[1]);
        let sum_by = |triples: &[[u32; 3]], field: usize, term: &dyn Fn([usize; 3]) -> f32, dest: &mut [f32]| {
            let mut t = 0;
            while t < triples.len() {
                let (at, mut sum) = (triples[t][field], 0f32);
                while t < triples.len() && triples[t][field] == at {
                    sum += term(triples[t].map(|v| v as usize));
                    t += 1;
                }
                dest[at as usize] += sum;
            }
        };
        let (by_output, by_input, by_tap) =
            (small_map(&g, OUTPUT).unwrap(), small_map(&g, INPUT).unwrap(), small_map(&g, TAP).unwrap());
        let (mut out, mut dx, mut dw) = (vec![0f32; n * c * oh * ow], vec![0f32; n * c * h * wd], vec![0f32; c * taps]);
        for plane in 0..n * c {
            let ch = plane % c;
            let (input, kernel) = (&x[plane * h * wd..][..h * wd], &w[ch * taps..][..taps]);
            let grad = &dy[plane * oh * ow..][..oh * ow];
            let y = &mut out[plane * oh * ow..][..oh * ow];
            y.fill(b[ch]);
            sum_by(&by_output, OUTPUT, &|[_, k, i]| kernel[k] * input[i], y);
            sum_by(&by_input, INPUT, &|[o, k, _]| kernel[k] * grad[o], &mut dx[plane * h * wd..][..h * wd]);
        }
        for ch in 0..c {
            for sample in 0..n {
                let plane = sample * c + ch;
                let (input, grad) = (&x[plane * h * wd..][..h * wd], &dy[plane * oh * ow..][..oh * ow]);
                sum_by(&by_tap, TAP, &|[o, _, i]| grad[o] * input[i], &mut dw[ch * taps..][..taps]);
            }
        }
        [out, dx, dw]
    }

    /// The row path of wide maps gives the same bits as the loop it replaced (session 19's
    /// `forward_plane`: per tap in kernel order, a scaled input row added into the output row,
    /// taps in the padding skipped), with and without bias, at strides 1 to 3 (also different
    /// along the two axes), kernels 1 to 7 (also not square), "same", "valid" and uneven explicit
    /// padding, odd and even sizes, and on maps wider than one register block with a remainder.
    #[test]
    fn wide_maps_give_the_same_bits_as_the_tap_by_tap_row_loop() {
        let device = Device::flex();
        let same = PaddingConfig2d::Same;
        for (c, [kh, kw], [sy, sx], size, padding, bias) in [
            (3, [3, 3], [1, 1], [32, 32], same.clone(), false),
            (2, [3, 3], [2, 2], [32, 32], same.clone(), true),
            (2, [5, 5], [2, 2], [33, 37], same.clone(), true),
            (2, [5, 5], [1, 1], [7, SHORT_ROW + 3], same.clone(), true),
            (1, [3, 3], [2, 2], [5, 2 * SHORT_ROW + 1], same.clone(), false),
            (2, [3, 3], [2, 2], [9, 2 * SHORT_ROW + 3], PaddingConfig2d::Valid, true),
            (1, [1, 1], [1, 1], [3, SHORT_ROW], same.clone(), true),
            (1, [7, 7], [3, 3], [10, 3 * SHORT_ROW + 2], same.clone(), true),
            (2, [3, 5], [1, 2], [6, 2 * SHORT_ROW + 5], same.clone(), true),
            (2, [5, 3], [2, 1], [9, SHORT_ROW + 1], same.clone(), false),
            // No padding on the left, two columns on the right; rows wholly in the padding.
            (1, [3, 3], [2, 2], [4, 2 * SHORT_ROW], PaddingConfig2d::Explicit(4, 0, 4, 2), true),
        ] {
            let g = super::Sliding::new(&padding, size, [kh, kw], [sy, sx]).unwrap();
            assert!(super::small_map(&g, super::OUTPUT).is_none(), "{size:?} is a wide map");
            let values = |len: usize, seed| random_input([len], &device, seed).into_data().try_to_vec::<f32>().unwrap();
            let (n, [h, w], [oh, ow], taps) = (2, size, g.output, kh * kw);
            let (x, weight) = (values(n * c * h * w, 1), values(c * taps, 2));
            let b = if bias { values(c, 3) } else { vec![0.0; c] };
            let mut expected = vec![0f32; n * c * oh * ow];
            for (plane, out) in expected.chunks_mut(oh * ow).enumerate() {
                let (input, kernel) = (&x[plane * h * w..][..h * w], &weight[(plane % c) * taps..][..taps]);
                out.fill(b[plane % c]);
                super::for_each_tap(&g, |t, oy, iy, inside, ix0| {
                    let dst = &mut out[oy * ow..(oy + 1) * ow][inside];
                    let src = input[iy * w + ix0..iy * w + w].iter().step_by(sx);
                    dst.iter_mut().zip(src).for_each(|(d, &v)| *d += kernel[t] * v);
                });
            }
            let t = |v: &[f32], shape: &[usize]| flex::tensor(v.to_vec(), shape);
            let out = super::forward(&t(&x, &[n, c, h, w]), &t(&weight, &[c, 1, kh, kw]), &t(&b, &[c]), g, &super::Epilogue::NONE);
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&flex::values(&out)), bits(&expected), "c {c}, kernel {kh}x{kw}, stride {sy}x{sx}, {size:?}");
        }
    }

    /// `gather` lays planes out channel-last (zeros past `count`) and `scatter` writes them back,
    /// for counts and lengths inside and outside the 4 x 4 blocks, into one buffer reused from
    /// case to case as a task's are (it starts longer than any case and full of NaN: nothing of
    /// an earlier use may show through).
    #[test]
    fn gather_and_scatter_move_planes_to_channel_last_and_back() {
        let mut lanes = vec![[f32::NAN; super::LANES]; 40];
        for (count, len) in [(3, 7), (16, 16), (16, 9), (5, 4), (3, 7), (1, 1), (8, 25), (13, 6), (16, 30)] {
            let first = 2;
            let values: Vec<f32> = (0..(first + count) * len).map(|v| v as f32 + 0.5).collect();
            super::gather(&values, first, len, count, &mut lanes);
            assert_eq!(lanes.len(), len);
            for (p, lane) in lanes.iter().enumerate() {
                for (l, &v) in lane.iter().enumerate() {
                    let expected = if l < count { values[(first + l) * len + p] } else { 0.0 };
                    assert_eq!(v, expected, "count {count}, len {len}: position {p}, lane {l}");
                }
            }
            // One task writes planes `first..first + count` from the lanes; the planes before
            // them are copied over, so that every value is written.
            let back = unsafe {
                flex::write_parts_in_parallel(values.len(), 1, || (), |_, _, parts| {
                    for (v, &x) in parts.part(0, first * len).iter_mut().zip(&values) {
                        v.write(x);
                    }
                    super::scatter(&lanes, parts, first, len, count);
                })
            };
            assert_eq!(back, values, "count {count}, len {len}");
        }
    }

    /// The channel-last path gives the same bits as the loop it replaced, on 1 thread and on 3.
    #[test]
    fn small_maps_give_the_same_bits_as_the_plane_by_plane_loop_on_any_thread_count() {
        let device = Device::flex();
        for (n, c, k, stride, size) in
            [(3, 2 * super::LANES + 5, 5, 2, [8, 8]), (1, super::LANES + 1, 3, 1, [4, 4]), (2, 7, 5, 1, [2, 2])]
        {
            let g = super::Sliding::new(&PaddingConfig2d::Same, size, [k, k], [stride, stride]).unwrap();
            let values = |shape: &[usize], seed| {
                random_input([shape.iter().product::<usize>()], &device, seed).into_data().try_to_vec::<f32>().unwrap()
            };
            let (x, w, b) = (values(&[n, c, size[0], size[1]], 1), values(&[c, k * k], 2), values(&[c], 3));
            let dy = values(&[n, c, g.output[0], g.output[1]], 4);
            let expected = plane_by_plane(&x, &w, &b, &dy, [n, c, size[0], size[1]], g);
            for threads in [1, 3] {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                let [out, dx, dw] = pool.install(|| {
                    let t = |v: &[f32], shape: &[usize]| flex::tensor(v.to_vec(), shape);
                    let (xt, wt) = (t(&x, &[n, c, size[0], size[1]]), t(&w, &[c, 1, k, k]));
                    let out = super::forward(&xt, &wt, &t(&b, &[c]), g, &super::Epilogue::NONE);
                    let [dx, dw, _] =
                        super::backward(&xt, &wt, &t(&dy, &[n, c, g.output[0], g.output[1]]), g, [true; 3]);
                    [out, dx.unwrap(), dw.unwrap()].map(|t| flex::values(&t).to_vec())
                });
                let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                for (what, ours, theirs) in [
                    ("output", &out, &expected[0]),
                    ("input gradient", &dx, &expected[1]),
                    ("weight gradient", &dw, &expected[2]),
                ] {
                    assert_eq!(
                        bits(ours),
                        bits(theirs),
                        "{what}: n {n}, c {c}, kernel {k}, stride {stride}, {size:?}, {threads} threads"
                    );
                }
            }
        }
    }
}
