//! Keeps freed memory in the process instead of handing it back to the kernel.
//!
//! A training step allocates and frees the same few hundred megabytes of activations and
//! gradients every batch. glibc serves every block over 32 MiB (and, by its default adaptive
//! threshold, most above 128 KiB) with a fresh `mmap` and gives it back with `munmap` on free,
//! so each step pays for faulting in and zeroing every page again: about a third of a cnn3
//! step on this machine (measured with `perf`). Turning off `mmap` for allocations and the
//! heap trim makes freed blocks reusable: cnn3 at batch 512 went from 647 to 950 images/s in
//! `ferkit bench`. The cost is that the process keeps its peak memory until it exits.

/// Tunes glibc's allocator for training; call once, first thing in `main`.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        libc::mallopt(libc::M_TOP_PAD, 256 << 20);
    }
}
