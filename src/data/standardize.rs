//! The notebook's per-image standardisation: `(x - mean) / max(stdev, 1/48)`, where the mean
//! and the sample standard deviation (n - 1) are those of the image's own 2304 pixels.
//! The floor 1/48 (= 1/sqrt(2304)) keeps flat images from blowing up.

use super::dataset::IMAGE_PIXELS;

/// The smallest divisor, 1/sqrt(number of pixels).
pub const MIN_STDEV: f32 = 1.0 / 48.0;

/// Standardises one image's grey levels into `out`.
///
/// The mean and the variance come from exact integer sums of the grey levels and of their
/// squares, `Σ (x - mean)² = (n Σx² - (Σx)²) / n`, each rounded once to f64. Why: summed in f64
/// value by value (as until session 43), the two sums were chains of 2304 dependent additions,
/// 4.9 µs of a face's preparation at inference (cnn3 takes about 90 µs a face; AMD EPYC Zen 4);
/// integer sums vectorise, and the variance is the correctly rounded one (the f64 chain could
/// differ from it in the last bits).
pub fn standardize_into(image: &[u8], out: &mut [f32]) {
    debug_assert_eq!(image.len(), out.len());
    // u64 holds n Σx² for images of up to 2^24 pixels (a face has 2304).
    let n = image.len() as u64;
    let sum: u64 = image.iter().map(|&p| p as u64).sum();
    let sum_sq: u64 = image.iter().map(|&p| (p as u64) * (p as u64)).sum();
    let mean = sum as f64 / n as f64;
    // n Σx² - (Σx)² = n Σ (x - mean)² >= 0; with one pixel, 0 / 0: NaN, which the floor replaces.
    let stdev = ((n * sum_sq - sum * sum) as f64 / (n * n.saturating_sub(1)) as f64).sqrt();
    let scale = 1.0 / stdev.max(MIN_STDEV as f64);
    for (o, &p) in out.iter_mut().zip(image) {
        *o = ((p as f64 - mean) * scale) as f32;
    }
}

/// Standardises one 48x48 image into a new vector.
pub fn standardize(image: &[u8]) -> Vec<f32> {
    let mut out = vec![0.0; image.len()];
    standardize_into(image, &mut out);
    out
}

/// Standardises consecutive images (`IMAGE_PIXELS` each) into `out`.
pub fn standardize_batch(images: impl Iterator<Item = impl AsRef<[u8]>>, out: &mut Vec<f32>) {
    out.clear();
    for image in images {
        let start = out.len();
        out.resize(start + IMAGE_PIXELS, 0.0);
        standardize_into(image.as_ref(), &mut out[start..]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Reference figures computed independently with numpy:
    //   x = np.array(..., dtype=np.float64); (x - x.mean()) / max(x.std(ddof=1), 1/48)
    #[test]
    fn matches_numpy_on_a_small_vector() {
        // x = [0, 10, 20, 30]: mean 15, sample std sqrt(500/3) = 12.909944487358056
        let out = standardize(&[0, 10, 20, 30]);
        let expected = [-1.161895003862225, -0.3872983346207417, 0.3872983346207417, 1.161895003862225];
        for (o, e) in out.iter().zip(expected) {
            assert!((*o as f64 - e).abs() < 1e-6, "{o} vs {e}");
        }
    }

    #[test]
    fn flat_image_uses_the_floor() {
        // All 7: mean 7, stdev 0 -> divisor 1/48, every value (7-7)*48 = 0.
        let out = standardize(&[7u8; IMAGE_PIXELS]);
        assert!(out.iter().all(|&v| v == 0.0));
        // One pixel of 1 among zeros: the sample stdev is exactly sqrt(1/2304) = 1/48, the
        // smallest non-zero stdev integer grey levels can have, so the floor only ever acts on
        // flat images. Value: (1 - 1/2304) * 48.
        let mut img = [0u8; IMAGE_PIXELS];
        img[0] = 1;
        let out = standardize(&img);
        let expected = (1.0 - 1.0 / 2304.0) * 48.0;
        assert!((out[0] as f64 - expected).abs() < 1e-4, "{} vs {expected}", out[0]);
    }

    /// The integer sums give the two-pass f64 formula's values (the way until session 43), to
    /// within the last bits of f32, on random faces and on extreme ones.
    #[test]
    fn matches_the_two_pass_formula() {
        let two_pass = |image: &[u8]| -> Vec<f32> {
            let n = image.len() as f64;
            let mean = image.iter().map(|&p| p as f64).sum::<f64>() / n;
            let sq: f64 = image.iter().map(|&p| (p as f64 - mean).powi(2)).sum();
            let scale = 1.0 / (sq / (n - 1.0)).sqrt().max(MIN_STDEV as f64);
            image.iter().map(|&p| ((p as f64 - mean) * scale) as f32).collect()
        };
        let mut state = 12345u64;
        let mut images: Vec<Vec<u8>> = (0..50)
            .map(|_| {
                (0..IMAGE_PIXELS)
                    .map(|_| {
                        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                        (state >> 56) as u8
                    })
                    .collect()
            })
            .collect();
        images.push((0..IMAGE_PIXELS).map(|i| if i % 2 == 0 { 0 } else { 255 }).collect());
        images.push(vec![255; IMAGE_PIXELS]);
        for (k, image) in images.iter().enumerate() {
            for (ours, reference) in standardize(image).iter().zip(two_pass(image)) {
                assert!(
                    (ours - reference).abs() <= 1e-6 * reference.abs().max(1.0),
                    "image {k}: {ours} vs {reference}"
                );
            }
        }
    }

    #[test]
    fn result_has_zero_mean_and_unit_sample_stdev() {
        let img: Vec<u8> = (0..IMAGE_PIXELS).map(|i| ((i * 37) % 256) as u8).collect();
        let out = standardize(&img);
        let n = out.len() as f64;
        let mean = out.iter().map(|&v| v as f64).sum::<f64>() / n;
        let var = out.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / (n - 1.0);
        assert!(mean.abs() < 1e-5);
        assert!((var - 1.0).abs() < 1e-4);
    }
}
