//! Test-time augmentation: a net's class probabilities averaged over views of each face.
//!
//! FER papers commonly report accuracy with such averaging (e.g. the mirror image, or ten
//! crops); ferkit offers the mirror only, reports it beside the plain figure, and never uses it
//! to choose a checkpoint.

use burn::prelude::*;
use burn::tensor::activation::{log_softmax, softmax};
use serde::{Deserialize, Serialize};

use crate::models::Model;

/// Which views of each face the net reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Tta {
    /// The face as it is.
    #[default]
    None,
    /// The face and its mirror image (left and right swapped), probabilities averaged.
    Hflip,
}

impl Tta {
    /// A suffix for file names and labels ("" for none).
    pub fn suffix(self) -> &'static str {
        match self {
            Tta::None => "",
            Tta::Hflip => "_tta-hflip",
        }
    }
}

/// Natural-log class probabilities `[batch, classes]` of `images` `[batch, 1, h, w]`.
pub fn log_probabilities(net: &Model, images: Tensor<4>, tta: Tta) -> Tensor<2> {
    match tta {
        Tta::None => log_softmax(net.forward(images), 1),
        Tta::Hflip => {
            let plain = softmax(net.forward(images.clone()), 1);
            let mirrored = softmax(net.forward(images.flip([3])), 1);
            (plain + mirrored).div_scalar(2.0).log()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(t: Tensor<2>) -> Vec<f32> {
        t.into_data().try_to_vec::<f32>().unwrap()
    }

    #[test]
    fn hflip_averages_the_face_and_its_mirror() {
        let device = Device::flex();
        let net = crate::models::resolve("cnn3").unwrap().build(&device).unwrap();
        // Two different faces: a ramp from left to right, and its negation plus a bump.
        let ramp: Vec<f32> = (0..48 * 48).map(|i| (i % 48) as f32 / 24.0 - 1.0).collect();
        let other: Vec<f32> = ramp.iter().enumerate().map(|(i, v)| -v + ((i / 48) as f32 / 48.0).powi(2)).collect();
        let images = Tensor::<4>::from_data(TensorData::new([ramp, other].concat(), [2, 1, 48, 48]), &device);

        let plain = values(log_probabilities(&net, images.clone(), Tta::None).exp());
        let mirrored = values(log_probabilities(&net, images.clone().flip([3]), Tta::None).exp());
        let averaged = values(log_probabilities(&net, images.clone(), Tta::Hflip).exp());
        for ((p, m), a) in plain.iter().zip(&mirrored).zip(&averaged) {
            assert!((a - (p + m) / 2.0).abs() < 1e-6, "{a} is not the mean of {p} and {m}");
        }
        // The net does tell the views apart, so the test above can fail.
        assert!(plain.iter().zip(&mirrored).any(|(p, m)| (p - m).abs() > 1e-4));
        for row in averaged.chunks(7) {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        }

        // A face that is its own mirror image: the same probabilities either way.
        let symmetric: Vec<f32> = (0..48 * 48).map(|i| ((i % 48) as f32 - 23.5).abs() / 24.0).collect();
        let symmetric = Tensor::<4>::from_data(TensorData::new(symmetric, [1, 1, 48, 48]), &device);
        let plain = values(log_probabilities(&net, symmetric.clone(), Tta::None));
        let averaged = values(log_probabilities(&net, symmetric, Tta::Hflip));
        for (p, a) in plain.iter().zip(&averaged) {
            assert!((p - a).abs() < 1e-5);
        }
    }
}
