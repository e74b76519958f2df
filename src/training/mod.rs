//! Training: the run configuration, the learning-rate schedule, the loop, history and checkpoint choice, progress display,
//! and the run directory that holds it all.

pub mod checkpoint;
pub mod config;
pub mod history;
pub mod progress;
pub mod run_dir;
pub mod schedule;
pub mod trainer;

pub use config::{Monitor, TrainConfig};
pub use run_dir::RunDir;
pub use schedule::LrSchedule;
pub use trainer::{RunMetrics, check_inputs, resume, train};
