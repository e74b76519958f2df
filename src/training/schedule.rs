//! The learning rate over a run: the notebook's constant rate, or a linear warm-up followed by
//! cosine decay to zero (the usual schedule of modern image-classification recipes, e.g. timm's).
//!
//! The rate is set per optimizer step, not per epoch, so that a short run's last epoch already
//! ends near zero rather than at the start of its final step down.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LrSchedule {
    /// The same rate at every step (the notebook's recipe).
    #[default]
    Constant,
    /// The rate rises linearly from near zero to the base rate over `warmup_epochs`, then falls
    /// along a half cosine to zero at the run's last step.
    Cosine { warmup_epochs: usize },
}

impl LrSchedule {
    /// Parses the command line's `constant` or `cosine`.
    pub fn parse(name: &str, warmup_epochs: usize) -> anyhow::Result<Self> {
        match name {
            "constant" => {
                anyhow::ensure!(warmup_epochs == 0, "--warmup-epochs needs --schedule cosine");
                Ok(Self::Constant)
            }
            "cosine" => Ok(Self::Cosine { warmup_epochs }),
            other => anyhow::bail!("--schedule: unknown schedule `{other}` (known: constant, cosine)"),
        }
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
        }
    }

    /// A short description for run summaries.
    pub fn describe(&self) -> String {
        match self {
            Self::Constant => "constant".into(),
            Self::Cosine { warmup_epochs: 0 } => "cosine decay".into(),
            Self::Cosine { warmup_epochs } => format!("{warmup_epochs}-epoch warm-up, cosine decay"),
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
        assert_eq!(LrSchedule::parse("cosine", 2).unwrap(), LrSchedule::Cosine { warmup_epochs: 2 });
        assert!(LrSchedule::parse("constant", 2).unwrap_err().to_string().contains("--warmup-epochs"));
        assert!(LrSchedule::parse("step", 0).unwrap_err().to_string().contains("--schedule"));
    }
}
