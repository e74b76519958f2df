//! `ferkit train MODEL --data F ...`

use std::path::PathBuf;

use super::progress::TerminalProgress;
use clap::Args;
use ferkit::error::Result;

use super::{DataArgs, load_data_reported};
use ferkit::data::LoadReport;
use ferkit::data::augment::AugmentConfig;
use ferkit::models::ModelSpec;
use ferkit::training::mix::MixConfig;
use ferkit::training::{
    LrSchedule, Monitor, OptimizerKind, RunDir, RunMetrics, TrainConfig, check_inputs, resume, train,
};
use ferkit::util::atomic::write_atomic;
use ferkit::util::device::DeviceKind;

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// A preset (fnn1..3, cnn1..3, vgg-lite) or a path to a net TOML file.
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
        "mixup", "cutmix",
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
        "mixup", "cutmix",
    ])]
    pub resume: Option<PathBuf>,
    #[command(flatten)]
    pub data: DataArgs,
    #[arg(long, default_value_t = 20)]
    pub epochs: usize,
    #[arg(long = "batch", default_value_t = 512)]
    pub batch_size: usize,
    /// The optimizer's learning rate (default: the net's own, as in the notebook); the peak of a schedule.
    #[arg(long, allow_negative_numbers = true)]
    pub lr: Option<f64>,
    /// The optimizer: adam (the notebook's, Keras' epsilon), adamw (decoupled weight decay),
    /// sgd or sgd-nesterov (momentum 0.9 unless --momentum says otherwise).
    #[arg(long, default_value = "adam")]
    pub optimizer: String,
    /// SGD's momentum (default 0.9).
    #[arg(long, allow_negative_numbers = true)]
    pub momentum: Option<f64>,
    /// Weight decay: decoupled for adamw (default 0.01), added to the gradient for sgd (default 0).
    #[arg(long, allow_negative_numbers = true)]
    pub weight_decay: Option<f64>,
    /// How the learning rate moves: constant (the notebook's), cosine (decay to zero by the last
    /// step, after --warmup-epochs of linear warm-up), one-cycle (PyTorch's OneCycleLR defaults),
    /// or plateau (x --plateau-factor after --plateau-patience epochs without a better --monitor figure).
    #[arg(long, default_value = "constant")]
    pub schedule: String,
    /// Epochs of linear warm-up before the cosine decay.
    #[arg(long, default_value_t = 0)]
    pub warmup_epochs: usize,
    /// Reduce-on-plateau's factor (default 0.5).
    #[arg(long, allow_negative_numbers = true)]
    pub plateau_factor: Option<f64>,
    /// Reduce-on-plateau's patience in epochs (default 5).
    #[arg(long)]
    pub plateau_patience: Option<usize>,
    /// Label smoothing of the loss, e.g. 0.1 (default 0: plain cross-entropy).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub label_smoothing: f64,
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
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Which validation figure picks the kept checkpoint.
    #[arg(long, value_parser = super::choice::<Monitor>(), default_value = "val_loss")]
    pub monitor: Monitor,
    /// Run directory (default: runs/<model>).
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
#[derive(clap::Args, Debug, Default)]
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
    if let Some(dir) = &args.resume {
        let run_dir = RunDir::open(dir)?;
        if run_dir.metrics().exists() {
            println!("{}: this run finished (metrics.json is there); nothing to resume", dir.display());
            return Ok(());
        }
        let (dataset, _) = load_config_data(&run_dir.load_config()?)?;
        let metrics = resume(&run_dir, &dataset, &TerminalProgress::default())?;
        return print_result(&metrics, &run_dir);
    }
    if let Some(path) = &args.config {
        let config = TrainConfig::load(path)?;
        let out = args.out.clone().unwrap_or_else(|| PathBuf::from("runs").join(config.model.name()));
        return start(config, out, args.overwrite);
    }
    let model = args.model.as_deref().expect("clap requires MODEL unless --resume or --config");
    if let Some(lr) = args.lr
        && !(lr > 0.0 && lr.is_finite())
    {
        ferkit::bail!(Config, "--lr must be a positive finite number (got {lr})");
    }
    let spec = args.transfer.apply(ferkit::models::resolve(model)?)?;
    let config = TrainConfig {
        epochs: args.epochs,
        batch_size: args.batch_size,
        learning_rate: args.lr.unwrap_or(spec.learning_rate()),
        schedule: LrSchedule::parse(&args.schedule, args.warmup_epochs, args.plateau_factor, args.plateau_patience)?,
        optimizer: OptimizerKind::parse(&args.optimizer, args.momentum, args.weight_decay)?,
        label_smoothing: args.label_smoothing,
        ema_decay: args.ema,
        mix: MixConfig::from_options(args.mixup, args.cutmix)?,
        seed: args.seed,
        monitor: args.monitor,
        device: args.device,
        subset: args.subset,
        skip_bad_rows: args.data.skip_bad_rows,
        init_from: args.init_from,
        data: args.data.source(),
        augment: args.augment.as_deref().map(AugmentConfig::parse).transpose()?,
        model: spec,
    };
    config.check_recipe()?;
    let out = args.out.unwrap_or_else(|| PathBuf::from("runs").join(config.model.name()));
    start(config, out, args.overwrite)
}

/// Trains `config` into a new run directory `out`, after everything that can fail early has
/// been checked (data, inputs, weights): a failed start leaves no run directory.
fn start(config: TrainConfig, out: PathBuf, overwrite: bool) -> Result<()> {
    // The data is read before the run directory is made: bad data leaves nothing behind.
    if !overwrite && std::fs::read_dir(&out).is_ok_and(|mut d| d.next().is_some()) {
        RunDir::create(&out, false)?; // refuses a folder that holds a run, saying why
    }
    let (dataset, report) = load_config_data(&config)?;
    check_inputs(&config, &dataset)?;
    config.model.build(&config.device.device()?)?; // weights that do not load fail here, not in the run
    let run_dir = RunDir::create(&out, overwrite)?;
    write_atomic(&run_dir.path.join("load_report.txt"), report.full())?;
    let metrics = train(&config, &dataset, &run_dir, &TerminalProgress::default())?;
    print_result(&metrics, &run_dir)
}

fn print_result(metrics: &RunMetrics, run_dir: &RunDir) -> Result<()> {
    println!(
        "{}: kept epoch {} of {}; accuracy train {:.4}, val {:.4}{}; {:.1} s",
        metrics.model,
        metrics.best_epoch,
        metrics.epochs,
        metrics.train.accuracy,
        metrics.val.accuracy,
        metrics.test.as_ref().map(|t| format!(", test {:.4}", t.accuracy)).unwrap_or_default(),
        metrics.train_seconds
    );
    println!("run directory: {}", run_dir.path.display());
    Ok(())
}

/// The data a config names, subsampled as it says, with the load report.
pub fn load_config_data(config: &TrainConfig) -> Result<(ferkit::data::Dataset, LoadReport)> {
    let (dataset, report) = load_data_reported(&config.data, config.skip_bad_rows)?;
    let dataset = match config.subset {
        Some(n) => dataset.subsample(n, config.seed),
        None => dataset,
    };
    Ok((dataset, report))
}
