//! Mini-batches: seeded shuffles of a split, standardised and turned into Burn tensors.

use burn::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use super::augment::{AugmentConfig, sample_rng};
use super::dataset::{IMAGE_PIXELS, IMAGE_SIDE, Split};
use super::standardize::standardize_batch;

/// A batch on a device: images `[batch, 1, 48, 48]` (standardised) and labels `[batch]`.
pub struct Batch {
    pub images: Tensor<4>,
    pub labels: Tensor<1, Int>,
}

impl Batch {
    pub fn len(&self) -> usize {
        self.labels.dims()[0]
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// How grey levels become model inputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preprocess {
    /// The notebook's per-image standardisation (layer-list nets).
    PerImage,
    /// Grey level / 255, in [0, 1] (transfer nets normalise for ImageNet themselves).
    UnitRange,
}

/// A batch in host memory, before it goes to a device (built off the training thread).
pub struct HostBatch {
    pub pixels: Vec<f32>,
    pub labels: Vec<i64>,
}

/// Augmentation of one epoch: the recipe, the run's seed and the epoch number fix every
/// sample's transform.
#[derive(Clone, Copy)]
pub struct EpochAugment<'a> {
    pub config: &'a AugmentConfig,
    pub seed: u64,
    pub epoch: usize,
}

/// Preprocesses (and, when asked, augments) rows `indices` of `split`. As in the notebook,
/// images are standardised first and the standardised images augmented.
pub fn prepare_batch(
    split: &Split,
    indices: &[usize],
    preprocess: Preprocess,
    augment: Option<EpochAugment>,
) -> HostBatch {
    let mut pixels = preprocess_images(indices.iter().map(|&i| split.image(i)), preprocess);
    if let Some(a) = augment {
        for (&row, image) in indices.iter().zip(pixels.chunks_mut(IMAGE_PIXELS)) {
            a.config.apply(image, IMAGE_SIDE, IMAGE_SIDE, &mut sample_rng(a.seed, a.epoch, row));
        }
    }
    HostBatch { pixels, labels: indices.iter().map(|&i| split.label(i) as i64).collect() }
}

/// 48x48 grey faces (`u8`, row-major) as model inputs (`f32`, face after face), preprocessed
/// as `preprocess` says.
pub fn preprocess_images<'a>(faces: impl Iterator<Item = &'a [u8]>, preprocess: Preprocess) -> Vec<f32> {
    let mut pixels = Vec::new();
    match preprocess {
        Preprocess::PerImage => standardize_batch(faces, &mut pixels),
        Preprocess::UnitRange => pixels.extend(faces.flat_map(|face| face.iter().map(|&p| p as f32 / 255.0))),
    }
    pixels
}

/// 48x48 grey faces as an input tensor `[faces, 1, 48, 48]` on `device` (no labels: inference).
pub fn images_tensor<'a>(faces: impl Iterator<Item = &'a [u8]>, preprocess: Preprocess, device: &Device) -> Tensor<4> {
    let pixels = preprocess_images(faces, preprocess);
    let n = pixels.len() / IMAGE_PIXELS;
    Tensor::from_data(TensorData::new(pixels, [n, 1, IMAGE_SIDE, IMAGE_SIDE]), device)
}

impl HostBatch {
    pub fn to_device(self, device: &Device) -> Batch {
        let n = self.labels.len();
        Batch {
            images: Tensor::from_data(TensorData::new(self.pixels, [n, 1, IMAGE_SIDE, IMAGE_SIDE]), device),
            labels: Tensor::from_data(TensorData::new(self.labels, [n]), device),
        }
    }
}

/// Builds the batch of rows `indices` of `split` (no augmentation).
pub fn make_batch(split: &Split, indices: &[usize], preprocess: Preprocess, device: &Device) -> Batch {
    prepare_batch(split, indices, preprocess, None).to_device(device)
}

/// Prepares an epoch's batches on a thread of `scope`, two ahead of the consumer, so that
/// standardisation and augmentation overlap with training.
pub fn prefetch<'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    split: &'scope Split,
    order: Vec<usize>,
    batch_size: usize,
    preprocess: Preprocess,
    augment: Option<EpochAugment<'scope>>,
) -> std::sync::mpsc::Receiver<HostBatch> {
    let (tx, rx) = std::sync::mpsc::sync_channel(2);
    scope.spawn(move || {
        for indices in in_batches(&order, batch_size) {
            if tx.send(prepare_batch(split, indices, preprocess, augment)).is_err() {
                break; // the consumer stopped early (an error)
            }
        }
    });
    rx
}

/// Row order for each epoch: a fresh shuffle from a generator seeded once per run, so that a
/// seed fixes every epoch's order.
pub struct EpochOrder {
    rng: StdRng,
}

impl EpochOrder {
    pub fn new(seed: u64) -> Self {
        Self { rng: StdRng::seed_from_u64(seed) }
    }

    pub fn next_epoch(&mut self, len: usize) -> Vec<usize> {
        let mut order: Vec<usize> = (0..len).collect();
        order.shuffle(&mut self.rng);
        order
    }
}

/// Row indices in order, cut into batches of `batch_size` (the last one may be smaller).
pub fn in_batches(order: &[usize], batch_size: usize) -> impl Iterator<Item = &[usize]> {
    order.chunks(batch_size.max(1))
}

/// All rows of a split, in order, as batches (for evaluation).
pub fn sequential(len: usize) -> Vec<usize> {
    (0..len).collect()
}
