//! Moving tensors between Burn's public `Tensor` and the Flex primitives the kernels work on.

use burn::backend::Autodiff;
use burn::backend::flex::{Flex, FlexTensor, Layout};
use burn::tensor::{Bytes, DType, Shape, Tensor};

/// Flex under Burn's autodiff, the backend of a training step on the CPU.
pub type TrainFlex = Autodiff<Flex>;
/// The primitive of a float tensor on [`TrainFlex`]: a Flex tensor and its graph node.
pub type TrackedTensor = burn::backend::tensor::FloatTensor<TrainFlex>;

/// The tensor as a tracked Flex tensor, if that is where it lives.
pub fn tracked<const D: usize>(t: &Tensor<D>) -> Option<TrackedTensor> {
    let t = t.clone().try_into_primitive::<TrainFlex>().ok()?;
    (t.primitive().dtype() == DType::F32).then_some(t)
}

/// The tensor as a plain (inference) Flex tensor, if that is where it lives.
pub fn plain<const D: usize>(t: &Tensor<D>) -> Option<FlexTensor> {
    let t = t.clone().try_into_primitive::<Flex>().ok()?;
    (t.dtype() == DType::F32).then_some(t)
}

/// The f32 values in row-major order (copied only when the tensor is a strided view).
pub fn values(t: &FlexTensor) -> std::borrow::Cow<'_, [f32]> {
    match t.as_slice::<f32>() {
        Some(v) => std::borrow::Cow::Borrowed(v),
        None => std::borrow::Cow::Owned(t.to_contiguous().as_slice::<f32>().expect("contiguous f32").to_vec()),
    }
}

/// A contiguous f32 Flex tensor of `shape` holding `values`.
pub fn tensor(values: Vec<f32>, shape: &[usize]) -> FlexTensor {
    debug_assert_eq!(values.len(), shape.iter().product::<usize>());
    FlexTensor::new(Bytes::from_elems(values), Layout::contiguous(Shape::from(shape.to_vec())), DType::F32)
}

/// The four dimensions of a Flex tensor known to be 4-D.
pub fn dims4(t: &FlexTensor) -> [usize; 4] {
    let s = t.layout().shape();
    [s[0], s[1], s[2], s[3]]
}

/// A raw pointer that rayon tasks may share, for writing disjoint parts of one buffer.
#[derive(Clone, Copy)]
pub struct SharedMut(pub *mut f32);
// SAFETY: every user writes only the part of the buffer that belongs to its own sample.
unsafe impl Send for SharedMut {}
unsafe impl Sync for SharedMut {}

impl SharedMut {
    /// The `len` values from `start`.
    /// SAFETY: the caller guarantees the range is in bounds and used by one task at a time.
    // A `&mut` from `&self` is the point of this type: tasks share the pointer, not the slices.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn part(&self, start: usize, len: usize) -> &mut [f32] {
        unsafe { std::slice::from_raw_parts_mut(self.0.add(start), len) }
    }
}

/// A vector of `len` values written in parallel, `chunk` values per task, by `fill(task index,
/// the task's values)`, without setting the memory to zero first: a kernel's output is written
/// whole anyway, and the zeroing pass (`vec![0f32; len]` on memory the allocator recycles) took
/// about a tenth of an EfficientNet-Lite0 training step (`perf`, session 15).
///
/// `fill` must write every value of its chunk (`MaybeUninit::write`); the last chunk may be short.
pub fn filled_in_parallel(
    len: usize,
    chunk: usize,
    fill: impl Fn(usize, &mut [std::mem::MaybeUninit<f32>]) + Sync + Send,
) -> Vec<f32> {
    use rayon::prelude::*;
    let mut values = Vec::<f32>::with_capacity(len);
    values.spare_capacity_mut()[..len].par_chunks_mut(chunk.max(1)).enumerate().for_each(|(i, part)| fill(i, part));
    // SAFETY: `fill` wrote all `len` values (its contract above).
    unsafe { values.set_len(len) };
    values
}
