//! Keeps freed memory in the process instead of handing it back to the kernel.
//!
//! A training step allocates and frees the same few hundred megabytes of activations and
//! gradients every batch. glibc serves every block over 32 MiB (and, by its default adaptive
//! threshold, most above 128 KiB) with a fresh `mmap` and gives it back with `munmap` on free,
//! so each step pays for faulting in and zeroing every page again: about a third of a cnn3
//! step on this machine (measured with `perf`). Turning off `mmap` for allocations and the
//! heap trim makes freed blocks reusable: cnn3 at batch 512 went from 647 to 950 images/s in
//! `ferkit bench`. The cost is that the process keeps its peak memory until it exits.
//!
//! That peak is per arena: glibc gives threads arenas of their own, and a block freed in one
//! arena serves only that arena's threads. Since session 23 a step's tensors are allocated on
//! the kernel pool's threads (`util::on_pool`) as well as on the caller's, and with one arena
//! per thread each kept a step's peak: the `fast` preset's peak RSS went from 540 to 1,269 MiB
//! (its 3,000-face epoch, `time -v`, Intel Xeon, 2 cores). Two arenas in all brought it back to
//! 535-581 MiB at the same speed; one arena (every thread on one lock) was slower.
//!
//! Since session 38 it is one arena. With two, the step's big blocks churned whenever a kernel
//! thread drew the second arena: a thread arena's memory comes in heaps of at most 64 MiB of their
//! own, and glibc unmaps such a heap as soon as it is empty (`heap_trim` in malloc/arena.c deletes
//! empty heaps whatever `M_TRIM_THRESHOLD` says), so the next step faulted it in and zeroed it
//! again. Which thread draws which arena depends on timing, so the same command ran at two speeds:
//! the search's 75th-percentile net (`bench/nets/tune_cnn_p75.toml`, batch 512) trained at 108-221
//! images/s in some `ferkit bench` runs (5.76 M page faults in each slow run counted) and at
//! 314-338 in others (0.55 M). With one arena (the main one, which grows by `brk` and is never
//! trimmed here) it ran at 332-338 images/s with 0.55 M faults in three runs of three, cnn1 and
//! the `fast` preset's net at the same speed as with two (alternated runs, AMD EPYC Zen 4, 2
//! cores, session 38). Peak RSS of those `ferkit bench` runs: 2.22 GB against 1.76 GB for the p75
//! net, 615 against 740 MB for cnn1, 489 against 566 MB for the `fast` net.

/// Tunes glibc's allocator for training; call once, first thing in `main`.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        libc::mallopt(libc::M_TOP_PAD, 256 << 20);
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}
