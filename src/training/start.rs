//! Starting and resuming a training run the way every front does it: a recipe of named options
//! with their defaults ([`Recipe`]) becomes a [`TrainConfig`]; the data is read and everything
//! that can fail early is checked before the run directory is made ([`start`]); a stopped run
//! goes on from its directory alone ([`resume_dir`]).

use std::path::{Path, PathBuf};

use super::best::Monitor;
use super::config::TrainConfig;
use super::distill::DistillConfig;
use super::mix::MixConfig;
use super::optimizer::OptimizerKind;
use super::schedule::LrSchedule;
use super::trainer::{RunMetrics, check_inputs, resume, train};
use crate::data::augment::AugmentConfig;
use crate::data::{DataSource, Dataset, LoadOptions, LoadReport};
use crate::error::Result;
use crate::evaluation::Tta;
use crate::events::Events;
use crate::models::ModelSpec;
use crate::run::RunDir;
use crate::util::atomic::write_atomic;
use crate::util::device::DeviceKind;

impl TrainConfig {
    /// The notebook's recipe for a net: batch 512, 20 epochs, the net's own learning rate, Adam,
    /// a constant rate, no augmentation (the defaults of [`Recipe`]). Defined here, beside the
    /// recipe, so that `config` does not depend on `start`.
    pub fn notebook(model: ModelSpec, data: DataSource) -> Self {
        Recipe::default().config(model, data).expect("the default recipe is in range")
    }
}

/// A training recipe by option names, as the command line and Python give it; `None` is the
/// default named beside each field. [`Recipe::default`] is the notebook's recipe.
#[derive(Clone, Debug)]
pub struct Recipe {
    /// Epochs (default 20).
    pub epochs: usize,
    /// Rows per batch (default 512).
    pub batch_size: usize,
    /// The peak learning rate (default: the net's own).
    pub learning_rate: Option<f64>,
    /// `adam` (default), `adamw`, `sgd`, `sgd-nesterov`.
    pub optimizer: String,
    /// SGD's momentum (default 0.9).
    pub momentum: Option<f64>,
    /// Decoupled weight decay (AdamW default 0.01, SGD 0).
    pub weight_decay: Option<f64>,
    /// `constant` (default), `cosine`, `one-cycle`, `plateau`.
    pub schedule: String,
    /// Linear warm-up epochs of the cosine schedule (default 0).
    pub warmup_epochs: usize,
    pub plateau_factor: Option<f64>,
    pub plateau_patience: Option<usize>,
    /// Label smoothing in [0, 1) (default 0).
    pub label_smoothing: f64,
    /// Weight EMA decay in (0, 1) (default: none).
    pub ema: Option<f64>,
    pub mixup: Option<f64>,
    pub cutmix: Option<f64>,
    /// Knowledge distillation's teacher: a run directory, a model file or `shipped` (default:
    /// none; [`super::distill`]).
    pub teacher: Option<PathBuf>,
    /// The teacher term's share of the loss (default 0.5 with a teacher).
    pub distill_weight: Option<f64>,
    /// The distillation temperature (default 1).
    pub distill_temperature: Option<f64>,
    /// Wall-time budget in minutes ([`super::budget`]; default: none, every epoch runs).
    pub time_budget_minutes: Option<f64>,
    /// Test-time augmentation of the final evaluation of the validation and test splits
    /// (default: none; [`TrainConfig::tta`]).
    pub tta: Tta,
    /// Augmentation, e.g. `rotation=15,zoom=0.1,hflip` (default: none).
    pub augment: Option<String>,
    /// The seed that fixes the run (default 42).
    pub seed: u64,
    /// What picks the kept checkpoint (default: validation loss).
    pub monitor: Monitor,
    pub device: DeviceKind,
    /// At most this many rows of each split (default: all).
    pub subset: Option<usize>,
    /// Skip malformed rows (counted) instead of failing (default: fail).
    pub skip_bad_rows: bool,
    /// Start from this run's kept weights (default: fresh weights).
    pub init_from: Option<PathBuf>,
}

impl Default for Recipe {
    fn default() -> Self {
        Self {
            epochs: 20,
            batch_size: 512,
            learning_rate: None,
            optimizer: "adam".into(),
            momentum: None,
            weight_decay: None,
            schedule: "constant".into(),
            warmup_epochs: 0,
            plateau_factor: None,
            plateau_patience: None,
            label_smoothing: 0.0,
            ema: None,
            mixup: None,
            cutmix: None,
            teacher: None,
            distill_weight: None,
            distill_temperature: None,
            time_budget_minutes: None,
            tta: Tta::None,
            augment: None,
            seed: 42,
            monitor: Monitor::ValLoss,
            device: DeviceKind::Cpu,
            subset: None,
            skip_bad_rows: false,
            init_from: None,
        }
    }
}

impl Recipe {
    /// The distillation the teacher options ask for; the weight or temperature without a
    /// teacher is an error that names the option.
    fn distill(&self) -> Result<Option<DistillConfig>> {
        let Some(teacher) = &self.teacher else {
            crate::ensure!(Config @ "distill",
                self.distill_weight.is_none() && self.distill_temperature.is_none(),
                "a distillation weight or temperature needs a teacher"
            );
            return Ok(None);
        };
        Ok(Some(DistillConfig {
            teacher: teacher.clone(),
            weight: self.distill_weight.unwrap_or(0.5),
            temperature: self.distill_temperature.unwrap_or(1.0),
        }))
    }

    /// Changes the optimizer; its settings (momentum, weight decay) were the old optimizer's and
    /// go back to the new one's defaults, so that `fast --optimizer sgd` is SGD as
    /// `--optimizer sgd` alone means it, not SGD with the preset's AdamW decay. Set them after.
    pub fn set_optimizer(&mut self, name: &str) {
        if name != self.optimizer {
            self.optimizer = name.to_string();
            self.momentum = None;
            self.weight_decay = None;
        }
    }

    /// Changes the schedule; its settings (warm-up epochs, the plateau's factor and patience)
    /// were the old schedule's and go back to the new one's defaults. Set them after.
    pub fn set_schedule(&mut self, name: &str) {
        if name != self.schedule {
            self.schedule = name.to_string();
            self.warmup_epochs = 0;
            self.plateau_factor = None;
            self.plateau_patience = None;
        }
    }

    /// The config that trains `model` on `data` with this recipe. Errors name the option that is
    /// out of range or unknown (as the field of the error's location).
    pub fn config(&self, model: ModelSpec, data: DataSource) -> Result<TrainConfig> {
        if let Some(lr) = self.learning_rate {
            crate::ensure!(
                Config @ "learning_rate",
                lr > 0.0 && lr.is_finite(),
                "learning_rate must be a positive finite number (got {lr})"
            );
        }
        let config = TrainConfig {
            epochs: self.epochs,
            batch_size: self.batch_size,
            learning_rate: self.learning_rate.unwrap_or(model.learning_rate()),
            schedule: LrSchedule::parse(
                &self.schedule,
                self.warmup_epochs,
                self.plateau_factor,
                self.plateau_patience,
            )?,
            optimizer: OptimizerKind::parse(&self.optimizer, self.momentum, self.weight_decay)?,
            label_smoothing: self.label_smoothing,
            ema_decay: self.ema,
            mix: MixConfig::from_options(self.mixup, self.cutmix)?,
            distill: self.distill()?,
            time_budget_minutes: self.time_budget_minutes,
            tta: self.tta,
            seed: self.seed,
            monitor: self.monitor,
            device: self.device,
            subset: self.subset,
            skip_bad_rows: self.skip_bad_rows,
            init_from: self.init_from.clone(),
            data,
            augment: self.augment.as_deref().map(AugmentConfig::parse).transpose()?,
            model,
        };
        config.check_recipe()?;
        Ok(config)
    }
}

/// The data a config names, subsampled as it says, with the load report (whose description
/// goes to `events` as a note).
pub fn load_data(config: &TrainConfig, events: &dyn Events) -> Result<(Dataset, LoadReport)> {
    let (dataset, report) = config.data.load(LoadOptions { skip_bad_rows: config.skip_bad_rows })?;
    events.note(&report.describe());
    let dataset = match config.subset {
        Some(n) => dataset.subsample(n, config.seed),
        None => dataset,
    };
    Ok((dataset, report))
}

/// Trains `config` into a new run directory `out`, after everything that can fail early has
/// been checked (the folder, the data, the inputs, the weights): a failed start leaves no run
/// directory. `overwrite` allows a folder that holds a run.
pub fn start(config: &TrainConfig, out: &Path, overwrite: bool, events: &dyn Events) -> Result<(RunMetrics, RunDir)> {
    // The data is read before the run directory is made: bad data leaves nothing behind.
    if !overwrite && std::fs::read_dir(out).is_ok_and(|mut d| d.next().is_some()) {
        RunDir::create(out, false)?; // refuses a folder that holds a run, saying why
    }
    let (dataset, report) = load_data(config, events)?;
    check_inputs(config, &dataset)?;
    config.model.build(&config.device.device()?)?; // weights that do not load fail here, not in the run
    // The teacher reads the training faces before the run directory is made (or replaced: the
    // teacher may be the run being overwritten).
    let teacher = match &config.distill {
        Some(d) => Some(super::distill::teacher_probabilities(d, &dataset.train, events)?),
        None => None,
    };
    let run_dir = RunDir::create(out, overwrite)?;
    write_atomic(&run_dir.path.join("load_report.txt"), report.full())?;
    if let Some(probabilities) = &teacher {
        super::distill::save(&run_dir, probabilities)?;
    }
    let metrics = train(config, &dataset, &run_dir, events)?;
    Ok((metrics, run_dir))
}

/// Goes on with the stopped run in `dir` (its own config and data). `None` when the run had
/// finished already (its metrics.json is there).
pub fn resume_dir(dir: &Path, events: &dyn Events) -> Result<Option<(RunMetrics, RunDir)>> {
    let run_dir = RunDir::open(dir)?;
    if run_dir.metrics().exists() {
        return Ok(None);
    }
    let (dataset, _) = load_data(&run_dir.load_config()?, events)?;
    let metrics = resume(&run_dir, &dataset, events)?;
    Ok(Some((metrics, run_dir)))
}
