//! A run directory: everything one training run produced, under fixed names (config.toml,
//! history.csv, model.bpk and its checksum, metrics.json, curves, evaluations), and the readers
//! and writers of those files that do not need the trainer.
//!
//! - [`run_dir`]: the layout, and the kept weights (save, checksum, load, NaN check).
//! - [`history`]: `history.csv`, one [`history::EpochRecord`] per epoch.
//! - [`metrics`]: `metrics.json` ([`metrics::RunMetrics`]) and the reader of ferkit's JSON files.
//!
//! The training config's reader (`RunDir::load_config`, `RunDir::load_model`) lives with the
//! config in [`crate::training::config`].

pub mod history;
pub mod metrics;
pub mod run_dir;

pub use history::EpochRecord;
pub use metrics::RunMetrics;
pub use run_dir::{RunDir, check_finite, load_weights, to_dtype};
