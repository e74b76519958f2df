//! Small helpers shared by every stage.

pub mod atomic;
pub mod device;
