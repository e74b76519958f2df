//! ferkit: facial-expression recognition on FER2013-shaped data, in Rust on Burn.
//!
//! The modules follow the pipeline: [`data`] -> [`models`] -> [`training`] (filling a [`run`]
//! directory, reporting through [`events`]) -> [`evaluation`] -> [`reporting`], with [`tuning`]
//! for hyperparameter search, [`trained`] for a kept net ready to use, [`detection`] and
//! [`prediction`] for faces in real photos, [`reproduce`] for the notebook's whole study and
//! [`bench`] for throughput; [`kernels`] and [`util`] underneath. The `ferkit` command is the crate
//! `ferkit-cli` (crates/ferkit-cli), a thin layer over this library.

pub mod bench;
pub mod data;
pub mod detection;
pub mod error;
pub mod evaluation;
pub mod events;
pub mod export;
pub mod kernels;
pub mod models;
pub mod prediction;
pub mod reporting;
pub mod reproduce;
pub mod run;
pub mod trained;
pub mod training;
pub mod tuning;
pub mod util;
pub mod video;

pub use error::{Error, ErrorKind, Result};

/// Burn's device type, the one every tensor of ferkit's nets lives on (`Device::flex()`: the CPU).
pub use burn::prelude::Device;
