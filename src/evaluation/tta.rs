//! Test-time augmentation: a net's class probabilities averaged over views of each face.
//!
//! FER papers commonly report accuracy with such averaging: the mirror image, or ten crops (the
//! four corner crops and the centre crop, and their mirrors, as in Krizhevsky et al. 2012 and the
//! FER2013 literature, e.g. Khaireddin & Chen 2021). ferkit reports it beside the plain figure and
//! never uses it to choose a checkpoint.
//!
//! ferkit's nets read whole 48x48 faces, so each crop (of side 44, 11/12 of the face: a zoom of
//! 1.09 and a shift of up to 2 pixels, well inside the training augmentation's range) is resized
//! back to 48x48 (bilinear, half-pixel centres) before the net reads it.

use burn::prelude::*;
use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use serde::{Deserialize, Serialize};

use crate::models::Model;

/// Which views of each face the net reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tta {
    /// The face as it is.
    #[default]
    None,
    /// The face and its mirror image (left and right swapped), probabilities averaged.
    Hflip,
    /// Ten crops: the four corners and the centre (side 11/12 of the face, resized back) and
    /// their mirror images, probabilities averaged.
    #[serde(rename = "ten-crop")]
    TenCrop,
}

impl crate::util::choice::Choice for Tta {
    const CHOICES: &'static [(&'static str, Self, &'static str)] = &[
        ("none", Tta::None, "the face as it is"),
        ("hflip", Tta::Hflip, "the face and its mirror image, probabilities averaged"),
        ("ten-crop", Tta::TenCrop, "four corner crops, the centre crop and their mirrors, probabilities averaged"),
    ];
}

impl Tta {
    /// A suffix for file names and labels ("" for none).
    pub fn suffix(self) -> &'static str {
        match self {
            Tta::None => "",
            Tta::Hflip => "_tta-hflip",
            Tta::TenCrop => "_tta-ten-crop",
        }
    }

    /// How many views of each face the net reads (1, 2 or 10): the cost of an evaluation
    /// relative to the plain one.
    pub fn view_count(self) -> usize {
        match self {
            Tta::None => 1,
            Tta::Hflip => 2,
            Tta::TenCrop => 10,
        }
    }

    /// A few words for reports: "" for none, else e.g. "mirror TTA".
    pub fn label(self) -> &'static str {
        match self {
            Tta::None => "",
            Tta::Hflip => "mirror TTA",
            Tta::TenCrop => "ten-crop TTA",
        }
    }

    /// The views of `images` `[batch, channels, h, w]` that the net reads, each the same shape.
    pub fn views(self, images: Tensor<4>) -> Vec<Tensor<4>> {
        match self {
            Tta::None => vec![images],
            Tta::Hflip => vec![images.clone(), images.flip([3])],
            Tta::TenCrop => {
                let [_, _, h, w] = images.dims();
                let (ch, cw) = (h - h / 12, w - w / 12);
                let origins = [(0, 0), (0, w - cw), (h - ch, 0), (h - ch, w - cw), ((h - ch) / 2, (w - cw) / 2)];
                let mut views = Vec::with_capacity(10);
                for (y, x) in origins {
                    let crop = images.clone().slice([0..images.dims()[0], 0..images.dims()[1], y..y + ch, x..x + cw]);
                    let mut options = InterpolateOptions::new(InterpolateMode::Bilinear).with_output_size([h, w]);
                    options.align_corners = false;
                    let view = interpolate(crop, options);
                    views.push(view.clone().flip([3]));
                    views.push(view);
                }
                views
            }
        }
    }
}

/// Class probabilities `[batch, classes]` of `images` `[batch, 1, h, w]`, averaged over the views
/// `tta` names (in one pass of the net when the views hold at most [`MAX_JOINT_PASS_IMAGES`] images).
pub fn probabilities(net: &Model, images: Tensor<4>, tta: Tta) -> Tensor<2> {
    let views = tta.views(images);
    let (n, batch) = (views.len(), views[0].dims()[0]);
    let per_view: Vec<Tensor<2>> = if n > 1 && batch > 0 && n * batch <= MAX_JOINT_PASS_IMAGES {
        softmax(net.forward(Tensor::cat(views, 0)), 1).split(batch, 0)
    } else {
        views.into_iter().map(|v| softmax(net.forward(v), 1)).collect()
    };
    per_view.into_iter().reduce(|a, b| a + b).expect("at least one view").div_scalar(n as f64)
}

/// At most this many images (faces times views) go through the net in one joint pass; larger
/// batches run one pass per view.
///
/// Why: a few faces with their views (one face from a photo with the mirror image: two images;
/// ten crops: ten) ran one pass per view, each of one or a few faces, paying every layer's
/// set-up and every weight's read once per view. One pass of all the views reads each weight
/// once. Large batches gain nothing from it and would hold every view's maps at once.
pub const MAX_JOINT_PASS_IMAGES: usize = 64;

/// Natural-log class probabilities `[batch, classes]` of `images` `[batch, 1, h, w]`.
pub fn log_probabilities(net: &Model, images: Tensor<4>, tta: Tta) -> Tensor<2> {
    match tta {
        Tta::None => log_softmax(net.forward(images), 1),
        _ => probabilities(net, images, tta).log(),
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

        // Past MAX_JOINT_PASS_IMAGES images the views run one pass each: the same means.
        let many = crate::kernels::tests::random_input([33, 1, 48, 48], &device, 8);
        let plain = values(log_probabilities(&net, many.clone(), Tta::None).exp());
        let mirrored = values(log_probabilities(&net, many.clone().flip([3]), Tta::None).exp());
        let averaged = values(log_probabilities(&net, many, Tta::Hflip).exp());
        for ((p, m), a) in plain.iter().zip(&mirrored).zip(&averaged) {
            assert!((a - (p + m) / 2.0).abs() < 1e-6, "{a} is not the mean of {p} and {m}");
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

    /// Ten crops of two faces (20 images) run in one pass: each face's mean over its views is the
    /// mean of the views run one by one, up to rounding (batch sizes can pick other kernels).
    #[test]
    fn a_joint_pass_gives_the_mean_of_the_views_run_apart() {
        let device = Device::flex();
        for name in ["cnn3", "vgg-lite"] {
            let net = crate::models::resolve(name).unwrap().build(&device).unwrap();
            let faces = crate::kernels::tests::random_input([2, 1, 48, 48], &device, 21);
            let views = Tta::TenCrop.views(faces.clone());
            let apart: Vec<Tensor<2>> = views.into_iter().map(|v| softmax(net.forward(v), 1)).collect();
            let apart = values(apart.into_iter().reduce(|a, b| a + b).unwrap().div_scalar(10.0));
            let joint = values(probabilities(&net, faces, Tta::TenCrop));
            let worst = apart.iter().zip(&joint).map(|(a, j)| (a - j).abs()).fold(0.0f32, f32::max);
            assert!(worst < 1e-5, "{name}: joint and apart differ by {worst}");
        }
    }

    #[test]
    fn ten_crop_reads_the_corners_the_centre_and_their_mirrors() {
        let device = Device::flex();
        // Pixel value = 100 * row + column: each crop's resized view shows where it was cut.
        let pixels: Vec<f32> = (0..48 * 48).map(|i| (100 * (i / 48) + i % 48) as f32).collect();
        let images = Tensor::<4>::from_data(TensorData::new(pixels, [1, 1, 48, 48]), &device);
        let views = Tta::TenCrop.views(images);
        assert_eq!(views.len(), 10);
        assert_eq!(views.len(), Tta::TenCrop.view_count());
        let at =
            |v: &Tensor<4>, y: usize, x: usize| v.clone().slice([0..1, 0..1, y..y + 1, x..x + 1]).into_scalar::<f32>();
        // A 44x44 crop resized to 48x48 with half-pixel centres: output pixel 0 samples the crop at
        // (0 + 0.5) * 44/48 - 0.5 = -0.04, clamped to the crop's first pixel.
        let expected_corner = [(0.0, 0.0), (0.0, 4.0), (400.0, 0.0), (400.0, 4.0), (200.0, 2.0)];
        for (k, (row, col)) in expected_corner.into_iter().enumerate() {
            let (mirrored, plain) = (&views[2 * k], &views[2 * k + 1]);
            assert_eq!(plain.dims(), [1, 1, 48, 48]);
            let top_left = at(plain, 0, 0);
            assert!((top_left - (row + col)).abs() < 0.5, "crop {k}: top-left {top_left}");
            // The last output pixel reads the crop's last pixel: 43 rows and columns further on.
            let bottom_right = at(plain, 47, 47);
            assert!((bottom_right - (row + col + 4343.0)).abs() < 0.5, "crop {k}: bottom-right {bottom_right}");
            // The mirror swaps left and right.
            assert_eq!(at(mirrored, 5, 0), at(plain, 5, 47));
        }
    }
}
