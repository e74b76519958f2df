//! What the whole study costs: each step's work in images through each net, the speed of each
//! net measured on this machine before the study starts, and from both an estimate per step;
//! as steps finish, the estimate of what is left is scaled by how the finished steps compared
//! with theirs. `plan.json` in the study's folder keeps each step's estimate and measured time.

use std::path::Path;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::bench::bench_model;
use crate::error::Result;
use crate::models::ModelSpec;
use crate::util::atomic::write_atomic;

/// The work of one step.
#[derive(Clone, Debug)]
pub enum Work {
    /// Training runs of `nets` (the estimate is their mean: a search's trials are nets not known
    /// in advance, represented by points of its space), `runs` of them, each `epochs` epochs over
    /// `train` images at batch `batch`, validated each epoch on `val` images and tested once on
    /// `test` images; each run first spends `setup_seconds` (a search's trial is a process of its
    /// own that loads the data again).
    Train {
        nets: Vec<ModelSpec>,
        runs: usize,
        epochs: usize,
        batch: usize,
        train: usize,
        val: usize,
        test: usize,
        setup_seconds: f64,
    },
    /// A step without training (data pictures, photos): seconds, not estimated from speed.
    Small,
}

/// One step of the study, its estimate and, once run, its measured time.
#[derive(Clone, Debug, Serialize)]
pub struct PlannedStep {
    pub name: String,
    /// Estimated seconds (0 for a step whose results are already there).
    pub estimate_seconds: f64,
    /// Measured seconds, once the step has run.
    pub seconds: Option<f64>,
    /// The step's results were found from an earlier run and kept.
    pub already_done: bool,
    #[serde(skip)]
    work: Work,
}

/// Training and inference images/s of one net at one batch size, measured on this machine.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MeasuredSpeed {
    /// The net as [`speed_key`] names it (a transfer net with its input side and frozen blocks,
    /// which change its speed several times over).
    pub net: String,
    pub batch: usize,
    pub train_images_per_s: f64,
    pub infer_images_per_s: f64,
}

/// What a measured speed belongs to: the net's name, for a layer-list net also its layers (the
/// search's nets are all named `tuned_cnn`: keyed by name alone, the three that stand for its
/// trials shared the first one's speed, the cheapest, and session 29's search step, estimated at
/// 41 minutes, spent 33 on its first of five trials), and for a transfer net its input side and
/// frozen blocks (the notebook's transfer step and the `fast` preset share a backbone and a
/// batch, not a speed).
pub fn speed_key(net: &ModelSpec) -> String {
    match net {
        ModelSpec::Transfer(t) => {
            format!("{} at {}x{}, {} blocks frozen", t.name, t.input_size, t.input_size, t.frozen_blocks)
        }
        ModelSpec::Layers(spec) => {
            let layers = serde_json::to_string(&spec.layers).expect("a layer list always serialises");
            format!("{} {layers}", spec.name)
        }
        other => other.name().to_string(),
    }
}

/// The study's steps with estimates, and the speeds they came from.
#[derive(Debug, Serialize)]
pub struct StudyPlan {
    pub steps: Vec<PlannedStep>,
    pub speeds: Vec<MeasuredSpeed>,
    /// Seconds spent measuring the speeds.
    pub calibration_seconds: f64,
    #[serde(skip)]
    started: Option<Instant>,
}

impl StudyPlan {
    /// A plan of `steps` (name, work, results already there); [`StudyPlan::measure`] then gives
    /// the estimates.
    pub fn new(steps: Vec<(String, Work, bool)>) -> Self {
        let steps = steps
            .into_iter()
            .map(|(name, work, already_done)| PlannedStep {
                name,
                estimate_seconds: 0.0,
                seconds: None,
                already_done,
                work,
            })
            .collect();
        StudyPlan { steps, speeds: Vec::new(), calibration_seconds: 0.0, started: None }
    }

    /// Measures each net of the steps still to run (`steps` timed training steps and inference
    /// batches after one warm-up each, at the step's batch size) and estimates every step: per
    /// run, epochs x (train / training speed + val / inference speed) + test / inference speed.
    /// Speeds already in `dir/plan.json` (the study measured before it was stopped) are reused,
    /// so a resumed study does not measure again.
    pub fn measure(&mut self, steps: usize, device: &burn::prelude::Device, dir: &Path) -> Result<()> {
        let start = Instant::now();
        #[derive(Deserialize)]
        struct Saved {
            speeds: Vec<MeasuredSpeed>,
        }
        if let Ok(text) = std::fs::read_to_string(dir.join("plan.json"))
            && let Ok(saved) = serde_json::from_str::<Saved>(&text)
        {
            self.speeds = saved.speeds;
        }
        for step in self.steps.iter_mut().filter(|s| !s.already_done) {
            let Work::Train { nets, runs, epochs, batch, train, val, test, setup_seconds } = &step.work else {
                continue;
            };
            let mut per_run = 0.0;
            for net in nets {
                let name = speed_key(net);
                let known = self.speeds.iter().position(|s| s.net == name && s.batch == *batch);
                let speed = match known {
                    Some(i) => self.speeds[i].clone(),
                    None => {
                        let r = bench_model(net, *batch, steps, 1, device)?;
                        let speed = MeasuredSpeed {
                            net: name,
                            batch: *batch,
                            train_images_per_s: r.train_images_per_s,
                            infer_images_per_s: r.infer_images_per_s,
                        };
                        self.speeds.push(speed.clone());
                        speed
                    }
                };
                per_run += *epochs as f64
                    * (*train as f64 / speed.train_images_per_s + *val as f64 / speed.infer_images_per_s)
                    + *test as f64 / speed.infer_images_per_s;
            }
            step.estimate_seconds = (per_run / nets.len().max(1) as f64 + setup_seconds) * *runs as f64;
        }
        self.calibration_seconds = start.elapsed().as_secs_f64();
        self.started = Some(Instant::now());
        Ok(())
    }

    /// Records step `index`'s measured time and writes `plan.json` into `dir`.
    pub fn finished(&mut self, index: usize, seconds: f64, dir: &Path) -> Result<()> {
        self.steps[index].seconds = Some(seconds);
        write_atomic(&dir.join("plan.json"), serde_json::to_string_pretty(self)?)
    }

    /// Estimated seconds left after the first `done` steps: the remaining steps' estimates,
    /// scaled by (measured + prior) / (estimated + prior) over the finished steps that had an
    /// estimate. The prior, a tenth of the whole estimate counted as if it ran as estimated,
    /// keeps a few seconds-long first steps (whose fixed costs weigh more) from swinging the
    /// estimate of hours of training.
    pub fn seconds_left(&self, done: usize) -> f64 {
        let prior = 0.1 * self.steps.iter().map(|s| s.estimate_seconds).sum::<f64>();
        let (mut measured, mut estimated) = (prior, prior);
        for step in &self.steps[..done] {
            if let Some(s) = step.seconds.filter(|_| step.estimate_seconds > 0.0) {
                measured += s;
                estimated += step.estimate_seconds;
            }
        }
        let scale = if estimated > 0.0 { measured / estimated } else { 1.0 };
        scale * self.steps[done..].iter().map(|s| s.estimate_seconds).sum::<f64>()
    }

    /// One line for the start of the study: steps, the total estimate, and per step.
    pub fn describe(&self) -> String {
        let total: f64 = self.steps.iter().map(|s| s.estimate_seconds).sum();
        let per_step: Vec<String> = self
            .steps
            .iter()
            .map(|s| {
                if s.already_done {
                    format!("{} (done)", s.name)
                } else if matches!(s.work, Work::Small) {
                    format!("{} (seconds)", s.name)
                } else {
                    format!("{} {}", s.name, duration(s.estimate_seconds))
                }
            })
            .collect();
        format!(
            "study plan: {} steps, about {} in all on this machine (each net's speed measured in {:.0} s, \
             times each step's epochs and images): {}",
            self.steps.len(),
            duration(total),
            self.calibration_seconds,
            per_step.join(", ")
        )
    }

    /// One line before step `index` runs: steps done of the total, time spent, time left.
    pub fn progress(&self, index: usize) -> String {
        let spent = self.started.map_or(0.0, |s| s.elapsed().as_secs_f64());
        format!(
            "study: step {} of {} ({}); {} done in {}, about {} left for the whole study",
            index + 1,
            self.steps.len(),
            self.steps[index].name,
            index,
            duration(spent),
            duration(self.seconds_left(index))
        )
    }
}

/// "2 h 05 min", "14 min", "40 s".
pub fn duration(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    if s >= 3600 {
        format!("{} h {:02} min", s / 3600, (s / 60) % 60)
    } else if s >= 60 {
        format!("{} min", (s + 30) / 60)
    } else {
        format!("{s} s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(estimates: &[f64]) -> StudyPlan {
        let mut plan = StudyPlan::new(estimates.iter().map(|_| ("s".to_string(), Work::Small, false)).collect());
        for (step, e) in plan.steps.iter_mut().zip(estimates) {
            step.estimate_seconds = *e;
        }
        plan
    }

    /// The notebook's transfer step and the `fast` preset train the same backbone at the same
    /// batch at very different speeds (input side, frozen blocks): their speeds are kept apart.
    #[test]
    fn speeds_are_kept_per_transfer_setting() {
        let transfer = crate::models::resolve(crate::models::registry::TRANSFER_PRESET).unwrap();
        let fast = crate::training::training_preset("fast").unwrap().model(Some("w.pth".into())).unwrap();
        assert_eq!(transfer.name(), fast.name());
        assert_ne!(speed_key(&transfer), speed_key(&fast));
        assert!(speed_key(&crate::models::resolve("cnn3").unwrap()).starts_with("cnn3 [{"));
    }

    /// The search's trials are nets of one name with other layers: the three points of the space
    /// that stand for them in the plan are measured one by one, not the first for all three.
    #[test]
    fn nets_of_one_name_with_other_layers_are_kept_apart() {
        let space =
            crate::tuning::SearchSpace::from_toml(crate::reproduce::notebook::TUNE_SPACE, "tune_cnn.toml").unwrap();
        let keys: Vec<String> = [0.25, 0.5, 0.75]
            .iter()
            .map(|&p| {
                let spec = space.net_for(&space.decode(&vec![p; space.dimensions()])).unwrap();
                assert_eq!(spec.name, "tuned_cnn");
                speed_key(&ModelSpec::Layers(spec))
            })
            .collect();
        assert!(keys[0] != keys[1] && keys[1] != keys[2] && keys[0] != keys[2], "{keys:?}");
    }

    /// Before any step, what is left is the sum of the estimates; once steps have run, the
    /// rest is scaled by how long they took against their estimates, with a prior of a tenth of
    /// the whole estimate (steps without an estimate do not count).
    #[test]
    fn time_left_scales_the_remaining_estimates_by_the_finished_steps() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = plan(&[0.0, 100.0, 300.0, 600.0]);
        let close = |a: f64, b: f64| assert!((a - b).abs() < 1e-9, "{a} vs {b}");
        close(p.seconds_left(0), 1000.0);
        p.finished(0, 5.0, dir.path()).unwrap();
        close(p.seconds_left(1), 1000.0);
        p.finished(1, 150.0, dir.path()).unwrap();
        close(p.seconds_left(2), (100.0 + 150.0) / (100.0 + 100.0) * 900.0);
        p.finished(2, 300.0, dir.path()).unwrap();
        close(p.seconds_left(3), (100.0 + 450.0) / (100.0 + 400.0) * 600.0);
        let saved: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join("plan.json")).unwrap()).unwrap();
        assert_eq!(saved["steps"][1]["seconds"], 150.0);
        assert_eq!(saved["steps"][3]["seconds"], serde_json::Value::Null);
    }

    /// The estimate of a training step is its arithmetic over the measured speed: a real,
    /// small measurement of cnn3 gives an estimate proportional to epochs and runs.
    #[test]
    fn a_training_step_is_estimated_from_the_measured_speed() {
        let net = crate::models::resolve("cnn3").unwrap();
        let work = |runs, epochs| Work::Train {
            nets: vec![net.clone()],
            runs,
            epochs,
            batch: 8,
            train: 80,
            val: 16,
            test: 0,
            setup_seconds: 0.0,
        };
        let mut p = StudyPlan::new(vec![
            ("a".into(), work(1, 1), false),
            ("b".into(), work(2, 3), false),
            ("c".into(), work(1, 1), true),
        ]);
        let dir = tempfile::tempdir().unwrap();
        p.measure(1, &burn::prelude::Device::flex(), dir.path()).unwrap();
        assert_eq!(p.speeds.len(), 1, "one net at one batch size is measured once");
        let s = p.speeds[0].clone();
        let one = 80.0 / s.train_images_per_s + 16.0 / s.infer_images_per_s;
        assert!((p.steps[0].estimate_seconds - one).abs() < 1e-9);
        assert!((p.steps[1].estimate_seconds - 6.0 * one).abs() < 1e-9);
        assert_eq!(p.steps[2].estimate_seconds, 0.0);
        assert!(p.describe().contains("c (done)"), "{}", p.describe());
        // A resumed study reads the speeds it measured before instead of measuring again.
        p.finished(0, 1.0, dir.path()).unwrap();
        let mut again = StudyPlan::new(vec![("a".into(), work(1, 1), false)]);
        let mut saved: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join("plan.json")).unwrap()).unwrap();
        saved["speeds"][0]["train_images_per_s"] = 1.0.into();
        std::fs::write(dir.path().join("plan.json"), saved.to_string()).unwrap();
        again.measure(1, &burn::prelude::Device::flex(), dir.path()).unwrap();
        assert!((again.steps[0].estimate_seconds - (80.0 + 16.0 / s.infer_images_per_s)).abs() < 1e-9);
    }

    #[test]
    fn durations_read_as_hours_minutes_or_seconds() {
        assert_eq!(duration(7500.0), "2 h 05 min");
        assert_eq!(duration(840.0), "14 min");
        assert_eq!(duration(40.4), "40 s");
    }
}
