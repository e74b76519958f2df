//! A small Gaussian-process regressor for Bayesian optimisation on [0, 1]^d: Matern 5/2 kernel
//! with one length scale per dimension (ARD) and a noise level, both fitted by maximising the
//! log marginal likelihood; targets are standardised, so the signal variance is 1.
//!
//! Search spaces have a handful of dimensions and tens of points, so plain dense linear algebra
//! (a Cholesky factor) is all it takes.

use rand::Rng;
use rand::rngs::StdRng;

/// Bounds of the fitted hyperparameters (natural log).
const LOG_LENGTH: (f64, f64) = (-4.6, 2.3); // 0.01 .. 10 on the unit cube
const LOG_NOISE: (f64, f64) = (-13.8, -2.3); // 1e-6 .. 0.1 (standardised targets)
const RANDOM_STARTS: usize = 6;

#[derive(Clone, Debug)]
pub struct GaussianProcess {
    x: Vec<Vec<f64>>,
    y_mean: f64,
    y_std: f64,
    pub length_scales: Vec<f64>,
    pub noise: f64,
    /// Lower Cholesky factor of K + noise I, row-major n x n.
    chol: Vec<f64>,
    /// (K + noise I)^-1 y (standardised y).
    alpha: Vec<f64>,
    pub log_marginal_likelihood: f64,
}

fn matern52(a: &[f64], b: &[f64], length_scales: &[f64]) -> f64 {
    let r2: f64 = a.iter().zip(b).zip(length_scales).map(|((x, y), l)| ((x - y) / l).powi(2)).sum();
    let r = (5.0 * r2).sqrt();
    (1.0 + r + r * r / 3.0) * (-r).exp()
}

/// Cholesky factor of a symmetric positive-definite matrix (row-major), or None.
fn cholesky(a: &[f64], n: usize) -> Option<Vec<f64>> {
    let mut l = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..=i {
            let s: f64 = (0..j).map(|k| l[i * n + k] * l[j * n + k]).sum();
            if i == j {
                let d = a[i * n + i] - s;
                if d <= 0.0 || !d.is_finite() {
                    return None;
                }
                l[i * n + i] = d.sqrt();
            } else {
                l[i * n + j] = (a[i * n + j] - s) / l[j * n + j];
            }
        }
    }
    Some(l)
}

/// Solves L z = b for lower-triangular L.
fn forward(l: &[f64], n: usize, b: &[f64]) -> Vec<f64> {
    let mut z = vec![0.0; n];
    for i in 0..n {
        let s: f64 = (0..i).map(|k| l[i * n + k] * z[k]).sum();
        z[i] = (b[i] - s) / l[i * n + i];
    }
    z
}

/// Solves L^T z = b for lower-triangular L.
fn backward(l: &[f64], n: usize, b: &[f64]) -> Vec<f64> {
    let mut z = vec![0.0; n];
    for i in (0..n).rev() {
        let s: f64 = (i + 1..n).map(|k| l[k * n + i] * z[k]).sum();
        z[i] = (b[i] - s) / l[i * n + i];
    }
    z
}

/// The factor, alpha and log marginal likelihood for given hyperparameters.
fn factor(x: &[Vec<f64>], y: &[f64], length_scales: &[f64], noise: f64) -> Option<(Vec<f64>, Vec<f64>, f64)> {
    let n = x.len();
    let mut k = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..=i {
            let v = matern52(&x[i], &x[j], length_scales);
            k[i * n + j] = v;
            k[j * n + i] = v;
        }
        k[i * n + i] += noise + 1e-10;
    }
    let l = cholesky(&k, n)?;
    let alpha = backward(&l, n, &forward(&l, n, y));
    let fit: f64 = y.iter().zip(&alpha).map(|(a, b)| a * b).sum();
    let log_det: f64 = (0..n).map(|i| l[i * n + i].ln()).sum();
    let lml = -0.5 * fit - log_det - 0.5 * n as f64 * (2.0 * std::f64::consts::PI).ln();
    Some((l, alpha, lml))
}

impl GaussianProcess {
    /// Fits the GP to points `x` (each in [0, 1]^d) and targets `y`; `rng` draws the random
    /// starts of the hyperparameter search, so a seeded `rng` gives a reproducible fit.
    pub fn fit(x: Vec<Vec<f64>>, y: &[f64], rng: &mut StdRng) -> Option<GaussianProcess> {
        let n = x.len();
        if n == 0 || n != y.len() {
            return None;
        }
        let d = x[0].len();
        let y_mean = y.iter().sum::<f64>() / n as f64;
        let var = y.iter().map(|v| (v - y_mean).powi(2)).sum::<f64>() / n as f64;
        let y_std = if var > 1e-24 { var.sqrt() } else { 1.0 };
        let ys: Vec<f64> = y.iter().map(|v| (v - y_mean) / y_std).collect();

        // Hyperparameters as one vector: d log length scales, then log noise.
        let objective = |theta: &[f64]| -> f64 {
            let ls: Vec<f64> = theta[..d].iter().map(|t| t.exp()).collect();
            factor(&x, &ys, &ls, theta[d].exp()).map_or(f64::NEG_INFINITY, |(_, _, lml)| lml)
        };
        let bounds = |i: usize| if i < d { LOG_LENGTH } else { LOG_NOISE };
        let mut starts = vec![{
            let mut t = vec![(0.3f64).ln(); d];
            t.push((1e-3f64).ln());
            t
        }];
        for _ in 0..RANDOM_STARTS {
            starts.push((0..=d).map(|i| rng.random_range(bounds(i).0..bounds(i).1)).collect());
        }
        let mut best: Option<(Vec<f64>, f64)> = None;
        for start in starts {
            let (theta, value) = coordinate_ascent(start, &objective, bounds);
            if best.as_ref().is_none_or(|(_, b)| value > *b) {
                best = Some((theta, value));
            }
        }
        let (theta, _) = best?;
        let length_scales: Vec<f64> = theta[..d].iter().map(|t| t.exp()).collect();
        let noise = theta[d].exp();
        let (chol, alpha, lml) = factor(&x, &ys, &length_scales, noise)?;
        Some(GaussianProcess { x, y_mean, y_std, length_scales, noise, chol, alpha, log_marginal_likelihood: lml })
    }

    /// Posterior mean and standard deviation of the latent function at `point`, in the
    /// targets' units.
    pub fn predict(&self, point: &[f64]) -> (f64, f64) {
        let n = self.x.len();
        let k: Vec<f64> = self.x.iter().map(|xi| matern52(xi, point, &self.length_scales)).collect();
        let mean: f64 = k.iter().zip(&self.alpha).map(|(a, b)| a * b).sum();
        let v = forward(&self.chol, n, &k);
        let var = (1.0 - v.iter().map(|t| t * t).sum::<f64>()).max(1e-12);
        (self.y_mean + mean * self.y_std, var.sqrt() * self.y_std)
    }
}

/// Maximises `f` from `start` by coordinate steps in the box `bounds`, halving the step when no
/// move helps; gradient-free and deterministic.
fn coordinate_ascent(
    mut theta: Vec<f64>,
    f: &impl Fn(&[f64]) -> f64,
    bounds: impl Fn(usize) -> (f64, f64),
) -> (Vec<f64>, f64) {
    let mut value = f(&theta);
    let mut step = 1.0;
    let mut evaluations = 0;
    while step > 0.02 && evaluations < 400 {
        let mut moved = false;
        for i in 0..theta.len() {
            for dir in [1.0, -1.0] {
                let mut candidate = theta.clone();
                let (lo, hi) = bounds(i);
                candidate[i] = (candidate[i] + dir * step).clamp(lo, hi);
                if candidate[i] == theta[i] {
                    continue;
                }
                let v = f(&candidate);
                evaluations += 1;
                if v > value {
                    theta = candidate;
                    value = v;
                    moved = true;
                    break;
                }
            }
        }
        if !moved {
            step /= 2.0;
        }
    }
    (theta, value)
}

/// The standard normal density and distribution function.
pub fn normal_pdf(z: f64) -> f64 {
    (-0.5 * z * z).exp() / (2.0 * std::f64::consts::PI).sqrt()
}

pub fn normal_cdf(z: f64) -> f64 {
    0.5 * (1.0 + erf(z / std::f64::consts::SQRT_2))
}

/// The error function (Abramowitz and Stegun 7.1.26; absolute error below 1.5e-7).
fn erf(x: f64) -> f64 {
    let sign = x.signum();
    let x = x.abs();
    let t = 1.0 / (1.0 + 0.3275911 * x);
    let poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
    sign * (1.0 - poly * (-x * x).exp())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn f(x: &[f64]) -> f64 {
        (6.0 * x[0]).sin() + 0.5 * x[1]
    }

    #[test]
    fn posterior_interpolates_and_is_confident_at_the_data() {
        let mut rng = StdRng::seed_from_u64(3);
        let x: Vec<Vec<f64>> = (0..25).map(|_| vec![rng.random::<f64>(), rng.random::<f64>()]).collect();
        let y: Vec<f64> = x.iter().map(|p| f(p)).collect();
        let gp = GaussianProcess::fit(x.clone(), &y, &mut rng).unwrap();
        for (p, t) in x.iter().zip(&y) {
            let (mean, std) = gp.predict(p);
            assert!((mean - t).abs() < 0.05, "mean {mean} vs {t} at {p:?}");
            assert!(std < 0.1, "std {std} at a training point");
        }
        // Between the points it still predicts the smooth function well...
        let mut err = 0.0;
        for i in 0..50 {
            let p = [i as f64 / 49.0, 0.5];
            err += (gp.predict(&p).0 - f(&p)).abs() / 50.0;
        }
        assert!(err < 0.15, "mean abs error {err}");
        // ...and is unsure far outside them.
        let (_, far) = gp.predict(&[3.0, 3.0]);
        let (_, near) = gp.predict(&x[0]);
        assert!(far > 10.0 * near, "far {far} near {near}");
        // The fitted length scales see that x0 varies faster than x1.
        assert!(gp.length_scales[0] < gp.length_scales[1], "{:?}", gp.length_scales);
    }

    #[test]
    fn erf_matches_known_values() {
        assert!((normal_cdf(0.0) - 0.5).abs() < 1e-7);
        assert!((normal_cdf(1.959963984540054) - 0.975).abs() < 1e-6);
        assert!((normal_cdf(-1.0) - 0.15865525393145707).abs() < 1e-6);
    }

    #[test]
    fn cholesky_solves_a_known_system() {
        // [[4, 2], [2, 3]] x = [2, 1] -> x = [0.5, 0]
        let l = cholesky(&[4.0, 2.0, 2.0, 3.0], 2).unwrap();
        let x = backward(&l, 2, &forward(&l, 2, &[2.0, 1.0]));
        assert!((x[0] - 0.5).abs() < 1e-12 && x[1].abs() < 1e-12);
        assert!(cholesky(&[1.0, 2.0, 2.0, 1.0], 2).is_none());
    }
}
