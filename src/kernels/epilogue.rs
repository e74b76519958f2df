//! What an inference kernel applies to each output value as it writes it (the "epilogue"): a
//! batch norm's per-channel affine map and an activation. Apart from [`super::fused`], which
//! calls the convolutions with it, so that the convolution kernels can take one without
//! importing the module that calls them.

use std::mem::MaybeUninit;

use burn::tensor::Tensor;
use burn::tensor::activation;
use multiversion::multiversion;

use super::{clamp, sigmoid};

/// An activation applied elementwise after a convolution (and its batch norm).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Activation {
    /// `max(x, 0)`, NaN passed through: Flex's `relu`, the same bits.
    Relu,
    /// `x.max(low).min(high)` (EfficientNet's ReLU6 is `Clamp(0.0, 6.0)`): [`super::clamp`]'s map.
    Clamp(f32, f32),
    /// `1 / (1 + exp(-x))`: [`super::sigmoid`]'s map.
    Sigmoid,
}

impl Activation {
    /// EfficientNet's ReLU6.
    pub const RELU6: Activation = Activation::Clamp(0.0, 6.0);

    /// The activation of one value, as the unfused layer computes it.
    #[inline(always)]
    pub fn apply(self, v: f32) -> f32 {
        match self {
            Activation::Relu => {
                if v.is_nan() || v > 0.0 {
                    v
                } else {
                    0.0
                }
            }
            Activation::Clamp(low, high) => v.max(low).min(high),
            Activation::Sigmoid => sigmoid::logistic(v),
        }
    }

    /// The activation as the separate layer the training graph uses (Burn's `relu`, whose
    /// gradient is zero at 0, [`clamp::clamp`] or [`sigmoid::sigmoid`]).
    pub(crate) fn layer<const D: usize>(self, x: Tensor<D>) -> Tensor<D> {
        match self {
            Activation::Relu => activation::relu(x),
            Activation::Clamp(low, high) => clamp::clamp(x, low, high),
            Activation::Sigmoid => sigmoid::sigmoid(x),
        }
    }
}

/// Runs `$run` with `$f` the map `value -> act(pre(value))`, expanded once per activation, so that
/// the loop `$run` makes is compiled (and vectorised) for each activation on its own: the match on the
/// activation runs once per call, not once per value.
macro_rules! with_activation {
    ($act:expr, $pre:expr, |$f:ident| $run:expr) => {{
        let pre = $pre;
        match $act {
            None => {
                let $f = pre;
                $run
            }
            // Each arm names its variant as a constant, so `apply`'s match folds away.
            Some(Activation::Relu) => {
                let $f = move |v| Activation::Relu.apply(pre(v));
                $run
            }
            Some(Activation::Clamp(low, high)) => {
                let $f = move |v| Activation::Clamp(low, high).apply(pre(v));
                $run
            }
            Some(Activation::Sigmoid) => {
                let $f = move |v| Activation::Sigmoid.apply(pre(v));
                $run
            }
        }
    }};
}

/// What each output value of an inference convolution goes through as it is written: the
/// batch norm's per-channel `y * scale + shift` (when `affine`), then `act`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Epilogue<'a> {
    /// Per output channel: `(scale, shift)`, one value per channel each.
    pub affine: Option<(&'a [f32], &'a [f32])>,
    pub act: Option<Activation>,
}

impl Epilogue<'_> {
    /// The plain convolution's output: nothing after the bias.
    pub const NONE: Epilogue<'static> = Epilogue { affine: None, act: None };

    /// Writes `src[i] + bias` through channel `channel`'s epilogue into `dst[i]`, for every `i`
    /// of `dst` (`src` is at least as long).
    #[inline]
    pub fn write(&self, channel: usize, bias: f32, src: &[f32], dst: &mut [MaybeUninit<f32>]) {
        // Compiled for AVX2 / AVX-512 too (the same operations, so the same bits): on SSE2 alone
        // the epilogue was 17% of EfficientNet-Lite0's inference at batch 256 (`perf`, AMD EPYC,
        // session 31).
        #[cfg_attr(feature = "avx512", multiversion(targets("x86_64+avx512f+avx2+avx", "x86_64+avx2+avx")))]
        #[cfg_attr(not(feature = "avx512"), multiversion(targets("x86_64+avx2+avx")))]
        fn each(src: &[f32], dst: &mut [MaybeUninit<f32>], f: impl Fn(f32) -> f32) {
            dst.iter_mut().zip(src).for_each(|(d, &v)| {
                d.write(f(v));
            });
        }
        match self.affine {
            None => with_activation!(self.act, |v| v + bias, |f| each(src, dst, f)),
            Some((scale, shift)) => {
                let (s, t) = (scale[channel], shift[channel]);
                with_activation!(self.act, |v| (v + bias) * s + t, |f| each(src, dst, f))
            }
        }
    }

    /// Ends one output position of a channel-last layer and writes it: `row` holds the sums of
    /// channels `first_channel..first_channel + row.len()` at that position (overwritten);
    /// `bias` those channels' biases; `residual` the skip connection's values for the same
    /// channels and position, added after the activation (MobileNetV2's inverted residual);
    /// `dst` the output's slots for them (as long as `row`). The same bits as
    /// [`Self::apply_rows`] followed by the addition.
    ///
    /// Panics when `dst` or `residual` is not as long as `row` (callers rely on every slot of
    /// `dst` being written).
    #[inline]
    pub fn write_row(
        &self,
        first_channel: usize,
        bias: &[f32],
        row: &mut [f32],
        residual: Option<&[f32]>,
        dst: &mut [MaybeUninit<f32>],
    ) {
        assert!(dst.len() == row.len() && residual.is_none_or(|r| r.len() == row.len()), "write_row: lengths");
        self.apply_rows(first_channel, bias, row);
        if let Some(r) = residual {
            row.iter_mut().zip(r).for_each(|(v, &s)| *v += s);
        }
        dst.iter_mut().zip(row.iter()).for_each(|(d, &v)| {
            d.write(v);
        });
    }

    /// Adds `bias` to each row of `rows` and applies the epilogue in place, for a channel-last
    /// layout: `rows` holds rows of `bias.len()` values, value `i` of a row being channel
    /// `first_channel + i`. Each value goes through the same operations as in [`Self::write`]
    /// (`(v + bias) * scale + shift`, then the activation), so the same bits.
    pub fn apply_rows(&self, first_channel: usize, bias: &[f32], rows: &mut [f32]) {
        #[cfg_attr(feature = "avx512", multiversion(targets("x86_64+avx512f+avx2+avx", "x86_64+avx2+avx")))]
        #[cfg_attr(not(feature = "avx512"), multiversion(targets("x86_64+avx2+avx")))]
        fn affine_rows(rows: &mut [f32], bias: &[f32], scale: &[f32], shift: &[f32], f: impl Fn(f32) -> f32) {
            for row in rows.chunks_exact_mut(bias.len()) {
                for (((v, &b), &s), &t) in row.iter_mut().zip(bias).zip(scale).zip(shift) {
                    *v = f((*v + b) * s + t);
                }
            }
        }
        #[cfg_attr(feature = "avx512", multiversion(targets("x86_64+avx512f+avx2+avx", "x86_64+avx2+avx")))]
        #[cfg_attr(not(feature = "avx512"), multiversion(targets("x86_64+avx2+avx")))]
        fn plain_rows(rows: &mut [f32], bias: &[f32], f: impl Fn(f32) -> f32) {
            for row in rows.chunks_exact_mut(bias.len()) {
                for (v, &b) in row.iter_mut().zip(bias) {
                    *v = f(*v + b);
                }
            }
        }
        if bias.is_empty() {
            return;
        }
        assert!(rows.len().is_multiple_of(bias.len()), "epilogue: rows of {} channels", bias.len());
        let channels = first_channel..first_channel + bias.len();
        match self.affine {
            None => with_activation!(self.act, |v: f32| v, |f| plain_rows(rows, bias, f)),
            Some((scale, shift)) => {
                let (s, t) = (&scale[channels.clone()], &shift[channels]);
                with_activation!(self.act, |v: f32| v, |f| affine_rows(rows, bias, s, t, f))
            }
        }
    }

    /// Applies channel `channel`'s epilogue to `values` in place (they already hold the bias).
    #[inline]
    pub fn apply(&self, channel: usize, values: &mut [f32]) {
        #[cfg_attr(feature = "avx512", multiversion(targets("x86_64+avx512f+avx2+avx", "x86_64+avx2+avx")))]
        #[cfg_attr(not(feature = "avx512"), multiversion(targets("x86_64+avx2+avx")))]
        fn each(values: &mut [f32], f: impl Fn(f32) -> f32) {
            values.iter_mut().for_each(|v| *v = f(*v));
        }
        match self.affine {
            None if self.act.is_none() => {}
            None => with_activation!(self.act, |v| v, |f| each(values, f)),
            Some((scale, shift)) => {
                let (s, t) = (scale[channel], shift[channel]);
                with_activation!(self.act, |v| v * s + t, |f| each(values, f))
            }
        }
    }
}
