//! Moving tensors between Burn's public `Tensor` and the Flex primitives the kernels work on.

use burn::backend::Autodiff;
use burn::backend::flex::{Flex, FlexTensor, Layout};
use burn::tensor::{Bytes, DType, Shape, Tensor};
use std::mem::MaybeUninit;

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

/// A new vector of `len` values, written in parallel chunk by chunk: `write(scratch, chunk
/// index, chunk)` writes chunk `i` (values `i * chunk..`, the last one shorter), with a `scratch`
/// that `scratch()` makes once per rayon job (rayon's `for_each_init`: buffers a task reuses).
///
/// Why not `vec![0f32; len]` and writes: the vector's memory is written once, not zeroed first;
/// on memory the allocator recycles, that zeroing pass ran on one thread before the parallel work
/// and took about a tenth of an EfficientNet-Lite0 training step (`perf`, session 15).
///
/// `chunk` 0 is taken as 1.
///
/// # Safety
/// `write` must write every value of the chunk it is given (`MaybeUninit::write`): the vector
/// is returned with all `len` values taken as written.
pub unsafe fn write_in_parallel<S>(
    len: usize,
    chunk: usize,
    scratch: impl Fn() -> S + Sync + Send,
    write: impl Fn(&mut S, usize, &mut [MaybeUninit<f32>]) + Sync + Send,
) -> Vec<f32> {
    use rayon::prelude::*;
    let mut out = Vec::<f32>::with_capacity(len);
    out.spare_capacity_mut()[..len]
        .par_chunks_mut(chunk.max(1))
        .enumerate()
        .for_each_init(scratch, |scratch, (i, part)| write(scratch, i, part));
    // SAFETY: the caller's `write` wrote every value of every chunk, and the chunks cover `len`.
    unsafe { out.set_len(len) };
    out
}

/// `part` as the `f32` values it now holds.
///
/// # Safety
/// Every value of `part` has been written.
pub unsafe fn assume_written(part: &mut [MaybeUninit<f32>]) -> &mut [f32] {
    // SAFETY: `MaybeUninit<f32>` has `f32`'s layout, and the caller wrote every value.
    unsafe { &mut *(part as *mut [MaybeUninit<f32>] as *mut [f32]) }
}

/// `part` with every value set to 0.0, as `f32`s: for a task that adds into its part of a
/// vector from [`write_in_parallel`], so that the zeroing runs in the parallel task, while the
/// part is in cache, not in a pass of its own on one thread.
pub fn zeroed(part: &mut [MaybeUninit<f32>]) -> &mut [f32] {
    part.fill(MaybeUninit::new(0.0));
    // SAFETY: every value was just written.
    unsafe { assume_written(part) }
}

/// The not yet written values of a vector that rayon tasks fill part by part
/// ([`write_parts_in_parallel`]).
#[derive(Clone, Copy)]
pub struct UninitParts(*mut MaybeUninit<f32>, usize);
// SAFETY: every task writes only its own parts of the vector (see `part`).
unsafe impl Send for UninitParts {}
unsafe impl Sync for UninitParts {}

impl UninitParts {
    /// The `len` values from `start`.
    /// SAFETY: no other task reads or writes any of them while the slice lives.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn part(&self, start: usize, len: usize) -> &mut [MaybeUninit<f32>] {
        assert!(start + len <= self.1, "part {start}..{} past the vector's {} values", start + len, self.1);
        unsafe { std::slice::from_raw_parts_mut(self.0.add(start), len) }
    }
}

/// A new vector of `len` values written by `tasks` rayon tasks whose parts need not be
/// contiguous (a band of rows in every channel plane): `write(scratch, task, parts)` writes its
/// values through `parts.part(start, len)`, with a `scratch` made once per rayon job as in
/// [`write_in_parallel`].
///
/// # Safety
/// Together the tasks must write every value of the vector, and no two tasks the same value:
/// the vector is returned with all `len` values taken as written.
pub unsafe fn write_parts_in_parallel<S>(
    len: usize,
    tasks: usize,
    scratch: impl Fn() -> S + Sync + Send,
    write: impl Fn(&mut S, usize, UninitParts) + Sync + Send,
) -> Vec<f32> {
    // SAFETY: passed on from the caller.
    unsafe { write_parts_and_collect(len, tasks, scratch, write).0 }
}

/// [`write_parts_in_parallel`] whose tasks also return a value each (their sums of a weight
/// gradient, say): the vector, and the tasks' values in task order.
///
/// # Safety
/// As [`write_parts_in_parallel`]'s.
pub unsafe fn write_parts_and_collect<S, T: Send>(
    len: usize,
    tasks: usize,
    scratch: impl Fn() -> S + Sync + Send,
    write: impl Fn(&mut S, usize, UninitParts) -> T + Sync + Send,
) -> (Vec<f32>, Vec<T>) {
    use rayon::prelude::*;
    let mut out = Vec::<f32>::with_capacity(len);
    let parts = UninitParts(out.spare_capacity_mut().as_mut_ptr(), len);
    let results = (0..tasks).into_par_iter().map_init(scratch, |scratch, task| write(scratch, task, parts)).collect();
    // SAFETY: the caller's tasks wrote every value once.
    unsafe { out.set_len(len) };
    (out, results)
}

/// `f(a[i], b[i])` for every `i`, computed in parallel in chunks of `chunk` values, into a new
/// vector (not zeroed first: [`write_in_parallel`]); `per_chunk(chunk index)` gives the `f` of
/// each chunk (e.g. the scale and shift of the channel plane a chunk is), so that whatever
/// depends on the chunk is worked out once per chunk, not once per value.
///
/// Why a function per chunk: in eeb3144 `f(chunk index, value)` was called per value, batch norm
/// indexed its channel's scale and shift by `chunk % channels` for every value, and
/// [`map_in_parallel`] zipped its input with itself; a `fast`-preset epoch on 3,000 faces took
/// 45.8-51.9 s there against 34.3-42.6 s with this form and a map of its own (AMD EPYC, session
/// 16, runs alternated; the same accuracies to every digit). The two changes were measured
/// together; which of them mattered is not known.
///
/// `chunk` 0 is taken as 1.
///
/// Panics when `a` and `b` differ in length.
pub fn zip_map_in_parallel<F: Fn(f32, f32) -> f32>(
    a: &[f32],
    b: &[f32],
    chunk: usize,
    per_chunk: impl Fn(usize) -> F + Sync + Send,
) -> Vec<f32> {
    assert_eq!(a.len(), b.len(), "zip_map_in_parallel: inputs of different lengths");
    let chunk = chunk.max(1);
    let write = |_: &mut (), i: usize, out: &mut [MaybeUninit<f32>]| {
        let f = per_chunk(i);
        let (a, b) = (&a[i * chunk..][..out.len()], &b[i * chunk..][..out.len()]);
        for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
            o.write(f(x, y));
        }
    };
    // SAFETY: `write` writes every value of its chunk (the zip runs over the whole chunk: `a`
    // and `b` are cut to its length).
    unsafe { write_in_parallel(a.len(), chunk, || (), write) }
}

/// `f(values[i])` for every `i`, with `f = per_chunk(chunk index)`: like [`zip_map_in_parallel`],
/// on one input (its own loop, rather than zipping the input with itself).
pub fn map_in_parallel<F: Fn(f32) -> f32>(
    values: &[f32],
    chunk: usize,
    per_chunk: impl Fn(usize) -> F + Sync + Send,
) -> Vec<f32> {
    let chunk = chunk.max(1);
    let write = |_: &mut (), i: usize, out: &mut [MaybeUninit<f32>]| {
        let (f, values) = (per_chunk(i), &values[i * chunk..][..out.len()]);
        for (o, &v) in out.iter_mut().zip(values) {
            o.write(f(v));
        }
    };
    // SAFETY: `write` writes every value of its chunk (`values` is cut to its length).
    unsafe { write_in_parallel(values.len(), chunk, || (), write) }
}

#[cfg(test)]
mod tests {
    #[test]
    fn mapping_in_parallel_writes_every_value_in_its_place() {
        assert!(super::map_in_parallel(&[], 4, |_| |v| v).is_empty());
        let values: Vec<f32> = (0..10).map(|v| v as f32).collect();
        // 10 values in chunks of 4: chunks 0, 1 and a short last chunk 2.
        let mapped = super::map_in_parallel(&values, 4, |chunk| move |v| v * 10.0 + chunk as f32);
        let expected: Vec<f32> = (0..10).map(|v| v as f32 * 10.0 + (v / 4) as f32).collect();
        assert_eq!(mapped, expected);
        let summed = super::zip_map_in_parallel(&values, &expected, 3, |_| |a, b| a + b);
        assert_eq!(summed, values.iter().zip(&expected).map(|(a, b)| a + b).collect::<Vec<_>>());
    }
}
