//! The float type of a net's tensors. ferkit's nets compute in float32; weights stored in
//! float16 (`ferkit export --half`, many published checkpoints), bfloat16 or float64 load as they
//! are stored, and are converted here; weights stored as 8-bit integers (`ferkit export --int8`)
//! are dequantized here.

use burn::module::{Module, ModuleMapper, Param};
use burn::prelude::*;
use burn::tensor::{DType, FloatDType};

/// Every float tensor of `net` (weights and batch-norm statistics) converted to `dtype`.
pub fn to_dtype<M: Module>(net: M, dtype: FloatDType) -> M {
    struct Cast(FloatDType);
    impl ModuleMapper for Cast {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let dtype = self.0;
            param.map(|t| match t.dtype() {
                // Weights stored as 8-bit integers (`to_int8_weights`) compute as floats again.
                DType::QFloat(_) => t.dequantize().cast(dtype),
                d if d == dtype.into() => t,
                _ => t.cast(dtype),
            })
        }
    }
    net.map(&mut Cast(dtype))
}

/// Values per block of an int8 weight tensor: one float32 scale per block (see [`to_int8_weights`]).
pub const INT8_BLOCK_VALUES: usize = 32;

/// `net` with every weight matrix and convolution kernel (float tensors of rank 2 or more)
/// quantized to symmetric 8-bit integers, and every other float tensor (biases, batch-norm
/// parameters and statistics) converted to float16: for storing a net in about 30% of its
/// float32 size (`ferkit export --int8`). The net computes in float32 again once loaded:
/// [`to_dtype`] dequantizes.
///
/// Each tensor is cut into blocks of at most [`INT8_BLOCK_VALUES`] values that span its trailing
/// dimensions (a 3 x 3 kernel `[out, 21, 3, 3]` in blocks `[1, 3, 3, 3]`, a depthwise one
/// `[c, 1, 3, 3]` in `[1, 1, 3, 3]`, a dense matrix `[in, out]` in `[1, 32]`), each with its own
/// float32 scale, max |w| / 127 (Burn's `Q8S` values, min-max calibration, per-block scheme):
/// per-channel ranges differ by orders of magnitude in depthwise nets such as EfficientNet, where
/// one scale per tensor loses the small channels. Storage: 8 bits per value plus 32 per block.
pub fn to_int8_weights<M: Module>(net: M) -> M {
    use burn::tensor::quantization::{Calibration, QuantScheme, QuantValue, ScaleDtype, compute_q_params, compute_range};
    struct Quantize;
    impl ModuleMapper for Quantize {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            param.map(|t| {
                if D < 2 {
                    return t.cast(FloatDType::F16);
                }
                let block = int8_block(&t.dims());
                let scheme = QuantScheme::default().with_value(QuantValue::Q8S).per_block(block, ScaleDtype::F32);
                let range = compute_range(&scheme, &t, &Calibration::MinMax);
                let qparams = compute_q_params(&scheme, range);
                t.quantize(&scheme, qparams)
            })
        }
    }
    net.map(&mut Quantize)
}

/// The block shape of [`to_int8_weights`] for a tensor of shape `dims`: whole trailing
/// dimensions while they fit in [`INT8_BLOCK_VALUES`] values, then the largest divisor of the
/// next one that fits (blocks tile the tensor exactly), then 1 (each extent at most 255, Burn's limit); a convolution kernel's (rank 3 or more)
/// blocks stay within one output channel.
fn int8_block(dims: &[usize]) -> Vec<u8> {
    let mut block = vec![1u8; dims.len()];
    let mut values = 1;
    // A convolution kernel's blocks stay within one output channel (its first dimension).
    let first = usize::from(dims.len() > 2);
    for (b, &d) in block.iter_mut().zip(dims).skip(first).rev() {
        // Burn's blocks must tile the tensor exactly: the largest divisor of `d` that fits.
        let cap = (INT8_BLOCK_VALUES / values).clamp(1, 255);
        let extent = (1..=d.min(cap)).rev().find(|e| d % e == 0).unwrap_or(1);
        *b = extent as u8;
        values *= extent;
        if extent < d {
            break;
        }
    }
    block
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int8_blocks_span_trailing_dimensions_up_to_32_values() {
        assert_eq!(int8_block(&[32, 16, 3, 3]), [1, 2, 3, 3]);
        assert_eq!(int8_block(&[32, 21, 3, 3]), [1, 3, 3, 3]);
        assert_eq!(int8_block(&[24, 96, 1, 1]), [1, 32, 1, 1]);
        assert_eq!(int8_block(&[24, 40, 1, 1]), [1, 20, 1, 1]);
        assert_eq!(int8_block(&[96, 1, 3, 3]), [1, 1, 3, 3]);
        assert_eq!(int8_block(&[96, 1, 5, 5]), [1, 1, 5, 5]);
        assert_eq!(int8_block(&[320, 1280, 1, 1]), [1, 32, 1, 1]);
        assert_eq!(int8_block(&[1280, 1024]), [1, 32]);
        assert_eq!(int8_block(&[1024, 7]), [4, 7]);
        assert_eq!(int8_block(&[2, 3]), [2, 3]);
    }

    /// Each block keeps its own scale: a row of small weights beside a row 1000 times larger
    /// comes back within half a step of its own range (one scale for the tensor would round the
    /// small row to zero), and every tensor computes in float32 again after loading.
    #[test]
    fn int8_weights_keep_each_block_to_half_a_step_of_its_own_range() {
        #[derive(Module, Debug)]
        struct Two {
            w: Param<Tensor<2>>,
            b: Param<Tensor<1>>,
        }
        let device = Device::flex();
        let small: Vec<f32> = (0..128).map(|i| ((i * 37 % 101) as f32 - 50.0) * 1e-4).collect();
        let mut values = small.iter().map(|v| v * 1000.0).collect::<Vec<_>>();
        values.extend(&small);
        let w = Tensor::<2>::from_data(TensorData::new(values.clone(), [2, 128]), &device);
        let b = Tensor::<1>::from_data(TensorData::new(vec![0.1f32, -2.5], [2]), &device);
        let net = Two { w: Param::from_tensor(w), b: Param::from_tensor(b) };

        let stored = to_int8_weights(net);
        assert!(matches!(stored.w.val().dtype(), DType::QFloat(_)));
        assert_eq!(stored.b.val().dtype(), DType::F16);
        let bytes = stored.into_record().into_bytes().unwrap();
        let record = burn::store::ModuleRecord::from_bytes(bytes).unwrap();
        let blank = Two { w: Param::from_tensor(Tensor::zeros([2, 128], &device)), b: Param::from_tensor(Tensor::zeros([2], &device)) };
        let loaded = to_dtype(blank.try_load_record(record).unwrap(), FloatDType::F32);
        assert_eq!(loaded.w.val().dtype(), DType::F32);
        let got = loaded.w.val().into_data().try_to_vec::<f32>().unwrap();
        for (row, range) in [(0, 5e-3 * 1000.0), (1, 5e-3)] {
            for i in 0..128 {
                let (g, v) = (got[row * 128 + i], values[row * 128 + i]);
                assert!((g - v).abs() <= range / 127.0 / 2.0 * 1.001, "row {row}, value {i}: {g} for {v}");
            }
        }
        assert_eq!(loaded.b.val().into_data().try_to_vec::<f32>().unwrap(), [f16_round(0.1), -2.5]);
    }

    fn f16_round(v: f32) -> f32 {
        burn::tensor::f16::from_f32(v).to_f32()
    }
}
