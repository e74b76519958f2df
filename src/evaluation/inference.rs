//! The one batched-inference loop: faces in, class log-probabilities out, batch by batch. The
//! evaluator (which adds the labels) and the prediction pipeline (which has none) both call it.

use burn::prelude::*;

use super::tta::{Tta, log_probabilities, probabilities};
use crate::data::batch::{Preprocess, images_tensor};
use crate::models::Model;

/// Runs `members` (one net, or several whose class probabilities are averaged, each reading its
/// own preprocessing of the faces) over `faces` (48x48 grey, `u8`, row-major) in batches of
/// `batch_size`, each net reading the views `tta` names. Calls `on_batch(first, log_p)` for
/// each batch in order: `first` is the index of the batch's first face, `log_p` the natural-log
/// class probabilities `[batch, 7]` (f32) on `device`.
///
/// Panics when `members` is empty or `batch_size` is 0.
pub fn log_probabilities_in_batches(
    members: &[(&Model, Preprocess)],
    faces: &[&[u8]],
    batch_size: usize,
    device: &Device,
    tta: Tta,
    mut on_batch: impl FnMut(usize, Tensor<2>),
) {
    assert!(!members.is_empty(), "an ensemble needs at least one net");
    assert!(batch_size > 0, "batches hold at least one face");
    for (b, chunk) in faces.chunks(batch_size).enumerate() {
        // On a kernel thread: see `util::on_pool`.
        let log_p = crate::util::on_pool(device, || {
            if let [(net, preprocess)] = members {
                log_probabilities(net, images_tensor(chunk.iter().copied(), *preprocess, device), tta)
            } else {
                let sum = members
                    .iter()
                    .map(|(net, preprocess)| {
                        probabilities(net, images_tensor(chunk.iter().copied(), *preprocess, device), tta)
                    })
                    .reduce(|a, b| a + b)
                    .expect("members is not empty");
                // Floored as `Model::forward` floors an ensemble's mean: no log of 0.
                sum.div_scalar(members.len() as f64).clamp_min(f32::MIN_POSITIVE as f64).log()
            }
        });
        on_batch(b * batch_size, log_p);
    }
}
