//! Fast CPU kernels for the two layers that dominate a CNN step on Burn's Flex backend:
//! 2-D convolution and max pooling, forward and backward.
//!
//! Why: profiling a cnn3 or tuned-CNN training step (`perf record ferkit bench`) showed Flex
//! spending more time around its matrix products than in them: a single-threaded NCHW -> NHWC
//! copy and per-tile scatter in every convolution, including the odd-shaped convolutions that
//! compute weight gradients, and a max pool that divides integers for every output. These
//! kernels keep every convolution a plain im2col + GEMM per sample (the `gemm` crate, the one
//! Flex itself uses) and pool with per-row window bounds.
//!
//! Elementwise layers whose Flex op ran on one thread are here too: batch norm, `clamp` (ReLU6)
//! and `sigmoid` (split across the threads; the sigmoid's `exp` without a library call, so that
//! it vectorises), and the Adam / AdamW weight update ([`adam`]: one parallel pass per parameter
//! tensor, the same bits as Burn's optimizers).
//!
//! They plug into Burn as backend extensions (see Burn's `custom-cubecl-kernel` example): on a
//! Flex tensor, tracked or not, the layer runs here and registers its own backward step with
//! Burn's autodiff graph; on any other backend (the `gpu` feature) it falls back to Burn's op.
//! Gradients are summed in a fixed order, so a seed still fixes a run.
//! `tests` in each file compare values and gradients with Burn's own ops.
//!
//! Inference has two more: [`fused`] writes a convolution's output through its batch norm and
//! activation in the same pass (its tests compare it bit for bit with the layers one by one:
//! this module's convolution and batch norm, Burn's ReLU), and [`dense`] computes a dense layer
//! of a few rows (one face), its large layers split across the threads (compared with Burn's
//! `Linear`); at one face a layer net's deeper convolutions and pools run channel-last
//! ([`channels_last`], over `conv2d`'s direct convolution; compared with Burn's convolution and
//! this module's pool). 3 x 3 and 5 x 5,
//! stride-1 convolutions (vgg-lite's, the search's) compute their output and their input and
//! weight gradients by Winograd's F(2x2, 3x3), F(4x4, 3x3) and F(2x2, 5x5) (`winograd`, compared with Burn's
//! convolution and its gradients), convolutions on small maps whose "same" padding
//! holds many of their taps leave out the kernel rows in it (`conv2d`'s `kernel_rows`, compared
//! with Burn's), and a face alone is split into bands of output rows so that both threads work on
//! it (`conv2d`, the same bits as unsplit).

pub mod adam;
pub mod batch_norm;
pub mod channels_last;
pub mod clamp;
pub mod conv2d;
pub mod dense;
mod epilogue;
mod depthwise_conv2d;
mod flex;
pub mod fused;
mod matmul;
pub mod max_pool2d;
mod reuse;
pub mod sigmoid;
mod winograd;

use burn::nn::PaddingConfig2d;

/// Whether `t` lives on the plain (inference) CPU backend, Burn's Flex without autodiff, as f32:
/// where ferkit's inference kernels run.
pub(crate) fn on_cpu_inference<const D: usize>(t: &burn::tensor::Tensor<D>) -> bool {
    flex::plain(t).is_some()
}

/// The vector instruction set ferkit's own inference kernels (`conv2d`'s direct convolution,
/// [`dense`]) run with on this CPU; `ferkit bench` names the same one (`util::cpu`).
pub(crate) use crate::util::cpu::{Isa, isa};

/// Output rows narrower than this are handled value by value (through a table of taps) rather
/// than row by row: for them, a few library calls or loop set-ups per row cost more than the
/// row itself (deep layers' rows are 2 to 12 values).
pub(crate) const SHORT_ROW: usize = 16;

/// Where a sliding window starts and how many positions it takes along each axis.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Sliding {
    pub input: [usize; 2],
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    /// Rows and columns of padding before the input (top, left).
    pub pad: [usize; 2],
    pub output: [usize; 2],
}

impl Sliding {
    /// The window geometry Burn's `Conv2d` and `MaxPool2d` use for `padding` (TensorFlow's
    /// "same": the odd extra row or column of padding goes at the end).
    pub fn new(padding: &PaddingConfig2d, input: [usize; 2], kernel: [usize; 2], stride: [usize; 2]) -> Option<Self> {
        let mut pad = [0; 2];
        let mut output = [0; 2];
        for a in 0..2 {
            let (begin, end) = match *padding {
                PaddingConfig2d::Valid => (0, 0),
                PaddingConfig2d::Same => {
                    let out = input[a].div_ceil(stride[a]);
                    let total = ((out.max(1) - 1) * stride[a] + kernel[a]).saturating_sub(input[a]);
                    (total / 2, total - total / 2)
                }
                PaddingConfig2d::Explicit(top, left, bottom, right) => {
                    if a == 0 {
                        (top, bottom)
                    } else {
                        (left, right)
                    }
                }
            };
            let span = (input[a] + begin + end).checked_sub(kernel[a])?;
            pad[a] = begin;
            output[a] = span / stride[a] + 1;
        }
        Some(Sliding { input, kernel, stride, pad, output })
    }

    /// The input positions, along axis `a`, that output position `o` reads with kernel offset
    /// `k` (or `None` when that tap falls in the padding).
    #[inline]
    fn source(&self, a: usize, o: usize, k: usize) -> Option<usize> {
        (o * self.stride[a] + k).checked_sub(self.pad[a]).filter(|&i| i < self.input[a])
    }

    /// The output positions along axis `a` whose tap at kernel offset `k` falls inside the input.
    #[inline]
    fn taps_inside(&self, a: usize, k: usize) -> std::ops::Range<usize> {
        let s = self.stride[a];
        // o * s + k - pad >= 0 and < input
        let lo = self.pad[a].saturating_sub(k).div_ceil(s);
        let hi = (self.input[a] + self.pad[a]).saturating_sub(k).div_ceil(s).min(self.output[a]);
        lo.min(hi)..hi
    }

    /// The range of input positions along axis `a` under the window of output position `o`.
    #[inline]
    fn window(&self, a: usize, o: usize) -> std::ops::Range<usize> {
        let start = o * self.stride[a];
        let lo = start.saturating_sub(self.pad[a]);
        let hi = (start + self.kernel[a]).saturating_sub(self.pad[a]).min(self.input[a]);
        lo..hi.max(lo)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use burn::prelude::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// A seeded tensor of standard normal values on `device`.
    ///
    /// The values come from a generator of its own rather than `device.seed` + `Tensor::random`:
    /// Flex keeps one generator for the whole process, so another test running at the same
    /// time could draw from it between the seeding and the draw, and two tensors meant to be
    /// equal (e.g. the same gamma given to two batch-norm layers) would differ.
    pub fn random_input<const D: usize>(shape: [usize; D], device: &Device, seed: u64) -> Tensor<D> {
        let mut rng = StdRng::seed_from_u64(seed);
        let count = shape.iter().product::<usize>();
        // Box-Muller: two uniform values in (0, 1] give one normal value.
        let values: Vec<f32> = (0..count)
            .map(|_| {
                let (u, v) = (1.0 - rng.random::<f64>(), rng.random::<f64>());
                ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
            })
            .collect();
        Tensor::from_data(TensorData::new(values, shape), device)
    }

    /// A square-window convolution with a bias (Burn's initial weights), for the kernels' tests.
    pub fn conv2d(
        [c_in, c_out]: [usize; 2],
        kernel: usize,
        stride: usize,
        padding: burn::nn::PaddingConfig2d,
        device: &Device,
    ) -> burn::nn::conv::Conv2d {
        burn::nn::conv::Conv2dConfig::new([c_in, c_out], [kernel, kernel])
            .with_stride([stride, stride])
            .with_padding(padding)
            .init(device)
    }

    /// Every value of `a` is within `tolerance` of `b` (relative to `b`'s largest magnitude).
    pub fn assert_close<const D: usize>(a: &Tensor<D>, b: &Tensor<D>, tolerance: f32, what: &str) {
        assert_eq!(a.dims(), b.dims(), "{what}: shapes differ");
        let a = a.clone().into_data().try_to_vec::<f32>().unwrap();
        let b = b.clone().into_data().try_to_vec::<f32>().unwrap();
        let scale = b.iter().fold(1f32, |m, v| m.max(v.abs()));
        // NaN where the other has none fails (`f32::max` would skip it).
        let nan_at = a.iter().zip(&b).position(|(x, y)| x.is_nan() != y.is_nan());
        assert!(nan_at.is_none(), "{what}: NaN in one and not the other at value {nan_at:?}");
        let worst = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).filter(|d| !d.is_nan()).fold(0f32, f32::max);
        assert!(worst <= tolerance * scale, "{what}: max difference {worst} (scale {scale})");
    }
}
