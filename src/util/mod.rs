//! Small helpers shared by every stage.

pub mod allocator;
pub mod atomic;
pub mod choice;
pub mod cpu;
pub mod device;
pub mod fs;

/// Sets up the threads the kernels and the detectors use (rayon's global pool), once per process,
/// before any work: `threads` of them (0: one per core), the calling thread being one (index 0,
/// so `threads - 1` more are started). Errors: the pool was already set up, or the calling
/// thread already belongs to a rayon pool.
///
/// Why the caller joins the pool: a forward pass or a training step started on a pool thread
/// runs there at once ([`on_pool`] calls it directly), where one started on any other thread is
/// handed to the pool while the caller sleeps until it is done; that hand-off and the two
/// wake-ups cost 15-22 µs a call (AMD EPYC, 2 cores, session 42), a sixth of cnn3's time for one
/// face. Call it from the thread that will run the work (the CLI's main thread). A process whose
/// work comes from other threads (the HTTP server's, Python's callers) should leave the pool to
/// rayon's default instead: the calling thread takes pool work only while it is inside a
/// parallel call itself, so, idle, it would leave a core unused.
pub fn set_threads(threads: usize) -> crate::error::Result<()> {
    use crate::error::Context;
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .use_current_thread()
        .build_global()
        .context("cannot set up the thread pool")
}

/// Runs `f` on a thread of rayon's global pool (the threads the kernels run on) and returns its
/// result; directly when the caller already is a thread of a rayon pool (inside `pool.install`,
/// that pool's). The caller's thread waits meanwhile. `f` must not block on a lock or a channel
/// that other work on the pool may hold: a pool thread waiting inside a kernel can pick up
/// another caller's `f`, and the two would wait on each other.
///
/// Why: a kernel called from a thread outside the pool hands all its work to the pool and
/// sleeps until it is done, so each of the hundreds of kernel calls of a training step or a
/// forward pass paid for waking a pool thread and then the caller (futex wake-ups: 7-11% of the
/// samples of an EfficientNet-Lite0 training step under `perf`, Intel Xeon, 2 cores). Called
/// from a pool thread, a kernel starts on that thread at once and the pool's other threads join
/// in. The training step, the EMA update, batch-norm recalibration and each batch of inference
/// run through here; the loops around them (progress, Ctrl-C, Python callbacks) stay on the
/// caller's thread.
///
/// Only for work on the CPU (`device` the Flex backend, with or without autodiff): on another
/// device (the GPU of the `gpu` feature) `f` runs on the caller's thread. Its kernels do not run
/// on the pool, and Burn's own batch norm, which that path uses instead of ferkit's kernel
/// (`kernels::batch_norm`, whose running statistics fold every thread's update), folds the
/// pending update of the calling thread only: steps landing on different pool threads would
/// read stale running statistics.
pub fn on_pool<R: Send>(device: &burn::prelude::Device, f: impl FnOnce() -> R + Send) -> R {
    let cpu = *device == burn::prelude::Device::flex(); // equality ignores autodiff
    if !cpu || rayon::current_thread_index().is_some() { f() } else { rayon::scope(|_| f()) }
}

#[cfg(test)]
mod tests {
    #[test]
    fn on_pool_runs_the_work_on_a_pool_thread_and_returns_its_result() {
        use burn::prelude::Device;
        assert_eq!(rayon::current_thread_index(), None, "the test harness's thread is not a pool thread");
        let cpu = Device::flex();
        let (index, value) = super::on_pool(&cpu, || (rayon::current_thread_index(), 6 * 7));
        assert!(index.is_some(), "ran outside the pool");
        assert_eq!(value, 42);
        // The training device (autodiff over the CPU) too.
        let index = super::on_pool(&Device::autodiff(cpu.clone()), rayon::current_thread_index);
        assert!(index.is_some(), "an autodiff CPU step ran outside the pool");
        // From a pool thread it runs where it is called.
        let (outer, inner) =
            super::on_pool(&cpu, || (rayon::current_thread_index(), super::on_pool(&cpu, rayon::current_thread_index)));
        assert_eq!(outer, inner);
    }
}
