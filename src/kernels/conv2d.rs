//! 2-D convolution (groups 1, no dilation) as im2col + GEMM per sample, forward and backward,
//! on Flex tensors `[batch, channels, height, width]`; 3 x 3 and 5 x 5 stride-1 ones hand their
//! output and their input and weight gradients to [`winograd`], depthwise ones go to
//! [`depthwise_conv2d`], and those on small maps whose padding holds many of their taps leave out
//! the kernel rows in it ([`kernel_rows`]). At inference, passes with few output positions (one
//! face's deep layers) run as a direct convolution over weights packed once ([`direct`]).

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::{Flex, FlexTensor};
use burn::module::ParamId;
use burn::nn::conv::Conv2d;
use burn::tensor::Tensor;
use std::borrow::Cow;
use std::sync::{Arc, Mutex, OnceLock};

use gemm::Parallelism;

use super::depthwise_conv2d;
use super::flex::{self, TrackedTensor, TrainFlex};
use super::epilogue::Epilogue;
use super::matmul::{matmul, same_sums_at_any_width};
use super::reuse::ScratchBuffer;
use super::winograd;
use super::{SHORT_ROW, Sliding};

pub(super) mod direct;
mod kernel_rows;
pub(super) mod small_maps;

/// One convolution's parameters as the inference kernels read them, each form made on first use
/// and then kept; clones share them: the weight and bias as plain Flex tensors
/// ([`PlainParameters`]), packed for the direct convolution ([`direct::PackedWeights`], one
/// pack for channel-first maps and one for channel-last, whose taps run in another order),
/// tap-major for the channel-last depthwise kernel (`channels_last::depthwise`), and transformed
/// by each Winograd algorithm that has run the layer (`winograd`'s `U = G g Gᵀ`, which otherwise
/// every pass would compute again: 5.8% of the notebook's search stand-in's inference samples at
/// one face, and most of `memset`'s 6% the zeroing of its buffer, `perf`, AMD EPYC Zen 4,
/// session 43).
///
/// The inference net holds one per convolution (`models::fold`): it must not outlive a change
/// of that layer's weights, which is why only nets folded for inference carry one (a pack is a
/// `#[module(skip)]` field: `Module::map` or `load_record` on a folded net would keep it, so
/// fold the net as loaded again instead). A pack given another layer is not used: callers take
/// it through [`PlainParameters::of_layer`], which recognises the layer by its parameters'
/// `ParamId`s; each form also checks its shape.
#[derive(Debug, Clone, Default)]
pub struct WeightPack(Arc<Packs>);

#[derive(Debug, Default)]
struct Packs {
    /// With the weight's and the bias's `ParamId`s (no bias: `None`).
    parameters: OnceLock<Option<(PlainParameters, ParamId, Option<ParamId>)>>,
    direct: OnceLock<direct::PackedWeights>,
    /// The same, taps in the channel-last window's order (`direct::forward_channels_last`).
    direct_channels_last: OnceLock<direct::PackedWeights>,
    /// `[taps, c]` f32, with `taps` and `c`.
    tap_major: OnceLock<(Vec<f32>, usize, usize)>,
    /// Each Winograd algorithm's transform of the filters.
    winograd: winograd::KeptFilters,
}

impl WeightPack {
    /// `conv`'s parameters as plain tensors, taken on the first call; `None` when they are not
    /// plain Flex f32 tensors, or the pack holds another layer's.
    ///
    /// Why: taking them from the module (`Param::val`, then out of Burn's dispatch tensor), and
    /// copying the bias, cost 0.7-1 µs per layer and call; a batch-norm-folded EfficientNet-Lite0
    /// at one face makes about 50 such calls (`ferkit bench`, timed in place, AMD EPYC Zen 4,
    /// session 43).
    pub(crate) fn parameters(&self, conv: &Conv2d) -> Option<&PlainParameters> {
        let bias_id = conv.bias.as_ref().map(|b| b.id);
        let (parameters, weight_id, kept_bias_id) = self
            .0
            .parameters
            .get_or_init(|| Some((PlainParameters::of(conv)?, conv.weight.id, bias_id)))
            .as_ref()?;
        (*weight_id == conv.weight.id && *kept_bias_id == bias_id).then_some(parameters)
    }

    /// The packed weights, packing `weights` (`[c_out, k]`) on the first call.
    fn direct(&self, weights: impl FnOnce() -> Vec<f32>, c_out: usize, k: usize) -> Option<&direct::PackedWeights> {
        kept_pack(&self.0.direct, weights, c_out, k)
    }

    /// The packed weights of the channel-last direct convolution, packing `weights` (`[c_out,
    /// k]`, each row's taps in `(ky, kx, channel)` order) on the first call.
    fn direct_channels_last(
        &self,
        weights: impl FnOnce() -> Vec<f32>,
        c_out: usize,
        k: usize,
    ) -> Option<&direct::PackedWeights> {
        kept_pack(&self.0.direct_channels_last, weights, c_out, k)
    }

    /// A depthwise layer's filters tap-major (`[taps, c]`, `channels_last::depthwise`), made by
    /// `make` on the first call; `None` when the pack holds another shape. Why: made per call,
    /// the strided transposition ran on the calling thread alone before every depthwise layer,
    /// 3.8% of EfficientNet-Lite0's samples at one face (`perf`, AMD EPYC Zen 4, session 42).
    pub(crate) fn tap_major(&self, make: impl FnOnce() -> Vec<f32>, taps: usize, c: usize) -> Option<&[f32]> {
        let (values, t, ch) = self.0.tap_major.get_or_init(|| (make(), taps, c));
        (*t == taps && *ch == c).then_some(values.as_slice())
    }
}

/// The weights packed in `kept`, packing `weights` (`[c_out, k]`) there on the first call; `None`
/// for a pack of another shape, which is never used (the layer itself is checked by
/// `PlainParameters::of_layer`).
fn kept_pack(
    kept: &OnceLock<direct::PackedWeights>,
    weights: impl FnOnce() -> Vec<f32>,
    c_out: usize,
    k: usize,
) -> Option<&direct::PackedWeights> {
    let packed = kept.get_or_init(|| direct::PackedWeights::new(&weights(), c_out, k));
    (packed.c_out == c_out && packed.k == k).then_some(packed)
}

/// A convolution's weight `[c_out, c_in / groups, kh, kw]` and bias `[c_out]` as plain
/// (untracked) Flex f32 tensors; a zero bias for a layer without one (EfficientNet's).
#[derive(Debug, Clone)]
pub(crate) struct PlainParameters {
    /// `[c_out, c_in / groups, kh, kw]` f32.
    pub weight: FlexTensor,
    /// `[c_out]` f32.
    pub bias: FlexTensor,
}

impl PlainParameters {
    /// `None` when a parameter is not a plain Flex f32 tensor (tracked for training, another
    /// backend or type).
    pub(crate) fn of(conv: &Conv2d) -> Option<Self> {
        let (weight, bias) = weight_and_bias(conv);
        Some(PlainParameters { weight: flex::plain(&weight)?, bias: flex::plain(&bias)? })
    }

    /// `pack`'s (kept there) with the pack, or, without a pack or with another layer's, `conv`'s
    /// taken now and no pack (none of another layer's forms is used).
    pub(crate) fn of_layer<'p>(
        conv: &Conv2d,
        pack: Option<&'p WeightPack>,
    ) -> Option<(Cow<'p, Self>, Option<&'p WeightPack>)> {
        if let Some(pack) = pack
            && let Some(kept) = pack.parameters(conv)
        {
            return Some((Cow::Borrowed(kept), Some(pack)));
        }
        Some((Cow::Owned(Self::of(conv)?), None))
    }
}

/// Output positions one GEMM should cover at least: samples with fewer (deep layers, e.g.
/// 3 x 3 in cnn1) are grouped so the matrix products stay wide enough to run at full speed.
const MIN_GEMM_COLUMNS: usize = 512;
/// At most this many samples per group (bounds the im2col buffer).
const MAX_GROUP: usize = 64;

/// `conv.forward(x)`, computed here when `x` and the weights are Flex f32 tensors: as im2col +
/// GEMM for ordinary convolutions, by [`depthwise_conv2d`] for depthwise ones.
pub fn conv2d(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let Some((g, depthwise)) = geometry(conv, &x) else { return conv.forward(x) };
    let (weight, bias) = weight_and_bias(conv);
    if let (Some(x), Some(wt), Some(b)) = (flex::tracked(&x), flex::tracked(&weight), flex::tracked(&bias)) {
        let out = if depthwise { depthwise_conv2d::tracked(x, wt, b, g) } else { tracked_conv(x, wt, b, g) };
        return Tensor::from_primitive::<TrainFlex>(out);
    }
    let plain = (flex::plain(&weight), flex::plain(&bias), flex::plain(&x));
    match plain {
        (Some(weight), Some(bias), Some(xp)) => {
            let parameters = PlainParameters { weight, bias };
            Tensor::from_primitive::<Flex>(plain_forward((g, depthwise), &parameters, &xp, &Epilogue::NONE, None))
        }
        _ => conv.forward(x),
    }
}

/// The window geometry of `conv` on `x`, and whether it is depthwise; `None` for the
/// convolutions computed by Burn (grouped but not depthwise, dilated).
fn geometry(conv: &Conv2d, x: &Tensor<4>) -> Option<(Sliding, bool)> {
    let [_, channels, h, w] = x.dims();
    let depthwise = depthwise_conv2d::is_depthwise(conv, channels);
    if !(conv.groups == 1 || depthwise) || conv.dilation != [1, 1] {
        return None;
    }
    Some((Sliding::new(&conv.padding, [h, w], conv.kernel_size, conv.stride)?, depthwise))
}

/// The weight and the bias; without a bias, a zero one that no gradient reaches (EfficientNet's
/// convolutions).
fn weight_and_bias(conv: &Conv2d) -> (Tensor<4>, Tensor<1>) {
    let weight = conv.weight.val();
    let bias = conv.bias.as_ref().map_or_else(|| Tensor::zeros([weight.dims()[0]], &weight.device()), |b| b.val());
    (weight, bias)
}

/// The inference output of `conv` on `x` with `epilogue` applied as it is written, when `x` and
/// the parameters are plain (untracked) Flex f32 tensors and the kernels cover the convolution;
/// `None` otherwise. With `pack` (the layer's [`WeightPack`], kept by an inference net), the
/// parameters and the Winograd filters are taken from it, and passes with few output positions
/// run as a direct convolution ([`direct`]) over its packed weights.
pub(super) fn inference(
    conv: &Conv2d,
    x: &Tensor<4>,
    epilogue: &Epilogue,
    pack: Option<&WeightPack>,
) -> Option<FlexTensor> {
    let plan = geometry(conv, x)?;
    let (parameters, pack) = PlainParameters::of_layer(conv, pack)?;
    Some(plain_forward(plan, &parameters, &flex::plain(x)?, epilogue, pack))
}

/// [`forward`] or the depthwise one, on plain Flex f32 tensors.
fn plain_forward(
    (g, depthwise): (Sliding, bool),
    parameters: &PlainParameters,
    x: &FlexTensor,
    epilogue: &Epilogue,
    pack: Option<&WeightPack>,
) -> FlexTensor {
    let (wt, b) = (&parameters.weight, &parameters.bias);
    if depthwise {
        depthwise_conv2d::forward(x, wt, b, g, epilogue)
    } else {
        ordinary_forward(x, wt, b, g, epilogue, pack)
    }
}

/// Output channels from which a convolution's output and weight gradient go through Winograd
/// (where it applies; the weight gradient from session 36, on the same condition).
/// With fewer, the transforms cost more than the products save: cnn3's second layer (48 -> 16
/// channels on 12 x 12 maps) at batch 256 and 512 ran faster in 7 rounds of 8 (by up to 27%) as
/// im2col + GEMM once im2col copied shifted planes (`ferkit bench --models cnn3:512 --steps 10 --repeats 3
/// --infer-batches 256,512`, four rounds alternated, AMD EPYC Zen 4, session 35: at 256 16073 /
/// 18861, 14126 / 17887, 16831 / 19880, 17136 / 17054 images/s, before / after); its training
/// step measured level. (Session 34 tried the same with im2col's lookup table: no difference.)
const MIN_WINOGRAD_OUTPUT_CHANNELS: usize = 32;

/// Whether a convolution's output (and in training its weight gradient) goes through Winograd:
/// where it applies, with at least [`MIN_WINOGRAD_OUTPUT_CHANNELS`].
pub(super) fn winograd_takes_output(g: &Sliding, batch: usize, c_in: usize, c_out: usize) -> bool {
    c_out >= MIN_WINOGRAD_OUTPUT_CHANNELS && winograd::applies(g, batch, c_in, c_out)
}

/// An ordinary (not depthwise) convolution's output, each value through `epilogue`: by
/// Winograd's minimal filtering where it applies ([`winograd`]) and there are at least
/// [`MIN_WINOGRAD_OUTPUT_CHANNELS`] output channels, otherwise, with `pack` and few output
/// positions, as a direct convolution ([`direct`]), otherwise as im2col + GEMM ([`forward`]).
fn ordinary_forward(
    x: &FlexTensor,
    weight: &FlexTensor,
    bias: &FlexTensor,
    g: Sliding,
    epilogue: &Epilogue,
    pack: Option<&WeightPack>,
) -> FlexTensor {
    let dims = flex::dims4(x);
    let c_out = flex::dims4(weight)[0];
    let out_dims = [dims[0], c_out, g.output[0], g.output[1]];
    if winograd_takes_output(&g, dims[0], dims[1], c_out) {
        let kept = pack.map(|p| &p.0.winograd);
        let out = winograd::forward(&flex::values(x), dims, &flex::values(weight), &flex::values(bias), &g, epilogue, kept);
        return flex::tensor(out, &out_dims);
    }
    if let Some(pack) = pack.filter(|_| direct::applies(&g, dims[0]))
        && let Some(out) = direct::forward(&flex::values(x), dims, weight, &flex::values(bias), pack, &g, epilogue)
    {
        return flex::tensor(out, &out_dims);
    }
    forward(x, weight, bias, g, epilogue)
}

/// Sizes of one sample's GEMMs.
#[derive(Debug, Clone, Copy)]
struct Shapes {
    batch: usize,
    c_in: usize,
    c_out: usize,
    /// Rows of the im2col matrix: `c_in * kh * kw`.
    k: usize,
    /// Output positions per channel: `oh * ow`.
    p: usize,
    /// Samples per GEMM (and per task): it depends on the shapes alone, so the order in which
    /// weight gradients are summed, and with it every result, does not depend on the threads.
    group: usize,
}

impl Shapes {
    fn new(x: [usize; 4], c_out: usize, g: &Sliding) -> Self {
        let [batch, c_in, _, _] = x;
        let p = g.output[0] * g.output[1];
        let group = MIN_GEMM_COLUMNS.div_ceil(p).clamp(1, MAX_GROUP);
        Shapes { batch, c_in, c_out, k: c_in * g.kernel[0] * g.kernel[1], p, group }
    }

    /// The samples of group `task`.
    fn samples(&self, task: usize) -> std::ops::Range<usize> {
        task * self.group..((task + 1) * self.group).min(self.batch)
    }

    fn input_len(&self, g: &Sliding) -> usize {
        self.c_in * g.input[0] * g.input[1]
    }
}

/// Where each row of the im2col matrix reads from: the geometry and how rows are filled.
struct Taps {
    g: Sliding,
    fill: Fill,
}

/// How [`Taps::im2col`] fills (and [`Taps::col2im`] empties) the rows, chosen once per geometry.
enum Fill {
    /// A 1x1, stride-1, unpadded convolution (EfficientNet's expansions and projections): each
    /// channel's plane is already its im2col row, copied (or added back) whole.
    Planes,
    /// Stride 1 and as many output columns as input columns ("same" padding): the row of kernel
    /// offset `(ky, kx)` is the channel's plane shifted by `(ky - pad, kx - pad)`, one `memcpy`
    /// per row of `cols`, then zeros where the window lies in the padding. (Row by row, a
    /// 12-wide map cost a library call per 12 values; the table, a lookup per value: 16% of cnn3's
    /// inference of one face, `perf`, session 35.)
    Shifted,
    /// Wide rows (at least [`SHORT_ROW`] output columns): per output row, one `memcpy` with
    /// stride 1, or a strided copy (cnn3's first layer, stride 2).
    Rows,
    /// Narrow rows (deep layers: 3 to 12 values), one lookup per value (a few library calls per
    /// output row would cost more than the row itself). For kernel offset `(ky, kx)` and output
    /// position `(oy, ox)`, at `((ky * kw + kx) * oh + oy) * ow + ox`: the input position `iy * w
    /// + ix` it reads in a channel's plane, or [`PADDING`]. Built once per geometry and kept
    /// ([`table`]).
    Table(Arc<[u32]>),
}

/// A tap in the padding (reads zero).
const PADDING: u32 = u32::MAX;

/// [`Fill::Shifted`]'s row of kernel offset `kk` (`ky * kw + kx`) for output rows `rows` of one
/// channel's `plane`, into `dst` (`rows.len() * ow` values): output `(oy, ox)` reads the input at
/// `(oy + ky - pad_top, ox + kx - pad_left)`, or zero outside the plane.
fn shifted_plane(g: &Sliding, plane: &[f32], kk: usize, rows: std::ops::Range<usize>, dst: &mut [f32]) {
    let ([h, w], [_, kw], ow) = (g.input, g.kernel, g.output[1]);
    debug_assert!(g.stride == [1, 1] && ow == w && dst.len() == rows.len() * ow);
    let (dy, dx) = ((kk / kw) as isize - g.pad[0] as isize, (kk % kw) as isize - g.pad[1] as isize);
    // The output rows whose input row `oy + dy` is inside the plane; the others are zero.
    let lo = (rows.start as isize).max(-dy).clamp(rows.start as isize, rows.end as isize) as usize;
    let hi = (rows.end as isize).min(h as isize - dy).clamp(lo as isize, rows.end as isize) as usize;
    let (before, rest) = dst.split_at_mut((lo - rows.start) * ow);
    let (part, after) = rest.split_at_mut((hi - lo) * ow);
    before.fill(0.0);
    after.fill(0.0);
    // Output (oy, ox) of those rows reads plane index (oy + dy) * w + ox + dx: one run of the
    // plane, clipped at its ends (only wrapped taps fall outside it).
    let start = (lo as isize + dy) * w as isize + dx;
    let len = part.len() as isize;
    let a = (-start).clamp(0, len);
    let b = ((h * w) as isize - start).clamp(a, len);
    part[..a as usize].fill(0.0);
    if a < b {
        part[a as usize..b as usize].copy_from_slice(&plane[(start + a) as usize..(start + b) as usize]);
    }
    part[b as usize..].fill(0.0);
    // Columns whose tap lies left or right of the plane read the neighbouring row: zero them.
    let wrapped = dx.unsigned_abs().min(ow);
    for row in part.chunks_exact_mut(ow) {
        if dx < 0 {
            row[..wrapped].fill(0.0);
        } else {
            row[ow - wrapped..].fill(0.0);
        }
    }
}

/// The lookup table of [`Fill::Table`] for geometry `g`, built on first use and then kept for
/// the process (the last [`KEPT_TABLES`] geometries): building it was 6-8% of cnn3's inference
/// of one face (`perf`, session 35), as every call of a layer built the same table again.
fn table(g: &Sliding) -> Arc<[u32]> {
    static TABLES: Mutex<Vec<(Sliding, Arc<[u32]>)>> = Mutex::new(Vec::new());
    // A poisoned lock only means another thread panicked while holding it; the list stays valid.
    let mut tables = TABLES.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some((_, table)) = tables.iter().find(|(kept, _)| kept == g) {
        return table.clone();
    }
    let ([kh, kw], [oh, ow], w) = (g.kernel, g.output, g.input[1]);
    let mut table = Vec::with_capacity(kh * kw * oh * ow);
    for ky in 0..kh {
        for kx in 0..kw {
            for oy in 0..oh {
                for ox in 0..ow {
                    table.push(match (g.source(0, oy, ky), g.source(1, ox, kx)) {
                        (Some(iy), Some(ix)) => (iy * w + ix) as u32,
                        _ => PADDING,
                    });
                }
            }
        }
    }
    let table: Arc<[u32]> = table.into();
    if tables.len() == KEPT_TABLES {
        tables.remove(0);
    }
    tables.push((*g, table.clone()));
    table
}

/// Geometries whose [`table`] is kept: more than the layers of any preset.
const KEPT_TABLES: usize = 64;

impl Taps {
    fn new(g: Sliding) -> Self {
        let fill = if g.kernel == [1, 1] && g.stride == [1, 1] && g.pad == [0, 0] {
            Fill::Planes
        } else if g.stride == [1, 1] && g.output[1] == g.input[1] {
            Fill::Shifted
        } else if g.output[1] >= SHORT_ROW {
            Fill::Rows
        } else {
            Fill::Table(table(&g))
        };
        Taps { g, fill }
    }

    /// Fills `cols` (`k` rows, `ld` apart, of `p` values) with the input taps of every output
    /// position: row `(channel, ky, kx)`, column `(oy, ox)`; taps in the padding are zero.
    fn im2col(&self, x: &[f32], c_in: usize, cols: &mut [f32], ld: usize) {
        self.im2col_rows(x, c_in, 0..self.g.output[0], cols, ld);
    }

    /// [`Taps::im2col`] for the output rows `rows` only: each of the `k` rows of `cols` gets
    /// `rows.len() * ow` values, column `(oy - rows.start, ox)`.
    fn im2col_rows(&self, x: &[f32], c_in: usize, rows: std::ops::Range<usize>, cols: &mut [f32], ld: usize) {
        let g = &self.g;
        let ([h, w], [kh, kw], [oh, ow]) = (g.input, g.kernel, g.output);
        let (p, first_col) = (oh * ow, rows.start * ow);
        let band = rows.len() * ow;
        for c in 0..c_in {
            let plane = &x[c * h * w..(c + 1) * h * w];
            for kk in 0..kh * kw {
                let row = c * kh * kw + kk;
                let dst = &mut cols[row * ld..row * ld + band];
                match &self.fill {
                    // A 1x1, stride-1, unpadded window: output position i reads input position i.
                    Fill::Planes => dst.copy_from_slice(&plane[first_col..first_col + band]),
                    Fill::Table(table) => {
                        let taps = &table[kk * p + first_col..kk * p + first_col + band];
                        for (d, &i) in dst.iter_mut().zip(taps) {
                            *d = plane.get(i as usize).copied().unwrap_or(0.0);
                        }
                    }
                    Fill::Shifted => shifted_plane(g, plane, kk, rows.clone(), dst),
                    Fill::Rows => {
                        let (ky, kx, stride) = (kk / kw, kk % kw, g.stride[1]);
                        let inside = g.taps_inside(1, kx);
                        // The input column of the first output column whose tap is inside.
                        let first = (inside.start * stride + kx).saturating_sub(g.pad[1]);
                        for (oy, out_row) in rows.clone().zip(dst.chunks_exact_mut(ow)) {
                            let Some(iy) = g.source(0, oy, ky).filter(|_| !inside.is_empty()) else {
                                out_row.fill(0.0);
                                continue;
                            };
                            out_row[..inside.start].fill(0.0);
                            out_row[inside.end..].fill(0.0);
                            let src = &plane[iy * w + first..];
                            if stride == 1 {
                                out_row[inside.clone()].copy_from_slice(&src[..inside.len()]);
                            } else {
                                let taps = src.iter().step_by(stride);
                                out_row[inside.clone()].iter_mut().zip(taps).for_each(|(d, &v)| *d = v);
                            }
                        }
                    }
                }
            }
        }
    }

    /// The adjoint of [`Taps::im2col`]: adds every column entry back onto the input position
    /// it came from.
    fn col2im(&self, cols: &[f32], ld: usize, c_in: usize, dx: &mut [f32]) {
        let g = &self.g;
        let ([h, w], [kh, kw], [oh, ow]) = (g.input, g.kernel, g.output);
        let p = oh * ow;
        for c in 0..c_in {
            let plane = &mut dx[c * h * w..(c + 1) * h * w];
            for kk in 0..kh * kw {
                let row = c * kh * kw + kk;
                let src = &cols[row * ld..row * ld + p];
                match &self.fill {
                    Fill::Planes => plane.iter_mut().zip(src).for_each(|(d, v)| *d += v),
                    Fill::Table(table) => {
                        for (&v, &i) in src.iter().zip(&table[kk * p..(kk + 1) * p]) {
                            if let Some(d) = plane.get_mut(i as usize) {
                                *d += v;
                            }
                        }
                    }
                    // Row by row: the shifted plane's wrapped columns must not be added back.
                    Fill::Rows | Fill::Shifted => {
                        let (ky, kx, stride) = (kk / kw, kk % kw, g.stride[1]);
                        let inside = g.taps_inside(1, kx);
                        let first = (inside.start * stride + kx).saturating_sub(g.pad[1]);
                        for (oy, taps) in src.chunks_exact(ow).enumerate() {
                            let Some(iy) = g.source(0, oy, ky).filter(|_| !inside.is_empty()) else { continue };
                            let dst = &mut plane[iy * w + first..];
                            if stride == 1 {
                                // Contiguous: a plain zip, which the compiler vectorises.
                                let dst = &mut dst[..inside.len()];
                                dst.iter_mut().zip(&taps[inside.clone()]).for_each(|(d, v)| *d += v);
                            } else {
                                let dst = dst.iter_mut().step_by(stride);
                                dst.zip(&taps[inside.clone()]).for_each(|(d, v)| *d += v);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// How the GEMMs of a pass of `tasks` tasks (groups of samples) run: one whole GEMM per rayon
/// task while there are tasks enough for every thread, and split across the threads by gemm
/// itself when there are fewer. Without the split, the deep layers of small maps (EfficientNet-
/// Lite0's 2 x 2 maps at 64 px, where one group holds the whole batch of 64) ran their GEMMs on
/// one core while the other waited: `conv2d::forward` was 38% of the main thread's time in a
/// `fast` epoch (`perf`, session 17). gemm splits the rows and columns of a product, never its sum over `k`,
/// so the values are the same bits either way (the thread-count test below checks it).
fn gemm_parallelism(tasks: usize) -> Parallelism {
    if tasks < rayon::current_num_threads() { Parallelism::Rayon(0) } else { Parallelism::None }
}

/// How many bands of output rows each group of samples is split into, one task each: more
/// than one only when a pass has fewer groups than threads (one face from a photo: one group).
///
/// Why: with one task, im2col, the bias and the epilogue ran on one thread, and gemm's own split
/// of the product gained nothing overall: EfficientNet-Lite0 at batch 1 ran as fast on 1 thread
/// as on 2 (`ferkit bench --threads`, session 18). A band is a whole convolution of fewer
/// output rows, so both threads work from im2col to the epilogue.
///
/// A band's product has fewer columns than the whole group's, and must sum every output value
/// in the same order, so that a face's probabilities do not depend on the thread count: a group
/// is split only when [`same_sums_at_any_width`] says so for its narrowest band; the buffers'
/// row stride stays at least 2 (gemm's matrix-vector kernels: see [`forward`]). The tests check
/// the bits on 1, 2 and 3 threads.
#[derive(Debug, Clone, Copy)]
struct Bands {
    /// Output rows per band (the last band may have fewer).
    rows: usize,
    count: usize,
    /// Output rows of the whole map.
    height: usize,
}

impl Bands {
    fn new(s: &Shapes, [oh, ow]: [usize; 2], groups: usize) -> Self {
        let (whole, threads) = (Bands { rows: oh, count: 1, height: oh }, rayon::current_num_threads());
        if s.batch == 0 || groups >= threads || oh < 2 {
            return whole;
        }
        let rows = oh.div_ceil(threads.div_ceil(groups).min(oh));
        let count = oh.div_ceil(rows);
        // The narrowest product: the last group's samples on the last band's rows.
        let last_group = s.batch - (groups - 1) * s.group;
        let narrowest = last_group * (oh - (count - 1) * rows) * ow;
        if same_sums_at_any_width(s.c_out, s.k, narrowest) { Bands { rows, count, height: oh } } else { whole }
    }

    /// The output rows of band `band`.
    fn rows(&self, band: usize) -> std::ops::Range<usize> {
        band * self.rows..((band + 1) * self.rows).min(self.height)
    }
}

/// The output for input `x`, weights `[c_out, c_in, kh, kw]` and a bias per output channel, each
/// value written through `epilogue`.
fn forward(x: &FlexTensor, weight: &FlexTensor, bias: &FlexTensor, g: Sliding, epilogue: &Epilogue) -> FlexTensor {
    let s = Shapes::new(flex::dims4(x), flex::dims4(weight)[0], &g);
    let (x, weight, bias) = (flex::values(x), flex::values(weight), flex::values(bias));
    // Every output value is written below only if there is one bias per output channel.
    assert_eq!(bias.len(), s.c_out, "conv2d: one bias per output channel");
    if kernel_rows::applies(&s, &g) {
        return kernel_rows::forward(&x, &weight, &bias, s, g, epilogue);
    }
    if small_maps::applies(&s, &g) {
        return small_maps::forward(&x, &weight, &bias, s, g, epilogue);
    }
    let taps = Taps::new(g);
    let in_len = s.input_len(&g);
    let ow = g.output[1];
    let groups = s.batch.div_ceil(s.group);
    let bands = Bands::new(&s, g.output, groups);
    // The widest product of this pass: a batch smaller than a group (one face from a photo, whose
    // deep layers' groups hold up to 64 samples) gets buffers for its own columns only. Zeroing
    // buffers for 64 samples was a quarter of EfficientNet-Lite0's batch-1 inference (`perf`,
    // session 18). The buffers' row stride (`columns`) does not change the products' values as
    // long as it is not 1: gemm sends a right-hand side with unit row stride (one sample of a 1 x 1
    // map) to its matrix-vector kernels, which sum in another order. At least 2 keeps every
    // product on the path it took with the full group's stride (the test below checks it).
    let columns = (s.group.min(s.batch) * bands.rows * ow).max(2);
    let parallelism = gemm_parallelism(groups * bands.count);
    let write_task = |(cols, product): &mut (Option<ScratchBuffer>, ScratchBuffer), task: usize, out: flex::UninitParts| {
        let (samples, rows) = (s.samples(task / bands.count), bands.rows(task % bands.count));
        let band = rows.len() * ow;
        let width = samples.len() * band;
        // Y [c_out x (samples * band)] = W [c_out x k] * cols [k x (samples * band)]
        let product = &mut product[..s.c_out * width];
        if let (Fill::Planes, 1, 2..) = (&taps.fill, samples.len(), s.p) {
            // A 1x1 convolution of one sample: its input planes are already the rows of cols
            // (row stride: the plane), so the product reads them in place instead of a copy.
            // A stride other than 1 sums in the same order (see `columns` above).
            let n = samples.start;
            let planes = &x[n * in_len + rows.start * ow..(n + 1) * in_len];
            matmul(parallelism, [s.c_out, width, s.k], product, false, &weight, (s.k, 1), planes, (s.p, 1));
        } else {
            // Taken at first use: the in-place path above never needs it. Kept by the thread
            // between calls (`reuse`): im2col writes every value of the columns the product reads.
            let cols = cols.get_or_insert_with(|| ScratchBuffer::at_least(s.k * columns));
            for (j, n) in samples.clone().enumerate() {
                taps.im2col_rows(&x[n * in_len..(n + 1) * in_len], s.c_in, rows.clone(), &mut cols[j * band..], columns);
            }
            matmul(parallelism, [s.c_out, width, s.k], product, false, &weight, (s.k, 1), cols, (columns, 1));
        }
        // Back to [sample, channel, position], adding the bias and applying the epilogue: the
        // task's rows of each of its samples' channel planes.
        for (j, n) in samples.enumerate() {
            for (c, &b) in bias.iter().enumerate() {
                let src = &product[c * width + j * band..c * width + (j + 1) * band];
                // SAFETY: these rows of this plane belong to this task alone (one task per group
                // of samples and band of rows).
                let dst = unsafe { out.part((n * s.c_out + c) * s.p + rows.start * ow, band) };
                epilogue.write(c, b, src, dst);
            }
        }
    };
    // The product's buffer is kept by the thread between calls (`reuse`): the product writes the
    // values the epilogue reads.
    let scratch = || (None, ScratchBuffer::at_least(s.c_out * columns));
    // SAFETY: the groups cover the samples, the bands the rows, and each task writes all c_out
    // channels of its rows of its samples (the loops above).
    let out = unsafe {
        flex::write_parts_in_parallel(s.batch * s.c_out * s.p, groups * bands.count, scratch, write_task)
    };
    flex::tensor(out, &[s.batch, s.c_out, g.output[0], g.output[1]])
}

/// Which gradients the graph asks for.
#[derive(Debug, Clone, Copy)]
struct Wanted {
    input: bool,
    weight: bool,
    bias: bool,
}

/// One task's sums of the weight and bias gradients over its samples.
type PartialSums = (Vec<f32>, Vec<f32>);

/// Gradients of the input, the weight and the bias, each when wanted.
fn backward(
    x: &FlexTensor,
    weight: &FlexTensor,
    grad: &FlexTensor,
    g: Sliding,
    wanted: Wanted,
) -> (Option<FlexTensor>, Option<FlexTensor>, Option<FlexTensor>) {
    let x_dims = flex::dims4(x);
    let w_dims = flex::dims4(weight);
    let s = Shapes::new(x_dims, w_dims[0], &g);
    let taps = Taps::new(g);
    let (x, weight, grad) = (flex::values(x), flex::values(weight), flex::values(grad));
    let in_len = s.input_len(&g);
    // The input gradient of a 3 x 3 or 5 x 5, stride-1 convolution is itself one (of the output
    // gradient, by the filters turned 180 degrees): by Winograd where it applies.
    let by_winograd = winograd::input_gradient_geometry(&g)
        .filter(|gb| wanted.input && winograd::applies(gb, s.batch, s.c_out, s.c_in))
        .map(|gb| {
            let flipped = winograd::flipped_filters(&weight, s.c_out, s.c_in);
            let no_bias = vec![0f32; s.c_in];
            winograd::forward(&grad, [s.batch, s.c_out, g.output[0], g.output[1]], &flipped, &no_bias, &gb, &Epilogue::NONE, None)
        });
    // The weight gradient by Winograd too, where the output is computed so.
    let dw_by_winograd = (wanted.weight && winograd_takes_output(&g, s.batch, s.c_in, s.c_out))
        .then(|| winograd::weight_gradient(&x, x_dims, &grad, s.c_out, &g));
    let tensor = |values: Vec<f32>, shape: &[usize]| flex::tensor(values, shape);
    // What is left for the kernel rows or im2col.
    let rest = Wanted {
        input: wanted.input && by_winograd.is_none(),
        weight: wanted.weight && dw_by_winograd.is_none(),
        bias: wanted.bias,
    };
    if !rest.input && !rest.weight {
        let db = wanted.bias.then(|| tensor(bias_gradient(&grad, s.c_out, s.p), &[s.c_out]));
        return (by_winograd.map(|v| tensor(v, &x_dims)), dw_by_winograd.map(|v| tensor(v, &w_dims)), db);
    }
    if kernel_rows::applies(&s, &g) {
        // Without the kernel rows in the padding.
        let (dx, dw, db) = kernel_rows::backward(&x, &weight, &grad, s, g, rest);
        let (dx, dw) = (by_winograd.or(dx), dw_by_winograd.or(dw));
        return (dx.map(|v| tensor(v, &x_dims)), dw.map(|v| tensor(v, &w_dims)), db.map(|v| tensor(v, &[s.c_out])));
    }
    let im2col_input = rest.input;
    // Each task: the input gradient of its samples (zeroed by the task itself, in parallel, before
    // col2im adds into it: not as a pass of its own on one thread), and its samples' sums for
    // weight and bias.
    let tasks = s.batch.div_ceil(s.group);
    let parallelism = gemm_parallelism(tasks);
    let dx_len = if im2col_input { s.batch * in_len } else { 0 };
    let write_task = |_: &mut (), task: usize, dx: flex::UninitParts| -> PartialSums {
        let samples = s.samples(task);
        let width = samples.len() * s.p;
        // dY of the group as [c_out x (group * p)], the layout of the forward product; a
        // single sample's gradient already has that layout.
        let dy: std::borrow::Cow<[f32]> = if samples.len() == 1 {
            std::borrow::Cow::Borrowed(&grad[samples.start * s.c_out * s.p..samples.end * s.c_out * s.p])
        } else {
            let mut dy = vec![0f32; s.c_out * width];
            for (j, n) in samples.clone().enumerate() {
                for c in 0..s.c_out {
                    let src = &grad[(n * s.c_out + c) * s.p..(n * s.c_out + c + 1) * s.p];
                    dy[c * width + j * s.p..c * width + (j + 1) * s.p].copy_from_slice(src);
                }
            }
            std::borrow::Cow::Owned(dy)
        };
        // A 1x1 convolution of one sample: its input planes are its cols, laid out alike.
        let in_place = matches!(taps.fill, Fill::Planes) && samples.len() == 1;
        let mut cols = if in_place && !im2col_input { Vec::new() } else { vec![0f32; s.k * width] };
        let mut dw = Vec::new();
        if rest.weight {
            // dW = dY [c_out x width] * cols^T [width x k]
            let cols: &[f32] = if in_place {
                &x[samples.start * in_len..samples.end * in_len]
            } else {
                for (j, n) in samples.clone().enumerate() {
                    taps.im2col(&x[n * in_len..(n + 1) * in_len], s.c_in, &mut cols[j * s.p..], width);
                }
                &cols
            };
            dw = vec![0f32; s.c_out * s.k];
            matmul(parallelism, [s.c_out, s.k, width], &mut dw, false, &dy, (width, 1), cols, (1, width));
        }
        let db =
            if wanted.bias { dy.chunks(width).map(|row| row.iter().sum::<f32>()).collect() } else { Vec::new() };
        if im2col_input {
            // dcols = W^T [k x c_out] * dY [c_out x width], then back onto each input.
            matmul(parallelism, [s.k, width, s.c_out], &mut cols, false, &weight, (1, s.k), &dy, (width, 1));
            for (j, n) in samples.enumerate() {
                // SAFETY: sample n's slice of dx belongs to this task alone.
                let dx_n = flex::zeroed(unsafe { dx.part(n * in_len, in_len) });
                taps.col2im(&cols[j * s.p..], width, s.c_in, dx_n);
            }
        }
        (dw, db)
    };
    // SAFETY: each task zeroes the whole slice of each of its samples, and the tasks' samples
    // cover the batch (or dx is empty).
    let (dx, partial_sums) = unsafe { flex::write_parts_and_collect(dx_len, tasks, || (), write_task) };
    let dx = wanted.input.then(|| flex::tensor(by_winograd.unwrap_or(dx), &x_dims));
    let dw = wanted.weight.then(|| dw_by_winograd.unwrap_or_else(|| sum_in_order(&partial_sums, |p| &p.0)));
    let dw = dw.map(|v| flex::tensor(v, &w_dims));
    let db = wanted.bias.then(|| flex::tensor(sum_in_order(&partial_sums, |p| &p.1), &[s.c_out]));
    (dx, dw, db)
}

/// The bias gradient: each channel's output gradient summed over the positions (`p` a plane) and
/// the batch (`grad` `[batch, c_out, oh, ow]`), sample by sample in order.
fn bias_gradient(grad: &[f32], c_out: usize, p: usize) -> Vec<f32> {
    let mut db = vec![0f32; c_out];
    for (k, plane) in grad.chunks_exact(p).enumerate() {
        db[k % c_out] += plane.iter().sum::<f32>();
    }
    db
}

/// The tasks' sums of a gradient (`pick` chooses which) added in task order, so that the total
/// does not depend on which thread ran which task.
fn sum_in_order(partial_sums: &[PartialSums], pick: fn(&PartialSums) -> &Vec<f32>) -> Vec<f32> {
    let mut total = pick(&partial_sums[0]).clone();
    for part in &partial_sums[1..] {
        total.iter_mut().zip(pick(part)).for_each(|(t, v)| *t += v);
    }
    total
}

#[derive(Debug)]
struct ConvBackward;

impl Backward<Flex, 3> for ConvBackward {
    /// The input, the weight and the window geometry.
    type State = (FlexTensor, FlexTensor, Sliding);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_w, node_b] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        let (x, weight, g) = ops.state;
        let wanted = Wanted { input: node_x.is_some(), weight: node_w.is_some(), bias: node_b.is_some() };
        let (dx, dw, db) = backward(&x, &weight, &grad, g, wanted);
        for (node, grad) in [(node_x, dx), (node_w, dw), (node_b, db)] {
            if let (Some(node), Some(grad)) = (node, grad) {
                grads.register::<Flex>(node.id, grad);
            }
        }
    }
}

fn tracked_conv(x: TrackedTensor, weight: TrackedTensor, bias: TrackedTensor, g: Sliding) -> TrackedTensor {
    let out = ordinary_forward(x.primitive(), weight.primitive(), bias.primitive(), g, &Epilogue::NONE, None);
    match ConvBackward.prepare::<NoCheckpointing>([x.node(), weight.node(), bias.node()]).compute_bound().stateful() {
        OpsKind::Tracked(prep) => prep.finish((x.primitive().clone(), weight.primitive().clone(), g), out),
        OpsKind::UnTracked(prep) => prep.finish(out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::tests::{assert_close, random_input};
    use burn::nn::PaddingConfig2d;
    use burn::nn::conv::Conv2dConfig;
    use burn::prelude::*;

    fn check(c_in: usize, c_out: usize, kernel: usize, stride: usize, padding: PaddingConfig2d, size: [usize; 2]) {
        let device = Device::flex().autodiff();
        device.seed(3);
        let conv = Conv2dConfig::new([c_in, c_out], [kernel, kernel])
            .with_stride([stride, stride])
            .with_padding(padding)
            .init(&device);
        // Enough samples for more than one group of samples.
        let batch = Shapes::new(
            [1, c_in, size[0], size[1]],
            c_out,
            &Sliding::new(&conv.padding, size, [kernel; 2], [stride; 2]).unwrap(),
        )
        .group
            * 2
            + 1;
        let x = random_input([batch, c_in, size[0], size[1]], &device, 5).require_grad();
        let weights = random_input(conv.forward(x.clone()).dims(), &device, 6);

        // The kernels' path, not Burn's fallback, is what runs here.
        assert!(flex::tracked(&x).is_some() && flex::tracked(&conv.weight.val()).is_some());
        assert!(flex::plain(&x.clone().inner()).is_some());
        let ours = conv2d(&conv, x.clone());
        let burns = conv.forward(x.clone());
        assert_close(&ours, &burns, 1e-4, "output");
        let ours_grads = (ours * weights.clone()).sum().backward();
        let burns_grads = (burns * weights).sum().backward();
        let grad = |grads, t: &Tensor<4>| t.grad(grads).unwrap();
        assert_close(&grad(&ours_grads, &x), &grad(&burns_grads, &x), 1e-4, "input gradient");
        let w = conv.weight.val();
        assert_close(&grad(&ours_grads, &w), &grad(&burns_grads, &w), 1e-3, "weight gradient");
        let b = conv.bias.as_ref().unwrap().val();
        assert_close(&b.grad(&ours_grads).unwrap(), &b.grad(&burns_grads).unwrap(), 1e-3, "bias gradient");

        let plain = x.inner();
        let inference = conv.valid();
        assert_close(&conv2d(&inference, plain.clone()), &inference.forward(plain), 1e-4, "inference output");
    }

    #[test]
    fn matches_burn_for_the_notebook_convolutions() {
        check(1, 6, 5, 2, PaddingConfig2d::Same, [12, 12]); // cnn3's first: asymmetric padding
        check(3, 4, 3, 1, PaddingConfig2d::Same, [7, 6]); // `Fill::Shifted`
        // `Fill::Shifted` with the window wider than the map (taps wrapped a whole row away).
        check(2, 3, 5, 1, PaddingConfig2d::Same, [3, 2]);
        check(2, 3, 5, 1, PaddingConfig2d::Same, [1, 1]);
        check(2, 3, 4, 1, PaddingConfig2d::Same, [5, 4]); // even window: asymmetric padding
        check(2, 5, 11, 4, PaddingConfig2d::Same, [16, 16]); // cnn1/cnn2's first
        check(4, 3, 3, 1, PaddingConfig2d::Valid, [6, 5]);
        check(3, 2, 1, 1, PaddingConfig2d::Valid, [4, 4]); // `Fill::Planes`
        // `Fill::Planes` with one sample per group (576 positions): the products read the input
        // planes in place, forward and for the weight gradient.
        check(3, 2, 1, 1, PaddingConfig2d::Valid, [24, 24]);
        check(3, 2, 1, 1, PaddingConfig2d::Same, [5, SHORT_ROW + 1]);
        // Rows of SHORT_ROW values or more, copied whole (`Fill::Rows`) rather than through the table
        // ("valid": fewer output columns than input columns, so not `Fill::Shifted`).
        check(2, 3, 3, 1, PaddingConfig2d::Valid, [5, SHORT_ROW + 2]);
        check(2, 3, 5, 1, PaddingConfig2d::Valid, [6, SHORT_ROW + 4]);
        // `Fill::Shifted` on a wide map, and with more output rows than input rows (explicit
        // padding of two rows above and below, one column left and right).
        check(2, 3, 3, 1, PaddingConfig2d::Same, [5, SHORT_ROW + 2]);
        check(2, 3, 3, 1, PaddingConfig2d::Explicit(2, 1, 2, 1), [4, 7]);
        // Strided wide rows (`Fill::Rows` with a step): cnn3's first layer's 5 x 5, stride 2 with
        // "same" padding on 48 px, on fewer rows; a stride-3 "valid" one.
        check(1, 4, 5, 2, PaddingConfig2d::Same, [6, 2 * SHORT_ROW + 1]);
        check(2, 3, 3, 3, PaddingConfig2d::Valid, [5, 3 * SHORT_ROW + 2]);
        let strided = [
            (5, 2, PaddingConfig2d::Same, [6, 2 * SHORT_ROW + 1]),
            (3, 3, PaddingConfig2d::Valid, [5, 3 * SHORT_ROW + 2]),
        ];
        for (kernel, stride, padding, size) in strided {
            let g = Sliding::new(&padding, size, [kernel; 2], [stride; 2]).unwrap();
            let rows = matches!(Taps::new(g).fill, Fill::Rows);
            assert!(rows, "{kernel} x {kernel}, stride {stride}: rows, not the table");
        }
        // Winograd: the output and the input gradient ("same" and "valid"; `check`
        // takes 9 samples here).
        for (padding, size, c_out) in [(PaddingConfig2d::Same, [12, 12], 8), (PaddingConfig2d::Valid, [14, 13], 9)] {
            let g = Sliding::new(&padding, size, [3, 3], [1, 1]).unwrap();
            let gradient = winograd::input_gradient_geometry(&g).unwrap();
            assert!(winograd::applies(&g, 9, 8, c_out) && winograd::applies(&gradient, 9, c_out, 8));
        }
        check(8, MIN_WINOGRAD_OUTPUT_CHANNELS, 3, 1, PaddingConfig2d::Same, [12, 12]);
        check(8, MIN_WINOGRAD_OUTPUT_CHANNELS + 1, 3, 1, PaddingConfig2d::Valid, [14, 13]);
        // Fewer output channels: the output by im2col (the input gradient still by Winograd).
        check(8, 9, 3, 1, PaddingConfig2d::Same, [12, 12]);
        // Kernel rows in the padding skipped (`kernel_rows`): cnn1's second convolution's 5 x 5
        // window on a 6 x 6 map; strided; on a map narrower than the window (kernel columns
        // wholly in the padding); an even window (asymmetric padding: the kernel rows' order
        // starts with row 1); a map wider than high.
        let cases = [(16, 8, 5, 1, [6, 6]), (16, 4, 5, 2, [7, 7]), (16, 8, 5, 1, [1, 1]), (10, 6, 7, 1, [2, 2])];
        for (c_in, c_out, kernel, stride, size) in cases.into_iter().chain([(16, 5, 4, 1, [6, 6]), (16, 6, 5, 1, [6, 9])]) {
            let g = Sliding::new(&PaddingConfig2d::Same, size, [kernel; 2], [stride; 2]).unwrap();
            // `check`'s batch: two groups and a sample.
            let group = Shapes::new([1, c_in, size[0], size[1]], c_out, &g).group;
            let s = Shapes::new([2 * group + 1, c_in, size[0], size[1]], c_out, &g);
            assert!(kernel_rows::applies(&s, &g), "{kernel} x {kernel} on {size:?}");
            // With 8 output channels the 6 x 6 map's input gradient is Winograd's F(2x2, 5x5)
            // beside the kernel rows' weight gradient; with 6, the kernel rows give both.
            let input_by_winograd =
                winograd::input_gradient_geometry(&g).is_some_and(|gb| winograd::applies(&gb, s.batch, c_out, c_in));
            if stride == 1 && size == [6, 6] && kernel == 5 {
                assert!(input_by_winograd, "{kernel} x {kernel} on {size:?}");
            }
            if size == [6, 9] {
                assert!(!input_by_winograd, "{kernel} x {kernel} on {size:?}");
            }
            check(c_in, c_out, kernel, stride, PaddingConfig2d::Same, size);
        }
    }

    #[test]
    fn kernel_rows_are_skipped_on_small_padded_maps_only() {
        let applies = |batch: usize, c_in: usize, c_out: usize, kernel: usize, size: usize, padding: &PaddingConfig2d| {
            let g = Sliding::new(padding, [size, size], [kernel; 2], [1, 1]).unwrap();
            kernel_rows::applies(&Shapes::new([batch, c_in, size, size], c_out, &g), &g)
        };
        let same = PaddingConfig2d::Same;
        // cnn1's second convolution: 6 of 30 (output row, kernel row) pairs in the padding.
        assert!(applies(64, 96, 256, 5, 6, &same));
        // vgg-lite's 3 x 3 layers on 12 x 12 maps (2 of 36) and 6 x 6 ones (2 of 18; at a batch
        // too small for Winograd's F(2x2, 3x3)).
        assert!(!applies(64, 64, 64, 3, 12, &same));
        assert!(applies(6, 64, 128, 3, 6, &same));
        // One face: cnn1's kernel rows' products would be 24 to 36 columns wide.
        assert!(!applies(1, 96, 256, 5, 6, &same));
        assert!(applies(3, 96, 256, 5, 6, &same));
        // A kernel row's sum over 40 values (8 channels, 5 x 5): not worth an output pass each.
        assert!(!applies(64, 8, 16, 5, 6, &same));
        // No padding, or a 1 x 1 window.
        assert!(!applies(64, 96, 256, 5, 6, &PaddingConfig2d::Valid));
        assert!(!applies(64, 96, 256, 1, 3, &same));
        // A kernel row's sum over more than 512 values with at most 64 output channels: gemm's
        // order would depend on the product's width (`same_sums_at_any_width`).
        assert!(!applies(64, 256, 64, 3, 6, &same));
    }

    /// `conv2d(conv, x)` is Burn's convolution within 1e-4 on one thread, and the same bits on 2
    /// and 3.
    pub(super) fn assert_same_bits_on_1_2_and_3_threads(conv: &Conv2d, x: &Tensor<4>, what: &str) {
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| conv2d(conv, x.clone())).into_data().try_to_vec::<f32>().unwrap()
        };
        let bits = |v: Vec<f32>| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        let one = run(1);
        let burns = conv.forward(x.clone());
        assert_close(&Tensor::from_data(TensorData::new(one.clone(), burns.dims()), &x.device()), &burns, 1e-4, what);
        assert_eq!(bits(one.clone()), bits(run(2)), "{what}: 1 and 2 threads");
        assert_eq!(bits(one), bits(run(3)), "{what}: 1 and 3 threads");
    }

    /// A group of samples on the kernel rows' path, its output rows split into bands on 2 and 3
    /// threads: the same bits as on 1 thread, and close to Burn's.
    #[test]
    fn kernel_rows_give_the_same_bits_on_any_thread_count() {
        let device = Device::flex();
        let pool = |threads: usize| rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        // (c_in, c_out, kernel, size): k <= 512; k > 512 with m > 64 (a kernel row's sum: 192).
        for (i, (c_in, c_out, kernel, size)) in [(16, 24, 5, 6), (64, 80, 3, 6)].into_iter().enumerate() {
            let conv = Conv2dConfig::new([c_in, c_out], [kernel, kernel]).with_padding(PaddingConfig2d::Same).init(&device);
            // Few enough samples for the 3 x 3 window not to be Winograd's.
            let batch = 6;
            let x = random_input([batch, c_in, size, size], &device, 30 + i as u64);
            let g = Sliding::new(&conv.padding, [size, size], [kernel; 2], [1, 1]).unwrap();
            let s = Shapes::new([batch, c_in, size, size], c_out, &g);
            assert!(kernel_rows::applies(&s, &g) && !winograd::applies(&g, batch, c_in, c_out), "case {i}");
            assert!(pool(2).install(|| Bands::new(&s, g.output, 1).count) > 1, "case {i}: one group, split in bands");
            assert_same_bits_on_1_2_and_3_threads(&conv, &x, &format!("case {i}"));
        }
    }

    /// The scratch buffers a thread keeps between calls (`reuse`) hold whatever their last user
    /// left: with every thread's buffers filled with NaN first, Winograd's and im2col's outputs
    /// (table, shifted planes, 1 x 1 planes, bands of one face) still match Burn's convolution.
    #[test]
    fn stale_scratch_buffers_never_reach_the_output() {
        use crate::kernels::reuse::{KEPT, ScratchBuffer};
        let poison = || {
            let buffers: Vec<_> = (0..KEPT)
                .map(|_| {
                    let mut b = ScratchBuffer::at_least(1 << 20);
                    b.fill(f32::NAN);
                    b
                })
                .collect();
            drop(buffers);
        };
        let device = Device::flex();
        // (c_in, c_out, kernel, stride, side, batch)
        for (i, (c_in, c_out, k, stride, side, batch)) in
            [(16, 32, 3, 1, 12, 9), (3, 8, 5, 2, 20, 3), (4, 6, 3, 1, 20, 2), (16, 24, 1, 1, 12, 2), (8, 12, 3, 1, 30, 1)]
                .into_iter()
                .enumerate()
        {
            rayon::broadcast(|_| poison());
            poison();
            let conv = Conv2dConfig::new([c_in, c_out], [k, k])
                .with_stride([stride, stride])
                .with_padding(PaddingConfig2d::Same)
                .init(&device);
            let x = random_input([batch, c_in, side, side], &device, 70 + i as u64);
            assert_close(&conv2d(&conv, x.clone()), &conv.forward(x), 1e-5, &format!("case {i}"));
        }
    }

    #[test]
    fn without_a_bias_matches_burn() {
        let device = Device::flex().autodiff();
        let conv = Conv2dConfig::new([4, 6], [1, 1]).with_bias(false).init(&device);
        let x = random_input([3, 4, 5, 5], &device, 2).require_grad();
        let ours = x.grad(&conv2d(&conv, x.clone()).sum().backward()).unwrap();
        let burns = x.grad(&conv.forward(x.clone()).sum().backward()).unwrap();
        assert_close(&ours, &burns, 1e-5, "input gradient");
        let w = conv.weight.val();
        let ours = w.grad(&conv2d(&conv, x.clone()).square().sum().backward()).unwrap();
        let burns = w.grad(&conv.forward(x).square().sum().backward()).unwrap();
        assert_close(&ours, &burns, 1e-4, "weight gradient");
    }

    #[test]
    fn gradients_do_not_depend_on_the_thread_count() {
        let device = Device::flex().autodiff();
        device.seed(4);
        // The whole product; kernel rows in the padding skipped (`kernel_rows`), on three groups
        // of samples and on one (whose products gemm splits across the threads itself).
        for (c_in, c_out, kernel, size, batch) in [(3, 4, 3, 9, 40), (16, 8, 5, 6, 40), (16, 8, 5, 6, 6)] {
            let conv =
                Conv2dConfig::new([c_in, c_out], [kernel, kernel]).with_padding(PaddingConfig2d::Same).init(&device);
            let x = random_input([batch, c_in, size, size], &device, 9).require_grad();
            let grads = |threads: usize| {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                pool.install(|| {
                    let w = conv.weight.val();
                    let grads = conv2d(&conv, x.clone()).square().sum().backward();
                    let values = |t: Tensor<4>| t.into_data().try_to_vec::<f32>().unwrap();
                    (values(w.grad(&grads).unwrap()), values(x.grad(&grads).unwrap()))
                })
            };
            assert_eq!(grads(1), grads(3), "{kernel} x {kernel} on {size} x {size}, {batch} samples");
        }
    }

    /// One face with a 1 x 1 output map (EfficientNet-Lite0's last stages at 32 px; here a
    /// stride-2 1 x 1 convolution, which stays with gemm where a stride-1 one goes to
    /// [`small_maps`]): the output is the same bits as the product computed with the full group's
    /// buffer stride (64 columns), the layout before buffers were sized to the batch.
    #[test]
    fn a_single_sample_is_the_same_bits_as_with_the_full_groups_buffers() {
        let device = Device::flex();
        let conv = Conv2dConfig::new([40, 24], [1, 1]).with_stride([2, 2]).init(&device);
        let x = random_input([1, 40, 2, 2], &device, 12);
        let g = Sliding::new(&conv.padding, [2, 2], [1, 1], [2, 2]).unwrap();
        let s = Shapes::new([1, 40, 2, 2], 24, &g);
        assert_eq!(s.group, 64, "the group is wider than the batch");
        assert!(!small_maps::applies(&s, &g) && !kernel_rows::applies(&s, &g), "gemm's path");
        let ours = conv2d(&conv, x.clone()).into_data().try_to_vec::<f32>().unwrap();
        // The same product with the input in column 0 of a 64-column buffer, bias added after.
        let (w, b) = (conv.weight.val().into_data().try_to_vec::<f32>().unwrap(), conv.bias.as_ref().unwrap().val());
        let b = b.into_data().try_to_vec::<f32>().unwrap();
        let mut cols = vec![0f32; 40 * 64];
        // Each channel's top-left value, the one input position the window reads.
        for (k, v) in x.into_data().try_to_vec::<f32>().unwrap().into_iter().step_by(4).enumerate() {
            cols[k * 64] = v;
        }
        let mut product = vec![0f32; 24];
        matmul(Parallelism::None, [24, 1, 40], &mut product, false, &w, (40, 1), &cols, (64, 1));
        let old: Vec<f32> = product.iter().zip(&b).map(|(v, b)| v + b).collect();
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&ours), bits(&old));
    }

    /// One face, its output rows split into bands on 2 and 3 threads: the same bits as on 1
    /// thread (one task), for products under each of [`Bands::new`]'s rules, and close to Burn's.
    #[test]
    fn bands_of_rows_give_the_same_bits_on_any_thread_count() {
        let device = Device::flex();
        let same = PaddingConfig2d::Same;
        // (c_in, c_out, kernel, stride, size, padding, split on 2 threads)
        let cases = [
            (4, 16, 3, 1, 20, same.clone(), true), // k <= 512, `Fill::Shifted` (few channels: not Winograd's)
            (64, 32, 3, 1, 12, same.clone(), true), // k > 512, m <= 64, bands of 72 columns
            (64, 80, 3, 1, 6, same.clone(), true), // k > 512, m > 64, bands of 18 columns
            (64, 32, 3, 1, 8, same.clone(), false), // k > 512, m <= 64, bands of 32 columns: kept whole
            (4, 8, 5, 2, 17, same.clone(), true),  // strided (`Fill::Table`), odd rows
            (16, 24, 1, 1, 10, same.clone(), true), // `Fill::Planes`
            (4, 16, 3, 1, 20, PaddingConfig2d::Valid, true), // stride 1, wide rows (`Fill::Rows`)
            (4, 16, 3, 1, 10, PaddingConfig2d::Valid, true), // stride 1, narrow rows (`Fill::Table`)
            (4, 16, 5, 1, 3, same.clone(), true),  // `Fill::Shifted`, the window wider than the map
            (4, 16, 3, 1, 12, PaddingConfig2d::Explicit(2, 1, 2, 1), true), // `Fill::Shifted`, 14 rows from 12
        ];
        let pool = |threads: usize| rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        for (i, (c_in, c_out, kernel, stride, size, padding, split)) in cases.into_iter().enumerate() {
            let conv = Conv2dConfig::new([c_in, c_out], [kernel, kernel])
                .with_stride([stride, stride])
                .with_padding(padding)
                .init(&device);
            let x = random_input([1, c_in, size, size], &device, 20 + i as u64);
            let g = Sliding::new(&conv.padding, [size, size], [kernel; 2], [stride; 2]).unwrap();
            let s = Shapes::new([1, c_in, size, size], c_out, &g);
            let count = pool(2).install(|| Bands::new(&s, g.output, 1).count);
            assert_eq!(count > 1, split, "case {i}: {count} bands on 2 threads");
            assert_same_bits_on_1_2_and_3_threads(&conv, &x, &format!("case {i}"));
        }
    }

    /// 2 x 2 maps (EfficientNet-Lite0's last at 64 px): one group holds the whole batch, so the
    /// GEMMs split across the threads themselves (large enough for gemm to split: 96 x 256 x 64).
    /// Output and gradients are the same bits on 1 thread and on 3.
    #[test]
    fn a_single_group_split_by_gemm_gives_the_same_bits_on_any_thread_count() {
        let device = Device::flex().autodiff();
        device.seed(5);
        let conv = Conv2dConfig::new([64, 96], [1, 1]).init(&device);
        let x = random_input([64, 64, 2, 2], &device, 11).require_grad();
        let g = Sliding::new(&conv.padding, [2, 2], [1, 1], [1, 1]).unwrap();
        assert_eq!(Shapes::new([64, 64, 2, 2], 96, &g).group, 64, "one group for the batch");
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| {
                let y = conv2d(&conv, x.clone());
                let grads = y.clone().square().sum().backward();
                let values = |t: Tensor<4>| t.into_data().try_to_vec::<f32>().unwrap();
                (values(y.inner()), values(x.grad(&grads).unwrap()), values(conv.weight.val().grad(&grads).unwrap()))
            })
        };
        let (one, three) = (run(1), run(3));
        assert!(one.0 == three.0 && one.1 == three.1 && one.2 == three.2);
    }
}
