//! `ferkit tune SPACE.toml --data F ...`, `ferkit tune --status`, `ferkit tune-worker`

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use ferkit::error::Result;

use super::DataArgs;
use ferkit::training::Monitor;
use ferkit::tuning::runner::{TrialSettings, TuneOptions, tune};
use ferkit::tuning::worker::WorkerOptions;
use ferkit::tuning::{Acquisition, SearchSpace, Strategy};
use ferkit::util::device::DeviceKind;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum StrategyName {
    Bayesian,
    Random,
    Grid,
}

#[derive(Args, Debug)]
pub struct TuneArgs {
    /// A search-space TOML file (e.g. experiments/tune_cnn.toml).
    #[arg(required_unless_present = "status")]
    pub space: Option<PathBuf>,
    #[command(flatten)]
    pub data: DataArgs,
    #[arg(long, default_value_t = 5)]
    pub trials: usize,
    /// Epochs per trial.
    #[arg(long, default_value_t = 10)]
    pub epochs: usize,
    #[arg(long, value_enum, default_value_t = StrategyName::Bayesian)]
    pub strategy: StrategyName,
    /// Bayesian: the acquisition function.
    #[arg(long, value_parser = super::choice::<Acquisition>(), default_value = "ucb")]
    pub acquisition: Acquisition,
    /// Bayesian: random trials before the Gaussian process (default max(3 x dimensions, 3)).
    #[arg(long)]
    pub initial_points: Option<usize>,
    /// Bayesian UCB: exploration weight.
    #[arg(long, default_value_t = 2.6)]
    pub beta: f64,
    /// Grid: points standing for each Float range.
    #[arg(long, default_value_t = 5)]
    pub grid_float_points: usize,
    /// What the search optimises (and each trial keeps its checkpoint by).
    #[arg(long, value_parser = super::choice::<Monitor>(), default_value = "val_loss")]
    pub objective: Monitor,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// The search's folder (default: runs/tune-<space name>). Run the same command again to resume.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Trials trained at once on this machine, each in its own process. With --storage, 0 only
    /// makes (or checks) the study, for `ferkit tune-worker`s to run.
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// Keep the study in a database that workers on other machines share (`ferkit
    /// tune-worker`): `sqlite` alone (study.db in the search folder), sqlite:PATH, or
    /// postgresql://USER@HOST[:PORT]/DB. Without it the study is oracle.json in the search
    /// folder; a folder's oracle.json search is migrated into the database.
    #[arg(long, num_args = 0..=1, default_missing_value = "sqlite", value_name = "URL")]
    pub storage: Option<String>,
    /// The study's name in the database (default: the search space's name).
    #[arg(long)]
    pub study: Option<String>,
    /// Seconds a claimed trial stays this machine's without a renewal (renewed every third of it);
    /// a worker silent that long loses its trial to another.
    #[arg(long, default_value_t = ferkit::tuning::worker::DEFAULT_LEASE_SECONDS)]
    pub lease_seconds: f64,
    /// Print the study's trials table (status, objective, worker, attempts, lease) and exit;
    /// needs --storage and --study.
    #[arg(long, requires_all = ["storage", "study"])]
    pub status: bool,
    /// Use at most N rows of each split in every trial.
    #[arg(long)]
    pub subset: Option<usize>,
    #[arg(long, value_parser = super::choice::<DeviceKind>(), default_value = "cpu")]
    pub device: DeviceKind,
}

pub fn run(args: TuneArgs) -> Result<()> {
    if args.status {
        let (storage, study) = (args.storage.as_deref().unwrap_or_default(), args.study.as_deref().unwrap_or_default());
        let out = args.out.unwrap_or_else(|| PathBuf::from("runs").join(format!("tune-{study}")));
        print!("{}", ferkit::tuning::runner::study_status(storage, study, &out)?);
        return Ok(());
    }
    let space_path = args.space.expect("clap requires SPACE without --status");
    let space = SearchSpace::from_file(&space_path)?;
    let dims = space.dimensions();
    let strategy = match args.strategy {
        StrategyName::Bayesian => Strategy::Bayesian {
            initial_points: args.initial_points.unwrap_or((3 * dims).max(3)),
            acquisition: args.acquisition,
            beta: args.beta,
        },
        StrategyName::Random => Strategy::Random,
        StrategyName::Grid => Strategy::Grid { float_points: args.grid_float_points },
    };
    ferkit::ensure!(
        Config,
        !args.data.source().is_empty(),
        "no data given: use --data FILE_OR_FOLDER, or --train/--val/--test FILE"
    );
    let out = args.out.unwrap_or_else(|| PathBuf::from("runs").join(format!("tune-{}", space.name)));
    let settings = TrialSettings {
        epochs: args.epochs,
        objective: args.objective,
        seed: args.seed,
        device: args.device,
        subset: args.subset,
        skip_bad_rows: args.data.skip_bad_rows,
        data: args.data.source(),
    };
    ferkit::ensure!(
        Config @ "lease_seconds",
        args.lease_seconds.is_finite() && args.lease_seconds >= 1.0,
        "--lease-seconds must be at least 1 (got {})",
        args.lease_seconds
    );
    let options = TuneOptions {
        space,
        strategy,
        trials: args.trials,
        settings,
        out: out.clone(),
        workers: args.workers,
        storage: args.storage.clone(),
        study: args.study.clone(),
        lease_seconds: args.lease_seconds,
    };
    let progress = super::progress::TerminalProgress::default();
    if args.workers == 0 {
        let Some(storage) = &args.storage else {
            ferkit::bail!(Config @ "workers", "--workers 0 makes a study for other machines' workers: it needs --storage")
        };
        let (store, spec) = ferkit::tuning::runner::open_study(&options, &progress)?;
        super::lines::say(&format!(
            "study {} ready: {} trials; start workers with `ferkit tune-worker --storage {storage} --study {}`",
            store.describe(),
            spec.max_trials,
            options.study.clone().unwrap_or(spec.space.name.clone())
        ));
        return Ok(());
    }
    let best = tune(options, &progress)?;
    match best {
        Some(b) => {
            let epoch = b.best_epoch.map(|e| format!(" at epoch {e}")).unwrap_or_default();
            super::lines::say(&format!(
                "best trial {}: objective {:.4}{epoch}; values {}",
                b.trial,
                b.objective,
                serde_json::to_string(&b.values)?
            ));
            if let Some(acc) = b.test_accuracy {
                super::lines::say(&format!("best trial's test accuracy: {acc:.4}"));
            }
        }
        None => ferkit::bail!(
            Config,
            "no trial finished: every trial failed (each trial's train.log under {} says why; the table is {})",
            out.display(),
            out.join("trials.csv").display()
        ),
    }
    super::lines::say(&format!("trials table: {}", out.join("trials.csv").display()));
    Ok(())
}

#[derive(Args, Debug)]
pub struct TuneWorkerArgs {
    /// The study's database: sqlite:PATH or postgresql://USER@HOST[:PORT]/DB.
    #[arg(long, value_name = "URL")]
    pub storage: String,
    /// The study's name (as given to `ferkit tune --study`).
    #[arg(long)]
    pub study: String,
    /// This worker's folder for its trials' run directories (default: runs/tune-<study>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Trials this worker trains at once, each in its own process.
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// Seconds a claimed trial stays this worker's without a renewal (renewed every third of it).
    #[arg(long, default_value_t = ferkit::tuning::worker::DEFAULT_LEASE_SECONDS)]
    pub lease_seconds: f64,
}

pub fn run_worker(args: TuneWorkerArgs) -> Result<()> {
    ferkit::ensure!(
        Config @ "lease_seconds",
        args.lease_seconds.is_finite() && args.lease_seconds >= 1.0,
        "--lease-seconds must be at least 1 (got {})",
        args.lease_seconds
    );
    let out = args.out.unwrap_or_else(|| PathBuf::from("runs").join(format!("tune-{}", args.study)));
    let options = WorkerOptions { out: out.clone(), slots: args.workers.max(1), lease_seconds: args.lease_seconds };
    let finished = ferkit::tuning::runner::tune_worker(
        &args.storage,
        &args.study,
        options,
        &super::progress::TerminalProgress::default(),
    )?;
    super::lines::say(&format!(
        "worker done: {finished} trials finished here (runs in {}); the study's table: ferkit tune --status --storage {} --study {}",
        out.display(),
        args.storage,
        args.study
    ));
    Ok(())
}
