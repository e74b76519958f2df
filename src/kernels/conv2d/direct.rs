//! Direct convolution at inference for passes with few output positions (one face through a
//! net's deep layers), with the weights packed once per layer and kept.
//!
//! Why: im2col + GEMM hands such a pass to `gemm` as a product whose columns are the pass's
//! output positions (36 for vgg-lite's 6 x 6 maps at one face, 18 per thread), which its kernels
//! vectorise along those positions: 16 lanes hold 18 or 36 positions with many lanes idle, and
//! vgg-lite's two 6 x 6 layers ran at 105-110 GFLOP/s (`docs/speed.md`, session 40) where ONNX
//! Runtime runs its whole net at about 200. ONNX Runtime (MLAS's `NCHWc` convolution) vectorises
//! along output channels instead, with the weights reordered once when the model is loaded. So
//! does this kernel: the weights are packed in blocks of [`BLOCK`] output channels, `[c_out /
//! 16][c_in * kh * kw][16]` (zero past `c_out`), once per layer ([`WeightPack`], kept by the
//! inference net that `models::fold` prepares), and each tile of the output is up to [`BLOCK`] x 4
//! channels by 24 / blocks positions in registers (AVX-512; on AVX2 one block by 6), every weight
//! vector multiplied by each position's input tap broadcast to all lanes. The positions of a
//! tile run in the output's row-major order and may cross rows, so 3 x 3 maps fill the tiles
//! too. The input is first copied into a zero-padded buffer, so that no tap needs a bounds test.
//! [`pointwise_rows`] runs EfficientNet's channel-last 1 x 1 convolutions (`kernels::channels_last`)
//! through the same tiles: position `q` reads its channels at `q * c_in + kk`; and
//! [`forward_channels_last`] a layer net's convolutions on channel-last maps at one face, with
//! the taps in `(ky, kx, channel)` order.
//!
//! Each output value is one accumulator summed over `k = (channel, ky, kx)` in that order,
//! whatever the tile or thread it falls in, so the values do not depend on the thread count
//! (they differ from im2col + GEMM's sum order in the last bits: the tests compare with Burn's
//! convolution within 1e-5). Used only where the CPU has AVX2 and FMA (AVX-512 in a build with
//! the `avx512` feature); elsewhere the caller keeps im2col + GEMM.

use std::borrow::Cow;
use std::mem::MaybeUninit;
use std::sync::OnceLock;

use super::super::epilogue::Epilogue;
use super::super::flex;
use super::super::reuse::ScratchBuffer;
use super::super::{Isa, Sliding, isa};
use super::WeightPack;
use burn::backend::flex::FlexTensor;

/// Output channels per packed block: one AVX-512 vector of f32, two AVX2 ones.
pub const BLOCK: usize = 16;
/// Blocks per task and at most per AVX-512 tile (64 output channels).
const TILE_BLOCKS: usize = 4;
/// Accumulators per AVX-512 tile, of its 32 vector registers: blocks x positions, so a tile of
/// 4 blocks covers 6 positions and one of a single block (16 output channels: cnn3) 24, enough
/// independent sums to keep both FMA pipes busy.
const TILE_SUMS: usize = 24;
/// Positions per AVX2 tile (one block: 2 x 6 accumulators of its 16 registers).
const AVX2_POSITIONS: usize = 6;
/// Positions per chunk are a multiple of this (every tile's positions divide it).
const CHUNK_STEP: usize = TILE_SUMS;

/// Output positions (times samples) of a pass below which it runs here: the width below which
/// im2col + GEMM groups samples to keep its products wide (`MIN_GEMM_COLUMNS`); a pass that
/// stays narrower than that is where GEMM's lanes idle. Passes of up to 4096 positions (vgg-lite's
/// 48 x 48 and 24 x 24 layers at one face) measured no better here than with im2col + GEMM
/// (three rotated rounds, AMD EPYC Zen 4, session 41: docs/speed.md; in place again in session
/// 45, with the tiles' spills gone: not better beyond the machine's noise).
pub const MAX_POSITIONS: usize = 512;

/// A convolution's weights `[c_out, c_in, kh, kw]` packed as [`forward`] reads them:
/// `[ceil(c_out / 16)][c_in * kh * kw][16]` f32, zero past `c_out`.
#[derive(Debug)]
pub struct PackedWeights {
    values: Vec<f32>,
    /// Output channels (before the zero padding to whole blocks).
    pub(super) c_out: usize,
    /// Taps per output channel: `c_in * kh * kw`.
    pub(super) k: usize,
    /// The taps' offsets for the geometry of the first pass, with its `[c_in, kh, kw]` and
    /// `[plane, cols]`: a layer at inference sees the same geometry on every call.
    taps: OnceLock<(TapsKey, Taps)>,
}

type TapsKey = ([usize; 3], [usize; 2]);

impl PackedWeights {
    /// Packs `weights` (`[c_out, k]` row-major, `k = c_in * kh * kw`, f32).
    pub fn new(weights: &[f32], c_out: usize, k: usize) -> Self {
        assert_eq!(weights.len(), c_out * k, "weights of {c_out} x {k} values");
        let mut values = vec![0f32; c_out.div_ceil(BLOCK) * k * BLOCK];
        for (co, row) in weights.chunks_exact(k.max(1)).enumerate() {
            let block = &mut values[(co / BLOCK) * k * BLOCK..];
            for (kk, &w) in row.iter().enumerate() {
                block[kk * BLOCK + co % BLOCK] = w;
            }
        }
        PackedWeights { values, c_out, k, taps: OnceLock::new() }
    }

    /// Where each tap `kk = (channel, ky, kx)` of `[c_in, kh, kw]` reads in planes of `plane`
    /// values and rows of `cols`: `channel * plane + ky * cols + kx`; the first geometry's kept
    /// (another geometry's made for its call). Why: collected anew on every call, 2,304 taps took
    /// 6-9 µs of a 6 x 6 layer's 200-400 µs (a scratch loop, AMD EPYC Zen 4, session 44).
    fn taps(&self, [c_in, kh, kw]: [usize; 3], [plane, cols]: [usize; 2]) -> Cow<'_, Taps> {
        self.kept_taps(([c_in, kh, kw], [plane, cols]), || {
            let mut offsets = Vec::with_capacity(c_in * kh * kw);
            for c in 0..c_in {
                for ky in 0..kh {
                    offsets.extend((0..kw).map(|kx| c * plane + ky * cols + kx));
                }
            }
            Taps::new(offsets)
        })
    }

    /// Where each tap `kk = (ky, kx, channel)` of a channel-last window reads in padded maps of
    /// `cols` columns of `c_in` channels: `(ky * cols + kx) * c_in + channel` (the pack of
    /// [`forward_channels_last`] holds the weights in that order), kept as [`Self::taps`] keeps its.
    fn channels_last_taps(&self, [c_in, kh, kw]: [usize; 3], cols: usize) -> Cow<'_, Taps> {
        self.kept_taps(([c_in, kh, kw], [0, cols]), || {
            let mut offsets = Vec::with_capacity(c_in * kh * kw);
            for ky in 0..kh {
                for kx in 0..kw {
                    offsets.extend((0..c_in).map(|c| (ky * cols + kx) * c_in + c));
                }
            }
            Taps::new(offsets)
        })
    }

    fn kept_taps(&self, key: TapsKey, make: impl Fn() -> Taps) -> Cow<'_, Taps> {
        match self.taps.get_or_init(|| (key, make())) {
            (kept, taps) if *kept == key => Cow::Borrowed(taps),
            _ => Cow::Owned(make()),
        }
    }
}

/// Whether a pass of `batch` samples through geometry `g` runs here: fewer than
/// [`MAX_POSITIONS`] output positions in all, on a CPU with the instructions.
pub fn applies(g: &Sliding, batch: usize) -> bool {
    (1..MAX_POSITIONS).contains(&(batch * g.output[0] * g.output[1])) && isa().is_some()
}

/// Where each tap `kk` reads, as an offset from a position's window origin, and the largest
/// offset (which bounds every read: see [`sums`]).
#[derive(Debug, Clone)]
struct Taps {
    offsets: Vec<usize>,
    max: usize,
}

impl Taps {
    fn new(offsets: Vec<usize>) -> Self {
        let max = offsets.iter().copied().max().unwrap_or(0);
        Taps { offsets, max }
    }
}

/// The convolution of `x` (`[batch, c_in, h, w]` f32, `dims`) by the weights `weight`
/// (`[c_out, c_in, kh, kw]`, packed into `pack` on first use) plus `bias` (`[c_out]`), each
/// value through `epilogue`: `[batch, c_out, oh, ow]` f32 values. `None` when the CPU lacks the
/// instructions (see [`applies`]).
pub fn forward(
    x: &[f32],
    dims: [usize; 4],
    weight: &FlexTensor,
    bias: &[f32],
    pack: &WeightPack,
    g: &Sliding,
    epilogue: &Epilogue,
) -> Option<Vec<f32>> {
    #[cfg(test)]
    let isa = tests::FORCED_ISA.get().or_else(isa)?;
    #[cfg(not(test))]
    let isa = isa()?;
    let [batch, c_in, h, w] = dims;
    let c_out = flex::dims4(weight)[0];
    let ([kh, kw], [sy, sx], [oh, ow]) = (g.kernel, g.stride, g.output);
    let k = c_in * kh * kw;
    let p = oh * ow;
    // Empty passes are left to im2col + GEMM.
    if batch * c_out * k * p * h * w == 0 {
        return None;
    }
    let packed = pack.direct(|| flex::values(weight).into_owned(), c_out, k)?;

    let (rows, cols) = ((oh - 1) * sy + kh, (ow - 1) * sx + kw);
    let plane = rows * cols;
    let taps = &*packed.taps([c_in, kh, kw], [plane, cols]);
    let split = Split::new(batch, c_out, p);
    // Each sample's planes zero-padded one by one.
    let pad = |sample: usize, dst: &mut [f32]| {
        let planes = x[sample * c_in * h * w..(sample + 1) * c_in * h * w].chunks_exact(h * w);
        for (dst, src) in dst.chunks_exact_mut(plane).zip(planes) {
            pad_map(src, [h, w, 1], g.pad, [rows, cols], dst);
        }
    };
    let task = |buf: &mut Vec<f32>, (sample, blocks, positions): Task, xs: &[f32], parts: flex::UninitParts| {
        let channels = split.channels(&blocks);
        // This task's sums, [channel - channels.start][position - positions.start].
        let width = positions.len();
        buf.clear();
        buf.resize(blocks.len() * BLOCK * width, 0.0);
        let window_origin = |q: usize| (q / ow) * sy * cols + (q % ow) * sx;
        task_sums(isa, packed, blocks.clone(), xs, taps, positions.clone(), window_origin, |q, sums| {
            for (c, &v) in sums.iter().enumerate() {
                buf[c * width + q - positions.start] = v;
            }
        });
        for co in channels.clone() {
            let c = co - channels.start;
            // SAFETY: task (sample, blocks, positions) writes only its channels' values at
            // its positions; the tasks cover every (sample, channel, position) once.
            let dst: &mut [MaybeUninit<f32>] =
                unsafe { parts.part((sample * c_out + co) * p + positions.start, width) };
            epilogue.write(co, bias[co], &buf[c * width..(c + 1) * width], dst);
        }
    };
    // SAFETY: see `task`: the tasks write every value of the output exactly once.
    Some(unsafe { split.write_in_padded_runs(batch * c_out * p, c_in * plane, Vec::new, pad, task) })
}

/// The convolution of channel-last `x` (`[batch, h, w, c_in]` f32, `dims`) by `weight` (`[c_out,
/// c_in, kh, kw]`, packed tap-major into `pack` on first use, `[ceil(c_out / 16)][kh][kw][c_in][16]`)
/// plus `bias`, each value through `epilogue`: `[batch, oh, ow, c_out]` f32, channel-last too.
/// `None` when the CPU lacks AVX2 and FMA or `dims` is not `weight`'s. Any pass width: the
/// caller bounds it (`channels_last::MAX_CONV_POSITIONS`), not [`applies`].
///
/// The same tiles as [`forward`], over windows of a zero-padded channel-last copy of each sample
/// (each row's `w * c_in` values, or as many as the windows read, copied at once), each position's sums written as one row of the
/// output through [`Epilogue::write_row`]. Why: channel-first, every tile's sums are scattered
/// one value per channel into the output's planes, and the padding copies each plane row by row;
/// channel-last, a position's channels are one contiguous run in both. Each output is one
/// accumulator over `k = (ky, kx, channel)` in that order: the same values whatever the threads
/// or the batch, within rounding of [`forward`] (another order of the same terms).
pub fn forward_channels_last(
    x: &[f32],
    dims: [usize; 4],
    weight: &FlexTensor,
    bias: &[f32],
    pack: &WeightPack,
    g: &Sliding,
    epilogue: &Epilogue,
) -> Option<Vec<f32>> {
    let isa = isa()?;
    let [batch, h, w, c_in] = dims;
    let [c_out, weight_c_in, kh, kw] = flex::dims4(weight);
    let ([sy, sx], [oh, ow]) = (g.stride, g.output);
    let (k, p) = (c_in * kh * kw, oh * ow);
    if weight_c_in != c_in || [kh, kw] != g.kernel || x.len() != batch * h * w * c_in || batch * c_out * k * p == 0 {
        return None;
    }
    let packed = pack.direct_channels_last(|| tap_major(&flex::values(weight), [c_out, c_in, kh, kw]), c_out, k)?;
    let (rows, cols) = ((oh - 1) * sy + kh, (ow - 1) * sx + kw);
    let padded_len = rows * cols * c_in;
    let taps = &*packed.channels_last_taps([c_in, kh, kw], cols);
    let split = Split::new(batch, c_out, p);
    let pad = |sample: usize, dst: &mut [f32]| {
        let src = &x[sample * h * w * c_in..(sample + 1) * h * w * c_in];
        pad_map(src, [h, w, c_in], g.pad, [rows, cols], dst);
    };
    let task = |row: &mut Vec<f32>, (sample, blocks, positions): Task, xs: &[f32], parts: flex::UninitParts| {
        let channels = split.channels(&blocks);
        let window_origin = |q: usize| ((q / ow) * sy * cols + (q % ow) * sx) * c_in;
        task_sums(isa, packed, blocks.clone(), xs, taps, positions, window_origin, |q, sums| {
            row.clear();
            row.extend_from_slice(&sums[..channels.len()]);
            // SAFETY: these channels of (sample, q) belong to this task alone.
            let dst = unsafe { parts.part((sample * p + q) * c_out + channels.start, channels.len()) };
            epilogue.write_row(channels.start, &bias[channels.clone()], row, None, dst);
        });
    };
    // SAFETY: the tasks write every value of the output exactly once.
    Some(unsafe { split.write_in_padded_runs(batch * p * c_out, padded_len, Vec::new, pad, task) })
}

/// `weights` `[c_out, c_in, kh, kw]` (f32) as `[c_out, kh, kw, c_in]`: each output channel's taps
/// in the channel-last window's order.
fn tap_major(weights: &[f32], [c_out, c_in, kh, kw]: [usize; 4]) -> Vec<f32> {
    let mut out = Vec::with_capacity(weights.len());
    for co in 0..c_out {
        for ky in 0..kh {
            for kx in 0..kw {
                out.extend((0..c_in).map(|c| weights[((co * c_in + c) * kh + ky) * kw + kx]));
            }
        }
    }
    out
}

/// A map `src` (`[h, w, c]` f32, channel-last; `c = 1`: one channel-first plane) written into
/// `dst` (`[rows, cols, c]`) at row `pad[0]` and column `pad[1]`, every other value zero; rows
/// and columns past `dst`'s are left out (the windows never read them).
fn pad_map(src: &[f32], [h, w, c]: [usize; 3], pad: [usize; 2], [rows, cols]: [usize; 2], dst: &mut [f32]) {
    let first_col = pad[1].min(cols);
    let n = w.min(cols - first_col);
    for (py, row) in dst.chunks_exact_mut(cols * c).enumerate() {
        match py.checked_sub(pad[0]).filter(|&iy| iy < h) {
            Some(iy) => {
                row[..first_col * c].fill(0.0);
                row[first_col * c..(first_col + n) * c].copy_from_slice(&src[iy * w * c..(iy * w + n) * c]);
                row[(first_col + n) * c..].fill(0.0);
            }
            None => row.fill(0.0),
        }
    }
    debug_assert_eq!(dst.len(), rows * cols * c);
}

/// A 1 x 1, stride-1, unpadded convolution channel-last (`kernels::channels_last`): `x` `[rows,
/// k]` f32 (`rows` positions of `k` channels), the weights `[c_out, k, 1, 1]` packed into `pack`
/// on first use; `[rows, c_out]` f32, each row `bias` plus the sums through `epilogue`
/// ([`Epilogue::apply_rows`]) and then plus `residual`'s row (`[rows, c_out]`) when given. `None`
/// when the CPU lacks the instructions or `x` is not `rows` rows of `k`.
pub fn pointwise_rows(
    x: &[f32],
    rows: usize,
    weight: &FlexTensor,
    bias: &[f32],
    pack: &WeightPack,
    epilogue: &Epilogue,
    residual: Option<&[f32]>,
) -> Option<Vec<f32>> {
    let isa = isa()?;
    let [c_out, k, ..] = flex::dims4(weight);
    if x.len() != rows * k || rows * k * c_out == 0 {
        return None;
    }
    let packed = pack.direct(|| flex::values(weight).into_owned(), c_out, k)?;
    // Position q's channel kk is at q * k + kk: the window origin is q * k, the taps 0..k.
    let taps = &*packed.taps([k, 1, 1], [1, 1]);
    let split = Split::new(1, c_out, rows);
    let write = |row: &mut Vec<f32>, task: usize, parts: flex::UninitParts| {
        let (_, blocks, positions) = split.task(task);
        let channels = split.channels(&blocks);
        task_sums(
            isa,
            packed,
            blocks.clone(),
            x,
            taps,
            positions,
            |q| q * k,
            |q, sums| {
                row.clear();
                row.extend_from_slice(&sums[..channels.len()]);
                let skip = residual.map(|r| &r[q * c_out + channels.start..][..channels.len()]);
                // SAFETY: these channels of position q belong to this task alone.
                let dst = unsafe { parts.part(q * c_out + channels.start, channels.len()) };
                epilogue.write_row(channels.start, &bias[channels.clone()], row, skip, dst);
            },
        );
    };
    // SAFETY: the tasks' (blocks, positions) tile the output, and each writes all of its values.
    Some(unsafe { flex::write_parts_in_parallel(rows * c_out, split.tasks(), Vec::new, write) })
}

/// A task's sample, blocks of output channels and output positions ([`Split::task`]).
type Task = (usize, std::ops::Range<usize>, std::ops::Range<usize>);

/// How a pass is split into tasks: (sample, group of up to [`TILE_BLOCKS`] blocks of output
/// channels, chunk of positions), about 8 per thread, which [`forward`] hands to the threads in
/// contiguous runs of equal counts. The split changes no value: each output's sum is the same
/// wherever it is computed.
#[derive(Debug, Clone, Copy)]
struct Split {
    c_out: usize,
    blocks: usize,
    groups: usize,
    /// Positions per sample, and per chunk (a multiple of [`CHUNK_STEP`]).
    positions: usize,
    chunk: usize,
    chunks: usize,
    batch: usize,
}

impl Split {
    fn new(batch: usize, c_out: usize, positions: usize) -> Self {
        let blocks = c_out.div_ceil(BLOCK);
        let groups = blocks.div_ceil(TILE_BLOCKS);
        let threads = rayon::current_num_threads();
        let chunks = (8 * threads).div_ceil(batch * groups).clamp(1, positions.div_ceil(CHUNK_STEP));
        let chunk = positions.div_ceil(chunks).next_multiple_of(CHUNK_STEP);
        let chunks = positions.div_ceil(chunk);
        Split { c_out, blocks, groups, positions, chunk, chunks, batch }
    }

    fn tasks(&self) -> usize {
        self.batch * self.groups * self.chunks
    }

    /// A pass's output of `len` values, written one contiguous run of tasks per thread: each
    /// thread first zero-pads the samples its run reads into a buffer it keeps (`pad(sample,
    /// dst)` writes one sample's `padded_len` values), then calls `task(scratch, task, padded,
    /// parts)` for each task of its run with that sample's padded values, `scratch` made once per
    /// rayon job. Why: padded once on the calling thread and read by both, the buffer's lines
    /// were in the other core's cache when the next call wrote them again, and the copy of
    /// vgg-lite's 128 x 12 x 12 input took 50 µs on 2 threads against 13 on 1 (a scratch loop,
    /// AMD EPYC Zen 4, session 44); a thread's own buffer stays in its own cache. The runs are
    /// the same on every call, so a core that takes the same run again finds its part of the
    /// packed weights in its own cache.
    ///
    /// # Safety
    /// Together the tasks must write every value of the output through `parts`, and no two
    /// tasks the same value ([`flex::write_parts_in_parallel`]).
    unsafe fn write_in_padded_runs<S>(
        &self,
        len: usize,
        padded_len: usize,
        scratch: impl Fn() -> S + Sync + Send,
        pad: impl Fn(usize, &mut [f32]) + Sync,
        task: impl Fn(&mut S, Task, &[f32], flex::UninitParts) + Sync,
    ) -> Vec<f32> {
        let tasks = self.tasks();
        let runs = rayon::current_num_threads().clamp(1, tasks);
        let write = |scratch: &mut S, run: usize, parts: flex::UninitParts| {
            let run = run * tasks / runs..(run + 1) * tasks / runs;
            let samples = self.task(run.start).0..self.task(run.end - 1).0 + 1;
            let mut padded = ScratchBuffer::at_least(samples.len() * padded_len);
            for (i, sample) in samples.clone().enumerate() {
                pad(sample, &mut padded[i * padded_len..(i + 1) * padded_len]);
            }
            for t in run {
                let task_at = self.task(t);
                let xs = &padded[(task_at.0 - samples.start) * padded_len..][..padded_len];
                task(scratch, task_at, xs, parts);
            }
        };
        // SAFETY: passed on from the caller.
        unsafe { flex::write_parts_in_parallel(len, runs, scratch, write) }
    }

    /// Task `task`'s sample, blocks and positions.
    fn task(&self, task: usize) -> Task {
        let (sample, rest) = (task / (self.groups * self.chunks), task % (self.groups * self.chunks));
        let (group, piece) = (rest / self.chunks, rest % self.chunks);
        let first = group * TILE_BLOCKS;
        let blocks = first..(first + TILE_BLOCKS).min(self.blocks);
        (sample, blocks, piece * self.chunk..((piece + 1) * self.chunk).min(self.positions))
    }

    /// The output channels of `blocks` (the last block may hold fewer than [`BLOCK`]).
    fn channels(&self, blocks: &std::ops::Range<usize>) -> std::ops::Range<usize> {
        blocks.start * BLOCK..self.c_out.min(blocks.end * BLOCK)
    }
}

/// The sums of `blocks` of `packed` at each of `positions`, tile by tile: `each(q, sums)` gets
/// position `q`'s `blocks.len() * 16` sums (channel `blocks.start * 16 + i` at `i`), where
/// position `q` reads `xs[window_origin(q) + taps[kk]]` for tap `kk`.
#[allow(clippy::too_many_arguments)]
fn task_sums(
    isa: Isa,
    packed: &PackedWeights,
    blocks: std::ops::Range<usize>,
    xs: &[f32],
    taps: &Taps,
    positions: std::ops::Range<usize>,
    window_origin: impl Fn(usize) -> usize,
    mut each: impl FnMut(usize, &[f32]),
) {
    let (k, n_blocks) = (packed.k, blocks.len());
    let weights = &packed.values[blocks.start * k * BLOCK..blocks.end * k * BLOCK];
    let tile_positions = match isa {
        Isa::Avx512 => TILE_SUMS / n_blocks,
        Isa::Avx2 => AVX2_POSITIONS,
    };
    let mut tile = [0f32; BLOCK * TILE_SUMS];
    for start in positions.clone().step_by(tile_positions) {
        let n = (positions.end - start).min(tile_positions);
        // The positions past the last repeat it (their sums are computed and dropped), so every
        // read stays inside the input.
        let base: [usize; TILE_SUMS] = std::array::from_fn(|j| window_origin(start + j.min(n - 1)));
        sums(isa, weights, k, n_blocks, n, xs, taps, &base, &mut tile);
        for (j, sums) in tile.chunks_exact(n_blocks * BLOCK).take(n).enumerate() {
            each(start + j, sums);
        }
    }
}

/// The sums of one tile: for each of `n_blocks` blocks of `weights` (packed, `k` taps each) and
/// each of the tile's window origins `base` (`TILE_SUMS / n_blocks` of them on AVX-512,
/// [`AVX2_POSITIONS`] on AVX2), `sum over kk of weight[kk] * xs[base + taps[kk]]`, in the order
/// of `kk`; into `tile` as `[position][block * 16 + lane]`. The first `used` positions are the
/// ones wanted: with 4 blocks on AVX-512, a tile of fewer than 6 computes only those. Why: at one
/// face EfficientNet-Lite0's deepest maps have 4 positions (2 x 2) and 9 (3 x 3), so the 4 x 6
/// tile computed 6 and 12 of which 2 and 3 were dropped. Each position's sum is the same
/// whatever the tile's width.
#[allow(clippy::too_many_arguments)]
fn sums(
    isa: Isa,
    weights: &[f32],
    k: usize,
    n_blocks: usize,
    used: usize,
    xs: &[f32],
    taps: &Taps,
    base: &[usize; TILE_SUMS],
    tile: &mut [f32; BLOCK * TILE_SUMS],
) {
    let ok_shapes = k > 0 && weights.len() == n_blocks * k * BLOCK && taps.offsets.len() == k;
    assert!(ok_shapes && (1..=TILE_BLOCKS).contains(&n_blocks));
    // Every read below is at base[j] + taps[kk], at most base[j] + taps.max.
    assert!(base.iter().all(|&b| b + taps.max < xs.len()), "a tap past the padded input");
    let taps = &taps.offsets[..];
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `isa` came from `isa()`, so the CPU has the instructions; the reads are in bounds
    // (asserted above) and the writes are within `tile`.
    unsafe {
        match (isa, n_blocks) {
            (Isa::Avx512, 4) => match used {
                1 => x86::tile_avx512::<4, 1>(weights, k, xs.as_ptr(), taps, base, tile),
                2 => x86::tile_avx512::<4, 2>(weights, k, xs.as_ptr(), taps, base, tile),
                3 => x86::tile_avx512::<4, 3>(weights, k, xs.as_ptr(), taps, base, tile),
                4 => x86::tile_avx512::<4, 4>(weights, k, xs.as_ptr(), taps, base, tile),
                5 => x86::tile_avx512::<4, 5>(weights, k, xs.as_ptr(), taps, base, tile),
                _ => x86::tile_avx512::<4, 6>(weights, k, xs.as_ptr(), taps, base, tile),
            },
            (Isa::Avx512, 3) => x86::tile_avx512::<3, 8>(weights, k, xs.as_ptr(), taps, base, tile),
            (Isa::Avx512, 2) => x86::tile_avx512::<2, 12>(weights, k, xs.as_ptr(), taps, base, tile),
            (Isa::Avx512, _) => x86::tile_avx512::<1, 24>(weights, k, xs.as_ptr(), taps, base, tile),
            (Isa::Avx2, _) => {
                for b in 0..n_blocks {
                    x86::block_avx2(&weights[b * k * BLOCK..(b + 1) * k * BLOCK], xs, taps, base, b, n_blocks, tile);
                }
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("no instruction set without x86-64: isa() is None there ({isa:?})");
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{AVX2_POSITIONS, BLOCK, TILE_SUMS};
    use std::arch::x86_64::*;

    /// [`super::sums`] for `MB` blocks and `NR` positions on AVX-512: `MB` x `NR` accumulators
    /// of 16 lanes.
    ///
    /// # Safety
    /// The CPU has AVX-512F; `weights` holds `MB * k * 16` values; every `x + base[j] + taps[kk]`
    /// is inside the padded input.
    #[cfg_attr(not(feature = "avx512"), allow(dead_code))]
    #[target_feature(enable = "avx512f")]
    pub unsafe fn tile_avx512<const MB: usize, const NR: usize>(
        weights: &[f32],
        k: usize,
        x: *const f32,
        taps: &[usize],
        base: &[usize; TILE_SUMS],
        tile: &mut [f32; BLOCK * TILE_SUMS],
    ) {
        let mut acc = [[_mm512_setzero_ps(); NR]; MB];
        let w = weights.as_ptr();
        let rows: [*const f32; NR] = std::array::from_fn(|j| unsafe { x.add(base[j]) });
        for (kk, &tap) in taps.iter().enumerate() {
            // SAFETY: in bounds by the caller's contract.
            unsafe {
                let wv: [__m512; MB] = std::array::from_fn(|b| _mm512_loadu_ps(w.add((b * k + kk) * BLOCK)));
                for j in 0..NR {
                    let xv = _mm512_set1_ps(*rows[j].add(tap));
                    for b in 0..MB {
                        acc[b][j] = _mm512_fmadd_ps(wv[b], xv, acc[b][j]);
                    }
                    // An empty statement that takes this position's sums and may touch memory:
                    // the compiler has to finish position j's multiply-adds before it and load
                    // position j + 1's input after it (`x` is a raw pointer, so the loads cannot
                    // be moved across). Why: without it, the 2 x 12 tile's 12 broadcasts were
                    // all hoisted ahead of its multiply-adds, live beside 24 sums and 2 weights
                    // in 32 registers, and sums spilled to the stack on every tap: the tile alone
                    // ran at 64-66 GFLOP/s on 1 thread, 114-115 with this (the 3 x 8 and 4 x 6
                    // tiles at 114-115 either way; five alternated rounds in one process, 288
                    // taps, AMD EPYC Zen 4, session 45). No instruction comes of it.
                    for sums in acc.iter_mut() {
                        std::arch::asm!("/* {0} */", inout(zmm_reg) sums[j], options(nostack, preserves_flags));
                    }
                }
            }
        }
        for (j, sums) in tile.chunks_exact_mut(MB * BLOCK).take(NR).enumerate() {
            for b in 0..MB {
                // SAFETY: `sums` holds MB * 16 values.
                unsafe { _mm512_storeu_ps(sums.as_mut_ptr().add(b * BLOCK), acc[b][j]) };
            }
        }
    }

    /// [`super::sums`] for block `b` of `n_blocks` on AVX2: 2 x 6 accumulators of 8 lanes.
    ///
    /// # Safety
    /// The CPU has AVX2 and FMA; `weights` holds this block's `k * 16` values; every `base[j] +
    /// taps[kk]` is inside `xs`.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn block_avx2(
        weights: &[f32],
        xs: &[f32],
        taps: &[usize],
        base: &[usize; TILE_SUMS],
        b: usize,
        n_blocks: usize,
        tile: &mut [f32; BLOCK * TILE_SUMS],
    ) {
        let mut acc = [[_mm256_setzero_ps(); AVX2_POSITIONS]; 2];
        let (w, x) = (weights.as_ptr(), xs.as_ptr());
        let rows: [*const f32; AVX2_POSITIONS] = std::array::from_fn(|j| unsafe { x.add(base[j]) });
        for (kk, &tap) in taps.iter().enumerate() {
            // SAFETY: in bounds by the caller's contract.
            unsafe {
                let wv = [_mm256_loadu_ps(w.add(kk * BLOCK)), _mm256_loadu_ps(w.add(kk * BLOCK + 8))];
                for j in 0..AVX2_POSITIONS {
                    let xv = _mm256_set1_ps(*rows[j].add(tap));
                    acc[0][j] = _mm256_fmadd_ps(wv[0], xv, acc[0][j]);
                    acc[1][j] = _mm256_fmadd_ps(wv[1], xv, acc[1][j]);
                }
            }
        }
        for (j, sums) in tile.chunks_exact_mut(n_blocks * BLOCK).take(AVX2_POSITIONS).enumerate() {
            for (h, acc) in acc.iter().enumerate() {
                // SAFETY: `sums` holds n_blocks * 16 values and b < n_blocks.
                unsafe { _mm256_storeu_ps(sums.as_mut_ptr().add(b * BLOCK + h * 8), acc[j]) };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::inference;
    use super::*;
    use crate::kernels::epilogue::Activation;
    use crate::kernels::tests::{assert_close, conv2d, random_input};
    use burn::backend::flex::Flex;
    use burn::nn::PaddingConfig2d;
    use burn::nn::conv::{Conv2d, Conv2dConfig};
    use burn::prelude::*;
    use std::cell::Cell;

    thread_local! {
        /// The instruction set [`forward`] uses on this thread instead of the CPU's best, for the
        /// test that compares them.
        pub(super) static FORCED_ISA: Cell<Option<Isa>> = const { Cell::new(None) };
    }

    fn bits(t: &Tensor<4>) -> Vec<u32> {
        t.clone().into_data().try_to_vec::<f32>().unwrap().iter().map(|v| v.to_bits()).collect()
    }

    /// This kernel's convolution of `x` (called directly: in tests Winograd takes passes of 64
    /// tiles, which `inference` would give it), or `None` where it does not run.
    fn direct(conv: &Conv2d, x: &Tensor<4>, epilogue: &Epilogue, pack: &WeightPack) -> Option<Tensor<4>> {
        let dims = x.dims();
        let g = Sliding::new(&conv.padding, [dims[2], dims[3]], conv.kernel_size, conv.stride).unwrap();
        if !applies(&g, dims[0]) {
            return None;
        }
        let (xt, wt) = (flex::plain(x).unwrap(), flex::plain(&conv.weight.val()).unwrap());
        let bias = flex::plain(&conv.bias.as_ref().unwrap().val()).unwrap();
        let out = forward(&flex::values(&xt), dims, &wt, &flex::values(&bias), pack, &g, epilogue)?;
        let c_out = flex::dims4(&wt)[0];
        Some(Tensor::from_primitive::<Flex>(flex::tensor(out, &[dims[0], c_out, g.output[0], g.output[1]])))
    }

    /// The shapes of the nets' small-map layers (vgg-lite's 6 x 6 and 12 x 12, cnn1's 11 x 11
    /// stride 4 and 5 x 5 and 3 x 3 on 3 x 3 maps, a valid stride-2 window), with output
    /// channels that fill 1 to 4 blocks and part of one, at one face and a few: Burn's
    /// convolution within 1e-5, the same bits on 1, 2 and 3 threads and at batch 1 as in a batch,
    /// and the same packed weights reused across calls.
    #[test]
    fn matches_burns_convolution_and_does_not_depend_on_the_threads_or_the_batch() {
        if isa().is_none() {
            eprintln!("skipped: the direct convolution needs AVX2 and FMA, which this CPU lacks");
            return;
        }
        let device = Device::flex();
        let cases: [(usize, usize, usize, usize, PaddingConfig2d, usize); 7] = [
            (8, 40, 3, 1, PaddingConfig2d::Same, 6),
            (16, 64, 3, 1, PaddingConfig2d::Same, 12),
            (5, 17, 5, 1, PaddingConfig2d::Same, 6),
            (12, 80, 3, 1, PaddingConfig2d::Same, 3),
            (1, 96, 11, 4, PaddingConfig2d::Same, 48),
            (3, 33, 3, 2, PaddingConfig2d::Valid, 13),
            (7, 16, 1, 1, PaddingConfig2d::Valid, 5),
        ];
        for (seed, (c_in, c_out, kernel, stride, padding, size)) in cases.into_iter().enumerate() {
            let conv = conv2d([c_in, c_out], kernel, stride, padding, &device);
            let x = random_input([3, c_in, size, size], &device, seed as u64);
            let (scale, shift): (Vec<f32>, Vec<f32>) = (0..c_out).map(|c| (0.5 + c as f32 * 0.01, 0.1)).unzip();
            let with_affine = Epilogue { affine: Some((&scale, &shift)), act: Some(Activation::Relu) };
            let pack = WeightPack::default();
            for epilogue in [Epilogue::NONE, with_affine] {
                let Some(ours) = direct(&conv, &x, &epilogue, &pack) else {
                    panic!("case {seed}: a pass of {} positions should run here", 3 * size * size);
                };
                let mut burns = conv.forward(x.clone());
                if let Some((s, t)) = epilogue.affine {
                    let s = Tensor::<1>::from_floats(s, &device).reshape([1, c_out, 1, 1]);
                    let t = Tensor::<1>::from_floats(t, &device).reshape([1, c_out, 1, 1]);
                    burns = burn::tensor::activation::relu(burns * s + t);
                }
                assert_close(&ours, &burns, 1e-5, &format!("case {seed}"));
                for threads in [1, 2, 3] {
                    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                    let again = pool.install(|| direct(&conv, &x, &epilogue, &pack).unwrap());
                    assert_eq!(bits(&again), bits(&ours), "case {seed} on {threads} threads");
                }
                let one = direct(&conv, &x.clone().slice([1..2]), &epilogue, &pack).unwrap();
                assert_eq!(bits(&one), bits(&ours.clone().slice([1..2])), "case {seed}: one face alone");
            }
        }
    }

    /// A pack that kept the taps of one input size gives another size Burn's values too (its
    /// taps are made for that call).
    #[test]
    fn a_pack_serves_an_input_of_another_size() {
        if isa().is_none() {
            eprintln!("skipped: the direct convolution needs AVX2 and FMA, which this CPU lacks");
            return;
        }
        let device = Device::flex();
        let conv = Conv2dConfig::new([8, 32], [3, 3]).with_padding(PaddingConfig2d::Same).init(&device);
        let pack = WeightPack::default();
        for size in [6, 9, 6] {
            let x = random_input([1, 8, size, size], &device, size as u64);
            let ours = direct(&conv, &x, &Epilogue::NONE, &pack).expect("a small pass runs here");
            assert_close(&ours, &conv.forward(x), 1e-5, &format!("{size} x {size}"));
        }
    }

    /// An empty pass is left to im2col + GEMM (no division by an empty batch).
    #[test]
    fn an_empty_pass_is_not_taken() {
        let g = Sliding::new(&PaddingConfig2d::Same, [6, 6], [3, 3], [1, 1]).unwrap();
        assert!(!applies(&g, 0));
        let device = Device::flex();
        let conv = Conv2dConfig::new([4, 16], [3, 3]).with_padding(PaddingConfig2d::Same).init(&device);
        let wt = flex::plain(&conv.weight.val()).unwrap();
        let out = forward(&[], [0, 4, 6, 6], &wt, &[0.0; 16], &WeightPack::default(), &g, &Epilogue::NONE);
        assert!(out.is_none());
        let rows = pointwise_rows(&[], 0, &wt, &[0.0; 16], &WeightPack::default(), &Epilogue::NONE, None);
        assert!(rows.is_none());
    }

    /// A pack made for another shape is never used: the pass goes to im2col + GEMM instead.
    #[test]
    fn a_pack_of_another_shape_is_not_used() {
        let device = Device::flex();
        let conv = Conv2dConfig::new([4, 16], [3, 3]).with_padding(PaddingConfig2d::Same).init(&device);
        let other = Conv2dConfig::new([4, 32], [3, 3]).with_padding(PaddingConfig2d::Same).init(&device);
        let x = random_input([1, 4, 6, 6], &device, 9);
        let pack = WeightPack::default();
        let _ = inference(&other, &x, &Epilogue::NONE, Some(&pack));
        let ours = Tensor::from_primitive::<Flex>(inference(&conv, &x, &Epilogue::NONE, Some(&pack)).unwrap());
        assert_close(&ours, &conv.forward(x), 1e-5, "with another layer's pack");
    }

    /// AVX2's tiles (one block of two 8-lane halves at a time) give the same bits as
    /// AVX-512's (four blocks at a time): both add one fused multiply-add per tap, in the same
    /// order. Runs where the CPU has both.
    #[test]
    fn avx2_and_avx512_give_the_same_bits() {
        if isa() != Some(Isa::Avx512) {
            eprintln!("skipped: needs a CPU with AVX-512 (and a build with the avx512 feature) to compare");
            return;
        }
        let device = Device::flex();
        let conv = Conv2dConfig::new([9, 72], [3, 3]).with_padding(PaddingConfig2d::Same).init(&device);
        let x = random_input([2, 9, 7, 7], &device, 11);
        let dims = x.dims();
        let g = Sliding::new(&conv.padding, [7, 7], [3, 3], [1, 1]).unwrap();
        let (xt, wt) = (flex::plain(&x).unwrap(), flex::plain(&conv.weight.val()).unwrap());
        let bias = flex::plain(&conv.bias.as_ref().unwrap().val()).unwrap();
        let pack = WeightPack::default();
        let run = |isa| {
            FORCED_ISA.set(Some(isa));
            let out = forward(&flex::values(&xt), dims, &wt, &flex::values(&bias), &pack, &g, &Epilogue::NONE);
            FORCED_ISA.set(None);
            out.unwrap()
        };
        let (wide, narrow) = (run(Isa::Avx512), run(Isa::Avx2));
        assert!(wide.iter().zip(&narrow).all(|(a, b)| a.to_bits() == b.to_bits()), "AVX2 and AVX-512 differ");
    }
}
