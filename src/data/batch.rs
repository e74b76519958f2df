//! Mini-batches: seeded shuffles of a split, standardised and turned into Burn tensors.

use burn::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use super::dataset::{IMAGE_SIDE, Split};
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

/// Builds the batch of rows `indices` of `split`.
pub fn make_batch(split: &Split, indices: &[usize], device: &Device) -> Batch {
    let mut pixels = Vec::new();
    standardize_batch(indices.iter().map(|&i| split.image(i)), &mut pixels);
    let labels: Vec<i64> = indices.iter().map(|&i| split.label(i) as i64).collect();
    let n = indices.len();
    Batch {
        images: Tensor::from_data(TensorData::new(pixels, [n, 1, IMAGE_SIDE, IMAGE_SIDE]), device),
        labels: Tensor::from_data(TensorData::new(labels, [n]), device),
    }
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
