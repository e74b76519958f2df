//! Evaluation: metrics from a confusion matrix, and running a trained net over a split.

pub mod evaluate;
pub mod metrics;

pub use evaluate::{SplitEvaluation, evaluate};
pub use metrics::{ClassMetrics, Confusion};
