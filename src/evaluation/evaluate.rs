//! Running a net, or an ensemble of nets, over a split in inference mode: loss, accuracy and the
//! confusion matrix.

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use super::inference::log_probabilities_in_batches;
use super::metrics::{ClassMetrics, Confusion};
use super::tta::Tta;
use crate::data::Split;
use crate::data::batch::Preprocess;
use crate::models::Model;

/// Figures for one split.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SplitEvaluation {
    pub split: String,
    /// The views the net read (left out when it read each face as it is).
    #[serde(default, skip_serializing_if = "is_plain")]
    pub tta: Tta,
    pub rows: usize,
    /// Mean cross-entropy plus the L2 penalty (what Keras reports as the loss); an ensemble's
    /// is its cross-entropy alone.
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
    let mut result = evaluate_ensemble(&[(net, preprocess)], split, split_name, batch_size, device, tta);
    let l2 = net.l2_penalty().map_or(0.0, |p| p.into_scalar::<f32>() as f64);
    result.loss += l2;
    result
}

/// Evaluates the average of several nets' class probabilities (each net reading its own
/// preprocessing of the faces, and the views `tta` names), over every row of `split`.
///
/// Panics when `members` is empty.
pub fn evaluate_ensemble(
    members: &[(&Model, Preprocess)],
    split: &Split,
    split_name: &str,
    batch_size: usize,
    device: &Device,
    tta: Tta,
) -> SplitEvaluation {
    assert!(!members.is_empty(), "an ensemble needs at least one net");
    let mut ce_sum = 0.0f64;
    let mut confusion = Confusion::default();
    let faces: Vec<&[u8]> = (0..split.len()).map(|i| split.image(i)).collect();
    log_probabilities_in_batches(members, &faces, batch_size, device, tta, |first, log_p| {
        let n = log_p.dims()[0];
        let labels: Vec<i64> = (first..first + n).map(|i| split.label(i) as i64).collect();
        let labels = Tensor::<1, Int>::from_data(TensorData::new(labels, [n]), device);
        let picked = log_p.clone().gather(1, labels.unsqueeze_dim::<2>(1));
        let ce: f32 = picked.sum().neg().into_scalar();
        ce_sum += ce as f64;
        let predicted =
            log_p.argmax(1).into_data().convert::<i64>().try_to_vec::<i64>().expect("argmax gives integers");
        for (i, &p) in (first..).zip(&predicted) {
            confusion.add(split.label(i), p as u8);
        }
    });
    let cross_entropy = if split.is_empty() { f64::NAN } else { ce_sum / split.len() as f64 };
    SplitEvaluation {
        split: split_name.to_string(),
        tta,
        rows: split.len(),
        loss: cross_entropy,
        cross_entropy,
        accuracy: confusion.accuracy(),
        macro_f1: confusion.macro_f1(),
        per_class: confusion.per_class(),
        confusion,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::batch::{make_batch, sequential};

    /// Twelve pseudo-random faces with labels 0..6 in turn.
    fn faces() -> Split {
        let mut split = Split::new();
        let mut x = 12345u32;
        for i in 0..12 {
            let image: Vec<u8> = (0..48 * 48)
                .map(|_| {
                    x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    (x >> 24) as u8
                })
                .collect();
            split.push(&image, (i % 7) as u8);
        }
        split
    }

    #[test]
    fn an_ensemble_averages_its_members_probabilities() {
        let device = Device::flex();
        device.seed(1);
        let a = crate::models::resolve("cnn3").unwrap().build(&device).unwrap();
        let b = crate::models::resolve("cnn2").unwrap().build(&device).unwrap();
        let split = faces();
        let pre = Preprocess::PerImage;
        // One member: the net's own figures (without its L2 term).
        let alone = evaluate(&a, pre, &split, "t", 5, &device, Tta::None);
        let one = evaluate_ensemble(&[(&a, pre)], &split, "t", 5, &device, Tta::None);
        assert!((one.cross_entropy - alone.cross_entropy).abs() < 1e-9);
        // The same net twice: the same probabilities.
        let twice = evaluate_ensemble(&[(&a, pre), (&a, pre)], &split, "t", 5, &device, Tta::None);
        assert!((twice.cross_entropy - alone.cross_entropy).abs() < 1e-5);
        assert_eq!(twice.confusion, alone.confusion);
        // Two nets: the cross-entropy of the mean of their probabilities, computed here by hand.
        let both = evaluate_ensemble(&[(&a, pre), (&b, pre)], &split, "t", 5, &device, Tta::None);
        let batch = make_batch(&split, &sequential(split.len()), pre, &device);
        let pa = burn::tensor::activation::softmax(a.forward(batch.images.clone()), 1);
        let pb = burn::tensor::activation::softmax(b.forward(batch.images), 1);
        let mean = (pa.clone() + pb.clone()).div_scalar(2.0).into_data().try_to_vec::<f32>().unwrap();
        let expected: f64 =
            (0..split.len()).map(|i| -(mean[i * 7 + split.label(i) as usize] as f64).ln()).sum::<f64>() / 12.0;
        assert!((both.cross_entropy - expected).abs() < 1e-4, "{} vs {expected}", both.cross_entropy);
        // The members differ, so the test above can fail: their probabilities differ somewhere
        // (a check on every value, not on one scalar that two random nets could share by chance).
        let (pa, pb) = (pa.into_data().try_to_vec::<f32>().unwrap(), pb.into_data().try_to_vec::<f32>().unwrap());
        let largest = pa.iter().zip(&pb).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        assert!(largest > 1e-3, "the two members' probabilities differ by at most {largest}");
    }
}
