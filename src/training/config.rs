//! A training run's resolved configuration, saved as `config.toml` in its run directory so that
//! the run can be understood, evaluated and repeated later.

use std::path::Path;

use crate::error::{Context, Result};
use serde::{Deserialize, Serialize};

use super::best::Monitor;
use super::distill::DistillConfig;
use super::mix::MixConfig;
use super::optimizer::OptimizerKind;
use super::schedule::LrSchedule;
use crate::data::DataSource;
use crate::data::augment::AugmentConfig;
use crate::evaluation::Tta;
use crate::models::{Model, ModelSpec};
use crate::run::{RunDir, load_weights};
use crate::util::device::DeviceKind;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch_size: usize,
    /// Adam's learning rate (the net's own unless overridden); the schedule's peak.
    pub learning_rate: f64,
    /// How the rate moves over the run (the notebook's: constant).
    #[serde(default, skip_serializing_if = "is_default")]
    pub schedule: LrSchedule,
    /// The optimizer (the notebook's: Adam with Keras' epsilon).
    #[serde(default, skip_serializing_if = "is_default")]
    pub optimizer: OptimizerKind,
    /// Label smoothing of the cross-entropy (Szegedy et al. 2016): the target puts `1 - s` on the
    /// true class and `s / 7` on every class; 0 is plain cross-entropy (the notebook's).
    #[serde(default, skip_serializing_if = "is_default")]
    pub label_smoothing: f64,
    /// Decay of an exponential moving average of the weights ([`super::ema`]), which is then what
    /// validation reads and what the run keeps; none when absent (the notebook's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ema_decay: Option<f64>,
    /// Mixup or CutMix of the training batches ([`super::mix`]); none when absent (the notebook's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mix: Option<MixConfig>,
    /// Knowledge distillation from a teacher's probabilities ([`super::distill`]); none when
    /// absent (the notebook's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distill: Option<DistillConfig>,
    /// Wall-time budget of the run in minutes ([`super::budget`]): the epochs are cut to what
    /// fits after the first one, and the run stops before an epoch that would end late; none
    /// when absent (every epoch runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_budget_minutes: Option<f64>,
    /// Test-time augmentation of the run's final evaluation of its validation and test splits
    /// (metrics.json; [`crate::evaluation::Tta`]). The kept checkpoint is still chosen on the
    /// plain per-epoch validation figure, and the training split is evaluated plainly (it is a
    /// diagnostic of fit, and mirrored it would double the largest evaluation); none when absent.
    #[serde(default, skip_serializing_if = "is_default")]
    pub tta: Tta,
    pub seed: u64,
    pub monitor: Monitor,
    pub device: DeviceKind,
    /// Use at most this many rows of each split, drawn with the seed (quick runs, tests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subset: Option<usize>,
    #[serde(default)]
    pub skip_bad_rows: bool,
    /// Start from this run's kept weights instead of fresh ones (same net).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_from: Option<std::path::PathBuf>,
    pub data: DataSource,
    /// Training-time augmentation (Keras ImageDataGenerator semantics).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub augment: Option<AugmentConfig>,
    pub model: ModelSpec,
}

fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

impl TrainConfig {
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a training config always serialises")
    }

    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))?;
        let config: TrainConfig =
            toml::from_str(&text).with_context(|| format!("{}: not a ferkit run config", path.display()))?;
        config.model.check().with_context(|| format!("{}: the model is inconsistent", path.display()))?;
        config.check_trainable().with_context(|| format!("{}: [model]", path.display()))?;
        if let Err(e) = config.check_recipe() {
            // The line of the offending key, which check_recipe names.
            let setting = e.location().and_then(|l| l.field.clone()).unwrap_or_default();
            let (table, key) = match setting.as_str() {
                "mix" => (Some(("[mix]", 0)), "alpha"),
                "distill_weight" => (Some(("[distill]", 0)), "weight"),
                "distill_temperature" => (Some(("[distill]", 0)), "temperature"),
                _ => (None, setting.as_str()),
            };
            let line_no = crate::models::spec::key_line(&text, table, Some(key));
            let line = line_no.map(|l| format!(" line {l}:")).unwrap_or_default();
            return Err(e
                .at(Some(path), line_no, None)
                .context(format!("{}:{line} the training recipe is out of range", path.display())));
        }
        Ok(config)
    }

    /// Whether the model trains as one net: not an ensemble whose nets read faces preprocessed
    /// differently (one batch tensor feeds every member during training).
    pub fn check_trainable(&self) -> Result<()> {
        crate::ensure!(Config @ "model",
            self.model.reads_one_preprocessing(),
            "ensemble `{}` mixes nets that read faces preprocessed differently (layer-list and transfer \
             nets): train each net on its own and join them with `ferkit export RUN1 RUN2`",
            self.model.name()
        );
        Ok(())
    }

    /// Range checks of the recipe's numbers (the command line's and a hand-edited config.toml's).
    pub fn check_recipe(&self) -> Result<()> {
        crate::ensure!(Config @ "label_smoothing",
            (0.0..1.0).contains(&self.label_smoothing),
            "label_smoothing must be in [0, 1) (got {})",
            self.label_smoothing
        );
        if let Some(d) = self.ema_decay {
            crate::ensure!(Config @ "ema_decay", d > 0.0 && d < 1.0, "ema_decay must be in (0, 1), e.g. 0.999 (got {d})");
        }
        if let Some(minutes) = self.time_budget_minutes {
            crate::ensure!(Config @ "time_budget_minutes",
                minutes > 0.0 && minutes.is_finite(),
                "time_budget_minutes must be a positive number of minutes (got {minutes})"
            );
        }
        if let Some(MixConfig::Mixup { alpha } | MixConfig::Cutmix { alpha }) = self.mix {
            crate::ensure!(Config @ "mix",
                alpha > 0.0 && alpha.is_finite(),
                "the mix's alpha must be positive (got {alpha})"
            );
        }
        if let Some(distill) = &self.distill {
            distill.check()?;
        }
        Ok(())
    }

    /// The recipe beyond the notebook's, in a few words for summaries ("" for the notebook's).
    pub fn describe_recipe(&self) -> String {
        let mut parts = Vec::new();
        if self.optimizer != OptimizerKind::Adam {
            parts.push(self.optimizer.describe());
        }
        if self.schedule != LrSchedule::Constant {
            parts.push(self.schedule.describe());
        }
        if self.label_smoothing > 0.0 {
            parts.push(format!("label smoothing {}", self.label_smoothing));
        }
        if let Some(d) = self.ema_decay {
            parts.push(format!("weight EMA {d}"));
        }
        if let Some(mix) = self.mix {
            parts.push(mix.describe());
        }
        if let Some(d) = &self.distill {
            parts.push(format!(
                "distilled from {} (weight {}, temperature {})",
                d.teacher.display(),
                d.weight,
                d.temperature
            ));
        }
        if let Some(minutes) = self.time_budget_minutes {
            parts.push(format!("time budget {minutes} min"));
        }
        if self.tta != Tta::None {
            parts.push(format!("{} in the final evaluation", self.tta.label()));
        }
        parts.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An ensemble whose nets read faces preprocessed differently cannot train as one net: a
    /// config file holding one is refused when read (before any data loads), naming the file.
    #[test]
    fn a_mixed_ensemble_is_refused_for_training() {
        use crate::models::ModelSpec;
        use crate::models::model::EnsembleSpec;
        let (layers, transfer) =
            (crate::models::resolve("cnn3").unwrap(), crate::models::resolve("efficientnet-lite0").unwrap());
        let mixed = ModelSpec::Ensemble(EnsembleSpec { name: "mixed".into(), members: vec![layers.clone(), transfer] });
        let same = ModelSpec::Ensemble(EnsembleSpec { name: "two".into(), members: vec![layers.clone(), layers] });
        let mut config = TrainConfig::notebook(same, DataSource::from_path("data.csv"));
        config.check_trainable().unwrap();
        config.model = mixed;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, config.to_toml()).unwrap();
        let err = format!("{:#}", TrainConfig::load(&path).unwrap_err());
        assert!(
            err.contains("config.toml") && err.contains("ensemble `mixed`") && err.contains("preprocessed differently"),
            "{err}"
        );
    }

    #[test]
    fn config_round_trips_through_toml() {
        let spec = crate::models::resolve("cnn3").unwrap();
        let mut config = TrainConfig::notebook(spec, DataSource::from_path("data.csv"));
        config.subset = Some(100);
        config.schedule = LrSchedule::Cosine { warmup_epochs: 2 };
        config.optimizer = OptimizerKind::Sgd { momentum: 0.9, nesterov: true, weight_decay: 1e-4 };
        config.label_smoothing = 0.1;
        config.ema_decay = Some(0.999);
        config.mix = Some(MixConfig::Cutmix { alpha: 1.0 });
        config.time_budget_minutes = Some(58.0);
        config.augment = Some(AugmentConfig::parse("rotation=20,shear=20,zoom=0.1,hflip").unwrap());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, config.to_toml()).unwrap();
        assert_eq!(TrainConfig::load(&path).unwrap(), config);
        // The notebook's recipe writes none of the newer keys, so older runs read the same.
        let plain = TrainConfig::notebook(crate::models::resolve("cnn3").unwrap(), DataSource::from_path("d.csv"));
        let text = plain.to_toml();
        assert!(
            !text.contains("optimizer")
                && !text.contains("smoothing")
                && !text.contains("ema")
                && !text.contains("mix"),
            "{text}"
        );
        // Out-of-range numbers in a hand-edited file are refused by name.
        std::fs::write(&path, config.to_toml().replace("label_smoothing = 0.1", "label_smoothing = 1.5")).unwrap();
        let err = format!("{:#}", TrainConfig::load(&path).unwrap_err());
        assert!(err.contains("config.toml") && err.contains("label_smoothing"), "{err}");
        let line =
            std::fs::read_to_string(&path).unwrap().lines().position(|l| l.starts_with("label_smoothing")).unwrap() + 1;
        assert!(err.contains(&format!("config.toml: line {line}: the training recipe")), "{err}");
    }
}

impl RunDir {
    /// The run's `config.toml`. Errors name the file (and the line of a bad key).
    pub fn load_config(&self) -> Result<TrainConfig> {
        TrainConfig::load(&self.config())
    }

    /// The run's model with its kept weights, on `device`.
    pub fn load_model(&self, config: &TrainConfig, device: &burn::prelude::Device) -> Result<Model> {
        let path = self.weights();
        if !path.exists() {
            crate::bail!(Weights, "{}: no weights (did the run finish an epoch?)", path.display());
        }
        let net = config.model.without_pretrained().build(device)?;
        load_weights(net, self.read_weights()?, &path)
    }
}
