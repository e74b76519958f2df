//! A training run's resolved configuration, saved as `config.toml` in its run directory so that
//! the run can be understood, evaluated and repeated later.

use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::schedule::LrSchedule;
use crate::data::DataSource;
use crate::data::augment::AugmentConfig;
use crate::models::ModelSpec;
use crate::util::device::DeviceKind;

/// Which validation figure picks the kept checkpoint.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Monitor {
    /// Lowest validation loss (the notebook's choice).
    #[default]
    #[value(name = "val_loss")]
    ValLoss,
    /// Highest validation accuracy.
    #[value(name = "val_accuracy")]
    ValAccuracy,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch_size: usize,
    /// Adam's learning rate (the net's own unless overridden); the schedule's peak.
    pub learning_rate: f64,
    /// How the rate moves over the run (the notebook's: constant).
    #[serde(default, skip_serializing_if = "is_default")]
    pub schedule: LrSchedule,
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
    /// The notebook's recipe for a net: batch 512, 20 epochs, the net's own learning rate.
    pub fn notebook(model: ModelSpec, data: DataSource) -> Self {
        Self {
            epochs: 20,
            batch_size: 512,
            learning_rate: model.learning_rate(),
            schedule: LrSchedule::Constant,
            seed: 42,
            monitor: Monitor::ValLoss,
            device: DeviceKind::Cpu,
            subset: None,
            skip_bad_rows: false,
            init_from: None,
            data,
            augment: None,
            model,
        }
    }

    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a training config always serialises")
    }

    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))?;
        let config: TrainConfig =
            toml::from_str(&text).with_context(|| format!("{}: not a ferkit run config", path.display()))?;
        config.model.check().with_context(|| format!("{}: the model is inconsistent", path.display()))?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_round_trips_through_toml() {
        let spec = crate::models::resolve("cnn3").unwrap();
        let mut config = TrainConfig::notebook(spec, DataSource::from_path("data.csv"));
        config.subset = Some(100);
        config.schedule = LrSchedule::Cosine { warmup_epochs: 2 };
        config.augment = Some(AugmentConfig::parse("rotation=20,shear=20,zoom=0.1,hflip").unwrap());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, config.to_toml()).unwrap();
        assert_eq!(TrainConfig::load(&path).unwrap(), config);
    }
}
