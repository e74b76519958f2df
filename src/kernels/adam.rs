//! The Adam and AdamW weight update as one pass over a parameter tensor, split across the kernel
//! threads: both moments, the bias corrections and the new weights, value by value, in place.
//!
//! Why: Burn's `Adam` and `AdamW` (burn-optim 0.22.1, `optim/adam.rs`, `optim/adamw.rs`) update a
//! parameter in about thirteen tensor operations (scale, add, square, sqrt, divide, ...), each a
//! pass over memory on one thread, as Flex's element-wise operations are serial. cnn1 has 19.8 M
//! parameters, so one step of its optimizer read and wrote about a gigabyte on one core while the
//! other waited. Here each value goes through the same f32 operations, in the same order, as in
//! Burn's formulas, so the weights and moments come out with the same bits (tested against
//! Burn's optimizers in `training::adam`).
//!
//! The formulas (`t` the step, from 1; `g` the gradient; all in f32 as Burn computes them):
//! - both: `m = b1 m + (1 - b1) g`, `v = b2 v + (1 - b2) g^2` (on the first step `m = (1 - b1) g`,
//!   `v = (1 - b2) g^2`);
//! - Adam (Kingma & Ba 2015, as Burn writes it): with `s = sqrt(1 - b2^t)` and `c = s / (1 - b1^t)`,
//!   `w -= lr ((c m) / (sqrt(v) + eps s))`;
//! - AdamW (Loshchilov & Hutter 2019): `w = w (1 - lr decay) - lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)`
//!   (the factor `1 - lr decay` left out when `lr decay` is 0, as Burn does).

use burn::backend::flex::{Flex, FlexTensor};
use burn::tensor::Tensor;
use multiversion::multiversion;
use rayon::prelude::*;

use super::flex;

/// Values per parallel task (element-wise work is too cheap to split finer).
const CHUNK: usize = 1 << 14;

/// The hyperparameters of the update.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamHyper {
    /// The first moment's decay (0.9 by default).
    pub beta_1: f32,
    /// The second moment's decay (0.999 by default).
    pub beta_2: f32,
    /// Added to the denominator (Keras' 1e-7 for the notebook's Adam, 1e-8 for AdamW).
    pub epsilon: f32,
    /// `Some(decay)`: AdamW with this decoupled weight decay; `None`: Adam.
    pub decoupled_weight_decay: Option<f32>,
}

/// [`step`] on tensors, when the weights, the gradient and the moments are Flex f32 tensors (a
/// CPU training step): returns the new weights, first and second moments (all of the weights'
/// shape), written in place where a buffer was not shared. `moments` None is the first step
/// (`time` 1). Otherwise (another backend) gives the weights and moments back untouched.
pub fn step_on_cpu<const D: usize>(
    hyper: &AdamHyper,
    lr: f64,
    time: usize,
    weights: Tensor<D>,
    grad: &Tensor<D>,
    moments: Option<(Tensor<D>, Tensor<D>)>,
) -> Result<[Tensor<D>; 3], (Tensor<D>, Option<(Tensor<D>, Tensor<D>)>)> {
    let on_cpu = |t: &Tensor<D>| flex::plain(t).is_some();
    if !(on_cpu(&weights) && on_cpu(grad) && moments.as_ref().is_none_or(|(m, v)| on_cpu(m) && on_cpu(v))) {
        return Err((weights, moments));
    }
    let unshared = |t: Tensor<D>| unshared(t.try_into_primitive::<Flex>().expect("checked above: a Flex tensor"));
    let mut w = unshared(weights);
    let first = moments.is_none();
    let (mut m, mut v) = match moments {
        Some((m, v)) => (unshared(m), unshared(v)),
        None => {
            let (n, shape) = (w.layout().shape().num_elements(), w.layout().shape());
            (flex::tensor(vec![0.0; n], shape), flex::tensor(vec![0.0; n], shape))
        }
    };
    let g = flex::plain(grad).expect("checked above: a Flex tensor");
    step(hyper, lr, time, first, w.storage_mut(), m.storage_mut(), v.storage_mut(), &flex::values(&g));
    Ok([w, m, v].map(Tensor::from_primitive::<Flex>))
}

/// `t` with storage of its own that holds its values alone, in order (a copy when `t` shares its
/// buffer or is a view), so that it can be written in place.
fn unshared(t: FlexTensor) -> FlexTensor {
    let n = t.layout().shape().num_elements();
    if t.is_unique() && t.layout().contiguous_offsets() == Some((0, n)) && t.storage::<f32>().len() == n {
        t
    } else {
        flex::tensor(flex::values(&t).into_owned(), t.layout().shape())
    }
}

/// Applies step `time` (1 for the first) of Adam or AdamW at learning rate `lr` to `weights`, with
/// the moments `moment_1` and `moment_2` updated in place from `grad`. On the first step
/// (`first`), the moments' old values are not read (they may hold anything).
///
/// Panics when the four slices differ in length.
pub fn step(
    hyper: &AdamHyper,
    lr: f64,
    time: usize,
    first: bool,
    weights: &mut [f32],
    moment_1: &mut [f32],
    moment_2: &mut [f32],
    grad: &[f32],
) {
    let n = weights.len();
    assert!(moment_1.len() == n && moment_2.len() == n && grad.len() == n, "adam::step: slices of different lengths");
    let update = Update::new(hyper, lr, time, first);
    if n <= CHUNK {
        return update.apply(weights, moment_1, moment_2, grad);
    }
    weights
        .par_chunks_mut(CHUNK)
        .zip(moment_1.par_chunks_mut(CHUNK))
        .zip(moment_2.par_chunks_mut(CHUNK))
        .zip(grad.par_chunks(CHUNK))
        .for_each(|(((w, m), v), g)| update.apply(w, m, v, g));
}

/// The per-step constants, worked out once (in f32 as Burn does; the learning rate and the
/// decay factor come from f64 as Burn's scalar operations convert them).
#[derive(Clone, Copy)]
struct Update {
    first: bool,
    beta_1: f32,
    beta_2: f32,
    /// `1 - b1`, `1 - b2`.
    factor_1: f32,
    factor_2: f32,
    lr: f32,
    kind: Kind,
}

#[derive(Clone, Copy)]
enum Kind {
    /// Adam: `c = sqrt(1 - b2^t) / (1 - b1^t)`, `eps_s = eps sqrt(1 - b2^t)`.
    Adam { combined: f32, epsilon: f32 },
    /// AdamW: the two bias corrections, epsilon, and `1 - lr decay` (None when `lr decay` is 0).
    AdamW { correction_1: f32, correction_2: f32, epsilon: f32, keep: Option<f32> },
}

impl Update {
    fn new(hyper: &AdamHyper, lr: f64, time: usize, first: bool) -> Self {
        let (b1, b2) = (hyper.beta_1, hyper.beta_2);
        let t = time as i32;
        let kind = match hyper.decoupled_weight_decay {
            None => {
                let bias_correction2_sqrt = (1.0 - b2.powi(t)).sqrt();
                Kind::Adam {
                    combined: bias_correction2_sqrt / (1.0 - b1.powi(t)),
                    epsilon: hyper.epsilon * bias_correction2_sqrt,
                }
            }
            Some(decay) => {
                let decay_rate = lr * decay as f64;
                Kind::AdamW {
                    correction_1: 1.0 - b1.powi(t),
                    correction_2: 1.0 - b2.powi(t),
                    epsilon: hyper.epsilon,
                    keep: (decay_rate != 0.0).then_some((1.0 - decay_rate) as f32),
                }
            }
        };
        Self { first, beta_1: b1, beta_2: b2, factor_1: 1.0 - b1, factor_2: 1.0 - b2, lr: lr as f32, kind }
    }

    /// The update of one chunk. Compiled for AVX2 / AVX-512 too (the same operations, so the same
    /// bits: no fused multiply-adds are formed).
    fn apply(&self, w: &mut [f32], m: &mut [f32], v: &mut [f32], g: &[f32]) {
        #[cfg_attr(feature = "avx512", multiversion(targets("x86_64+avx512f+avx2+avx", "x86_64+avx2+avx")))]
        #[cfg_attr(not(feature = "avx512"), multiversion(targets("x86_64+avx2+avx")))]
        fn each(
            w: &mut [f32],
            m: &mut [f32],
            v: &mut [f32],
            g: &[f32],
            moments: impl Fn(f32, f32, f32) -> (f32, f32),
            weight: impl Fn(f32, f32, f32) -> f32,
        ) {
            for (((w, m), v), &g) in w.iter_mut().zip(m.iter_mut()).zip(v.iter_mut()).zip(g) {
                let (m1, m2) = moments(*m, *v, g);
                *m = m1;
                *v = m2;
                *w = weight(*w, m1, m2);
            }
        }
        let Self { beta_1: b1, beta_2: b2, factor_1: f1, factor_2: f2, lr, .. } = *self;
        // The moments: Burn's `m.mul_scalar(b1).add(g.mul_scalar(1 - b1))`, and on the first step
        // `g.mul_scalar(1 - b1)` alone (not `0 * b1 + ...`, whose zeros could differ in sign).
        macro_rules! with_moments {
            ($weight:expr) => {
                if self.first {
                    each(w, m, v, g, |_, _, g| (g * f1, (g * g) * f2), $weight)
                } else {
                    each(w, m, v, g, |m, v, g| (m * b1 + g * f1, v * b2 + (g * g) * f2), $weight)
                }
            };
        }
        match self.kind {
            // Burn's `m.mul_scalar(c).div(v.sqrt().add_scalar(eps_s))`, then `w - delta.mul_scalar(lr)`.
            Kind::Adam { combined, epsilon } => {
                with_moments!(|w, m, v| w - ((m * combined) / (v.sqrt() + epsilon)) * lr)
            }
            // Burn's `(m / c1).div((v / c2).sqrt().add_scalar(eps))`, then
            // `w.mul_scalar(1 - lr decay) - delta.mul_scalar(lr)`.
            Kind::AdamW { correction_1, correction_2, epsilon, keep: Some(keep) } => {
                with_moments!(|w, m, v| w * keep - ((m / correction_1) / ((v / correction_2).sqrt() + epsilon)) * lr)
            }
            Kind::AdamW { correction_1, correction_2, epsilon, keep: None } => {
                with_moments!(|w, m, v| w - ((m / correction_1) / ((v / correction_2).sqrt() + epsilon)) * lr)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The update written out in f64 from the papers' formulas.
    fn reference(hyper: &AdamHyper, lr: f64, steps: &[Vec<f32>], w0: &[f32]) -> Vec<f64> {
        let (b1, b2, eps) = (hyper.beta_1 as f64, hyper.beta_2 as f64, hyper.epsilon as f64);
        let mut w: Vec<f64> = w0.iter().map(|&x| x as f64).collect();
        let (mut m, mut v) = (vec![0f64; w.len()], vec![0f64; w.len()]);
        for (t, g) in steps.iter().enumerate() {
            let t = t as i32 + 1;
            for i in 0..w.len() {
                let g = g[i] as f64;
                m[i] = b1 * m[i] + (1.0 - b1) * g;
                v[i] = b2 * v[i] + (1.0 - b2) * g * g;
                let (mh, vh) = (m[i] / (1.0 - b1.powi(t)), v[i] / (1.0 - b2.powi(t)));
                if let Some(d) = hyper.decoupled_weight_decay {
                    w[i] *= 1.0 - lr * d as f64;
                }
                // Burn's Adam form, (c m) / (sqrt(v) + eps s), is this one multiplied through by s.
                w[i] -= lr * mh / (vh.sqrt() + eps);
            }
        }
        w
    }

    #[test]
    fn the_update_follows_the_papers_formulas_in_parallel_chunks_and_alone() {
        let n = 3 * CHUNK + 17; // several parallel chunks and a short one
        let w0: Vec<f32> = (0..n).map(|i| ((i * 37 % 101) as f32 - 50.0) / 40.0).collect();
        let grads: Vec<Vec<f32>> =
            (0..4).map(|s| (0..n).map(|i| (((i + s * 13) * 53 % 97) as f32 - 48.0) / 30.0).collect()).collect();
        for decay in [None, Some(0.05)] {
            let hyper = AdamHyper { beta_1: 0.9, beta_2: 0.999, epsilon: 1e-7, decoupled_weight_decay: decay };
            let (mut w, mut m, mut v) = (w0.clone(), vec![f32::NAN; n], vec![f32::NAN; n]);
            for (t, g) in grads.iter().enumerate() {
                step(&hyper, 1e-2, t + 1, t == 0, &mut w, &mut m, &mut v, g);
            }
            let want = reference(&hyper, 1e-2, &grads, &w0);
            for i in 0..n {
                assert!((w[i] as f64 - want[i]).abs() < 1e-5, "{decay:?} value {i}: {} vs {}", w[i], want[i]);
            }
            // One chunk alone (below CHUNK: no rayon) gives the same bits as inside the long run.
            let k = CHUNK;
            let (mut w1, mut m1, mut v1) = (w0[k..k + 100].to_vec(), vec![0.0; 100], vec![0.0; 100]);
            for (t, g) in grads.iter().enumerate() {
                step(&hyper, 1e-2, t + 1, t == 0, &mut w1, &mut m1, &mut v1, &g[k..k + 100]);
            }
            assert_eq!(w1, w[k..k + 100]);
        }
        // The decay does change the weights, so the comparison above can fail.
        let plain = reference(
            &AdamHyper { beta_1: 0.9, beta_2: 0.999, epsilon: 1e-7, decoupled_weight_decay: None },
            1e-2,
            &grads,
            &w0,
        );
        let decayed = reference(
            &AdamHyper { beta_1: 0.9, beta_2: 0.999, epsilon: 1e-7, decoupled_weight_decay: Some(0.05) },
            1e-2,
            &grads,
            &w0,
        );
        assert!(plain.iter().zip(&decayed).any(|(a, b)| (a - b).abs() > 1e-4));
    }
}
