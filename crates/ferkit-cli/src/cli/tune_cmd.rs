//! `ferkit tune SPACE.toml --data F ...`

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use ferkit::error::Result;

use super::DataArgs;
use ferkit::training::Monitor;
use ferkit::tuning::runner::{TrialSettings, TuneOptions, tune};
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
    pub space: PathBuf,
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
    /// Trials trained at once, each in its own process.
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// Use at most N rows of each split in every trial.
    #[arg(long)]
    pub subset: Option<usize>,
    #[arg(long, value_parser = super::choice::<DeviceKind>(), default_value = "cpu")]
    pub device: DeviceKind,
}

pub fn run(args: TuneArgs) -> Result<()> {
    let space = SearchSpace::from_file(&args.space)?;
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
    let best = tune(
        TuneOptions { space, strategy, trials: args.trials, settings, out: out.clone(), workers: args.workers },
        &super::progress::TerminalProgress::default(),
    )?;
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
