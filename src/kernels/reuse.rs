//! Scratch buffers a thread keeps from one kernel call to the next, so that a call does not
//! allocate and zero its working memory again.
//!
//! Why: one face through vgg-lite spent 6% of its inference in `memset` (`perf record ferkit bench
//! --models vgg-lite:1 --infer-batches 1 --tta hflip`, AMD EPYC Zen 4, session 34), zeroing the
//! Winograd transforms' and the im2col products' buffers that every convolution call allocated
//! and then overwrote: at batch 1 the layers are small and the calls many.
//!
//! A buffer holds whatever its thread's previous user left in it (zeros only where it grew), so
//! it is for kernels that write every value before they read it; the kernels that take one say
//! so where they do.

use std::cell::RefCell;
use std::ops::{Deref, DerefMut};

/// Buffers a thread keeps between calls, at most (the largest are kept).
pub(crate) const KEPT: usize = 4;

thread_local! {
    static FREE: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
}

/// At least the requested number of f32 values, given back to the thread's free list when
/// dropped. Its contents are unspecified: write before reading.
#[derive(Debug)]
pub(crate) struct ScratchBuffer(Vec<f32>);

impl ScratchBuffer {
    /// The thread's smallest free buffer of at least `len` values, or else its largest grown
    /// (with zeros) to `len`; a new one when the thread has none.
    pub fn at_least(len: usize) -> Self {
        let taken = FREE.with(|free| {
            let mut free = free.borrow_mut();
            let fitting = (0..free.len()).filter(|&i| free[i].len() >= len).min_by_key(|&i| free[i].len());
            let chosen = fitting.or_else(|| (0..free.len()).max_by_key(|&i| free[i].len()));
            chosen.map(|i| free.swap_remove(i))
        });
        let mut values = taken.unwrap_or_default();
        if values.len() < len {
            values.resize(len, 0.0);
        }
        ScratchBuffer(values)
    }
}

impl Deref for ScratchBuffer {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.0
    }
}

impl DerefMut for ScratchBuffer {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.0
    }
}

impl Drop for ScratchBuffer {
    fn drop(&mut self) {
        let values = std::mem::take(&mut self.0);
        // `try_with`: during the thread's own teardown the list may already be gone.
        let _ = FREE.try_with(|free| {
            let mut free = free.borrow_mut();
            free.push(values);
            if free.len() > KEPT {
                let smallest = (0..free.len()).min_by_key(|&i| free[i].len()).expect("not empty");
                free.swap_remove(smallest);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A buffer comes back to the next caller on the same thread (its values kept, no new
    /// allocation; the smallest that fits), grows when asked for more, and at most `KEPT` stay
    /// on the list.
    #[test]
    fn buffers_are_reused_on_the_same_thread() {
        std::thread::spawn(|| {
            let mut a = ScratchBuffer::at_least(10);
            a[9] = 7.0;
            let address = a.as_ptr();
            drop(a);
            let b = ScratchBuffer::at_least(5);
            assert_eq!((b.as_ptr(), b.len(), b[9]), (address, 10, 7.0), "the same buffer, as left");
            let small = ScratchBuffer::at_least(3);
            drop(b);
            drop(small);
            assert_eq!(ScratchBuffer::at_least(2).len(), 3, "the smallest that fits");
            let c = ScratchBuffer::at_least(20);
            assert_eq!((c.len(), c[9], c[19]), (20, 7.0, 0.0), "grown with zeros");
            let held: Vec<_> = (0..KEPT + 3).map(|i| ScratchBuffer::at_least(i + 1)).collect();
            drop(held);
            drop(c);
            assert_eq!(FREE.with(|f| f.borrow().len()), KEPT);
            assert_eq!(FREE.with(|f| f.borrow().iter().map(Vec::len).max()), Some(20), "the largest kept");
        })
        .join()
        .unwrap();
    }
}
