//! A search from end to end (`ferkit tune`, `ferkit tune-worker`, `ferkit tune --status`): opens
//! its study ([`open_study`]: in `oracle.json` or a database, checked against a saved one,
//! migrated from `oracle.json` into a database), lets the trial loop ([`super::worker`]) train
//! the trials, and writes the search's reports (trials table and plot, best trial and its
//! weights). The study's state is saved after every claim and result, so running the same
//! command again after an interruption re-runs only the trials that had not finished.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::error::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use super::oracle::{Direction, Oracle, Strategy, Trial, TrialStatus};
use super::space::SearchSpace;
use super::storage::{JsonStudy, StorageUrl};
use super::study::{StudySpec, StudyStorage, WorkerId};
use super::worker::{WorkerOptions, run_trials, trial_dir};
use crate::events::Events;
use crate::reporting::plots::plot_trials;
use crate::training::{Monitor, RunDir};
use crate::util::atomic::write_atomic;

pub use super::study::TrialSettings;

pub struct TuneOptions {
    pub space: SearchSpace,
    pub strategy: Strategy,
    pub trials: usize,
    pub settings: TrialSettings,
    /// The search's folder: trial run directories, reports, and `oracle.json` when `storage`
    /// is None.
    pub out: PathBuf,
    /// Trials trained at once on this machine, each in its own process.
    pub workers: usize,
    /// A database for the study ([`StorageUrl::parse`]); None keeps it in `out/oracle.json`.
    pub storage: Option<String>,
    /// The study's name in the database (default: the space's name).
    pub study: Option<String>,
    /// A claimed trial's lease, in seconds ([`WorkerOptions::lease_seconds`]).
    pub lease_seconds: f64,
}

/// A search's best trial, saved as `best.json` in the search folder.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BestTrial {
    pub trial: usize,
    pub values: super::space::Assignment,
    pub objective: f64,
    pub best_epoch: Option<usize>,
    pub run_dir: PathBuf,
    /// The test accuracy of the best trial's kept checkpoint (the trial was chosen on validation).
    pub test_accuracy: Option<f64>,
}

impl BestTrial {
    /// Reads a search folder's `best.json` (`path`). Errors name the file, and the line and
    /// field of a bad entry.
    pub fn read(path: &Path) -> Result<Self> {
        crate::run::metrics::read_json(path, "did the search finish a trial?")
    }
}

/// What a resumed search's options change, in words the user can act on; empty when nothing.
fn search_differences(saved: &StudySpec, wanted: &StudySpec) -> Result<Vec<String>> {
    let mut differences = Vec::new();
    if saved.space != wanted.space {
        differences.push("the search space differs".to_string());
    }
    if saved.strategy != wanted.strategy {
        let (was, now) = (serde_json::to_string(&saved.strategy)?, serde_json::to_string(&wanted.strategy)?);
        differences.push(format!("strategy was {was}, now {now}"));
    }
    if saved.max_trials != wanted.max_trials {
        differences.push(format!("trials was {}, now {}", saved.max_trials, wanted.max_trials));
    }
    if saved.settings != wanted.settings {
        // Line by line over the settings as they are saved, so the message names the field.
        let (was, now) = (toml::to_string(&saved.settings)?, toml::to_string(&wanted.settings)?);
        let only_in = |a: &str, b: &str| -> Vec<String> {
            a.lines().filter(|l| !l.trim().is_empty() && !b.lines().any(|m| m == *l)).map(str::to_string).collect()
        };
        differences.push(format!(
            "settings were `{}`, now `{}`",
            only_in(&was, &now).join(", "),
            only_in(&now, &was).join(", ")
        ));
    }
    Ok(differences)
}

/// Opens the search's study (a new one, the saved one when it matches, or an `oracle.json`
/// search in the folder migrated into the database) and returns its storage and spec.
///
/// Errors: the folder or storage holds a different search (the message names what differs),
/// the storage cannot be opened.
pub fn open_study(options: &TuneOptions, events: &dyn Events) -> Result<(Box<dyn StudyStorage>, StudySpec)> {
    let TuneOptions { space, strategy, trials, settings, out, storage, study, .. } = options;
    let mut settings = settings.clone();
    // Canonical data paths, so the same search (from `tune` or `reproduce`) resumes whatever
    // directory it is started from, and its trial processes read the same files.
    settings.data = settings.data.canonical();
    std::fs::create_dir_all(out).with_context(|| format!("{}: cannot create", out.display()))?;
    crate::util::atomic::remove_stale_temporaries(out, 2); // a killed search's half-written files
    let direction = match settings.objective {
        Monitor::ValLoss => Direction::Minimize,
        Monitor::ValAccuracy => Direction::Maximize,
    };
    let wanted = StudySpec {
        space: space.clone(),
        strategy: strategy.clone(),
        direction,
        max_trials: *trials,
        seed: settings.seed,
        settings,
    };
    let name = study.clone().unwrap_or_else(|| space.name.clone());
    let mut store: Box<dyn StudyStorage> = match storage {
        None => Box::new(JsonStudy::open(out)?),
        Some(url) => StorageUrl::parse(url, out)?.open(&name)?,
    };
    let differ = |saved: &StudySpec, place: String| -> Result<()> {
        let differences = search_differences(saved, &wanted)?;
        if !differences.is_empty() {
            bail!(Config @ "search_out", "{place} holds a different search ({})", differences.join("; "));
        }
        Ok(())
    };
    match store.spec()? {
        Some(saved) => {
            differ(&saved, store.describe())?;
            let trials = store.trials()?;
            let pending = trials.iter().filter(|t| t.trial.status == TrialStatus::Pending).count();
            events.note(&format!(
                "resuming {}: {} trials finished, {pending} to re-run or running",
                store.describe(),
                trials.len() - pending
            ));
        }
        None => match storage.as_ref().map(|_| JsonStudy::read(out)).transpose()?.flatten() {
            // A search this folder kept in oracle.json goes on in the database.
            Some((saved, saved_trials)) => {
                differ(&saved, out.join("oracle.json").display().to_string())?;
                store.create(&saved, &saved_trials)?;
                events.note(&format!(
                    "migrated {} ({} trials) into {}",
                    out.join("oracle.json").display(),
                    saved_trials.len(),
                    store.describe()
                ));
            }
            None => {
                if let Err(e) = store.create(&wanted, &[]) {
                    // Another `tune` made the same study a moment ago: join it if it is this one.
                    let Some(saved) = store.spec()? else { return Err(e) };
                    differ(&saved, store.describe())?;
                }
            }
        },
    }
    Ok((store, wanted))
}

/// Runs (or resumes) a search with `workers` trials at once on this machine; returns the best
/// trial. With a database storage, workers elsewhere (`ferkit tune-worker`) may share the work.
pub fn tune(options: TuneOptions, events: &dyn Events) -> Result<Option<BestTrial>> {
    let (mut store, spec) = open_study(&options, events)?;
    let out = options.out.clone();
    let search_start = Instant::now();
    let worker =
        WorkerOptions { out: out.clone(), slots: options.workers.max(1), lease_seconds: options.lease_seconds };
    // A long search shows its table as it goes, and leaves it behind when interrupted.
    let mut table = |store: &mut dyn StudyStorage| write_trials_table(&spec.oracle(trial_list(store)?), &out);
    table(store.as_mut())?;
    run_trials(store.as_mut(), &spec, &worker, events, &mut table)?;
    events.note(&format!("search finished in {:.0} s", search_start.elapsed().as_secs_f64()));
    let shared = options.storage.is_some();
    let best = write_reports(&spec.oracle(trial_list(store.as_mut())?), &out, !shared, events)?;
    crate::util::atomic::remove_stale_temporaries(&out, 2);
    Ok(best)
}

/// A worker on a study that `ferkit tune --storage` made: runs its trials until none is left
/// (`ferkit tune-worker`). Returns how many trials it finished.
///
/// Errors: no such study there (the message says how to make one), the storage fails.
pub fn tune_worker(storage: &str, study: &str, worker: WorkerOptions, events: &dyn Events) -> Result<usize> {
    std::fs::create_dir_all(&worker.out).with_context(|| format!("{}: cannot create", worker.out.display()))?;
    crate::util::atomic::remove_stale_temporaries(&worker.out, 2);
    let mut store = existing_storage(storage, &worker.out)?.open(study)?;
    let Some(spec) = store.spec()? else {
        bail!(Config @ "study",
            "{}: no study named {study}; make it with `ferkit tune SPACE.toml --data ... --storage {storage} --study {study} --workers 0`",
            store.describe()
        );
    };
    events.note(&format!("worker {} on {}", WorkerId::this_process().0, store.describe()));
    let out = worker.out.clone();
    let mut table = |store: &mut dyn StudyStorage| write_trials_table(&spec.oracle(trial_list(store)?), &out);
    let finished = run_trials(store.as_mut(), &spec, &worker, events, &mut table)?;
    crate::util::atomic::remove_stale_temporaries(&worker.out, 2);
    Ok(finished)
}

/// The trials table of study `study` in `storage`, as text: every trial's number, values,
/// status, objective, best epoch, seconds, holder (or finisher) and attempts, and for a
/// running trial the seconds its lease has left (`ferkit tune --status`).
pub fn study_status(storage: &str, study: &str, out: &Path) -> Result<String> {
    let mut store = existing_storage(storage, out)?.open(study)?;
    let Some(spec) = store.spec()? else { bail!(Config @ "study", "{}: no study named {study}", store.describe()) };
    let trials = store.trials()?;
    let now = super::storage::now_seconds();
    let names: Vec<String> = spec.space.params.iter().map(|p| p.name.clone()).collect();
    let mut rows = vec![
        [
            "trial".to_string(),
            "status".into(),
            "objective".into(),
            "epoch".into(),
            "seconds".into(),
            "worker".into(),
            "attempts".into(),
            "lease left".into(),
        ]
        .into_iter()
        .chain(names.iter().cloned())
        .collect::<Vec<String>>(),
    ];
    for t in &trials {
        let opt = |v: Option<String>| v.unwrap_or_else(|| "-".to_string());
        let mut row = vec![
            t.trial.id.to_string(),
            format!("{:?}", t.trial.status).to_lowercase(),
            opt(t.trial.objective.map(|v| format!("{v:.6}"))),
            opt(t.trial.best_epoch.map(|v| v.to_string())),
            opt(t.trial.seconds.map(|v| format!("{v:.1}"))),
            opt(t.worker.clone()),
            t.attempts.to_string(),
            opt((t.trial.status == TrialStatus::Pending)
                .then_some(t.lease_until)
                .flatten()
                .map(|u| format!("{:.0}s", u - now))),
        ];
        row.extend(names.iter().map(|n| t.trial.values.get(n).map(|v| v.to_string()).unwrap_or_default()));
        rows.push(row);
    }
    let widths: Vec<usize> =
        (0..rows[0].len()).map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
    let mut text = format!(
        "study {} in {}: {} of {} trials handed out, {} finished\n",
        study,
        store.describe(),
        trials.len(),
        spec.max_trials,
        trials.iter().filter(|t| t.trial.status != TrialStatus::Pending).count()
    );
    for r in rows {
        let cells: Vec<String> = r.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        text += cells.join("  ").trim_end();
        text.push('\n');
    }
    Ok(text)
}

/// `storage` parsed, for commands that read a study others made: a SQLite file must exist
/// (opening one would make an empty database at a mistyped path).
fn existing_storage(storage: &str, out: &Path) -> Result<StorageUrl> {
    let url = StorageUrl::parse(storage, out)?;
    if let StorageUrl::Sqlite(path) = &url {
        crate::ensure!(
            Config @ "storage",
            path.exists(),
            "{}: no such SQLite file (a study is made by `ferkit tune SPACE.toml --data ... --storage {storage} --study NAME`)",
            path.display()
        );
    }
    Ok(url)
}

fn trial_list(store: &mut dyn StudyStorage) -> Result<Vec<Trial>> {
    Ok(store.trials()?.into_iter().map(|t| t.trial).collect())
}

/// `trials.csv`, `trials.png`, `best.json` and `best_model.bpk` in the search folder.
fn write_reports(oracle: &Oracle, out: &Path, weights_here: bool, events: &dyn Events) -> Result<Option<BestTrial>> {
    write_trials_table(oracle, out)?;

    let Some(best) = oracle.best() else { return Ok(None) };
    let dir = trial_dir(out, best.id);
    let test_accuracy =
        crate::run::RunMetrics::read(&RunDir { path: dir.clone() }).ok().and_then(|m| m.test.map(|t| t.accuracy));
    let summary = BestTrial {
        trial: best.id,
        values: best.values.clone(),
        objective: best.objective.unwrap_or(f64::NAN),
        best_epoch: best.best_epoch,
        run_dir: dir.clone(),
        test_accuracy,
    };
    write_atomic(&out.join("best.json"), serde_json::to_string_pretty(&summary)?)?;
    if !weights_here && !dir.join("model.bpk").exists() {
        // A shared study's best trial may have trained on another machine.
        events.note(&format!(
            "best trial {} trained on another worker: its weights stay in that worker's folder",
            best.id
        ));
        return Ok(Some(summary));
    }
    let weights = std::fs::read(dir.join("model.bpk")).with_context(|| format!("{}: no weights", dir.display()))?;
    write_atomic(&out.join("best_model.bpk"), weights)?;
    Ok(Some(summary))
}

/// `trials.csv` and `trials.png`: every trial so far, rewritten as each one finishes.
fn write_trials_table(oracle: &Oracle, out: &Path) -> Result<()> {
    let names: Vec<String> = oracle.space.params.iter().map(|p| p.name.clone()).collect();
    let mut csv = format!("trial,{},objective,best_epoch,seconds,status\n", names.join(","));
    for t in &oracle.trials {
        let values: Vec<String> = names
            .iter()
            .map(|n| t.values.get(n).map(|v| v.to_string().replace(',', ";")).unwrap_or_default())
            .collect();
        let opt = |v: Option<String>| v.unwrap_or_default();
        csv += &format!(
            "{},{},{},{},{},{:?}\n",
            t.id,
            values.join(","),
            opt(t.objective.map(|v| format!("{v:.6}"))),
            opt(t.best_epoch.map(|v| v.to_string())),
            opt(t.seconds.map(|v| format!("{v:.1}"))),
            t.status
        );
    }
    write_atomic(&out.join("trials.csv"), csv)?;
    let points: Vec<(usize, Option<f64>)> = oracle.trials.iter().map(|t| (t.id, t.objective)).collect();
    plot_trials(&points, oracle.direction == Direction::Maximize, &out.join("trials.png"))
}
