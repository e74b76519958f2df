//! Running a net over a split in inference mode: loss, accuracy and the confusion matrix.

use burn::nn::loss::CrossEntropyLossConfig;
use burn::prelude::*;
use serde::Serialize;

use super::metrics::{ClassMetrics, Confusion};
use crate::data::Split;
use crate::data::batch::{Preprocess, in_batches, make_batch, sequential};
use crate::models::Model;

/// Figures for one split.
#[derive(Clone, Debug, Serialize)]
pub struct SplitEvaluation {
    pub split: String,
    pub rows: usize,
    /// Mean cross-entropy plus the L2 penalty (what Keras reports as the loss).
    pub loss: f64,
    pub cross_entropy: f64,
    pub accuracy: f64,
    pub macro_f1: f64,
    pub per_class: Vec<ClassMetrics>,
    pub confusion: Confusion,
}

/// Evaluates `net` (on a plain, non-autodiff device) over every row of `split`.
pub fn evaluate(
    net: &Model,
    preprocess: Preprocess,
    split: &Split,
    split_name: &str,
    batch_size: usize,
    device: &Device,
) -> SplitEvaluation {
    let loss_fn = CrossEntropyLossConfig::new().init(device);
    let mut ce_sum = 0.0f64;
    let mut confusion = Confusion::default();
    let order = sequential(split.len());
    for indices in in_batches(&order, batch_size) {
        let batch = make_batch(split, indices, preprocess, device);
        let logits = net.forward(batch.images);
        let ce: f32 = loss_fn.forward(logits.clone(), batch.labels).into_scalar();
        ce_sum += ce as f64 * indices.len() as f64;
        let predicted =
            logits.argmax(1).into_data().convert::<i64>().try_to_vec::<i64>().expect("argmax gives integers");
        for (&i, &p) in indices.iter().zip(&predicted) {
            confusion.add(split.label(i), p as u8);
        }
    }
    let cross_entropy = if split.is_empty() { f64::NAN } else { ce_sum / split.len() as f64 };
    let l2 = net.l2_penalty().map_or(0.0, |p| p.into_scalar::<f32>() as f64);
    SplitEvaluation {
        split: split_name.to_string(),
        rows: split.len(),
        loss: cross_entropy + l2,
        cross_entropy,
        accuracy: confusion.accuracy(),
        macro_f1: confusion.macro_f1(),
        per_class: confusion.per_class(),
        confusion,
    }
}
