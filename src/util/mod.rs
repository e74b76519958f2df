//! Small helpers shared by every stage.

pub mod allocator;
pub mod atomic;
pub mod choice;
pub mod cpu;
pub mod device;
pub mod fs;

/// Sets the number of threads the kernels and the detectors use (rayon's global pool), once per
/// process, before any work; 0 means one per core. Errors: the pool was already set up.
pub fn set_threads(threads: usize) -> crate::error::Result<()> {
    use crate::error::Context;
    rayon::ThreadPoolBuilder::new().num_threads(threads).build_global().context("cannot set up the thread pool")
}
