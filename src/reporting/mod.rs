//! Reporting: pictures (PNG) and tables people read.

pub mod plots;
pub mod table;
