//! The learning rate over a run: the notebook's constant rate; a linear warm-up followed by
//! cosine decay to zero (the usual schedule of modern image-classification recipes, e.g. timm's);
//! the one-cycle policy (Smith & Topin 2019, as `torch.optim.lr_scheduler.OneCycleLR` with its
//! defaults); or reduce-on-plateau (as `torch.optim.lr_scheduler.ReduceLROnPlateau`), the schedule
//! of most FER2013 papers that train VGG-style nets from scratch.
//!
//! Step-based schedules set the rate per optimizer step, not per epoch, so that a short run's last
//! epoch already ends near zero rather than at the start of its final step down. Reduce-on-plateau
//! changes the rate between epochs, from the validation history alone, so a resumed run replays it.

use serde::{Deserialize, Serialize};

use super::best::Monitor;
use crate::run::history::EpochRecord;

#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LrSchedule {
    /// The same rate at every step (the notebook's recipe).
    #[default]
    Constant,
    /// The rate rises linearly from near zero to the base rate over `warmup_epochs`, then falls
    /// along a half cosine to zero at the run's last step.
    Cosine { warmup_epochs: usize },
    /// One cycle (PyTorch's `OneCycleLR` defaults: `pct_start` 0.3, `div_factor` 25,
    /// `final_div_factor` 1e4, cosine annealing): the rate rises from base/25 to the base rate over
    /// the first 30% of the steps, then falls to base/25/1e4 by the last step. (PyTorch also cycles
    /// the momentum; ferkit does not.)
    OneCycle,
    /// Reduce on plateau: the rate is multiplied by `factor` after `patience` epochs in a row
    /// without an improvement of the monitored validation figure (relative threshold 1e-4, no
    /// cool-down, as PyTorch's defaults).
    Plateau { factor: f64, patience: usize },
}

/// PyTorch `ReduceLROnPlateau`'s default relative threshold for "better".
const PLATEAU_THRESHOLD: f64 = 1e-4;

impl LrSchedule {
    /// Parses the command line's `constant`, `cosine`, `one-cycle` or `plateau` (with
    /// `--plateau-factor`, default 0.5, and `--plateau-patience`, default 5 epochs).
    pub fn parse(
        name: &str,
        warmup_epochs: usize,
        plateau_factor: Option<f64>,
        plateau_patience: Option<usize>,
    ) -> crate::error::Result<Self> {
        if name != "plateau" {
            crate::ensure!(Config @ "plateau_factor",
                plateau_factor.is_none() && plateau_patience.is_none(),
                "plateau_factor and plateau_patience need schedule plateau"
            );
        }
        if name != "cosine" {
            crate::ensure!(Config @ "warmup_epochs", warmup_epochs == 0, "warmup_epochs needs schedule cosine");
        }
        match name {
            "constant" => Ok(Self::Constant),
            "cosine" => Ok(Self::Cosine { warmup_epochs }),
            "one-cycle" => Ok(Self::OneCycle),
            "plateau" => {
                let factor = plateau_factor.unwrap_or(0.5);
                crate::ensure!(Config @ "plateau_factor", factor > 0.0 && factor < 1.0, "plateau_factor must be in (0, 1) (got {factor})");
                Ok(Self::Plateau { factor, patience: plateau_patience.unwrap_or(5) })
            }
            other => {
                crate::bail!(Config @ "schedule", "schedule: unknown schedule `{other}` (known: constant, cosine, one-cycle, plateau)")
            }
        }
    }

    /// The factor the history so far puts on the base rate: below 1 only for reduce-on-plateau,
    /// after plateaus of the `monitor`ed figure in `history` (the finished epochs, in order).
    pub fn history_factor(&self, history: &[EpochRecord], monitor: Monitor) -> f64 {
        let Self::Plateau { factor, patience } = *self else { return 1.0 };
        let mut scale = 1.0;
        let (mut best, mut bad_epochs) = (None::<f64>, 0usize);
        for record in history {
            // Compared as "lower is better": accuracy is negated.
            let value = match monitor {
                Monitor::ValLoss => record.val_loss,
                Monitor::ValAccuracy => -record.val_accuracy,
            };
            let improved = match best {
                None => true,
                Some(b) => value < b - PLATEAU_THRESHOLD * b.abs(),
            };
            if improved {
                best = Some(value);
                bad_epochs = 0;
            } else {
                bad_epochs += 1;
                if bad_epochs > patience {
                    scale *= factor;
                    bad_epochs = 0;
                }
            }
        }
        scale
    }

    /// The rate at optimizer step `step` (0-based) of a run of `epochs` epochs of
    /// `steps_per_epoch` steps each, starting from `base`.
    pub fn rate(&self, base: f64, step: usize, steps_per_epoch: usize, epochs: usize) -> f64 {
        match *self {
            Self::Constant => base,
            Self::Cosine { warmup_epochs } => {
                let total = (steps_per_epoch * epochs).max(1);
                let warmup = (steps_per_epoch * warmup_epochs).min(total - 1);
                if step < warmup {
                    // (step + 1) so that the first step does not run at rate zero.
                    return base * (step + 1) as f64 / warmup as f64;
                }
                let progress = (step - warmup) as f64 / (total - warmup) as f64;
                base * 0.5 * (1.0 + (std::f64::consts::PI * progress.min(1.0)).cos())
            }
            Self::OneCycle => {
                let total = (steps_per_epoch * epochs).max(2);
                let (initial, last) = (base / 25.0, base / 25.0 / 1e4);
                // PyTorch: phase one ends at step 0.3 * total - 1, phase two at total - 1.
                let peak_step = (0.3 * total as f64 - 1.0).max(1.0);
                let cos_between = |from: f64, to: f64, pct: f64| {
                    to + (from - to) / 2.0 * (1.0 + (std::f64::consts::PI * pct.clamp(0.0, 1.0)).cos())
                };
                let step = step as f64;
                if step <= peak_step {
                    cos_between(initial, base, step / peak_step)
                } else {
                    cos_between(base, last, (step - peak_step) / (total as f64 - 1.0 - peak_step))
                }
            }
            Self::Plateau { .. } => base,
        }
    }

    /// A short description for run summaries.
    pub fn describe(&self) -> String {
        match self {
            Self::Constant => "constant".into(),
            Self::Cosine { warmup_epochs: 0 } => "cosine decay".into(),
            Self::Cosine { warmup_epochs } => format!("{warmup_epochs}-epoch warm-up, cosine decay"),
            Self::OneCycle => "one cycle".into(),
            Self::Plateau { factor, patience } => format!("x{factor} after {patience} epochs without improvement"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_never_changes() {
        for step in [0, 7, 1000] {
            assert_eq!(LrSchedule::Constant.rate(1e-3, step, 10, 5), 1e-3);
        }
    }

    #[test]
    fn cosine_warms_up_peaks_halves_and_ends_near_zero() {
        let s = LrSchedule::Cosine { warmup_epochs: 1 };
        let (per_epoch, epochs, base) = (10, 5, 0.1);
        let rate = |step| s.rate(base, step, per_epoch, epochs);
        // Warm-up: 0.01, 0.02, ... 0.1 over the first 10 steps.
        assert!((rate(0) - 0.01).abs() < 1e-12);
        assert!((rate(4) - 0.05).abs() < 1e-12);
        assert!((rate(9) - 0.1).abs() < 1e-12);
        // Decay: full rate right after warm-up, half way through the remaining 40 steps half of it.
        assert!((rate(10) - 0.1).abs() < 1e-12);
        assert!((rate(30) - 0.05).abs() < 1e-12);
        let last = rate(49);
        assert!(last > 0.0 && last < 0.001, "last step's rate {last}");
        // Monotone after the warm-up.
        assert!((10..49).all(|i| rate(i + 1) <= rate(i)));
    }

    #[test]
    fn cosine_without_warm_up_starts_at_the_base_rate() {
        let s = LrSchedule::Cosine { warmup_epochs: 0 };
        assert_eq!(s.rate(0.5, 0, 4, 3), 0.5);
        // A warm-up as long as the run still leaves one step of decay.
        let long = LrSchedule::Cosine { warmup_epochs: 9 };
        assert!(long.rate(0.5, 11, 4, 3) > 0.0);
    }

    #[test]
    fn parse_names_the_option() {
        assert_eq!(LrSchedule::parse("cosine", 2, None, None).unwrap(), LrSchedule::Cosine { warmup_epochs: 2 });
        assert!(LrSchedule::parse("constant", 2, None, None).unwrap_err().to_string().contains("warmup_epochs"));
        assert!(LrSchedule::parse("step", 0, None, None).unwrap_err().to_string().contains("schedule"));
        assert_eq!(
            LrSchedule::parse("plateau", 0, Some(0.75), None).unwrap(),
            LrSchedule::Plateau { factor: 0.75, patience: 5 }
        );
        assert!(LrSchedule::parse("plateau", 0, Some(1.0), None).unwrap_err().to_string().contains("(0, 1)"));
        assert!(LrSchedule::parse("cosine", 0, None, Some(3)).unwrap_err().to_string().contains("schedule plateau"));
    }

    /// `OneCycleLR(max_lr=1, total_steps=20)` (defaults otherwise) at steps 0, 2, 5 (the peak,
    /// 0.3 * 20 - 1), 10 and 19, computed by hand from PyTorch's formula (torch/optim/lr_scheduler.py:
    /// phases ending at `pct_start * total - 1` and `total - 1`, `_annealing_cos`).
    #[test]
    fn one_cycle_matches_pytorch() {
        let s = LrSchedule::OneCycle;
        let rate = |step| s.rate(1.0, step, 4, 5);
        for (step, want) in [(0, 0.04), (2, 0.371672), (5, 1.0), (10, 0.716943), (19, 4e-6)] {
            assert!((rate(step) - want).abs() < 1e-6, "step {step}: {} vs {want}", rate(step));
        }
        assert!((0..5).all(|i| rate(i + 1) > rate(i)) && (5..19).all(|i| rate(i + 1) < rate(i)));
    }

    fn epoch(epoch: usize, val_loss: f64, val_accuracy: f64) -> EpochRecord {
        EpochRecord { epoch, train_loss: 1.0, train_accuracy: 0.5, val_loss, val_accuracy, seconds: 1.0 }
    }

    #[test]
    fn plateau_cuts_the_rate_after_patience_epochs_without_improvement() {
        let s = LrSchedule::Plateau { factor: 0.5, patience: 2 };
        // Losses: better, better, then three epochs no better (the third one past patience 2),
        // then better, then three more flat ones: two cuts.
        let losses = [1.0, 0.9, 0.95, 0.9, 0.91, 0.8, 0.8, 0.8, 0.8];
        let history: Vec<_> = losses.iter().enumerate().map(|(i, &l)| epoch(i + 1, l, 0.5)).collect();
        let factors: Vec<f64> =
            (0..=history.len()).map(|n| s.history_factor(&history[..n], Monitor::ValLoss)).collect();
        assert_eq!(factors, [1.0, 1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.5, 0.25]);
        // Accuracy is "higher is better": rising accuracy never cuts.
        let rising: Vec<_> = (0..8).map(|i| epoch(i + 1, 1.0, 0.3 + 0.01 * i as f64)).collect();
        assert_eq!(s.history_factor(&rising, Monitor::ValAccuracy), 1.0);
        assert_eq!(s.history_factor(&rising, Monitor::ValLoss), 0.25);
        // Other schedules never look at the history.
        assert_eq!(LrSchedule::Cosine { warmup_epochs: 0 }.history_factor(&rising, Monitor::ValLoss), 1.0);
    }
}
