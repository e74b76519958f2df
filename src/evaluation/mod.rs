//! Evaluation: the one batched-inference loop ([`inference`]), running a trained net over a
//! split ([`evaluate`]), metrics from a confusion matrix, and test-time augmentation.

pub mod evaluate;
pub mod inference;
pub mod metrics;
pub mod tta;

pub use evaluate::{SplitEvaluation, evaluate, evaluate_ensemble};
pub use metrics::{ClassMetrics, Confusion};
pub use tta::Tta;
