//! ferkit: facial-expression recognition on FER2013-shaped data, in Rust on Burn.
//!
//! The modules follow the pipeline: [`data`] -> [`models`] -> [`training`] -> [`evaluation`]
//! -> [`reporting`], with [`tuning`] for hyperparameter search, [`detection`] and [`prediction`]
//! for faces in real photos, [`bench`] for throughput and [`cli`] as the thin command layer.

pub mod bench;
pub mod cli;
pub mod data;
pub mod detection;
pub mod evaluation;
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
