//! Evaluation: metrics from a confusion matrix, running a trained net over a split, and
//! test-time augmentation.

pub mod evaluate;
pub mod metrics;
pub mod tta;

pub use evaluate::{SplitEvaluation, evaluate, evaluate_ensemble};
pub use metrics::{ClassMetrics, Confusion};
pub use tta::Tta;
