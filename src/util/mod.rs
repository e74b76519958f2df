//! Small helpers shared by every stage.

pub mod allocator;
pub mod atomic;
pub mod device;
pub mod fs;
