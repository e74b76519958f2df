//! Training: the run configuration, the optimizer, the learning-rate schedule, the weight EMA, the loop, history and checkpoint choice, progress display,
//! and the run directory that holds it all.

pub mod checkpoint;
pub mod config;
pub mod ema;
pub mod history;
pub mod mix;
pub mod optimizer;
pub mod progress;
pub mod run_dir;
pub mod schedule;
pub mod trainer;

pub use config::{Monitor, TrainConfig};
pub use optimizer::OptimizerKind;
pub use run_dir::RunDir;
pub use schedule::LrSchedule;
pub use trainer::{RunMetrics, check_inputs, resume, train};
