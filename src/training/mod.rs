//! Training: the run configuration, the optimizer, the learning-rate schedule, the weight EMA,
//! mixup/cutmix, knowledge distillation, the loop, the choice of the checkpoint to keep, and training presets (a net with
//! its recipe under one name). The run directory it fills is
//! [`crate::run`].

pub mod adam;
pub mod best;
pub mod budget;
pub mod checkpoint;
pub mod config;
pub mod distill;
pub mod ema;
pub mod mix;
pub mod optimizer;
pub mod presets;
pub mod schedule;
pub mod start;
pub mod trainer;

pub use crate::run::RunDir;
pub use best::Monitor;
pub use config::TrainConfig;
pub use optimizer::OptimizerKind;
pub use presets::{TRAINING_PRESETS, TrainingPreset, training_preset};
pub use schedule::LrSchedule;
pub use start::{Recipe, load_data, resume_dir, start};
pub use trainer::{RunMetrics, check_inputs, resume, train};
