//! The float type of a net's tensors. ferkit's nets compute in float32; weights stored in
//! float16 (`ferkit export --half`, many published checkpoints), bfloat16 or float64 load as they
//! are stored, and are converted here.

use burn::module::{Module, ModuleMapper, Param};
use burn::prelude::*;
use burn::tensor::FloatDType;

/// Every float tensor of `net` (weights and batch-norm statistics) converted to `dtype`.
pub fn to_dtype<M: Module>(net: M, dtype: FloatDType) -> M {
    struct Cast(FloatDType);
    impl ModuleMapper for Cast {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let dtype = self.0;
            param.map(|t| if t.dtype() == dtype.into() { t } else { t.cast(dtype) })
        }
    }
    net.map(&mut Cast(dtype))
}
