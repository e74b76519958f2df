//! The logistic sigmoid `1 / (1 + exp(-x))`, forward and backward, on Flex f32 tensors of any
//! rank; and [`logistic`], the one value's map that the inference epilogue applies too.
//!
//! Why: Flex's `sigmoid` is one pass on one thread that calls libm's `expf` for every value
//! behind a branch on the sign, and its backward step (`g * s * (1 - s)`) another single-threaded
//! pass. In a training step of the notebook's search nets with a sigmoid after the first
//! convolution (`tuned_cnn`, 112 filters at 48 x 48, batch 512) those two passes were about a
//! fifth of the time (`perf record ferkit bench`: `__expf_fma` 9.8%, Flex's `unary_op` 8.6%; AMD
//! EPYC, session 30) while the other core waited. Here both passes are split across the threads
//! and [`logistic`] computes `exp` without a branch or a library call (Cephes' `expf`, below), so
//! the compiler vectorises the loop.
//!
//! The values differ from Flex's in the last bits (the test compares them within 1e-6); they do
//! not depend on the thread count or the instruction set (no fused multiply-add: each operation
//! is rounded as written), so a seed still fixes a run.

use std::mem::MaybeUninit;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::{Flex, FlexTensor};
use burn::tensor::Tensor;
use multiversion::multiversion;

use super::flex::{self, TrackedTensor, TrainFlex};

/// Values per parallel task (elementwise work is too cheap to split finer).
const CHUNK: usize = 1 << 14;

/// `exp(x)` for `x` in `[-87.3, 88.3]` (callers clamp), within about 2 ulp: Cephes' `expf`
/// (Stephen Moshier, Cephes Math Library 2.2, `expf.c`): `x = n ln 2 + r` with `n` the nearest
/// integer to `x / ln 2` and `|r| <= ln 2 / 2`, `exp(r)` by its degree-7 polynomial, times `2^n`
/// built in the exponent bits. The nearest integer comes from adding and subtracting
/// `1.5 * 2^23` (round to nearest in the float unit), so the function has no branch and no call.
#[inline(always)]
fn exp_reduced(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 in two parts: `n * LN2_HI` is exact for |n| < 2^9.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    const ROUND: f32 = 12_582_912.0; // 1.5 * 2^23
    let t = x * LOG2E + ROUND;
    let n = t - ROUND;
    // `t`'s low mantissa bits hold n (two's complement around 2^22).
    let n_int = (t.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32);
    let r = x - n * LN2_HI - n * LN2_LO;
    let r2 = r * r;
    let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r + 1.666_666_5e-1)
        * r
        + 5.000_000_1e-1;
    let e_r = p * r2 + r + 1.0;
    e_r * f32::from_bits(((n_int + 127) << 23) as u32)
}

/// The logistic sigmoid of one value, `1 / (1 + exp(-v))`: 0 and 1 at the ends (within 1e-38
/// of the exact value below -88.3, where `exp(-v)` is clamped), NaN for NaN.
#[inline(always)]
pub(crate) fn logistic(v: f32) -> f32 {
    // `clamp` keeps a NaN, and a NaN goes through every step below.
    let e = exp_reduced((-v).clamp(-87.3, 88.3));
    1.0 / (1.0 + e)
}

/// [`logistic`] of every value of `src` into `dst` (the same length); compiled for AVX2 and
/// AVX-512 too and chosen at run time, the same bits on each (no fused multiply-add).
#[cfg_attr(feature = "avx512", multiversion(targets("x86_64+avx512f+avx2+avx", "x86_64+avx2+avx")))]
#[cfg_attr(not(feature = "avx512"), multiversion(targets("x86_64+avx2+avx")))]
fn logistic_into(src: &[f32], dst: &mut [MaybeUninit<f32>]) {
    for (d, &v) in dst.iter_mut().zip(src) {
        d.write(logistic(v));
    }
}

/// `sigmoid(x)`, computed here when `x` is a Flex f32 tensor (tracked or not), otherwise Burn's.
pub fn sigmoid<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if let Some(t) = flex::tracked(&x) {
        return Tensor::from_primitive::<TrainFlex>(tracked_sigmoid(t));
    }
    if let Some(t) = flex::plain(&x) {
        return Tensor::from_primitive::<Flex>(forward(&t));
    }
    burn::tensor::activation::sigmoid(x)
}

fn forward(x: &FlexTensor) -> FlexTensor {
    let values = flex::values(x);
    let write = |_: &mut (), i: usize, out: &mut [MaybeUninit<f32>]| {
        logistic_into(&values[i * CHUNK..][..out.len()], out);
    };
    // SAFETY: `logistic_into` writes every value of its chunk (`values` is cut to its length).
    let out = unsafe { flex::write_in_parallel(values.len(), CHUNK, || (), write) };
    flex::tensor(out, x.layout().shape())
}

/// The input gradient from the forward pass's output `s`: `g * s * (1 - s)`, as Flex computes it.
fn backward(output: &FlexTensor, grad: &FlexTensor) -> FlexTensor {
    let (s, g) = (flex::values(output), flex::values(grad));
    let dx = flex::zip_map_in_parallel(&s, &g, CHUNK, |_| |s, g| g * s * (1.0 - s));
    flex::tensor(dx, output.layout().shape())
}

#[derive(Debug)]
struct SigmoidBackward;

impl Backward<Flex, 1> for SigmoidBackward {
    /// The forward pass's output.
    type State = FlexTensor;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<Flex>(&ops.node);
        if let [Some(node)] = ops.parents {
            grads.register::<Flex>(node.id, backward(&ops.state, &grad));
        }
    }
}

fn tracked_sigmoid(x: TrackedTensor) -> TrackedTensor {
    let out = forward(x.primitive());
    match SigmoidBackward.prepare::<NoCheckpointing>([x.node()]).compute_bound().stateful() {
        OpsKind::Tracked(prep) => prep.finish(out.clone(), out),
        OpsKind::UnTracked(prep) => prep.finish(out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::tests::{assert_close, random_input};
    use burn::prelude::*;
    use burn::tensor::activation;

    #[test]
    fn matches_burns_sigmoid_in_values_and_gradient() {
        let device = Device::flex().autodiff();
        // Normal values times 30: the whole range, well past where exp is clamped, in more
        // than one chunk; the tail is shorter than a vector.
        let x = random_input([3, 5, 40, 41], &device, 1).mul_scalar(30.0).require_grad();
        let weights = random_input([3, 5, 40, 41], &device, 2);
        let (ours, burns) = (sigmoid(x.clone()), activation::sigmoid(x.clone()));
        assert_close(&ours, &burns, 1e-6, "output");
        let ours_grads = (ours * weights.clone()).sum().backward();
        let burns_grads = (burns * weights).sum().backward();
        assert_close(&x.grad(&ours_grads).unwrap(), &x.grad(&burns_grads).unwrap(), 1e-6, "gradient");
        let plain = x.inner().div_scalar(30.0);
        assert_close(&sigmoid(plain.clone()), &activation::sigmoid(plain), 1e-6, "inference output");
    }

    #[test]
    fn logistic_is_close_to_the_exact_value_everywhere() {
        // Every 1/64 from -120 to 120, and the ends, against f64's exact value: within
        // 3 * |exact| * f32::EPSILON (3 to 6 ulp), or 1e-38 where exp is clamped.
        let mut values: Vec<f32> = (-120 * 64..=120 * 64).map(|i| i as f32 / 64.0).collect();
        values.extend([f32::MAX, f32::MIN, f32::INFINITY, f32::NEG_INFINITY, 0.0, -0.0, 1e-30, -1e-30]);
        for v in values {
            let exact = 1.0 / (1.0 + (-(v as f64)).exp());
            let got = logistic(v) as f64;
            let ulp = (exact as f32).abs().max(f32::MIN_POSITIVE) as f64 * f32::EPSILON as f64;
            assert!((got - exact).abs() <= (3.0 * ulp).max(1e-38), "logistic({v}) = {got}, exact {exact}");
        }
        assert!(logistic(f32::NAN).is_nan());
        assert_eq!(logistic(0.0), 0.5);
    }

    #[test]
    fn the_same_bits_on_every_instruction_set() {
        // The multiversioned loop (AVX2 / AVX-512 where the CPU has them) against the scalar
        // function one value at a time.
        // Past both clamps, and the infinities and NaN, through the vectorised loop too.
        let mut src: Vec<f32> = (0..1000).map(|i| (i as f32 - 500.0) * 0.25).collect();
        src.extend([f32::INFINITY, f32::NEG_INFINITY, f32::NAN, f32::MAX, f32::MIN, 0.0, -0.0]);
        let mut dst = vec![MaybeUninit::new(0f32); src.len()];
        logistic_into(&src, &mut dst);
        for (d, &v) in dst.iter().zip(&src) {
            let (vectorised, scalar) = (unsafe { d.assume_init() }, logistic(v));
            assert!(vectorised.to_bits() == scalar.to_bits() || vectorised.is_nan() && scalar.is_nan(), "at {v}");
        }
    }
}
