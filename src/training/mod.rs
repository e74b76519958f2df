//! Training: the run configuration, the optimizer, the learning-rate schedule, the weight EMA,
//! mixup/cutmix, the loop and the choice of the checkpoint to keep. The run directory it fills is
//! [`crate::run`].

pub mod best;
pub mod checkpoint;
pub mod config;
pub mod ema;
pub mod mix;
pub mod optimizer;
pub mod schedule;
pub mod start;
pub mod trainer;

pub use crate::run::RunDir;
pub use best::Monitor;
pub use config::TrainConfig;
pub use optimizer::OptimizerKind;
pub use schedule::LrSchedule;
pub use start::{Recipe, load_data, resume_dir, start};
pub use trainer::{RunMetrics, check_inputs, resume, train};
