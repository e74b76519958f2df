//! Running a net over a split in inference mode: loss, accuracy and the confusion matrix.

use burn::prelude::*;
use serde::Serialize;

use super::metrics::{ClassMetrics, Confusion};
use super::tta::{Tta, log_probabilities};
use crate::data::Split;
use crate::data::batch::{Preprocess, in_batches, make_batch, sequential};
use crate::models::Model;

/// Figures for one split.
#[derive(Clone, Debug, Serialize)]
pub struct SplitEvaluation {
    pub split: String,
    /// The views the net read (left out when it read each face as it is).
    #[serde(skip_serializing_if = "is_plain")]
    pub tta: Tta,
    pub rows: usize,
    /// Mean cross-entropy plus the L2 penalty (what Keras reports as the loss).
    pub loss: f64,
    pub cross_entropy: f64,
    pub accuracy: f64,
    pub macro_f1: f64,
    pub per_class: Vec<ClassMetrics>,
    pub confusion: Confusion,
}

fn is_plain(tta: &Tta) -> bool {
    *tta == Tta::None
}

/// Evaluates `net` (on a plain, non-autodiff device) over every row of `split`, the net reading
/// the views of each face that `tta` names (their probabilities averaged).
pub fn evaluate(
    net: &Model,
    preprocess: Preprocess,
    split: &Split,
    split_name: &str,
    batch_size: usize,
    device: &Device,
    tta: Tta,
) -> SplitEvaluation {
    let mut ce_sum = 0.0f64;
    let mut confusion = Confusion::default();
    let order = sequential(split.len());
    for indices in in_batches(&order, batch_size) {
        let batch = make_batch(split, indices, preprocess, device);
        let log_p = log_probabilities(net, batch.images, tta);
        let picked = log_p.clone().gather(1, batch.labels.unsqueeze_dim::<2>(1));
        let ce: f32 = picked.sum().neg().into_scalar();
        ce_sum += ce as f64;
        let predicted =
            log_p.argmax(1).into_data().convert::<i64>().try_to_vec::<i64>().expect("argmax gives integers");
        for (&i, &p) in indices.iter().zip(&predicted) {
            confusion.add(split.label(i), p as u8);
        }
    }
    let cross_entropy = if split.is_empty() { f64::NAN } else { ce_sum / split.len() as f64 };
    let l2 = net.l2_penalty().map_or(0.0, |p| p.into_scalar::<f32>() as f64);
    SplitEvaluation {
        split: split_name.to_string(),
        tta,
        rows: split.len(),
        loss: cross_entropy + l2,
        cross_entropy,
        accuracy: confusion.accuracy(),
        macro_f1: confusion.macro_f1(),
        per_class: confusion.per_class(),
        confusion,
    }
}
