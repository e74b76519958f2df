//! Depthwise 2-D convolution (one filter per channel: groups = input channels = output
//! channels), forward and backward, on Flex tensors `[batch, channels, height, width]`.
//!
//! Why: EfficientNet's MBConv blocks are built around these, and Burn's grouped convolution
//! on Flex treats each channel as a convolution of its own. Here each output row is a sum of
//! `kernel x kernel` scaled input rows (vector code for stride 1), each `(sample, channel)`
//! plane is one task, and the weight gradient sums over samples in a fixed order per channel,
//! so a seed still fixes a run.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::{Flex, FlexTensor};
use burn::nn::conv::Conv2d;
use rayon::prelude::*;

use super::flex::{self, SharedMut, TrackedTensor};
use super::{SHORT_ROW, Sliding};

/// Whether `conv` on an input of `channels` channels is depthwise, the case computed here.
pub fn is_depthwise(conv: &Conv2d, channels: usize) -> bool {
    let [c_out, per_group, _, _] = conv.weight.dims();
    conv.groups > 1 && conv.groups == channels && c_out == channels && per_group == 1 && conv.dilation == [1, 1]
}

/// For every `(ky, kx)` and output row `oy`: the input row it reads (if inside), and for the
/// output columns `inside` the first input column. Calls `f(kernel index, oy, iy, inside, ix0)`.
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
/// into memory once per destination: see [`sum_by`]): a plane is then one short loop instead of
/// a few calls per output row (a 2 x 2 map under a 5 x 5 kernel has 16 triples but 10 row
/// visits). `None` for wide maps, which go row by row through [`for_each_tap`].
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

/// Sums `term(triple)` over `triples` (sorted by `triples[field]`) and adds each destination's
/// sum with `add(destination, sum)` once, keeping the running sum in a register rather than
/// reading and writing memory for every term.
#[inline]
fn sum_by(triples: &[[u32; 3]], field: usize, term: impl Fn([usize; 3]) -> f32, mut add: impl FnMut(usize, f32)) {
    let Some(first) = triples.first() else { return };
    let (mut at, mut sum) = (first[field], 0f32);
    for t in triples {
        if t[field] != at {
            add(at as usize, sum);
            (at, sum) = (t[field], 0.0);
        }
        sum += term(t.map(|v| v as usize));
    }
    add(at as usize, sum);
}

/// The output for input `x`, weights `[channels, 1, kh, kw]` and a bias per channel.
pub(super) fn forward(x: &FlexTensor, weight: &FlexTensor, bias: &FlexTensor, g: Sliding) -> FlexTensor {
    let [n, c, h, w] = flex::dims4(x);
    let ([oh, ow], taps, sx) = (g.output, g.kernel[0] * g.kernel[1], g.stride[1]);
    let (x, weight, bias) = (flex::values(x), flex::values(weight), flex::values(bias));
    let by_output = small_map(&g, OUTPUT);
    let mut out = vec![0f32; n * c * oh * ow];
    out.par_chunks_mut(oh * ow).enumerate().for_each(|(plane, out)| {
        let channel = plane % c;
        let input = &x[plane * h * w..(plane + 1) * h * w];
        let kernel = &weight[channel * taps..(channel + 1) * taps];
        out.fill(bias[channel]);
        if let Some(triples) = &by_output {
            sum_by(triples, OUTPUT, |[_, k, i]| kernel[k] * input[i], |o, sum| out[o] += sum);
            return;
        }
        for_each_tap(&g, |k, oy, iy, inside, ix0| {
            let (wk, dst) = (kernel[k], &mut out[oy * ow..(oy + 1) * ow][inside.clone()]);
            let src = &input[iy * w + ix0..iy * w + w];
            if sx == 1 {
                dst.iter_mut().zip(src).for_each(|(d, &v)| *d += wk * v);
            } else {
                dst.iter_mut().zip(src.iter().step_by(sx)).for_each(|(d, &v)| *d += wk * v);
            }
        });
    });
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
    let ([oh, ow], taps, sx) = (g.output, g.kernel[0] * g.kernel[1], g.stride[1]);
    let (x, weight, dy) = (flex::values(x), flex::values(weight), flex::values(grad));

    let dx = wanted[0].then(|| {
        let by_input = small_map(&g, INPUT);
        let mut dx = vec![0f32; n * c * h * w];
        dx.par_chunks_mut(h * w).enumerate().for_each(|(plane, dx)| {
            let kernel = &weight[(plane % c) * taps..(plane % c + 1) * taps];
            let dy = &dy[plane * oh * ow..(plane + 1) * oh * ow];
            if let Some(triples) = &by_input {
                sum_by(triples, INPUT, |[o, k, _]| kernel[k] * dy[o], |i, sum| dx[i] += sum);
                return;
            }
            for_each_tap(&g, |k, oy, iy, inside, ix0| {
                let (wk, src) = (kernel[k], &dy[oy * ow..(oy + 1) * ow][inside]);
                let dst = &mut dx[iy * w + ix0..iy * w + w];
                if sx == 1 {
                    dst.iter_mut().zip(src).for_each(|(d, &v)| *d += wk * v);
                } else {
                    dst.iter_mut().step_by(sx).zip(src).for_each(|(d, &v)| *d += wk * v);
                }
            });
        });
        flex::tensor(dx, &dims)
    });

    let dw = wanted[1].then(|| {
        let by_tap = small_map(&g, TAP);
        let mut dw = vec![0f32; c * taps];
        let dw_ptr = SharedMut(dw.as_mut_ptr());
        (0..c).into_par_iter().for_each(|channel| {
            // SAFETY: channel `channel`'s taps belong to this task alone.
            let dw = unsafe { dw_ptr.part(channel * taps, taps) };
            for sample in 0..n {
                let plane = sample * c + channel;
                let input = &x[plane * h * w..(plane + 1) * h * w];
                let dy = &dy[plane * oh * ow..(plane + 1) * oh * ow];
                if let Some(triples) = &by_tap {
                    sum_by(triples, TAP, |[o, _, i]| dy[o] * input[i], |k, sum| dw[k] += sum);
                    continue;
                }
                for_each_tap(&g, |k, oy, iy, inside, ix0| {
                    let src = &input[iy * w + ix0..iy * w + w];
                    let dy = dy[oy * ow..(oy + 1) * ow][inside].iter();
                    dw[k] += if sx == 1 {
                        dy.zip(src).map(|(d, v)| d * v).sum::<f32>()
                    } else {
                        dy.zip(src.iter().step_by(sx)).map(|(d, v)| d * v).sum::<f32>()
                    };
                });
            }
        });
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
    let out = forward(x.primitive(), weight.primitive(), bias.primitive(), g);
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
    }
}
