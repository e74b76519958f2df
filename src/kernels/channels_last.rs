//! EfficientNet's inverted-residual layers at inference in a channel-last layout: 1 x 1
//! convolutions, depthwise convolutions (each with its batch norm, activation and skip
//! connection written as the values are) and global average pooling, on feature maps stored
//! `[batch, height, width, channels]` ([`ChannelsLast`]). A layer net's ordinary convolutions
//! and max pools at one face or a few run channel-last too ([`conv`], [`max_pool`]: see
//! [`MAX_CONV_POSITIONS`] for where and why).
//!
//! Why: in Burn's `[batch, channels, height, width]` layout, EfficientNet-Lite0's deep maps (6 x 6
//! down to 2 x 2 at 48 px) make every plane 4 to 36 values long. A 1 x 1 convolution there is a
//! product per group of samples followed by a scatter of 4-value pieces back into planes, each
//! through the batch norm's epilogue in a call of its own, and a depthwise convolution turns each
//! block of 16 planes channel-last and back ([`super::depthwise_conv2d`]). `perf record ferkit
//! bench --models efficientnet-lite0:64 --infer-batches 256` (AMD EPYC Zen 4, session 34): the
//! epilogue calls 17% of inference, the depthwise blocks 26%, gemm 34%; ONNX Runtime, which
//! keeps channel-blocked layouts between its layers, ran 2.0x as fast at batch 256 and 3.1x at
//! batch 1. Channel-last, a 1 x 1 convolution is one product `X [positions x c_in] * Wᵀ [c_in x
//! c_out]` over all samples' positions with its epilogue along whole rows, and a depthwise
//! convolution sums whole rows of channels, vectorised along the channels; the layout changes
//! once after the stem and the pooling reads it directly.
//!
//! Values: the depthwise sums are those of [`super::depthwise_conv2d`]'s small-map path (each
//! output: its in-image taps in kernel order from zero, then added to the bias), and the 1 x 1
//! products sum over `c_in` as gemm does, so the output differs from the channel-first path by
//! rounding (the tests: within 1e-5 of the channel-first kernels, themselves tested against
//! Burn's layers, relative to the largest value). No sum is split across tasks, and each one's
//! order depends on the shapes alone (see [`pointwise_tasks`]), so the bits do not depend on the
//! thread count (tested).

use std::borrow::Cow;
use std::mem::MaybeUninit;

use burn::backend::flex::{Flex, FlexTensor};
use burn::nn::BatchNorm;
use burn::nn::conv::Conv2d;
use burn::nn::pool::MaxPool2d;
use burn::tensor::Tensor;
use gemm::Parallelism;
use multiversion::multiversion;

use super::conv2d::{PlainParameters, WeightPack, direct, small_maps};
use super::epilogue::{Activation, Epilogue};
use super::matmul::matmul_uninit;
use super::{Sliding, batch_norm, flex};

/// Feature maps `[batch, height, width, channels]` (row-major f32 values): value `((n * height +
/// y) * width + x) * channels + c` is channel `c` at row `y`, column `x` of sample `n`.
#[derive(Debug, Clone)]
pub struct ChannelsLast {
    values: Vec<f32>,
    /// `[batch, height, width, channels]`.
    dims: [usize; 4],
}

/// Whether `x` is a plain (inference) Flex f32 tensor, the kind the layers here take; `false`
/// in training (autodiff) and on other backends.
pub fn is_plain(x: &Tensor<4>) -> bool {
    flex::plain(x).is_some()
}

impl ChannelsLast {
    /// `x` (`[batch, channels, height, width]`) laid out channel-last, when it is a plain
    /// (inference) Flex f32 tensor; `None` otherwise (training, other backends).
    pub fn from_channels_first(x: &Tensor<4>) -> Option<Self> {
        let x = flex::plain(x)?;
        let [n, c, h, w] = flex::dims4(&x);
        let values = transpose_each(&flex::values(&x), n, [c, h * w]);
        Some(ChannelsLast { values, dims: [n, h, w, c] })
    }

    /// `[batch, height, width, channels]`.
    pub fn dims(&self) -> [usize; 4] {
        self.dims
    }

    /// The maps back in Burn's layout, `[batch, channels, height, width]`.
    pub fn to_channels_first(&self) -> Tensor<4> {
        let [n, h, w, c] = self.dims;
        let values = transpose_each(&self.values, n, [h * w, c]);
        Tensor::from_primitive::<Flex>(flex::tensor(values, &[n, c, h, w]))
    }

    /// Global average pooling, `[batch, channels]`: each channel's mean over each row, then the
    /// mean of the rows (the order of Burn's `mean_dim(3).mean_dim(2)`).
    pub fn mean_positions(&self) -> Tensor<2> {
        let [n, h, w, c] = self.dims;
        let mut out = vec![0f32; n * c];
        let mut row_sum = vec![0f32; c];
        for (sample, means) in out.chunks_exact_mut(c.max(1)).enumerate() {
            for y in 0..h {
                row_sum.fill(0.0);
                for x in 0..w {
                    let position = &self.values[((sample * h + y) * w + x) * c..][..c];
                    row_sum.iter_mut().zip(position).for_each(|(s, &v)| *s += v);
                }
                means.iter_mut().zip(&row_sum).for_each(|(m, &s)| *m += s / w as f32);
            }
            means.iter_mut().for_each(|m| *m /= h as f32);
        }
        Tensor::from_primitive::<Flex>(flex::tensor(out, &[n, c]))
    }
}

/// Each of the `count` matrices `[rows x cols]` (row-major, one after the other) in `values`,
/// transposed to `[cols x rows]`: one per sample, on the threads in parallel.
fn transpose_each(values: &[f32], count: usize, [rows, cols]: [usize; 2]) -> Vec<f32> {
    let len = rows * cols;
    // SAFETY: each matrix's part is written column by column, every value.
    unsafe {
        flex::write_in_parallel(
            count * len,
            len,
            || (),
            |_, i, out| {
                let matrix = &values[i * len..(i + 1) * len];
                for (col, transposed_row) in out.chunks_exact_mut(rows.max(1)).enumerate() {
                    for (row, v) in transposed_row.iter_mut().enumerate() {
                        v.write(matrix[row * cols + col]);
                    }
                }
            },
        )
    }
}

/// Output positions (times samples) below which [`conv`] runs a convolution on channel-last
/// maps, and below which ([`MAX_ENTRY_POSITIONS`]) a layer net turns channel-first maps
/// channel-last to do so (in a net the later layers' passes are no wider, so the entry bound is
/// the one that counts there); `models::net`
/// keeps the maps channel-last from there, through the max pools ([`max_pool`]), until a layer
/// that needs them channel-first. Why: at one face the direct convolution then writes each
/// position's channels as one row, where channel-first it scatters every tile into the output's
/// planes, and the pools read whole rows of channels. One face through vgg-lite, each layer timed
/// in place (`ferkit bench --models vgg-lite:1 --infer-batches 1`, 2 threads, two alternated
/// rounds, AMD EPYC Zen 4, session 45), channel-first / channel-last, µs: 24 x 24 convolutions
/// 241-291 / 139-154 and 282-292 / 217-236, 12 x 12 139-145 / 127-128 and 238-258 / 225-226,
/// 6 x 6 127-136 / 113-115 and 236-240 / 214, pools 29-38 / 9-19.
pub const MAX_CONV_POSITIONS: usize = 4096;
/// See [`MAX_CONV_POSITIONS`]: turning vgg-lite's 32 x 48 x 48 maps channel-last would cost
/// about what its 48 x 48 convolution gains; its 24 x 24 ones, after the pool, a quarter.
pub const MAX_ENTRY_POSITIONS: usize = 1024;
/// Taps per output (`c_in * kh * kw`) from which a convolution runs channel-last: with fewer the
/// per-position epilogue outweighs the sums (a first layer on grey faces, 9 or 25 taps: vgg-lite's
/// 48 x 48 one took 148-164 µs channel-last against 61-67 by im2col, the same rounds).
pub const MIN_TAPS: usize = 64;

/// An ordinary (not grouped, not dilated) convolution at inference, channel-last in and out,
/// as a direct convolution (`conv2d::direct::forward_channels_last`) over the weights packed in
/// `pack`, with `act` applied as the output is written: `[batch, oh, ow, c_out]`. `None` where
/// it does not run here (see [`conv_applies`]) or the CPU lacks the instructions.
pub fn conv(
    conv: &Conv2d,
    pack: Option<&WeightPack>,
    act: Option<Activation>,
    x: &ChannelsLast,
) -> Option<ChannelsLast> {
    let g = conv_geometry(conv, x.dims, MAX_CONV_POSITIONS)?;
    let (parameters, pack) = PlainParameters::of_layer(conv, pack)?;
    let [n, ..] = x.dims;
    let epilogue = Epilogue { affine: None, act };
    let bias = flex::values(&parameters.bias);
    let values = direct::forward_channels_last(&x.values, x.dims, &parameters.weight, &bias, pack?, &g, &epilogue)?;
    Some(ChannelsLast { values, dims: [n, g.output[0], g.output[1], conv.weight.dims()[0]] })
}

/// Whether [`conv`] runs `conv` on maps of `dims` (`[batch, height, width, channels]`): a pack
/// (a net folded for inference), at least [`MIN_TAPS`] taps per output, fewer output positions
/// than [`MAX_CONV_POSITIONS`], or than [`MAX_ENTRY_POSITIONS`] where the maps are channel-first
/// (`entering`: the caller would turn them channel-last first), not a pass that Winograd's
/// algorithm takes channel-first, and a CPU with the instructions.
pub fn conv_applies(conv: &Conv2d, pack: Option<&WeightPack>, dims: [usize; 4], entering: bool) -> bool {
    let max = if entering { MAX_ENTRY_POSITIONS } else { MAX_CONV_POSITIONS };
    pack.is_some() && conv_geometry(conv, dims, max).is_some() && crate::util::cpu::isa().is_some()
}

/// The geometry of `conv` on maps of `dims`, where [`conv_applies`] holds but for the pack and
/// the CPU.
fn conv_geometry(conv: &Conv2d, [n, h, w, c]: [usize; 4], max_positions: usize) -> Option<Sliding> {
    let [c_out, c_in, kh, kw] = conv.weight.dims();
    if conv.groups != 1 || conv.dilation != [1, 1] || c_in != c || c_in * kh * kw < MIN_TAPS {
        return None;
    }
    let g = Sliding::new(&conv.padding, [h, w], conv.kernel_size, conv.stride)?;
    let positions = n * g.output[0] * g.output[1];
    let winograd = super::conv2d::winograd_takes_output(&g, n, c_in, c_out);
    ((1..max_positions).contains(&positions) && !winograd).then_some(g)
}

/// Max pooling channel-last: `[batch, oh, ow, channels]`, each output the largest of its
/// window's in-image values (`if v > m { v } else { m }`, window rows then columns); `None`
/// for a pool that [`super::max_pool2d`] leaves to Burn (dilation, ceil mode, windows wholly in
/// the padding). The same values as the channel-first pool's, which compares in another order
/// (a zero tied with a zero of the other sign may keep the other's sign; NaN aside).
pub fn max_pool(pool: &MaxPool2d, x: &ChannelsLast) -> Option<ChannelsLast> {
    let [n, h, w, c] = x.dims;
    let g = super::max_pool2d::geometry(pool, [h, w])?;
    let [oh, ow] = g.output;
    let row_len = ow * c;
    // SAFETY: each output row (sample, oy) writes all of its `ow * c` values below.
    let values = unsafe {
        flex::write_in_parallel(n * oh * row_len, row_len.max(1), Vec::new, |m: &mut Vec<f32>, i, out| {
            let (sample, oy) = (i / oh, i % oh);
            let image = &x.values[sample * h * w * c..(sample + 1) * h * w * c];
            let rows = g.window(0, oy);
            for (ox, dst) in out.chunks_exact_mut(c.max(1)).enumerate() {
                let cols = g.window(1, ox);
                let at = |y: usize, x: usize| &image[(y * w + x) * c..(y * w + x + 1) * c];
                m.clear();
                m.extend_from_slice(at(rows.start, cols.start));
                for y in rows.clone() {
                    for x in cols.clone() {
                        if (y, x) != (rows.start, cols.start) {
                            super::max_pool2d::fold_row_values(at(y, x), m);
                        }
                    }
                }
                for (d, &v) in dst.iter_mut().zip(m.iter()) {
                    d.write(v);
                }
            }
        })
    };
    Some(ChannelsLast { values, dims: [n, oh, ow, c] })
}

/// `act(bn(conv(x)))` (each of `bn` and `act` when given) for an ordinary convolution (not
/// grouped, not dilated) whose input `x` is one grey plane copied into each of the `c_in` input
/// channels and standardised per channel, `x_c = (grey - mean[c]) / std[c]`, then zero-padded:
/// the ImageNet normalisation of a grey face fed to an RGB net (EfficientNet-Lite0's stem).
/// `grey` `[batch, 1, h, w]` f32 (a plain Flex tensor); the output channel-last, `[batch, oh, ow,
/// c_out]`. `None` when the convolution is another kind, `mean` and `std` do not have `c_in`
/// values, or a tensor is not a plain Flex f32 tensor.
///
/// The channel copies and the standardisation are folded into the weights, per tap `t` and
/// output channel `o`: `a[t][o] = Σ_c w[o][c][t] / std[c]` and `b[t][o] = Σ_c w[o][c][t] *
/// mean[c] / std[c]`, so each output is the sum, from zero in kernel order, of `grey * a - b`
/// over its in-image taps (the padding contributes nothing, as a standardised zero does), then
/// the bias and the epilogue. The values differ from the three-channel convolution's by
/// rounding (tested within 1e-5). Why: at one face the copies, the standardisation, the
/// im2col product over 27 taps and the change of layout were four passes of their own, 50 µs of
/// EfficientNet-Lite0's 660 (each timed in place, 2 threads, AMD EPYC Zen 4, session 46).
pub fn conv_from_grey(
    conv: &Conv2d,
    bn: Option<&BatchNorm>,
    act: Option<Activation>,
    grey: &Tensor<4>,
    mean: &[f32],
    std: &[f32],
) -> Option<ChannelsLast> {
    let [c_out, c_in, kh, kw] = conv.weight.dims();
    let grey = flex::plain(grey)?;
    let [n, one, h, w] = flex::dims4(&grey);
    if conv.groups != 1 || conv.dilation != [1, 1] || one != 1 || mean.len() != c_in || std.len() != c_in {
        return None;
    }
    let g = Sliding::new(&conv.padding, [h, w], conv.kernel_size, conv.stride)?;
    let (parameters, _) = Parameters::of(conv, bn, None)?;
    let (epilogue, bias) = (parameters.epilogue(act), parameters.bias());
    let bias = &bias[..];
    let weight = flex::values(parameters.weight());
    let taps = kh * kw;
    // scale[t * c_out + o] = a[t][o] and shift[t * c_out + o] = b[t][o] (above).
    let (mut scale, mut shift) = (vec![0f32; taps * c_out], vec![0f32; taps * c_out]);
    for o in 0..c_out {
        for c in 0..c_in {
            for t in 0..taps {
                let v = weight[(o * c_in + c) * taps + t] / std[c];
                scale[t * c_out + o] += v;
                shift[t * c_out + o] += v * mean[c];
            }
        }
    }
    let grey = flex::values(&grey);
    let write_row = |sample: usize, oy: usize, out: &mut [MaybeUninit<f32>]| {
        let out = flex::zeroed(out);
        grey_row_sums(&grey[sample * h * w..(sample + 1) * h * w], &scale, &shift, &g, c_out, oy, out);
        epilogue.apply_rows(0, bias, out);
    };
    // SAFETY: `write_row` zeroes every value of its row, then adds into and maps them in place.
    Some(unsafe { by_output_rows([n, g.output[0], g.output[1], c_out], write_row) })
}

/// Maps `[batch, oh, ow, c]` written one output row of a sample at a time, the rows on the
/// threads in parallel: `write_row(sample, oy, row)` fills the row's `ow * c` values.
///
/// # Safety
/// `write_row` writes every value of its row.
unsafe fn by_output_rows(
    dims: [usize; 4],
    write_row: impl Fn(usize, usize, &mut [MaybeUninit<f32>]) + Sync + Send,
) -> ChannelsLast {
    let [n, oh, ow, c] = dims;
    if n * oh * ow * c == 0 {
        return ChannelsLast { values: Vec::new(), dims };
    }
    let write = |_: &mut (), task: usize, out: &mut [MaybeUninit<f32>]| write_row(task / oh, task % oh, out);
    // SAFETY: passed on from the caller.
    let values = unsafe { flex::write_in_parallel(n * oh * ow * c, ow * c, || (), write) };
    ChannelsLast { values, dims }
}

/// Output row `oy` of [`conv_from_grey`] before the bias, into `out` (`[ow, c_out]`, zeros):
/// for each position, `grey * scale[t] - shift[t]` along the output channels for each of its
/// in-image taps `t` in kernel order (`plane` `[h, w]`, `scale` and `shift` `[taps, c_out]`).
/// With 16, 32 or 64 output channels the sums stay in registers ([`position_sums`]); otherwise
/// they are added in `out`.
#[cfg_attr(feature = "avx512", multiversion(targets("x86_64+avx512f+avx2+avx", "x86_64+avx2+avx")))]
#[cfg_attr(not(feature = "avx512"), multiversion(targets("x86_64+avx2+avx")))]
fn grey_row_sums(plane: &[f32], scale: &[f32], shift: &[f32], g: &Sliding, c_out: usize, oy: usize, out: &mut [f32]) {
    let rows = taps_in_input(g, 0, oy);
    for (ox, sums) in out.chunks_exact_mut(c_out).enumerate() {
        let cols = taps_in_input(g, 1, ox);
        let window = (plane, g.input[1], g.kernel[1], rows, cols);
        match c_out {
            16 => position_sums::<16>(window, scale, shift, sums.try_into().unwrap()),
            32 => position_sums::<32>(window, scale, shift, sums.try_into().unwrap()),
            64 => position_sums::<64>(window, scale, shift, sums.try_into().unwrap()),
            _ => {
                let (plane, w, kw, (ky_lo, ky_hi, iy0), (kx_lo, kx_hi, ix0)) = window;
                for ky in ky_lo..ky_hi {
                    let row = (iy0 + ky - ky_lo) * w + ix0;
                    for kx in kx_lo..kx_hi {
                        let (v, t) = (plane[row + kx - kx_lo], ky * kw + kx);
                        let (a, b) = (&scale[t * c_out..(t + 1) * c_out], &shift[t * c_out..(t + 1) * c_out]);
                        for ((s, &a), &b) in sums.iter_mut().zip(a).zip(b) {
                            *s += v * a - b;
                        }
                    }
                }
            }
        }
    }
}

/// One position of [`grey_row_sums`] for `C` output channels, summed in registers: `window` is
/// (the plane, its width, the kernel's width, and the in-image taps' rows and columns as
/// [`taps_in_input`] gives them). Why registers: summed in `out`, each tap's sums waited on the
/// store of the tap before (64% of the kernel's samples on one load-and-add, `perf`); the stem
/// at one face, 2000 calls in a loop on 1 thread, took 22.4 µs a call so and 18.5 in registers
/// (AMD EPYC Zen 4, session 46).
#[inline(always)]
fn position_sums<const C: usize>(
    (plane, w, kw, (ky_lo, ky_hi, iy0), (kx_lo, kx_hi, ix0)): (&[f32], usize, usize, TapRange, TapRange),
    scale: &[f32],
    shift: &[f32],
    out: &mut [f32; C],
) {
    let mut sum = [0f32; C];
    for ky in ky_lo..ky_hi {
        let row = (iy0 + ky - ky_lo) * w + ix0;
        for kx in kx_lo..kx_hi {
            let (v, t) = (plane[row + kx - kx_lo], ky * kw + kx);
            let a: &[f32; C] = scale[t * C..(t + 1) * C].try_into().unwrap();
            let b: &[f32; C] = shift[t * C..(t + 1) * C].try_into().unwrap();
            for l in 0..C {
                sum[l] += v * a[l] - b[l];
            }
        }
    }
    *out = sum;
}

/// What [`taps_in_input`] gives: the in-image kernel offsets `lo..hi` and the input position of
/// the first.
type TapRange = (usize, usize, usize);

/// What a layer needs beside its input: the batch norm's inference affine map (per-channel
/// scale and shift, when it has a batch norm), the convolution's weights (the Flex tensor, whose
/// values are read in place: copying them cost a fifth of one face's inference) and its bias
/// (zeros without one).
struct Parameters<'p> {
    affine: Option<(Vec<f32>, Vec<f32>)>,
    plain: Cow<'p, PlainParameters>,
}

impl<'p> Parameters<'p> {
    /// `conv`'s parameters (`pack`'s where it is this layer's: see `PlainParameters::of_layer`)
    /// and `bn`'s map, with the pack when it is this layer's; `None` when a parameter is not a
    /// plain Flex f32 tensor.
    fn of(
        conv: &Conv2d,
        bn: Option<&BatchNorm>,
        pack: Option<&'p WeightPack>,
    ) -> Option<(Self, Option<&'p WeightPack>)> {
        let affine = match bn {
            Some(bn) => Some(batch_norm::inference_affine(bn)?),
            None => None,
        };
        let (plain, pack) = PlainParameters::of_layer(conv, pack)?;
        Some((Parameters { affine, plain }, pack))
    }

    /// The convolution's weight, `[c_out, c_in / groups, kh, kw]`.
    fn weight(&self) -> &FlexTensor {
        &self.plain.weight
    }

    /// One bias per output channel.
    fn bias(&self) -> Cow<'_, [f32]> {
        flex::values(&self.plain.bias)
    }

    /// The epilogue of the batch norm's map and `act`.
    fn epilogue(&self, act: Option<Activation>) -> Epilogue<'_> {
        Epilogue { affine: self.affine.as_ref().map(|(s, t)| (s.as_slice(), t.as_slice())), act }
    }
}

/// How many tasks share the rows (positions) of a 1 x 1 convolution of `rows` positions, task
/// `i` taking rows `i * rows / tasks..(i + 1) * rows / tasks`: two per thread, each of at least
/// [`MIN_TASK_ROWS`] rows; one when there are fewer than twice that (gemm then splits the product
/// across the threads itself).
///
/// Why so few: every task's gemm packs the whole weight matrix before using it; blocks of about
/// 256 KiB of rows (65 to 1024) repacked the head's 320 x 1280 weights 16 times at batch 256, and
/// packing was a tenth of EfficientNet-Lite0's inference there (`perf`, session 34). Two tasks
/// per thread ran 2030-2538 images/s at batch 256 where those blocks ran 1836-1923, and blocks
/// of up to 1 MiB 2086-2160 (`ferkit bench --models efficientnet-lite0:64 --infer-batches 256`,
/// alternated, AMD EPYC Zen 4); at batches 64 and 1 the two rounds were within the noise
/// (1971 and 1871 against 2070 and 2175 at 64, 383 and 441 against 391 and 504 at 1).
///
/// The split depends on the thread count, the sums do not: gemm 0.19 sums over `k` in an order
/// that depends on the product's shape only for products of at most 64 rows and 64 columns
/// ([`super::matmul::same_sums_at_any_width`]), of at most 256 values (its "horizontal"
/// kernels) or of one row; every task here has at least 65 rows, and with fewer than 4 output
/// channels (at most 256 values in 65 rows) there is one task.
fn pointwise_tasks(rows: usize, c_out: usize) -> usize {
    if c_out < 4 {
        return 1;
    }
    (2 * rayon::current_num_threads()).min(rows / MIN_TASK_ROWS).max(1)
}

/// See [`pointwise_tasks`].
const MIN_TASK_ROWS: usize = 65;

/// `act(bn(conv(x))) + residual` (each of `bn`, `act` and `residual` when given) for a 1 x 1,
/// stride-1 convolution without groups, channel-last. `None` when the convolution is another
/// kind or a parameter is not a plain Flex f32 tensor.
///
/// With `pack` (the layer's `WeightPack`, kept by a net prepared for inference: its parameters
/// and packed weights), a product of
/// fewer than [`direct::MAX_POSITIONS`] positions (one face's deep layers) runs as
/// [`direct::pointwise_rows`], vectorised along the output channels. Without, one of at most
/// [`small_maps::MAX_WIDTH`] positions is split by output channels into dot products
/// ([`small_maps::dot_products`]: no packing of the weights for a few uses each); wider ones run
/// as gemm products over blocks of positions.
///
/// # Panics
/// When `x`'s channels are not the convolution's input channels, or `residual`'s dimensions
/// are not the output's.
pub fn pointwise(
    conv: &Conv2d,
    pack: Option<&WeightPack>,
    bn: Option<&BatchNorm>,
    act: Option<Activation>,
    x: &ChannelsLast,
    residual: Option<&ChannelsLast>,
) -> Option<ChannelsLast> {
    let [c_out, k, kh, kw] = conv.weight.dims();
    if [kh, kw] != [1, 1] || conv.stride != [1, 1] || conv.groups != 1 || conv.dilation != [1, 1] {
        return None;
    }
    let [n, h, w, c_in] = x.dims;
    assert_eq!(c_in, k, "pointwise: {c_in} input channels for a convolution of {k}");
    let g = Sliding::new(&conv.padding, [h, w], [1, 1], [1, 1])?;
    if g.pad != [0, 0] || g.output != [h, w] {
        return None;
    }
    let (parameters, pack) = Parameters::of(conv, bn, pack)?;
    let (epilogue, weight, bias) = (parameters.epilogue(act), flex::values(parameters.weight()), parameters.bias());
    let bias = &bias[..];
    let rows = n * h * w;
    let dims = [n, h, w, c_out];
    if let Some(r) = residual {
        assert_eq!(r.dims, dims, "pointwise: the skip connection's dimensions");
    }
    let residual = residual.map(|r| r.values.as_slice());
    if rows == 0 {
        return Some(ChannelsLast { values: Vec::new(), dims });
    }
    let direct = pack
        .filter(|_| rows < direct::MAX_POSITIONS)
        .and_then(|pack| direct::pointwise_rows(&x.values, rows, parameters.weight(), bias, pack, &epilogue, residual));
    let values = if let Some(values) = direct {
        values
    } else if rows <= small_maps::MAX_WIDTH && small_maps::has_avx2_fma() {
        by_dot_products(&x.values, &weight, bias, [rows, k, c_out], &epilogue, residual)
    } else {
        let tasks = pointwise_tasks(rows, c_out);
        // Fewer tasks than threads (a few faces): gemm splits the one product itself.
        let parallelism = if tasks < rayon::current_num_threads() { Parallelism::Rayon(0) } else { Parallelism::None };
        let write = |_: &mut (), task: usize, out: flex::UninitParts| {
            let (first, end) = (task * rows / tasks, (task + 1) * rows / tasks);
            let m = end - first;
            // SAFETY: rows first..end belong to this task alone (the tasks' ranges tile 0..rows).
            let out = unsafe { out.part(first * c_out, m * c_out) };
            let lhs = &x.values[first * k..end * k];
            // Y [m x c_out] = X [m x k] * Wᵀ [k x c_out] (W is [c_out x k], row-major).
            matmul_uninit(parallelism, [m, c_out, k], out, lhs, (k, 1), &weight, (1, k));
            // SAFETY: gemm wrote every value of `out`.
            let out = unsafe { flex::assume_written(out) };
            epilogue.apply_rows(0, bias, out);
            if let Some(r) = residual {
                out.iter_mut().zip(&r[first * c_out..end * c_out]).for_each(|(v, &s)| *v += s);
            }
        };
        // SAFETY: `write` writes every value of its rows (above), and the tasks' rows tile 0..rows.
        unsafe { flex::write_parts_in_parallel(rows * c_out, tasks, || (), write) }
    };
    Some(ChannelsLast { values, dims })
}

/// A 1 x 1 convolution's output `[rows, c_out]` for input `x` `[rows, k]` (`rows` at most
/// [`small_maps::MAX_WIDTH`]) as dot products, one task per block of
/// [`small_maps::CHANNELS_PER_TASK`] output channels (each weight read once, by one thread).
fn by_dot_products(
    x: &[f32],
    weight: &[f32],
    bias: &[f32],
    [rows, k, c_out]: [usize; 3],
    epilogue: &Epilogue,
    residual: Option<&[f32]>,
) -> Vec<f32> {
    let per_task = small_maps::CHANNELS_PER_TASK;
    let write_task = |(product, row): &mut (Vec<f32>, Vec<f32>), task: usize, out: flex::UninitParts| {
        let channels = task * per_task..((task + 1) * per_task).min(c_out);
        let count = channels.len();
        product.resize(count * rows, 0.0);
        row.resize(count, 0.0);
        // product [count x rows]: product[c * rows + j] = dot(weight row c, position j)
        small_maps::dot_products(&weight[channels.start * k..channels.end * k], x, k, product);
        for j in 0..rows {
            row.iter_mut().enumerate().for_each(|(c, v)| *v = product[c * rows + j]);
            let skip = residual.map(|r| &r[j * c_out + channels.start..][..count]);
            // SAFETY: these channels of position j belong to this task alone.
            let dst = unsafe { out.part(j * c_out + channels.start, count) };
            epilogue.write_row(channels.start, &bias[channels.clone()], row, skip, dst);
        }
    };
    let scratch = || (Vec::new(), Vec::new());
    // SAFETY: the tasks' channel blocks cover the channels, and each writes its channels at every
    // position (above).
    unsafe { flex::write_parts_in_parallel(rows * c_out, c_out.div_ceil(per_task), scratch, write_task) }
}

/// A depthwise convolution's filters `[c, 1, kh, kw]` tap-major, `[kh * kw, c]` f32, so that a
/// tap's weights for all channels are one row ([`depthwise`] reads them so).
fn tap_major(weight: &[f32], taps: usize, c: usize) -> Vec<f32> {
    let mut by_tap = vec![0f32; taps * c];
    for (ch, filter) in weight.chunks_exact(taps).enumerate() {
        for (t, &v) in filter.iter().enumerate() {
            by_tap[t * c + ch] = v;
        }
    }
    by_tap
}

/// `act(bn(conv(x)))` (each of `bn` and `act` when given) for a depthwise convolution (groups =
/// channels, one filter each, no dilation), channel-last. With `pack` (kept by a net prepared for
/// inference) the tap-major filters are made once. `None` when the convolution is another kind
/// or a parameter is not a plain Flex f32 tensor.
pub fn depthwise(
    conv: &Conv2d,
    pack: Option<&WeightPack>,
    bn: Option<&BatchNorm>,
    act: Option<Activation>,
    x: &ChannelsLast,
) -> Option<ChannelsLast> {
    let [n, h, w, c] = x.dims;
    let [c_out, per_group, kh, kw] = conv.weight.dims();
    if conv.groups != c || c_out != c || per_group != 1 || conv.dilation != [1, 1] {
        return None;
    }
    let g = Sliding::new(&conv.padding, [h, w], [kh, kw], conv.stride)?;
    let (parameters, pack) = Parameters::of(conv, bn, pack)?;
    let (epilogue, bias) = (parameters.epilogue(act), parameters.bias());
    let bias = &bias[..];
    let taps = kh * kw;
    let make = || tap_major(&flex::values(parameters.weight()), taps, c);
    let made;
    let by_tap = match pack.and_then(|p| p.tap_major(make, taps, c)) {
        Some(kept) => kept,
        None => {
            made = make();
            &made
        }
    };
    let write_row = |sample: usize, oy: usize, out: &mut [MaybeUninit<f32>]| {
        depthwise_row(&x.values[sample * h * w * c..(sample + 1) * h * w * c], by_tap, &g, c, oy, out);
        // SAFETY: depthwise_row wrote every value of the row.
        epilogue.apply_rows(0, bias, unsafe { flex::assume_written(out) });
    };
    // SAFETY: `write_row` writes every value of its row (above).
    Some(unsafe { by_output_rows([n, g.output[0], g.output[1], c], write_row) })
}

/// The taps of a window that fall inside the input along axis `a` for output position `o`:
/// kernel offsets `k_lo..k_hi`, the first of which reads input position `first`.
#[inline(always)]
fn taps_in_input(g: &Sliding, a: usize, o: usize) -> (usize, usize, usize) {
    let start = o * g.stride[a];
    let k_lo = g.pad[a].saturating_sub(start).min(g.kernel[a]);
    let k_hi = (g.input[a] + g.pad[a]).saturating_sub(start).min(g.kernel[a]).max(k_lo);
    (k_lo, k_hi, (start + k_lo).saturating_sub(g.pad[a]))
}

/// Output row `oy` of one sample's depthwise convolution, before the bias: `out[ox * c + ch]` is
/// the sum, from zero and in kernel order, of `weight[tap][ch] * input[iy][ix][ch]` over the taps
/// that fall inside the input (`input` `[h, w, c]`, `by_tap` `[taps, c]`). Channels go in blocks
/// of 32, then 16 (registers: two or one AVX-512, four or two AVX2), then one by one.
#[cfg_attr(feature = "avx512", multiversion(targets("x86_64+avx512f+avx2+avx", "x86_64+avx2+avx")))]
#[cfg_attr(not(feature = "avx512"), multiversion(targets("x86_64+avx2+avx")))]
fn depthwise_row(input: &[f32], by_tap: &[f32], g: &Sliding, c: usize, oy: usize, out: &mut [MaybeUninit<f32>]) {
    let kw = g.kernel[1];
    let w = g.input[1];
    let (ky_lo, ky_hi, iy0) = taps_in_input(g, 0, oy);
    for (ox, position) in out.chunks_exact_mut(c).enumerate() {
        let (kx_lo, kx_hi, ix0) = taps_in_input(g, 1, ox);
        // The taps' rows: input offset of their first in-image tap, weight offset of that tap.
        let rows = (ky_lo..ky_hi)
            .map(|ky| ((iy0 + ky - ky_lo) * w + ix0) * c)
            .zip((ky_lo..ky_hi).map(|ky| (ky * kw + kx_lo) * c));
        let span = kx_hi - kx_lo;
        let mut c0 = 0;
        while c0 + 32 <= c {
            block_sum::<32>(input, by_tap, rows.clone(), span, c, c0, &mut position[c0..c0 + 32]);
            c0 += 32;
        }
        if c0 + 16 <= c {
            block_sum::<16>(input, by_tap, rows.clone(), span, c, c0, &mut position[c0..c0 + 16]);
            c0 += 16;
        }
        for ch in c0..c {
            block_sum::<1>(input, by_tap, rows.clone(), span, c, ch, &mut position[ch..ch + 1]);
        }
    }
}

/// Channels `c0..c0 + B` of one output position of [`depthwise_row`]: for each tap row
/// `(input offset, weight offset)` in `rows`, `span` taps `c` values apart.
#[inline(always)]
fn block_sum<const B: usize>(
    input: &[f32],
    by_tap: &[f32],
    rows: impl Iterator<Item = (usize, usize)>,
    span: usize,
    c: usize,
    c0: usize,
    out: &mut [MaybeUninit<f32>],
) {
    let mut sum = [0f32; B];
    for (x_at, w_at) in rows {
        if span == 0 {
            break;
        }
        // The row's last tap ends inside both slices: every read below is in bounds.
        let last = (span - 1) * c + c0 + B;
        let (x, wk) = (&input[x_at..x_at + last], &by_tap[w_at..w_at + last]);
        for t in 0..span {
            let at = t * c + c0;
            // SAFETY: `at + B <= last`, the length of both slices (above).
            let (src, wt) = unsafe { (x.get_unchecked(at..at + B), wk.get_unchecked(at..at + B)) };
            for l in 0..B {
                sum[l] += wt[l] * src[l];
            }
        }
    }
    out.iter_mut().zip(sum).for_each(|(d, v)| {
        d.write(v);
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::fused::conv_bn_act;
    use crate::kernels::fused::tests::batch_norm;
    use crate::kernels::tests::{assert_close, conv2d, random_input};
    use burn::nn::PaddingConfig2d;
    use burn::nn::conv::Conv2dConfig;
    use burn::prelude::*;

    fn bits(values: &[f32]) -> Vec<u32> {
        values.iter().map(|v| v.to_bits()).collect()
    }

    /// Ordinary convolutions channel-last (a layer net's at one face or a few): 3 x 3 and 5 x 5
    /// "same", cnn1's 11 x 11 of stride 4 on one channel, a valid stride-2 window, output
    /// channels that fill 1 to 4 blocks and part of one, ReLU and sigmoid: Burn's convolution
    /// within 1e-5, the same bits on 1, 2 and 3 threads and for one face alone as in the batch,
    /// with the pack kept across calls. (Shapes that Winograd would take channel-first, which
    /// stay channel-first, are left out: in tests it takes passes of 64 tiles.)
    #[test]
    fn an_ordinary_convolution_matches_burns() {
        if crate::util::cpu::isa().is_none() {
            eprintln!("skipped: the direct convolution needs AVX2 and FMA, which this CPU lacks");
            return;
        }
        let device = Device::flex();
        // (c_in, c_out, kernel, stride, padding, side)
        let cases = [
            (8, 40, 3, 1, PaddingConfig2d::Same, 6),
            (16, 24, 3, 1, PaddingConfig2d::Same, 12),
            (24, 31, 3, 1, PaddingConfig2d::Same, 16),
            (12, 20, 5, 1, PaddingConfig2d::Same, 7),
            (1, 96, 11, 4, PaddingConfig2d::Same, 48),
            (9, 17, 3, 2, PaddingConfig2d::Valid, 13),
            (9, 17, 3, 2, PaddingConfig2d::Valid, 12), // the input's last row and column unread
            (70, 64, 1, 1, PaddingConfig2d::Valid, 5),
            (16, 20, 5, 1, PaddingConfig2d::Same, 3), // windows larger than the map
            (64, 24, 3, 1, PaddingConfig2d::Same, 3),
        ];
        for (i, (c_in, c_out, kernel, stride, padding, side)) in cases.into_iter().enumerate() {
            let conv = conv2d([c_in, c_out], kernel, stride, padding, &device);
            let x = random_input([3, c_in, side, side], &device, 40 + i as u64);
            let last = ChannelsLast::from_channels_first(&x).unwrap();
            let pack = WeightPack::default();
            assert!(conv_applies(&conv, Some(&pack), last.dims(), false), "case {i} should run channel-last");
            assert!(!conv_applies(&conv, None, last.dims(), false), "case {i}: not without a pack");
            let act = [Some(Activation::Relu), Some(Activation::Sigmoid)][i % 2];
            let mut expected = conv.forward(x.clone());
            expected = match act {
                Some(Activation::Relu) => burn::tensor::activation::relu(expected),
                _ => burn::tensor::activation::sigmoid(expected),
            };
            let run = || super::conv(&conv, Some(&pack), act, &last).expect("runs channel-last");
            let ours = run();
            assert_close(&ours.to_channels_first(), &expected, 1e-5, &format!("case {i}"));
            for threads in [1, 2, 3] {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                assert_eq!(bits(&pool.install(|| run().values)), bits(&ours.values), "case {i}: {threads} threads");
            }
            let one = ChannelsLast::from_channels_first(&x.clone().slice([1..2])).unwrap();
            let alone = super::conv(&conv, Some(&pack), act, &one).unwrap();
            let per_face = ours.values.len() / 3;
            assert_eq!(bits(&alone.values), bits(&ours.values[per_face..2 * per_face]), "case {i}: one face alone");
        }
        // One pack at two map sizes (it keeps the first size's taps): Burn's values at both.
        let conv = Conv2dConfig::new([8, 24], [3, 3]).with_padding(PaddingConfig2d::Same).init(&device);
        let pack = WeightPack::default();
        for side in [6, 9, 6] {
            let x = random_input([1, 8, side, side], &device, side as u64);
            let ours = super::conv(&conv, Some(&pack), None, &ChannelsLast::from_channels_first(&x).unwrap()).unwrap();
            assert_close(&ours.to_channels_first(), &conv.forward(x), 1e-5, &format!("{side} x {side}"));
        }
    }

    /// A convolution over a grey plane copied into 3 channels and standardised per channel
    /// (EfficientNet-Lite0's stem on grey faces: 3 x 3 of stride 2, "same"; also 5 x 5 of
    /// stride 1, a valid stride-2 window that leaves the last row unread, odd sizes), with a
    /// batch norm and ReLU6: Burn's convolution of the standardised three-channel images within
    /// 1e-5, the same bits on 1, 2 and 3 threads, and `None` for an input of 3 channels.
    #[test]
    fn a_convolution_of_standardised_grey_copies_matches_burns() {
        let device = Device::flex();
        let (mean, std) = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]);
        // (c_out, kernel, stride, padding, side, batch)
        let cases = [
            (32, 3, 2, PaddingConfig2d::Same, 48, 2),
            (20, 5, 1, PaddingConfig2d::Same, 9, 1),
            (17, 3, 2, PaddingConfig2d::Valid, 12, 3),
            (16, 3, 2, PaddingConfig2d::Explicit(1, 1, 1, 1), 7, 1),
        ];
        for (i, (c_out, kernel, stride, padding, side, batch)) in cases.into_iter().enumerate() {
            let conv = conv2d([3, c_out], kernel, stride, padding, &device);
            let bn = batch_norm(c_out, &device, 90 + i as u64);
            let grey = random_input([batch, 1, side, side], &device, 80 + i as u64).abs().clamp_max(1.0);
            let m = Tensor::<1>::from_floats(mean, &device).reshape([1, 3, 1, 1]);
            let s = Tensor::<1>::from_floats(std, &device).reshape([1, 3, 1, 1]);
            let rgb = (grey.clone().expand([batch, 3, side, side]) - m) / s;
            let expected = bn.forward(conv.forward(rgb.clone())).clamp(0.0, 6.0);
            let run = || conv_from_grey(&conv, Some(&bn), Some(Activation::RELU6), &grey, &mean, &std).expect("runs");
            let ours = run();
            assert_close(&ours.to_channels_first(), &expected, 1e-5, &format!("case {i}"));
            for threads in [1, 2, 3] {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                assert_eq!(bits(&pool.install(|| run().values)), bits(&ours.values), "case {i}: {threads} threads");
            }
            assert!(conv_from_grey(&conv, None, None, &rgb, &mean, &std).is_none(), "case {i}: 3 channels");
        }
    }

    /// Which convolutions run channel-last: not a first layer's few taps, not a pass of too
    /// many positions (fewer still when the maps would be turned channel-last first), not one
    /// that Winograd takes channel-first.
    #[test]
    fn a_convolution_runs_channel_last_only_where_it_pays() {
        let device = Device::flex();
        let pack = Some(WeightPack::default());
        let conv = |c_in, c_out, groups| {
            Conv2dConfig::new([c_in, c_out], [3, 3])
                .with_groups(groups)
                .with_padding(PaddingConfig2d::Same)
                .init(&device)
        };
        let has_isa = crate::util::cpu::isa().is_some();
        assert!(!conv_applies(&conv(1, 32, 1), pack.as_ref(), [1, 48, 48, 1], false), "9 taps");
        assert_eq!(conv_applies(&conv(32, 16, 1), pack.as_ref(), [1, 48, 48, 32], false), has_isa, "2304 positions");
        assert!(!conv_applies(&conv(32, 16, 1), pack.as_ref(), [1, 48, 48, 32], true), "2304 positions, entering");
        assert_eq!(conv_applies(&conv(32, 16, 1), pack.as_ref(), [1, 24, 24, 32], true), has_isa, "576, entering");
        assert!(!conv_applies(&conv(32, 16, 1), pack.as_ref(), [2, 48, 48, 32], false), "4608 positions");
        // Winograd takes it channel-first (in tests from 64 tiles and 32 output channels).
        assert!(!conv_applies(&conv(32, 64, 1), pack.as_ref(), [1, 24, 24, 32], false), "Winograd's");
    }

    /// Max pools channel-last give the channel-first pool's values and Burn's: vgg-lite's 2 x 2 of stride 2,
    /// the search's 4 x 4 and 3 x 3 "same" pools of stride 2 (windows cut by the padding).
    #[test]
    fn max_pool_matches_the_channel_first_pool() {
        use burn::nn::pool::MaxPool2dConfig;
        let device = Device::flex();
        for (i, (kernel, padding, side)) in
            [(2, PaddingConfig2d::Valid, 12), (4, PaddingConfig2d::Same, 24), (3, PaddingConfig2d::Same, 7)]
                .into_iter()
                .enumerate()
        {
            let pool = MaxPool2dConfig::new([kernel, kernel]).with_strides([2, 2]).with_padding(padding).init();
            let x = random_input([2, 19, side, side], &device, 70 + i as u64);
            let expected = super::super::max_pool2d::max_pool2d(&pool, x.clone());
            let ours = max_pool(&pool, &ChannelsLast::from_channels_first(&x).unwrap()).expect("covered");
            let ours = ours.to_channels_first();
            assert_eq!(ours.dims(), expected.dims(), "case {i}");
            let values = |t: Tensor<4>| t.into_data().try_to_vec::<f32>().unwrap();
            assert_eq!(values(ours.clone()), values(expected), "case {i}");
            assert_eq!(values(ours), values(pool.forward(x)), "case {i}: Burn's pool");
        }
    }

    /// 1 x 1 and depthwise convolutions with batch norm, ReLU6 and a skip connection, on the
    /// shapes EfficientNet-Lite0 has at 48 and 96 px (wide maps, 2 x 2 maps, products on both
    /// sides of the dot-product limit, channels that are not a multiple of the register block):
    /// the channel-first layers' values (Burn's convolution where ours is not used) within 1e-5,
    /// and the same bits on 1, 2 and 3 threads. The layout round trip is exact.
    #[test]
    fn matches_the_channel_first_layers_on_any_thread_count() {
        let device = Device::flex();
        // (c_in, c_out or 0 for depthwise, kernel, stride, side, batch)
        let cases = [
            (16, 96, 1, 1, 24, 2),
            (96, 0, 3, 2, 24, 2),
            (144, 0, 5, 1, 6, 1),
            (40, 0, 5, 2, 7, 3),
            (20, 0, 3, 1, 5, 2),
            (192, 1152, 1, 1, 2, 1),
            (1152, 192, 1, 1, 2, 1),
            (80, 480, 1, 1, 3, 5),
            (320, 1280, 1, 1, 3, 9),
            (24, 24, 1, 1, 12, 1),
            (600, 40, 1, 1, 14, 1), // k > 512, c_out <= 64: 196 rows in 3 tasks on 2 and 3 threads
            (32, 16, 1, 1, 24, 7),  // 4032 rows: 6 tasks on 3 threads (31 threads: see below)
            (48, 3, 1, 1, 12, 2),   // fewer than 4 output channels: one task
        ];
        for (i, (c_in, c_out, k, stride, side, batch)) in cases.into_iter().enumerate() {
            let is_depthwise = c_out == 0;
            let (c_out, groups) = if is_depthwise { (c_in, c_in) } else { (c_out, 1) };
            let conv = Conv2dConfig::new([c_in, c_out], [k, k])
                .with_stride([stride, stride])
                .with_groups(groups)
                .with_padding(PaddingConfig2d::Same)
                .with_bias(i % 2 == 0)
                .init(&device);
            let bn = batch_norm(c_out, &device, 10 * i as u64);
            let x = random_input([batch, c_in, side, side], &device, 100 + i as u64);
            let last = ChannelsLast::from_channels_first(&x).unwrap();
            assert_eq!(last.to_channels_first().into_data(), x.clone().into_data(), "case {i}: round trip");
            let act = Some(Activation::RELU6);
            let expected = conv_bn_act(&conv, Some(&bn), act, x.clone());
            // With and without the packs an inference net keeps: 1 x 1 convolutions' packed
            // weights (`conv2d::direct` where the pass has fewer than 512 positions and the CPU
            // has AVX2 and FMA), depthwise ones' tap-major filters.
            for packed in [false, true] {
                let pack = packed.then(WeightPack::default);
                let run = || {
                    if is_depthwise {
                        depthwise(&conv, pack.as_ref(), Some(&bn), act, &last).unwrap()
                    } else {
                        pointwise(&conv, pack.as_ref(), Some(&bn), act, &last, None).unwrap()
                    }
                };
                let case = format!("case {i}{}", if packed { ", packed" } else { "" });
                assert_close(&run().to_channels_first(), &expected, 1e-5, &case);
                let on = |threads| {
                    rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap().install(|| run().values)
                };
                let one = on(1);
                for threads in [2, 3, 31] {
                    assert_eq!(bits(&on(threads)), bits(&one), "{case}: {threads} threads");
                }
                if !is_depthwise && c_in == c_out {
                    let with_skip = pointwise(&conv, pack.as_ref(), Some(&bn), act, &last, Some(&last))
                        .unwrap()
                        .to_channels_first();
                    assert_close(&with_skip, &(expected.clone() + x.clone()), 1e-5, &format!("{case}: skip"));
                }
            }
        }
    }

    /// A depthwise layer's tap-major pack holding another layer's shape is not used: the
    /// output is the one made without a pack.
    #[test]
    fn another_layers_tap_major_pack_is_not_used() {
        let device = Device::flex();
        let layer = |c: usize, k: usize| {
            Conv2dConfig::new([c, c], [k, k]).with_groups(c).with_padding(PaddingConfig2d::Same).init(&device)
        };
        let (small, large) = (layer(8, 3), layer(8, 5));
        let x = ChannelsLast::from_channels_first(&random_input([1, 8, 6, 6], &device, 3)).unwrap();
        let pack = WeightPack::default();
        depthwise(&small, Some(&pack), None, None, &x).unwrap();
        let with_stale = depthwise(&large, Some(&pack), None, None, &x).unwrap();
        let without = depthwise(&large, None, None, None, &x).unwrap();
        assert_eq!(bits(&with_stale.values), bits(&without.values));
    }

    /// A pack holding another layer of the same shape is not used either (the layer is
    /// recognised by its parameters' ids, not by its shape): depthwise and 1 x 1 outputs are
    /// those made without a pack.
    #[test]
    fn another_layers_pack_of_the_same_shape_is_not_used() {
        let device = Device::flex();
        let x = ChannelsLast::from_channels_first(&random_input([1, 8, 6, 6], &device, 4)).unwrap();
        let depthwise_layer =
            || Conv2dConfig::new([8, 8], [3, 3]).with_groups(8).with_padding(PaddingConfig2d::Same).init(&device);
        let (first, second) = (depthwise_layer(), depthwise_layer());
        let pack = WeightPack::default();
        depthwise(&first, Some(&pack), None, None, &x).unwrap();
        let with_stale = depthwise(&second, Some(&pack), None, None, &x).unwrap();
        assert_eq!(bits(&with_stale.values), bits(&depthwise(&second, None, None, None, &x).unwrap().values));
        let pointwise_layer = || Conv2dConfig::new([8, 16], [1, 1]).init(&device);
        let (first, second) = (pointwise_layer(), pointwise_layer());
        let pack = WeightPack::default();
        pointwise(&first, Some(&pack), None, None, &x, None).unwrap();
        let with_stale = pointwise(&second, Some(&pack), None, None, &x, None).unwrap();
        let without = pointwise(&second, None, None, None, &x, None).unwrap();
        assert_close(&with_stale.to_channels_first(), &without.to_channels_first(), 1e-6, "1 x 1");
    }

    /// Global average pooling: Burn's `mean_dim(3).mean_dim(2)` to rounding.
    #[test]
    fn mean_positions_is_the_spatial_mean() {
        let device = Device::flex();
        let x = random_input([3, 20, 3, 5], &device, 5);
        let expected = x.clone().mean_dim(3).mean_dim(2).reshape([3, 20]);
        let got = ChannelsLast::from_channels_first(&x).unwrap().mean_positions();
        let (got, expected) =
            (got.into_data().try_to_vec::<f32>().unwrap(), expected.into_data().try_to_vec::<f32>().unwrap());
        for (g, e) in got.iter().zip(&expected) {
            assert!((g - e).abs() <= 1e-6, "{g} vs {e}");
        }
    }

    /// Tracked (training) tensors are not taken: the caller keeps Burn's layout and graph.
    #[test]
    fn training_tensors_stay_channel_first() {
        let device = Device::flex().autodiff();
        assert!(ChannelsLast::from_channels_first(&random_input([1, 2, 3, 3], &device, 1)).is_none());
    }
}
