//! The search strategy, apart from whatever runs the trials (keras-tuner's Oracle/Tuner split):
//! `ask` hands out a trial's values, `tell` records its result. The whole state is one JSON
//! file, and every random draw is seeded by (seed, trial number), so a search that is stopped
//! and loaded again proposes exactly what it would have proposed without the stop.

use std::path::Path;

use crate::error::{Context, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use super::gp::{GaussianProcess, normal_cdf, normal_pdf};
use super::space::{Assignment, SearchSpace, same_value};
use crate::util::atomic::write_atomic;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Acquisition {
    /// Upper confidence bound (for a minimised objective: mean - beta * std), as keras-tuner.
    Ucb,
    /// Expected improvement over the best value so far.
    Ei,
}

impl crate::util::choice::Choice for Acquisition {
    const CHOICES: &'static [(&'static str, Self, &'static str)] = &[
        ("ucb", Acquisition::Ucb, "upper confidence bound, as keras-tuner"),
        ("ei", Acquisition::Ei, "expected improvement over the best value so far"),
    ];
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Strategy {
    Bayesian {
        /// Random trials before the Gaussian process takes over.
        initial_points: usize,
        acquisition: Acquisition,
        /// UCB's exploration weight (keras-tuner: 2.6).
        beta: f64,
    },
    Random,
    Grid {
        /// Points standing for each Float parameter's range.
        float_points: usize,
    },
}

impl Strategy {
    /// Bayesian optimisation with keras-tuner's defaults: max(3 x dimensions, 3) random
    /// points, then UCB with beta 2.6.
    pub fn bayesian(dimensions: usize) -> Strategy {
        Strategy::Bayesian { initial_points: (3 * dimensions).max(3), acquisition: Acquisition::Ucb, beta: 2.6 }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Minimize,
    Maximize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrialStatus {
    /// Handed out, no result yet (running, or interrupted).
    Pending,
    Completed,
    Failed,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Trial {
    pub id: usize,
    pub values: Assignment,
    pub status: TrialStatus,
    #[serde(default)]
    pub objective: Option<f64>,
    #[serde(default)]
    pub best_epoch: Option<usize>,
    #[serde(default)]
    pub seconds: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Oracle {
    pub space: SearchSpace,
    pub strategy: Strategy,
    pub direction: Direction,
    pub max_trials: usize,
    pub seed: u64,
    pub trials: Vec<Trial>,
}

/// Random candidates scored per Bayesian proposal, and how many of the best are refined.
const CANDIDATES: usize = 2000;
const REFINED: usize = 5;

impl Oracle {
    pub fn new(space: SearchSpace, strategy: Strategy, direction: Direction, max_trials: usize, seed: u64) -> Self {
        Self { space, strategy, direction, max_trials, seed, trials: Vec::new() }
    }

    pub fn load(path: &Path) -> Result<Oracle> {
        let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("{}: not a saved search", path.display()))
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        write_atomic(path, serde_json::to_string_pretty(self)?)
    }

    /// Trials handed out but without a result (to run again after an interruption).
    pub fn pending(&self) -> Vec<Trial> {
        self.trials.iter().filter(|t| t.status == TrialStatus::Pending).cloned().collect()
    }

    /// The next trial, or None when `max_trials` are handed out or the space is exhausted.
    pub fn ask(&mut self) -> Option<Trial> {
        if self.trials.len() >= self.max_trials {
            return None;
        }
        let id = self.trials.len();
        let mut rng = StdRng::seed_from_u64(self.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(id as u64));
        let values = match self.strategy.clone() {
            Strategy::Random => self.random_values(&mut rng),
            Strategy::Grid { float_points } => self.grid_values(id, float_points),
            Strategy::Bayesian { initial_points, acquisition, beta } => {
                if id < initial_points {
                    self.random_values(&mut rng)
                } else {
                    self.bayesian_values(&mut rng, acquisition, beta).or_else(|| self.random_values(&mut rng))
                }
            }
        }?;
        let trial =
            Trial { id, values, status: TrialStatus::Pending, objective: None, best_epoch: None, seconds: None };
        self.trials.push(trial.clone());
        Some(trial)
    }

    /// Records a trial's result; `objective` None marks it failed.
    pub fn tell(&mut self, id: usize, objective: Option<f64>, best_epoch: Option<usize>, seconds: Option<f64>) {
        if let Some(t) = self.trials.get_mut(id) {
            t.status = if objective.is_some_and(f64::is_finite) { TrialStatus::Completed } else { TrialStatus::Failed };
            t.objective = objective;
            t.best_epoch = best_epoch;
            t.seconds = seconds;
        }
    }

    /// The completed trial with the best objective.
    pub fn best(&self) -> Option<&Trial> {
        self.completed().min_by(|a, b| self.to_min(a).total_cmp(&self.to_min(b)))
    }

    fn completed(&self) -> impl Iterator<Item = &Trial> {
        self.trials.iter().filter(|t| t.status == TrialStatus::Completed)
    }

    /// The objective as a value to minimise.
    fn to_min(&self, t: &Trial) -> f64 {
        let v = t.objective.unwrap_or(f64::NAN);
        if self.direction == Direction::Maximize { -v } else { v }
    }

    fn is_new(&self, values: &Assignment) -> bool {
        !self.trials.iter().any(|t| {
            t.values.len() == values.len()
                && t.values.iter().all(|(k, v)| values.get(k).is_some_and(|w| same_value(v, w)))
        })
    }

    fn random_point(&self, rng: &mut StdRng) -> Vec<f64> {
        (0..self.space.dimensions()).map(|_| rng.random::<f64>()).collect()
    }

    /// A random assignment not tried yet (up to 100 draws), as keras-tuner does.
    fn random_values(&self, rng: &mut StdRng) -> Option<Assignment> {
        (0..100).map(|_| self.space.decode(&self.random_point(rng))).find(|v| self.is_new(v))
    }

    /// The `index`-th point of the grid, the last parameter varying fastest; skips points
    /// already tried.
    fn grid_values(&self, index: usize, float_points: usize) -> Option<Assignment> {
        let axes: Vec<(String, Vec<serde_json::Value>)> =
            self.space.params.iter().map(|p| (p.name.clone(), p.grid_values(float_points))).collect();
        let total: usize = axes.iter().map(|(_, v)| v.len()).product();
        (index..total)
            .map(|mut k| {
                let mut values = Assignment::new();
                for (name, axis) in axes.iter().rev() {
                    values.insert(name.clone(), axis[k % axis.len()].clone());
                    k /= axis.len();
                }
                values
            })
            .find(|v| self.is_new(v))
    }

    /// Fits a GP to the results so far (pending trials count as the worst result, a
    /// pessimistic guess that keeps parallel workers apart) and minimises the acquisition.
    fn bayesian_values(&self, rng: &mut StdRng, acquisition: Acquisition, beta: f64) -> Option<Assignment> {
        let (x, y) = self.gp_data()?;
        let best = y.iter().copied().fold(f64::INFINITY, f64::min);
        let gp = GaussianProcess::fit(x.clone(), &y, rng)?;
        let score = |p: &[f64]| -> f64 {
            let (mean, std) = gp.predict(p);
            match acquisition {
                Acquisition::Ucb => mean - beta * std,
                Acquisition::Ei => {
                    let improvement = best - mean - 0.01;
                    let z = improvement / std;
                    -(improvement * normal_cdf(z) + std * normal_pdf(z))
                }
            }
        };
        let mut candidates: Vec<(f64, Vec<f64>)> =
            (0..CANDIDATES).map(|_| self.random_point(rng)).chain(x.iter().cloned()).map(|p| (score(&p), p)).collect();
        candidates.sort_by(|a, b| a.0.total_cmp(&b.0));
        let refined: Vec<(f64, Vec<f64>)> = candidates[..REFINED.min(candidates.len())]
            .iter()
            .map(|(s, p)| local_search(p.clone(), *s, &score))
            .collect();
        candidates.splice(0..0, refined);
        candidates.sort_by(|a, b| a.0.total_cmp(&b.0));
        candidates.into_iter().map(|(_, p)| self.space.decode(&p)).find(|v| self.is_new(v))
    }
}

impl Oracle {
    /// The Gaussian process's data: each completed trial's encoded point and objective (as a
    /// value to minimise), each pending one's point with the worst objective so far; failed
    /// trials are left out. None before any trial completed.
    fn gp_data(&self) -> Option<(Vec<Vec<f64>>, Vec<f64>)> {
        let worst = self.completed().map(|t| self.to_min(t)).fold(f64::NEG_INFINITY, f64::max);
        if !worst.is_finite() {
            return None;
        }
        let mut x = Vec::new();
        let mut y = Vec::new();
        for t in &self.trials {
            let value = match t.status {
                TrialStatus::Completed => self.to_min(t),
                TrialStatus::Pending => worst,
                TrialStatus::Failed => continue,
            };
            x.push(self.space.encode(&t.values).ok()?);
            y.push(value);
        }
        Some((x, y))
    }
}

/// Shrinking coordinate steps inside [0, 1]^d that lower `score`.
fn local_search(mut p: Vec<f64>, mut value: f64, score: &impl Fn(&[f64]) -> f64) -> (f64, Vec<f64>) {
    let mut step = 0.1;
    while step > 1e-3 {
        let mut moved = false;
        for i in 0..p.len() {
            for dir in [1.0, -1.0] {
                let mut q = p.clone();
                q[i] = (q[i] + dir * step).clamp(0.0, 1.0);
                let v = score(&q);
                if v < value {
                    p = q;
                    value = v;
                    moved = true;
                }
            }
        }
        if !moved {
            step /= 2.0;
        }
    }
    (value, p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn space(text: &str) -> SearchSpace {
        SearchSpace::from_toml(text, "test").unwrap()
    }

    const TWO_FLOATS: &str = "name = \"s\"\n[[params]]\nname = \"a\"\ntype = \"float\"\nmin = 0.0\nmax = 1.0\n\
                              [[params]]\nname = \"b\"\ntype = \"float\"\nmin = 0.0\nmax = 1.0\n";

    fn objective(v: &Assignment) -> f64 {
        let (a, b) = (v["a"].as_f64().unwrap(), v["b"].as_f64().unwrap());
        (a - 0.3).powi(2) + (b - 0.7).powi(2)
    }

    #[test]
    fn resume_gives_the_same_next_point() {
        let mut straight = Oracle::new(space(TWO_FLOATS), Strategy::bayesian(2), Direction::Minimize, 20, 5);
        let dir = tempfile::tempdir().unwrap();
        let saved = dir.path().join("oracle.json");
        let mut resumed = None;
        for i in 0..12 {
            if i == 9 {
                straight.save(&saved).unwrap();
                resumed = Some(Oracle::load(&saved).unwrap());
            }
            let t = straight.ask().unwrap();
            straight.tell(t.id, Some(objective(&t.values)), Some(1), Some(0.0));
        }
        let mut resumed = resumed.unwrap();
        for _ in 9..12 {
            let t = resumed.ask().unwrap();
            resumed.tell(t.id, Some(objective(&t.values)), Some(1), Some(0.0));
        }
        assert_eq!(resumed.trials, straight.trials);
        assert_eq!(resumed.ask(), straight.ask());
    }

    #[test]
    fn grid_walks_every_combination_once_then_stops() {
        let text = "name = \"g\"\n[[params]]\nname = \"k\"\ntype = \"choice\"\nvalues = [3, 5]\n\
                    [[params]]\nname = \"n\"\ntype = \"int\"\nmin = 1\nmax = 3\n\
                    [[params]]\nname = \"f\"\ntype = \"fixed\"\nvalue = \"x\"\n";
        let mut o = Oracle::new(space(text), Strategy::Grid { float_points: 3 }, Direction::Minimize, 100, 0);
        let mut seen = Vec::new();
        while let Some(t) = o.ask() {
            seen.push((t.values["k"].as_i64().unwrap(), t.values["n"].as_i64().unwrap()));
            assert_eq!(t.values["f"], "x");
            o.tell(t.id, Some(1.0), None, None);
        }
        assert_eq!(seen, [(3, 1), (3, 2), (3, 3), (5, 1), (5, 2), (5, 3)]);
    }

    #[test]
    fn pending_trials_are_kept_apart_and_failures_ignored() {
        let mut o = Oracle::new(space(TWO_FLOATS), Strategy::bayesian(2), Direction::Minimize, 30, 1);
        for _ in 0..6 {
            let t = o.ask().unwrap();
            o.tell(t.id, Some(objective(&t.values)), None, None);
        }
        let failed = o.ask().unwrap();
        o.tell(failed.id, None, None, None);
        assert_eq!(o.trials[failed.id].status, TrialStatus::Failed);
        // Three asks without answers: three different points.
        let a = o.ask().unwrap();
        let b = o.ask().unwrap();
        let c = o.ask().unwrap();
        assert!(a.values != b.values && b.values != c.values && a.values != c.values);
        assert_eq!(o.pending().len(), 3);
    }

    /// Issue 22: a pending trial pushes the next proposal away from itself (it counts as the
    /// worst result), and a failed trial leaves the Gaussian process's data as if it had never
    /// been asked.
    #[test]
    fn a_pending_trial_pushes_the_next_point_away_and_a_failed_one_changes_nothing() {
        let mut o = Oracle::new(space(TWO_FLOATS), Strategy::bayesian(2), Direction::Minimize, 30, 1);
        for _ in 0..8 {
            let t = o.ask().unwrap();
            o.tell(t.id, Some(objective(&t.values)), None, None);
        }
        let before = o.gp_data().unwrap();
        let mut pending = o.clone();
        let p = pending.ask().unwrap();
        let mut failed = pending.clone();
        failed.tell(p.id, None, None, None);
        assert_eq!(failed.gp_data().unwrap(), before, "a failed trial changed the GP's data");
        let encoded = |o: &Oracle, t: &Trial| o.space.encode(&t.values).unwrap();
        let distance = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum::<f64>().sqrt();
        let p_point = encoded(&pending, &p);
        let with_pending = pending.ask().unwrap();
        let after_failure = failed.ask().unwrap();
        let (near, far) = (
            distance(&encoded(&failed, &after_failure), &p_point),
            distance(&encoded(&pending, &with_pending), &p_point),
        );
        eprintln!("distance from the pending point: {far:.4} while pending, {near:.4} once failed");
        // Measured: 0.9261 while pending, 0.0231 once failed (near the same optimum again).
        assert!(far > 0.5 && far > 10.0 * near, "pending: {far}, failed: {near}");
    }

    /// The Bayesian strategy maximising -f asks the very points it asks minimising f (the
    /// direction is a sign, not another search), and climbs to the peak at (0.3, 0.7).
    #[test]
    fn bayesian_maximize_mirrors_minimize_and_finds_the_peak() {
        let run = |direction: Direction, sign: f64| {
            let mut o = Oracle::new(space(TWO_FLOATS), Strategy::bayesian(2), direction, 20, 3);
            while let Some(t) = o.ask() {
                o.tell(t.id, Some(sign * objective(&t.values)), Some(1), None);
            }
            o
        };
        let (max, min) = (run(Direction::Maximize, -1.0), run(Direction::Minimize, 1.0));
        let values = |o: &Oracle| o.trials.iter().map(|t| t.values.clone()).collect::<Vec<_>>();
        assert_eq!(values(&max), values(&min));
        let best = max.best().unwrap();
        assert!(max.trials.iter().all(|t| t.objective.unwrap() <= best.objective.unwrap()));
        let (a, b) = (best.values["a"].as_f64().unwrap(), best.values["b"].as_f64().unwrap());
        assert!((a - 0.3).abs() < 0.1 && (b - 0.7).abs() < 0.1, "best at ({a}, {b})");
    }

    #[test]
    fn maximize_prefers_the_largest() {
        let mut o = Oracle::new(space(TWO_FLOATS), Strategy::Random, Direction::Maximize, 5, 2);
        for _ in 0..5 {
            let t = o.ask().unwrap();
            o.tell(t.id, Some(objective(&t.values)), None, None);
        }
        let best = o.best().unwrap().objective.unwrap();
        assert!(o.trials.iter().all(|t| t.objective.unwrap() <= best));
        assert!(o.ask().is_none(), "max_trials reached");
    }
}
