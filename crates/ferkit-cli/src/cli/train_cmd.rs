//! `ferkit train MODEL --data F ...`

use std::path::PathBuf;

use super::progress::TerminalProgress;
use clap::Args;
use ferkit::error::Result;
use ferkit::evaluation::Tta;

use super::DataArgs;
use ferkit::models::ModelSpec;
use ferkit::training::{Monitor, Recipe, RunDir, RunMetrics, TrainConfig, training_preset};
use ferkit::util::device::DeviceKind;

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// A net preset (fnn1..3, cnn1..3, vgg-lite, vgg-wide, resnet-lite, efficientnet-lite0,
    /// vgg16), a path to a net TOML file, or a training preset (`fast`: a net with its recipe,
    /// whose options the flags below change one by one).
    #[arg(required_unless_present_any = ["resume", "config"])]
    pub model: Option<String>,
    /// Train exactly what a run's saved `config.toml` says (net, data, recipe, seed) into a new
    /// run directory (`--out`): a run repeated, or continued elsewhere with other epochs by editing
    /// the file. Its numbers are checked as the command line's are.
    #[arg(long, value_name = "CONFIG_TOML", conflicts_with_all = [
        "model", "resume", "data", "train", "val", "test", "skip_bad_rows", "epochs", "batch_size", "lr", "schedule",
        "warmup_epochs", "seed", "monitor", "subset", "device", "augment", "init_from",
        "weights", "freeze", "input_size", "head", "val_split", "class_map", "skip_unknown_classes",
        "optimizer", "momentum", "weight_decay", "label_smoothing", "ema", "plateau_factor", "plateau_patience",
        "mixup", "cutmix", "time_budget", "tta", "teacher", "distill_weight", "distill_temperature",
    ])]
    pub config: Option<PathBuf>,
    /// Go on with a run that stopped (killed, machine gone) from its last finished epoch, with the
    /// options saved in its config.toml (started from the same folder, on the same data); on the
    /// same machine the result equals an uninterrupted run's.
    #[arg(long, value_name = "RUN_DIR", conflicts_with_all = [
        "model", "data", "train", "val", "test", "skip_bad_rows", "epochs", "batch_size", "lr", "schedule",
        "warmup_epochs", "seed", "monitor", "out", "overwrite", "subset", "device", "augment", "init_from",
        "weights", "freeze", "input_size", "head", "val_split", "class_map", "skip_unknown_classes",
        "optimizer", "momentum", "weight_decay", "label_smoothing", "ema", "plateau_factor", "plateau_patience",
        "mixup", "cutmix", "time_budget", "tta", "teacher", "distill_weight", "distill_temperature",
    ])]
    pub resume: Option<PathBuf>,
    #[command(flatten)]
    pub data: DataArgs,
    /// Epochs (default 20, or the training preset's).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Rows per batch (default 512, or the training preset's).
    #[arg(long = "batch")]
    pub batch_size: Option<usize>,
    /// The optimizer's learning rate (default: the net's own, as in the notebook); the peak of a schedule.
    #[arg(long, allow_negative_numbers = true)]
    pub lr: Option<f64>,
    /// The optimizer: adam (the notebook's, Keras' epsilon), adamw (decoupled weight decay),
    /// sgd or sgd-nesterov (momentum 0.9 unless --momentum says otherwise). Default: adam, or the
    /// training preset's.
    #[arg(long)]
    pub optimizer: Option<String>,
    /// SGD's momentum (default 0.9).
    #[arg(long, allow_negative_numbers = true)]
    pub momentum: Option<f64>,
    /// Weight decay: decoupled for adamw (default 0.01), added to the gradient for sgd (default 0).
    #[arg(long, allow_negative_numbers = true)]
    pub weight_decay: Option<f64>,
    /// How the learning rate moves: constant (the notebook's), cosine (decay to zero by the last
    /// step, after --warmup-epochs of linear warm-up), one-cycle (PyTorch's OneCycleLR defaults),
    /// or plateau (x --plateau-factor after --plateau-patience epochs without a better --monitor figure).
    /// Default: constant, or the training preset's.
    #[arg(long)]
    pub schedule: Option<String>,
    /// Epochs of linear warm-up before the cosine decay (default 0, or the training preset's).
    #[arg(long)]
    pub warmup_epochs: Option<usize>,
    /// Reduce-on-plateau's factor (default 0.5).
    #[arg(long, allow_negative_numbers = true)]
    pub plateau_factor: Option<f64>,
    /// Reduce-on-plateau's patience in epochs (default 5).
    #[arg(long)]
    pub plateau_patience: Option<usize>,
    /// Label smoothing of the loss, e.g. 0.1 (default 0: plain cross-entropy; or the training preset's).
    #[arg(long, allow_negative_numbers = true)]
    pub label_smoothing: Option<f64>,
    /// Keep an exponential moving average of the weights with this decay (e.g. 0.999); validation
    /// reads it and the run keeps it as its weights.
    #[arg(long, value_name = "DECAY", allow_negative_numbers = true)]
    pub ema: Option<f64>,
    /// Mixup of each training batch with Beta(ALPHA, ALPHA) weights (timm's default 0.8).
    #[arg(long, value_name = "ALPHA", allow_negative_numbers = true)]
    pub mixup: Option<f64>,
    /// CutMix of each training batch with Beta(ALPHA, ALPHA) box areas (timm's default 1.0).
    #[arg(long, value_name = "ALPHA", allow_negative_numbers = true)]
    pub cutmix: Option<f64>,
    /// Knowledge distillation (Hinton et al. 2015): the student also learns from this teacher's
    /// probabilities, which it computes once for every training face: a run directory, a model
    /// file, or `shipped` (the model compiled into ferkit). Default: none.
    #[arg(long, value_name = "RUN_DIR|FILE|shipped")]
    pub teacher: Option<PathBuf>,
    /// The teacher term's share of the loss, in (0, 1] (default 0.5 with --teacher).
    #[arg(long, value_name = "WEIGHT", allow_negative_numbers = true)]
    pub distill_weight: Option<f64>,
    /// The softmax temperature of the teacher term (default 1).
    #[arg(long, value_name = "T", allow_negative_numbers = true)]
    pub distill_temperature: Option<f64>,
    /// Fit the run to this many minutes of wall time: after the first epoch the epoch count is cut
    /// to what fits (the schedule then ends over those), and the run stops before an epoch that
    /// would end late (default: none, every epoch runs; the `fast` preset: 58).
    #[arg(long, value_name = "MINUTES", allow_negative_numbers = true)]
    pub time_budget: Option<f64>,
    /// Test-time augmentation of the run's final evaluation of the validation and test splits:
    /// none, hflip (each face and its mirror, probabilities averaged) or ten-crop. The kept
    /// checkpoint is still chosen on the plain validation figure (default: none; the `fast`
    /// preset: hflip).
    #[arg(long, value_parser = super::choice::<Tta>())]
    pub tta: Option<Tta>,
    /// The seed that fixes the run (default 42).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Which validation figure picks the kept checkpoint (default val_loss, the notebook's; or
    /// the training preset's).
    #[arg(long, value_parser = super::choice::<Monitor>())]
    pub monitor: Option<Monitor>,
    /// Run directory (default: runs/<model>, or runs/<training preset>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Replace an existing run directory.
    #[arg(long)]
    pub overwrite: bool,
    /// Use at most N rows of each split, drawn with the seed (quick experiments).
    #[arg(long)]
    pub subset: Option<usize>,
    #[arg(long, value_parser = super::choice::<DeviceKind>(), default_value = "cpu")]
    pub device: DeviceKind,
    /// Augment training images, Keras-style: e.g. rotation=20,shear=20,zoom=0.1,hflip,fill=nearest
    /// (also width_shift, height_shift, cval, crop=PAD, erasing=P).
    #[arg(long)]
    pub augment: Option<String>,
    /// Continue from a trained run's kept weights (the same net).
    #[arg(long)]
    pub init_from: Option<PathBuf>,
    #[command(flatten)]
    pub transfer: TransferArgs,
}

/// Options of the transfer-learning model (efficientnet-lite0).
#[derive(clap::Args, Debug, Default, Clone)]
pub struct TransferArgs {
    /// ImageNet weights for the backbone (PyTorch .pth), e.g. ../shared/models/efficientnet-lite0-57934424.pth.
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Backbone blocks frozen from the bottom, after the stem (0..=16).
    #[arg(long)]
    pub freeze: Option<usize>,
    /// Side the faces are resized to before the backbone (default 48).
    #[arg(long)]
    pub input_size: Option<usize>,
    /// Hidden widths of the new head, e.g. 1024 or 512,256.
    #[arg(long, value_delimiter = ',')]
    pub head: Option<Vec<usize>>,
}

impl TransferArgs {
    /// Applies the options to a transfer model; refuses them for a layer-list net.
    pub fn apply(&self, spec: ModelSpec) -> Result<ModelSpec> {
        let given = self.weights.is_some() || self.freeze.is_some() || self.input_size.is_some() || self.head.is_some();
        match spec {
            ModelSpec::Transfer(mut t) => {
                t.weights = self.weights.clone().or(t.weights);
                t.frozen_blocks = self.freeze.unwrap_or(t.frozen_blocks);
                t.input_size = self.input_size.unwrap_or(t.input_size);
                t.head = self.head.clone().unwrap_or(t.head);
                let spec = ModelSpec::Transfer(t);
                spec.check()?;
                Ok(spec)
            }
            layers if given => {
                ferkit::bail!(
                    Config,
                    "--weights, --freeze, --input-size and --head are for transfer models, not `{}`",
                    layers.name()
                )
            }
            layers => Ok(layers),
        }
    }
}

pub fn run(args: TrainArgs) -> Result<()> {
    let progress = TerminalProgress::default();
    if let Some(dir) = &args.resume {
        return match ferkit::training::resume_dir(dir, &progress)? {
            Some((metrics, run_dir)) => print_result(&metrics, &run_dir),
            None => {
                super::lines::say(&format!(
                    "{}: this run finished (metrics.json is there); nothing to resume",
                    dir.display()
                ));
                Ok(())
            }
        };
    }
    let config = match &args.config {
        Some(path) => TrainConfig::load(path)?,
        None => {
            let model = args.model.as_deref().expect("clap requires MODEL unless --resume or --config");
            let (spec, base) = match training_preset(model) {
                Some(preset) => {
                    let spec = preset.model(args.transfer.weights.clone())?;
                    let given = TransferArgs { weights: None, ..args.transfer.clone() };
                    (given.apply(spec)?, preset.recipe())
                }
                None => (args.transfer.apply(ferkit::models::resolve(model)?)?, Recipe::default()),
            };
            args.recipe(base).config(spec, args.data.source())?
        }
    };
    // A training preset's runs go to runs/<preset>, apart from its net's own.
    let default_name = args.model.as_deref().filter(|m| training_preset(m).is_some()).unwrap_or(config.model.name());
    let out = args.out.clone().unwrap_or_else(|| PathBuf::from("runs").join(default_name));
    let (metrics, run_dir) = ferkit::training::start(&config, &out, args.overwrite, &progress)?;
    print_result(&metrics, &run_dir)
}

impl TrainArgs {
    /// The flags as the library's recipe: each flag given replaces `base`'s option (the
    /// notebook's recipe, or a training preset's); a new optimizer or schedule drops the base's
    /// settings of the old one ([`Recipe::set_optimizer`]).
    fn recipe(&self, mut base: Recipe) -> Recipe {
        if let Some(name) = &self.optimizer {
            base.set_optimizer(name);
        }
        if let Some(name) = &self.schedule {
            base.set_schedule(name);
        }
        Recipe {
            epochs: self.epochs.unwrap_or(base.epochs),
            batch_size: self.batch_size.unwrap_or(base.batch_size),
            learning_rate: self.lr.or(base.learning_rate),
            optimizer: base.optimizer,
            momentum: self.momentum.or(base.momentum),
            weight_decay: self.weight_decay.or(base.weight_decay),
            schedule: base.schedule,
            warmup_epochs: self.warmup_epochs.unwrap_or(base.warmup_epochs),
            plateau_factor: self.plateau_factor.or(base.plateau_factor),
            plateau_patience: self.plateau_patience.or(base.plateau_patience),
            label_smoothing: self.label_smoothing.unwrap_or(base.label_smoothing),
            ema: self.ema.or(base.ema),
            mixup: self.mixup.or(base.mixup),
            cutmix: self.cutmix.or(base.cutmix),
            teacher: self.teacher.clone().or(base.teacher),
            distill_weight: self.distill_weight.or(base.distill_weight),
            distill_temperature: self.distill_temperature.or(base.distill_temperature),
            time_budget_minutes: self.time_budget.or(base.time_budget_minutes),
            tta: self.tta.unwrap_or(base.tta),
            augment: self.augment.clone().or(base.augment),
            seed: self.seed.unwrap_or(base.seed),
            monitor: self.monitor.unwrap_or(base.monitor),
            device: self.device,
            subset: self.subset.or(base.subset),
            skip_bad_rows: self.data.skip_bad_rows || base.skip_bad_rows,
            init_from: self.init_from.clone().or(base.init_from),
        }
    }
}

fn print_result(metrics: &RunMetrics, run_dir: &RunDir) -> Result<()> {
    // Validation and test carry the run's test-time augmentation, if any; training never does.
    let tta = match metrics.val.tta.label() {
        "" => String::new(),
        label => format!(" (val and test with {label})"),
    };
    super::lines::say(&format!(
        "{}: kept epoch {} of {}; accuracy train {:.4}, val {:.4}{}{tta}; {:.1} s",
        metrics.model,
        metrics.best_epoch,
        metrics.epochs,
        metrics.train.accuracy,
        metrics.val.accuracy,
        metrics.test.as_ref().map(|t| format!(", test {:.4}", t.accuracy)).unwrap_or_default(),
        metrics.train_seconds
    ));
    super::lines::say(&format!("run directory: {}", run_dir.path.display()));
    Ok(())
}
