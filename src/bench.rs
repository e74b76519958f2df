//! Throughput, for comparison with `bench/pytorch_reference.py`: training steps (the trainer's
//! own step: forward, cross-entropy + L2, backward, Adam, on random standardised inputs) and
//! inference (the one batched-inference loop that evaluation and prediction call: random 48x48
//! grey faces in, the net's preprocessing, forward, log-softmax out), in images per second.

use std::time::Instant;

use crate::training::OptimizerKind;
use crate::training::trainer::training_step;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::prelude::*;
use burn::tensor::Distribution;
use serde::Serialize;

use crate::data::{IMAGE_PIXELS, IMAGE_SIDE, NUM_CLASSES};
use crate::evaluation::Tta;
use crate::evaluation::inference::log_probabilities_in_batches;
use crate::models::{Model, ModelSpec};
use rand::{Rng, SeedableRng};

#[derive(Clone, Debug, Serialize)]
pub struct BenchResult {
    pub model: String,
    pub batch: usize,
    /// Median over `repeats` timings of `steps` steps each.
    pub train_images_per_s: f64,
    /// Faces per second through [`log_probabilities_in_batches`] (preprocessing included), median
    /// over `repeats` timings of `steps` batches each.
    pub infer_images_per_s: f64,
    pub steps: usize,
    pub repeats: usize,
    /// Multiply-adds per image of the net's forward pass and training step, where counted
    /// ([`ModelSpec::arithmetic`]): floating-point operations per second are twice these times
    /// the images/s.
    pub forward_multiply_adds: Option<u64>,
    pub training_multiply_adds: Option<u64>,
}

impl BenchResult {
    /// Training and inference GFLOP/s at the model's batch (2 FLOPs a multiply-add), where the
    /// net's arithmetic is counted.
    pub fn gflops(&self) -> Option<(f64, f64)> {
        let (forward, training) = (self.forward_multiply_adds?, self.training_multiply_adds?);
        Some((2e-9 * training as f64 * self.train_images_per_s, 2e-9 * forward as f64 * self.infer_images_per_s))
    }
}

/// Times `steps` training steps and `steps` inference batches, `repeats` times, after one
/// warm-up step of each; reports medians.
pub fn bench_model(
    spec: &ModelSpec,
    batch: usize,
    steps: usize,
    repeats: usize,
    device: &Device,
) -> crate::error::Result<BenchResult> {
    device.seed(0);
    let train_device = device.clone().autodiff();
    let mut model = spec.build(&train_device)?;
    let mut optimizer = OptimizerKind::Adam.init();
    let loss_fn = CrossEntropyLossConfig::new().init(&train_device);
    let images = Tensor::<4>::random([batch, 1, IMAGE_SIDE, IMAGE_SIDE], Distribution::Normal(0.0, 1.0), &train_device);
    let labels = Tensor::<1, Int>::random([batch], Distribution::Uniform(0.0, NUM_CLASSES as f64), &train_device);

    // The trainer's own step (Adam with Keras' epsilon, the notebook's optimizer); reading the
    // loss back waits for the step to finish on asynchronous backends.
    let mut train_step = |model: Model| -> crate::error::Result<Model> {
        training_step(model, &mut optimizer, &loss_fn, images.clone(), labels.clone(), None, None, 1e-4)
            .map(|(model, _)| model)
            .map_err(|loss| crate::err!(Diverged, "the benchmark's training loss on random data is {loss}"))
    };
    model = train_step(model)?;
    let mut train_rates = Vec::with_capacity(repeats);
    for _ in 0..repeats {
        let start = Instant::now();
        for _ in 0..steps {
            model = train_step(model)?;
        }
        train_rates.push((steps * batch) as f64 / start.elapsed().as_secs_f64());
    }

    // As the prediction pipeline runs it: batch norm folded into the layer before it, ReLU
    // merged into the layer before it (`models::fold`).
    let inference = crate::models::fold::fold_batch_norm(model.valid());
    let infer_rate = inference_rate(&inference, spec.preprocess(), batch, steps, repeats, device, Tta::None);
    let arithmetic = spec.arithmetic();
    Ok(BenchResult {
        model: spec.name().to_string(),
        batch,
        train_images_per_s: median(&mut train_rates),
        infer_images_per_s: infer_rate,
        steps,
        repeats,
        forward_multiply_adds: arithmetic.map(|a| a.forward),
        training_multiply_adds: arithmetic.map(|a| a.training),
    })
}

/// Faces that each inference timing, and the warm-up before them, cover at least
/// (`bench/timing.py` has the same rule for PyTorch and ONNX Runtime). Why: at batch 1 the old
/// rule's five calls took about a millisecond, and one scheduler hiccup moved a figure twofold.
pub const MIN_INFERENCE_IMAGES: usize = 256;

/// Inference as evaluation and prediction run it: `batch` random u8 faces through the shared loop
/// (the net's own preprocessing, forward over the views `tta` names, log-softmax), read back to
/// the host; faces (not views) per second, the median of `repeats` timings of `steps` batches
/// (more where `steps` batches hold fewer than [`MIN_INFERENCE_IMAGES`] faces) after warm-up
/// batches that hold at least that many faces (at least one batch).
pub fn inference_rate(
    model: &Model,
    preprocess: crate::data::batch::Preprocess,
    batch: usize,
    steps: usize,
    repeats: usize,
    device: &Device,
    tta: Tta,
) -> f64 {
    let pixels = random_faces(batch);
    let faces: Vec<&[u8]> = pixels.chunks(IMAGE_PIXELS).collect();
    let infer = || {
        log_probabilities_in_batches(&[(model, preprocess)], &faces, batch, device, tta, |_, log_p| {
            let _ = log_p.into_data();
        });
    };
    let cover = MIN_INFERENCE_IMAGES.div_ceil(batch);
    for _ in 0..cover {
        infer();
    }
    let calls = steps.max(cover);
    let mut rates = Vec::with_capacity(repeats);
    for _ in 0..repeats {
        let start = Instant::now();
        for _ in 0..calls {
            infer();
        }
        rates.push((calls * batch) as f64 / start.elapsed().as_secs_f64());
    }
    median(&mut rates)
}

/// Images/s of batch preparation on one thread (what the prefetch thread does each epoch):
/// standardisation alone, and standardisation plus `augment`. Random faces; the cost does not
/// depend on their content.
pub fn bench_preparation(augment: &crate::data::augment::AugmentConfig, images: usize) -> (f64, f64) {
    use crate::data::Split;
    use crate::data::batch::{EpochAugment, Preprocess, prepare_batch};
    let pixels = random_faces(images);
    let split = Split::from_parts(pixels, (0..images).map(|i| (i % NUM_CLASSES) as u8).collect());
    let rows: Vec<usize> = (0..images).collect();
    let time = |augment: Option<EpochAugment>| {
        let start = Instant::now();
        for chunk in rows.chunks(512) {
            std::hint::black_box(prepare_batch(&split, chunk, Preprocess::PerImage, augment));
        }
        images as f64 / start.elapsed().as_secs_f64()
    };
    (time(None), time(Some(EpochAugment { config: augment, seed: 0, epoch: 0 })))
}

/// `n` 48x48 grey faces of seeded random pixels, back to back (speed does not depend on content).
fn random_faces(n: usize) -> Vec<u8> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    (0..n * IMAGE_PIXELS).map(|_| rng.random()).collect()
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

/// Face detection's speed on one photo.
#[derive(Clone, Debug, Serialize)]
pub struct DetectBench {
    pub detector: String,
    pub photo: String,
    pub width: usize,
    pub height: usize,
    pub faces: usize,
    /// Median seconds per detection.
    pub seconds: f64,
}

/// Times `finder` on each photo (already decoded, so that only detection is timed, as
/// `bench/detect_reference.py` times OpenCV and facenet-pytorch); the median of `repeats`.
/// `photos` pairs each frame with the name its results carry.
pub fn bench_detection(
    detector: &str,
    finder: &dyn crate::prediction::FaceDetector,
    photos: &[(String, crate::prediction::Frame)],
    repeats: usize,
) -> Vec<DetectBench> {
    photos
        .iter()
        .map(|(name, photo)| {
            let mut faces = 0;
            let mut times: Vec<f64> = (0..repeats)
                .map(|_| {
                    let start = Instant::now();
                    faces = crate::prediction::find_faces(finder, photo).len();
                    start.elapsed().as_secs_f64()
                })
                .collect();
            DetectBench {
                detector: detector.to_string(),
                photo: name.clone(),
                width: photo.grey.width,
                height: photo.grey.height,
                faces,
                seconds: median(&mut times),
            }
        })
        .collect()
}
