//! Fuzz targets for ferkit's readers and HTTP front; see README.md for how to run them.
pub mod limits;
pub mod readers;
pub mod serve;
