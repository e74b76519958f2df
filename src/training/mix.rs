//! Mixup (Zhang et al. 2018) and CutMix (Yun et al. 2019): each training image is blended with
//! (mixup) or has a box pasted from (CutMix) another image of the same batch, and the loss is the
//! same blend of the two images' labels' cross-entropies. timm's `Mixup` is the reference for the
//! details: one mixing weight `lambda ~ Beta(alpha, alpha)` per batch, the partner of image i is
//! image `n - 1 - i` of the (already shuffled) batch, and CutMix's `lambda` is corrected to the
//! box's real area after clipping.
//!
//! Each batch's draws come from a generator seeded by (seed, epoch, step), so a resumed run mixes
//! exactly as an uninterrupted one.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Beta, Distribution};
use serde::{Deserialize, Serialize};

/// Which mixing, and the Beta distribution's `alpha` (timm's defaults: mixup 0.8, CutMix 1.0).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum MixConfig {
    Mixup { alpha: f64 },
    Cutmix { alpha: f64 },
}

/// What a mixed batch's loss needs: each image's partner in the batch and the weight of the
/// image's own label (`1 - lambda` goes to the partner's).
#[derive(Clone, Debug, PartialEq)]
pub struct Mixed {
    pub partner: Vec<usize>,
    pub lambda: f64,
}

impl MixConfig {
    /// `--mixup ALPHA` or `--cutmix ALPHA` (at most one); errors name the option and the range.
    pub fn from_options(mixup: Option<f64>, cutmix: Option<f64>) -> crate::error::Result<Option<Self>> {
        let check = |alpha: f64, option: &str| {
            crate::ensure!(Config @ option,
                alpha > 0.0 && alpha.is_finite(),
                "{option} must be a positive number, e.g. 0.8 (got {alpha})"
            );
            Ok(())
        };
        match (mixup, cutmix) {
            (Some(_), Some(_)) => crate::bail!(Config @ "mixup", "mixup and cutmix go one at a time"),
            (Some(alpha), None) => check(alpha, "mixup").map(|_| Some(Self::Mixup { alpha })),
            (None, Some(alpha)) => check(alpha, "cutmix").map(|_| Some(Self::Cutmix { alpha })),
            (None, None) => Ok(None),
        }
    }

    /// A short description for run summaries.
    pub fn describe(&self) -> String {
        match self {
            Self::Mixup { alpha } => format!("mixup (alpha {alpha})"),
            Self::Cutmix { alpha } => format!("CutMix (alpha {alpha})"),
        }
    }

    /// Mixes a batch of `n` images of `side` x `side` pixels (one channel, `pixels` laid out
    /// `[n, side, side]`) in place, with draws fixed by (seed, epoch, step).
    pub fn apply(&self, pixels: &mut [f32], n: usize, side: usize, seed: u64, epoch: usize, step: usize) -> Mixed {
        let plane = side * side;
        assert_eq!(pixels.len(), n * plane, "pixels must be [n, side, side]");
        // The epoch's seed (the one dropout uses), spread over the batches of the epoch.
        let mut rng = StdRng::seed_from_u64(
            super::checkpoint::epoch_seed(seed, epoch) ^ (step as u64).wrapping_mul(0xD1B5_4A32_D192_ED03),
        );
        let alpha = match *self {
            Self::Mixup { alpha } | Self::Cutmix { alpha } => alpha,
        };
        let mut lambda = Beta::new(alpha, alpha).expect("alpha is checked to be positive").sample(&mut rng);
        let partner: Vec<usize> = (0..n).rev().collect();
        let original = pixels.to_vec();
        match self {
            Self::Mixup { .. } => {
                for (i, &j) in partner.iter().enumerate() {
                    let (own, other) = (&mut pixels[i * plane..(i + 1) * plane], &original[j * plane..(j + 1) * plane]);
                    for (p, q) in own.iter_mut().zip(other) {
                        *p = (lambda * *p as f64 + (1.0 - lambda) * *q as f64) as f32;
                    }
                }
            }
            Self::Cutmix { .. } => {
                // A box of area (1 - lambda) of the image at a uniform centre, clipped to it.
                let cut = ((1.0 - lambda).sqrt() * side as f64) as usize;
                let (cy, cx) = (rng.random_range(0..side), rng.random_range(0..side));
                let (y0, y1) = (cy.saturating_sub(cut / 2), (cy + cut / 2).min(side));
                let (x0, x1) = (cx.saturating_sub(cut / 2), (cx + cut / 2).min(side));
                for (i, &j) in partner.iter().enumerate() {
                    for y in y0..y1 {
                        let row = y * side;
                        pixels[i * plane + row + x0..i * plane + row + x1]
                            .copy_from_slice(&original[j * plane + row + x0..j * plane + row + x1]);
                    }
                }
                lambda = 1.0 - ((y1 - y0) * (x1 - x0)) as f64 / plane as f64;
            }
        }
        Mixed { partner, lambda }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(n: usize, side: usize) -> Vec<f32> {
        (0..n * side * side).map(|i| (i / (side * side)) as f32 * 10.0 + (i % 7) as f32).collect()
    }

    #[test]
    fn mixup_blends_each_image_with_its_partner() {
        let (n, side) = (4, 6);
        let original = batch(n, side);
        let mut pixels = original.clone();
        let mixed = MixConfig::Mixup { alpha: 0.8 }.apply(&mut pixels, n, side, 42, 3, 5);
        assert_eq!(mixed.partner, [3, 2, 1, 0]);
        assert!(mixed.lambda > 0.0 && mixed.lambda < 1.0, "{}", mixed.lambda);
        let plane = side * side;
        for i in 0..n {
            let j = mixed.partner[i];
            for k in 0..plane {
                let want = mixed.lambda * original[i * plane + k] as f64
                    + (1.0 - mixed.lambda) * original[j * plane + k] as f64;
                assert!((pixels[i * plane + k] as f64 - want).abs() < 1e-4);
            }
        }
        // The same (seed, epoch, step) mixes the same way; another step another way.
        let mut again = original.clone();
        assert_eq!(MixConfig::Mixup { alpha: 0.8 }.apply(&mut again, n, side, 42, 3, 5), mixed);
        assert_eq!(again, pixels);
        let mut other = original.clone();
        assert_ne!(MixConfig::Mixup { alpha: 0.8 }.apply(&mut other, n, side, 42, 3, 6).lambda, mixed.lambda);
    }

    #[test]
    fn cutmix_pastes_a_box_and_weighs_by_its_area() {
        let (n, side) = (3, 48);
        let original = batch(n, side);
        let plane = side * side;
        for step in 0..20 {
            let mut pixels = original.clone();
            let mixed = MixConfig::Cutmix { alpha: 1.0 }.apply(&mut pixels, n, side, 7, 1, step);
            // Every pixel is its own image's or its partner's, and the partner's share is 1 - lambda.
            for i in 0..n {
                let j = mixed.partner[i];
                let mut pasted = 0;
                for k in 0..plane {
                    let p = pixels[i * plane + k];
                    if p != original[i * plane + k] {
                        assert_eq!(p, original[j * plane + k]);
                        pasted += 1;
                    }
                }
                if i != j {
                    let share = pasted as f64 / plane as f64;
                    assert!(
                        (share - (1.0 - mixed.lambda)).abs() < 1e-9,
                        "step {step}: pasted {share}, lambda {}",
                        mixed.lambda
                    );
                }
            }
        }
    }

    #[test]
    fn options_are_checked() {
        assert_eq!(MixConfig::from_options(Some(0.8), None).unwrap(), Some(MixConfig::Mixup { alpha: 0.8 }));
        assert!(MixConfig::from_options(Some(0.8), Some(1.0)).unwrap_err().to_string().contains("one at a time"));
        assert!(
            MixConfig::from_options(None, Some(-1.0)).unwrap_err().to_string().contains("cutmix must be a positive")
        );
        assert_eq!(MixConfig::from_options(None, None).unwrap(), None);
    }
}
