//! `ferkit reproduce`: the whole notebook study in one command, step by step, each step's
//! results in its own folder. A finished step is recognised by its result files and kept, so
//! running the command again resumes where it stopped. The report is written at the end from
//! those files ([`report`]); the notebook's nets, recipe and figures are in [`notebook`].

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::error::{Context, Result};

use crate::data::augment::AugmentConfig;
use crate::data::{DataSource, Dataset, LoadOptions};
use crate::detection::DetectOptions;
use crate::events::Events;
use crate::models::{ModelSpec, resolve};
use crate::prediction::output::{describe_setup, photos_in, predict_photos, write_tables};
use crate::prediction::{CascadeDetector, EmotionClassifier};
use crate::reporting::plots::{augment_preview, face_grid};

use crate::reporting::table::stats_json;
use crate::training::{Monitor, RunDir, TrainConfig, resume, train};
use crate::tuning::runner::{TrialSettings, TuneOptions, tune};
use crate::tuning::{SearchSpace, Strategy};
use crate::util::atomic::write_atomic;
use crate::util::device::DeviceKind;

pub mod notebook;
pub mod plan;
pub mod report;

use notebook::TUNE_SPACE;
pub use notebook::{NOTEBOOK_AUGMENTATION, NOTEBOOK_NETS};
use plan::{StudyPlan, Work};
use report::write_report;

pub struct ReproduceOptions {
    pub data: DataSource,
    pub out: PathBuf,
    /// A small subset and one epoch per step: the whole pipeline in a few minutes.
    pub quick: bool,
    pub seed: u64,
    /// ImageNet EfficientNet-Lite0 weights for the transfer step and the `fast` preset (both
    /// skipped without them).
    pub weights: Option<PathBuf>,
    pub workers: usize,
    /// Where the study's progress goes (the CLI's bar and notes).
    pub events: std::sync::Arc<dyn Events>,
    pub device: DeviceKind,
    /// A folder of photos and the Haar cascade that finds their faces, for the last step: the
    /// final model pointed at real photos (skipped without them).
    pub photos: Option<(PathBuf, PathBuf)>,
    /// Also train the `fast` training preset ([`FAST_PRESET`], with the ImageNet weights) after
    /// the notebook's steps: the report's "beyond the notebook" row.
    pub beyond: bool,
}

/// The training preset of the study's last training step, "beyond the notebook".
pub const FAST_PRESET: &str = "fast";

/// Epochs, batch and data size for each step, full or quick.
struct Recipe {
    subset: Option<usize>,
    net_epochs: usize,
    net_batch: Option<usize>,
    tune_trials: usize,
    tune_epochs: usize,
    tune_initial_points: Option<usize>,
    transfer_epochs: usize,
    augment_epochs: usize,
    /// Epochs of the `fast` preset (None: the preset's own).
    fast_epochs: Option<usize>,
}

impl Recipe {
    fn new(quick: bool) -> Recipe {
        if quick {
            Recipe {
                subset: Some(600),
                net_epochs: 1,
                net_batch: Some(64),
                tune_trials: 2,
                tune_epochs: 1,
                tune_initial_points: Some(1),
                transfer_epochs: 1,
                augment_epochs: 1,
                fast_epochs: Some(1),
            }
        } else {
            // The notebook: 20 epochs per net; 5 trials of 10 epochs; augmentation 10 epochs.
            // Transfer: 8 epochs of EfficientNet-Lite0 at batch 64, the recipe measured in the
            // README (its validation loss was lowest at epoch 6).
            Recipe {
                subset: None,
                net_epochs: 20,
                net_batch: None,
                tune_trials: 5,
                tune_epochs: 10,
                tune_initial_points: None,
                transfer_epochs: 8,
                augment_epochs: 10,
                fast_epochs: None,
            }
        }
    }
}

pub fn reproduce(options: &ReproduceOptions) -> Result<()> {
    let recipe = Recipe::new(options.quick);
    std::fs::create_dir_all(&options.out).with_context(|| format!("{}: cannot create", options.out.display()))?;
    crate::util::atomic::remove_stale_temporaries(&options.out, 3); // a killed reproduction's half-written files
    let start = Instant::now();
    let (dataset, report) = options.data.load(LoadOptions::default())?;
    // Each trial of the search loads the data again in a process of its own.
    let load_seconds = start.elapsed().as_secs_f64();
    let events = &*options.events;
    events.note(&report.describe());
    let dataset = match recipe.subset {
        Some(n) => dataset.subsample(n, options.seed),
        None => dataset,
    };

    let (recipe, dataset) = (&recipe, &dataset);
    // Every step with its work, so that the whole study's cost is known before it starts.
    let sizes = (dataset.train.len(), dataset.val.len(), dataset.test.len());
    // `runs` training runs of one of `nets` (a search's trials: several stand for them), each
    // after `setup_seconds` of its own.
    let work = |nets: Vec<ModelSpec>, runs: usize, epochs: usize, batch: usize, setup_seconds: f64| Work::Train {
        nets,
        runs,
        epochs,
        batch,
        train: sizes.0,
        val: sizes.1,
        test: sizes.2,
        setup_seconds,
    };
    let train_work = |config: &TrainConfig| work(vec![config.model.clone()], 1, config.epochs, config.batch_size, 0.0);
    let done = |dir: &Path| dir.join("metrics.json").exists();
    let mut steps: Vec<(String, Work, bool, StepFn)> = Vec::new();
    steps.push((
        "data".into(),
        Work::Small,
        false,
        Box::new(|| data_step(&dataset, &options.out.join("data"), options.seed)),
    ));
    for name in NOTEBOOK_NETS {
        let mut config = TrainConfig::notebook(resolve(name)?, options.data.clone());
        config.epochs = recipe.net_epochs;
        config.batch_size = recipe.net_batch.unwrap_or(config.batch_size);
        let dir = options.out.join("nets").join(name);
        let planned = train_work(&config);
        let run = move || train_step(config, options, &recipe, &dataset, &dir);
        steps.push((format!("train {name}"), planned, done(&options.out.join("nets").join(name)), Box::new(run)));
    }
    // The search's trials (and the augmented run of the best) are nets not known in advance:
    // three points of the space stand for them.
    let space = SearchSpace::from_toml(TUNE_SPACE, "experiments/tune_cnn.toml")?;
    let samples = [0.25, 0.5, 0.75]
        .iter()
        .map(|&p| Ok(ModelSpec::Layers(space.net_for(&space.decode(&vec![p; space.dimensions()]))?)))
        .collect::<Result<Vec<_>>>()?;
    let tune_batch =
        recipe.net_batch.unwrap_or(TrainConfig::notebook(samples[0].clone(), options.data.clone()).batch_size);
    let trials_done = (0..recipe.tune_trials).filter(|i| done(&options.out.join(format!("tune/trial_{i:03}")))).count();
    let search_work =
        |runs: usize, epochs: usize, setup_seconds: f64| work(samples.clone(), runs, epochs, tune_batch, setup_seconds);
    steps.push((
        "tune".into(),
        search_work(recipe.tune_trials - trials_done, recipe.tune_epochs, load_seconds),
        trials_done == recipe.tune_trials && options.out.join("tune/best.json").exists(),
        Box::new(|| tune_step(options, &recipe)),
    ));
    match &options.weights {
        Some(weights) if weights.exists() => {
            let ModelSpec::Transfer(mut spec) = resolve(crate::models::registry::TRANSFER_PRESET)? else {
                unreachable!("the transfer preset is a transfer model")
            };
            spec.weights = Some(weights.clone());
            let mut config = TrainConfig::notebook(ModelSpec::Transfer(spec), options.data.clone());
            config.epochs = recipe.transfer_epochs;
            config.batch_size = recipe.net_batch.unwrap_or(64);
            let planned = train_work(&config);
            let dir = options.out.join("transfer");
            let already = done(&dir);
            steps.push((
                "transfer".into(),
                planned,
                already,
                Box::new(move || train_step(config, options, &recipe, &dataset, &dir)),
            ));
        }
        _ => events.note(&format!("step transfer: skipped, {}", missing_weights(options.weights.as_deref()))),
    }
    steps.push((
        "augment".into(),
        search_work(1, recipe.augment_epochs, 0.0),
        done(&options.out.join("augmented")),
        Box::new(|| augment_step(options, &recipe, &dataset)),
    ));
    match &options.weights {
        Some(weights) if options.beyond && weights.exists() => {
            let preset = crate::training::training_preset(FAST_PRESET).expect("the fast preset exists");
            let mut config = preset.recipe().config(preset.model(Some(weights.clone()))?, options.data.clone())?;
            config.epochs = recipe.fast_epochs.unwrap_or(config.epochs);
            let planned = train_work(&config);
            let dir = options.out.join(FAST_PRESET);
            let already = done(&dir);
            steps.push((
                format!("{FAST_PRESET} preset"),
                planned,
                already,
                Box::new(move || train_step(config, options, &recipe, &dataset, &dir)),
            ));
        }
        _ if !options.beyond => {}
        _ => events.note(&format!(
            "step {FAST_PRESET} preset (beyond the notebook): skipped, {}",
            missing_weights(options.weights.as_deref())
        )),
    }
    match &options.photos {
        Some((photos, cascade)) => steps.push((
            "photos".into(),
            Work::Small,
            options.out.join("photos/predictions.json").exists(),
            Box::new(move || photos_step(&options.out, photos, cascade)),
        )),
        None => events.note(
            "step photos: skipped, no photos or Haar cascade given (e.g. ../shared/data/photos and ../shared/models/haarcascade_frontalface_default.xml)",
        ),
    }

    let mut plan =
        StudyPlan::new(steps.iter().map(|(name, work, done, _)| (name.clone(), work.clone(), *done)).collect());
    events.note("study plan: measuring each net's speed on this machine ...");
    plan.measure(if options.quick { 1 } else { 2 }, &options.device.device()?, &options.out)?;
    events.note(&plan.describe());
    for (index, (name, _, _, run)) in steps.into_iter().enumerate() {
        events.note(&plan.progress(index));
        let seconds = step(events, &name, run)?;
        plan.finished(index, seconds, &options.out)?;
    }
    write_report(&options.out, options.quick)?;
    crate::util::atomic::remove_stale_temporaries(&options.out, 3);
    events.note(&format!(
        "reproduction finished in {:.0} s; report: {}",
        start.elapsed().as_secs_f64(),
        options.out.join("report.html").display()
    ));
    Ok(())
}

/// Why a step that needs the ImageNet weights is skipped.
fn missing_weights(given: Option<&Path>) -> String {
    match given {
        Some(path) => format!("the ImageNet weights file {} does not exist", path.display()),
        None => {
            "no ImageNet weights given (EfficientNet-Lite0's, e.g. ../shared/models/efficientnet-lite0-57934424.pth)"
                .into()
        }
    }
}

/// A step of the study, run once.
type StepFn<'a> = Box<dyn FnOnce() -> Result<()> + 'a>;

/// Runs a step, saying so; a step that finds its results already there returns at once.
/// Returns its wall time in seconds.
fn step(events: &dyn Events, name: &str, run: impl FnOnce() -> Result<()>) -> Result<f64> {
    let start = Instant::now();
    events.note(&format!("step {name}: ..."));
    run().with_context(|| format!("step {name}"))?;
    let seconds = start.elapsed().as_secs_f64();
    events.note(&format!("step {name}: done ({seconds:.0} s)"));
    Ok(seconds)
}

fn data_step(dataset: &Dataset, dir: &Path, seed: u64) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    write_atomic(&dir.join("stats.json"), serde_json::to_string_pretty(&stats_json(dataset))?)?;
    face_grid(&dataset.train, 2, &dir.join("grid.png"))?;
    augment_preview(
        &dataset.train,
        &AugmentConfig::parse(NOTEBOOK_AUGMENTATION)?,
        seed,
        &dir.join("augment_preview.png"),
    )
}

/// Trains one run unless its metrics are already there; a run stopped after some epochs goes on
/// from its checkpoint.
fn train_step(
    mut config: TrainConfig,
    options: &ReproduceOptions,
    recipe: &Recipe,
    dataset: &Dataset,
    dir: &Path,
) -> Result<()> {
    if dir.join("metrics.json").exists() {
        options.events.note(&format!("  {} already trained, kept", dir.display()));
        return Ok(());
    }
    config.seed = options.seed;
    config.device = options.device;
    config.subset = recipe.subset;
    if let Ok(run) = RunDir::open(dir)
        && run.has_checkpoint()
        && run.load_config().is_ok_and(|saved| saved == config)
    {
        resume(&run, dataset, &*options.events)?;
        return Ok(());
    }
    let run = RunDir::create(dir, true)?;
    train(&config, dataset, &run, &*options.events)?;
    Ok(())
}

fn tune_step(options: &ReproduceOptions, recipe: &Recipe) -> Result<()> {
    let space = SearchSpace::from_toml(TUNE_SPACE, "experiments/tune_cnn.toml")?;
    let dims = space.dimensions();
    let strategy = match (Strategy::bayesian(dims), recipe.tune_initial_points) {
        (Strategy::Bayesian { acquisition, beta, .. }, Some(n)) => {
            Strategy::Bayesian { initial_points: n, acquisition, beta }
        }
        (s, _) => s,
    };
    tune(
        TuneOptions {
            space,
            strategy,
            trials: recipe.tune_trials,
            settings: TrialSettings {
                epochs: recipe.tune_epochs,
                objective: Monitor::ValLoss,
                seed: options.seed,
                device: options.device,
                subset: recipe.subset,
                skip_bad_rows: false,
                data: options.data.clone(),
            },
            out: options.out.join("tune"),
            workers: options.workers,
            storage: None,
            study: None,
            lease_seconds: crate::tuning::worker::DEFAULT_LEASE_SECONDS,
        },
        &*options.events,
    )?;
    Ok(())
}

/// The best tuned net, continued with the notebook's augmentation.
fn augment_step(options: &ReproduceOptions, recipe: &Recipe, dataset: &Dataset) -> Result<()> {
    let best_dir = crate::tuning::runner::BestTrial::read(&options.out.join("tune/best.json"))?.run_dir;
    let best_config = RunDir::open(&best_dir)?.load_config()?;
    let mut config = TrainConfig::notebook(best_config.model, options.data.clone());
    config.epochs = recipe.augment_epochs;
    config.batch_size = best_config.batch_size;
    config.init_from = Some(best_dir);
    config.augment = Some(AugmentConfig::parse(NOTEBOOK_AUGMENTATION)?);
    train_step(config, options, recipe, dataset, &options.out.join("augmented"))
}

/// The final model (tuned net + augmentation) on real photos: faces found with the cascade,
/// each photo marked, predictions.json and .csv in `photos/`.
fn photos_step(out: &Path, photos: &Path, cascade: &Path) -> Result<()> {
    let dir = out.join("photos");
    if dir.join("predictions.json").exists() {
        return Ok(());
    }
    let run_dir = out.join("augmented");
    let classifier = EmotionClassifier::from_run(&run_dir)?;
    let finder = CascadeDetector::load(cascade, DetectOptions::default())?;
    let paths = photos_in(photos)?;
    crate::ensure!(BadInput, !paths.is_empty(), "{}: no PNG or JPEG photos", photos.display());
    let (results, failures) = predict_photos(&classifier, &finder, &paths, Some(&dir), true, |_| {}, |_| {})?;
    write_tables(&dir, describe_setup(&classifier, &finder), &results, &failures)
}
