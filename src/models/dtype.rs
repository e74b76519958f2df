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
/// Each tensor is cut into blocks of at most [`INT8_BLOCK_VALUES`] values within one output
/// channel or unit (a 3 x 3 kernel `[out, 21, 3, 3]` in blocks `[1, 3, 3, 3]`, a depthwise one
/// `[c, 1, 3, 3]` in `[1, 1, 3, 3]`, a dense matrix `[in, out]` in `[32, 1]`: 32 inputs of one
/// unit), each with its own float32 scale, max |w| / 127 (Burn's `Q8S` values, min-max
/// calibration, per-block scheme): ranges differ by orders of magnitude between the channels of
/// depthwise nets such as EfficientNet, where one scale per tensor loses the small channels.
/// Storage: 8 bits per value plus 32 per block.
pub fn to_int8_weights<M: Module>(net: M) -> M {
    use burn::tensor::quantization::{
        Calibration, QuantScheme, QuantValue, ScaleDtype, compute_q_params, compute_range,
    };
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

/// The block shape of [`to_int8_weights`] for a tensor of shape `dims`. A convolution kernel
/// `[out, in, kh, kw]` (rank 3 or more): whole trailing dimensions while they fit in
/// [`INT8_BLOCK_VALUES`] values, then the largest divisor of the next one that fits (Burn's
/// blocks tile the tensor exactly), then 1, and always 1 output channel. A dense matrix
/// `[in, out]` (Burn's layout): the largest divisor of `in` that fits, 1 output unit.
fn int8_block(dims: &[usize]) -> Vec<u8> {
    let divisor_up_to = |d: usize, cap: usize| (1..=d.min(cap)).rev().find(|e| d % e == 0).unwrap_or(1);
    if let [inputs, _] = dims {
        return vec![divisor_up_to(*inputs, INT8_BLOCK_VALUES) as u8, 1];
    }
    let mut block = vec![1u8; dims.len()];
    let mut values = 1;
    for (b, &d) in block.iter_mut().zip(dims).skip(1).rev() {
        let extent = divisor_up_to(d, (INT8_BLOCK_VALUES / values).max(1));
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
    fn int8_blocks_hold_up_to_32_values_of_one_output_channel() {
        assert_eq!(int8_block(&[32, 16, 3, 3]), [1, 2, 3, 3]);
        assert_eq!(int8_block(&[32, 21, 3, 3]), [1, 3, 3, 3]);
        assert_eq!(int8_block(&[24, 96, 1, 1]), [1, 32, 1, 1]);
        assert_eq!(int8_block(&[24, 40, 1, 1]), [1, 20, 1, 1]);
        assert_eq!(int8_block(&[96, 1, 3, 3]), [1, 1, 3, 3]);
        assert_eq!(int8_block(&[96, 1, 5, 5]), [1, 1, 5, 5]);
        assert_eq!(int8_block(&[320, 1280, 1, 1]), [1, 32, 1, 1]);
        assert_eq!(int8_block(&[1280, 1024]), [32, 1]);
        assert_eq!(int8_block(&[1024, 7]), [32, 1]);
        assert_eq!(int8_block(&[24, 7]), [24, 1]);
        assert_eq!(int8_block(&[2, 3]), [2, 1]);
    }

    /// Each block keeps its own scale: in a dense matrix `[in, out]`, an output unit with small
    /// weights beside one with weights 1000 times larger comes back within half a step of its own
    /// range (one scale for the tensor would round the small unit to zero), and every tensor
    /// computes in float32 again after loading.
    #[test]
    fn int8_weights_keep_each_block_to_half_a_step_of_its_own_range() {
        #[derive(Module, Debug)]
        struct Two {
            w: Param<Tensor<2>>,
            b: Param<Tensor<1>>,
        }
        let device = Device::flex();
        let small: Vec<f32> = (0..128).map(|i| ((i * 37 % 101) as f32 - 50.0) * 1e-4).collect();
        // `[128, 2]`: unit 0's weights are 1000 times unit 1's.
        let values: Vec<f32> = small.iter().flat_map(|v| [v * 1000.0, *v]).collect();
        let w = Tensor::<2>::from_data(TensorData::new(values.clone(), [128, 2]), &device);
        let b = Tensor::<1>::from_data(TensorData::new(vec![0.1f32, -2.5], [2]), &device);
        let net = Two { w: Param::from_tensor(w), b: Param::from_tensor(b) };

        let stored = to_int8_weights(net);
        assert!(matches!(stored.w.val().dtype(), DType::QFloat(_)));
        assert_eq!(stored.b.val().dtype(), DType::F16);
        let bytes = stored.into_record().into_bytes().unwrap();
        let record = burn::store::ModuleRecord::from_bytes(bytes).unwrap();
        let blank = Two {
            w: Param::from_tensor(Tensor::zeros([128, 2], &device)),
            b: Param::from_tensor(Tensor::zeros([2], &device)),
        };
        let loaded = to_dtype(blank.try_load_record(record).unwrap(), FloatDType::F32);
        assert_eq!(loaded.w.val().dtype(), DType::F32);
        let got = loaded.w.val().into_data().try_to_vec::<f32>().unwrap();
        for (unit, range) in [(0, 5e-3 * 1000.0), (1, 5e-3)] {
            for i in 0..128 {
                let (g, v) = (got[i * 2 + unit], values[i * 2 + unit]);
                assert!((g - v).abs() <= range / 127.0 / 2.0 * 1.001, "unit {unit}, input {i}: {g} for {v}");
            }
        }
        assert_eq!(loaded.b.val().into_data().try_to_vec::<f32>().unwrap(), [f16_round(0.1), -2.5]);
    }

    fn f16_round(v: f32) -> f32 {
        burn::tensor::f16::from_f32(v).to_f32()
    }
}
