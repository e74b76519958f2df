//! What an inference kernel applies to each output value as it writes it (the "epilogue"): a
//! batch norm's per-channel affine map and an activation. Apart from [`super::fused`], which
//! calls the convolutions with it, so that the convolution kernels can take one without
//! importing the module that calls them.

use std::mem::MaybeUninit;

use burn::tensor::Tensor;
use burn::tensor::activation;

use super::clamp;

/// An activation applied elementwise after a convolution (and its batch norm).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Activation {
    /// `max(x, 0)`, NaN passed through: Flex's `relu`, the same bits.
    Relu,
    /// `x.max(low).min(high)` (EfficientNet's ReLU6 is `Clamp(0.0, 6.0)`): [`super::clamp`]'s map.
    Clamp(f32, f32),
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
        }
    }

    /// The activation as the separate layer the training graph uses (Burn's `relu`, whose
    /// gradient is zero at 0, or [`clamp::clamp`]).
    pub(crate) fn layer<const D: usize>(self, x: Tensor<D>) -> Tensor<D> {
        match self {
            Activation::Relu => activation::relu(x),
            Activation::Clamp(low, high) => clamp::clamp(x, low, high),
        }
    }
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
        #[inline(always)]
        fn each(src: &[f32], dst: &mut [MaybeUninit<f32>], f: impl Fn(f32) -> f32) {
            dst.iter_mut().zip(src).for_each(|(d, &v)| {
                d.write(f(v));
            });
        }
        // One loop per combination, so that the branch is taken once per plane, not per value.
        match (self.affine, self.act) {
            (None, None) => each(src, dst, |v| v + bias),
            (None, Some(act)) => each(src, dst, |v| act.apply(v + bias)),
            (Some((scale, shift)), None) => {
                let (s, t) = (scale[channel], shift[channel]);
                each(src, dst, |v| (v + bias) * s + t)
            }
            (Some((scale, shift)), Some(act)) => {
                let (s, t) = (scale[channel], shift[channel]);
                each(src, dst, |v| act.apply((v + bias) * s + t))
            }
        }
    }

    /// Applies channel `channel`'s epilogue to `values` in place (they already hold the bias).
    #[inline]
    pub fn apply(&self, channel: usize, values: &mut [f32]) {
        match (self.affine, self.act) {
            (None, None) => {}
            (None, Some(act)) => values.iter_mut().for_each(|v| *v = act.apply(*v)),
            (Some((scale, shift)), None) => {
                let (s, t) = (scale[channel], shift[channel]);
                values.iter_mut().for_each(|v| *v = *v * s + t);
            }
            (Some((scale, shift)), Some(act)) => {
                let (s, t) = (scale[channel], shift[channel]);
                values.iter_mut().for_each(|v| *v = act.apply(*v * s + t));
            }
        }
    }
}
