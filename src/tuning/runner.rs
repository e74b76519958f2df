//! The trial runner: takes trials from the oracle and trains each one with `ferkit train` in a
//! process of its own (up to `workers` at once), each in its own run directory under the
//! search's folder. The oracle's state is saved after every ask and tell, so running the same
//! command again after an interruption re-runs only the trials that had not finished.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use super::oracle::{Direction, Oracle, Strategy, Trial, TrialStatus};
use super::space::SearchSpace;
use super::trial_log::TrialLog;
use crate::data::DataSource;
use crate::events::Events;
use crate::models::{ModelSpec, NetSpec};
use crate::reporting::plots::plot_trials;
use crate::run::history::read_csv;
use crate::training::{Monitor, RunDir, TrainConfig};
use crate::util::atomic::write_atomic;
use crate::util::device::DeviceKind;

/// What every trial is trained with; saved beside the oracle so a resumed search must match.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrialSettings {
    pub epochs: usize,
    pub objective: Monitor,
    pub seed: u64,
    pub device: DeviceKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subset: Option<usize>,
    #[serde(default)]
    pub skip_bad_rows: bool,
    pub data: DataSource,
}

impl TrialSettings {
    /// The training config of a trial that trains `net` with batches of `batch_size`: the
    /// notebook's recipe ([`TrainConfig::notebook`]: Adam, constant rate, the net's own rate, no
    /// augmentation) with these settings' epochs, objective, seed, device, subset and data.
    pub fn train_config(&self, net: NetSpec, batch_size: usize) -> TrainConfig {
        let mut config = TrainConfig::notebook(ModelSpec::Layers(net), self.data.clone());
        config.epochs = self.epochs;
        config.batch_size = batch_size;
        config.monitor = self.objective;
        config.seed = self.seed;
        config.device = self.device;
        config.subset = self.subset;
        config.skip_bad_rows = self.skip_bad_rows;
        config
    }
}

pub struct TuneOptions {
    pub space: SearchSpace,
    pub strategy: Strategy,
    pub trials: usize,
    pub settings: TrialSettings,
    pub out: PathBuf,
    pub workers: usize,
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

struct Running {
    trial: Trial,
    child: Child,
    log: TrialLog,
    started: Instant,
}

/// What a resumed search's options change, in words the user can act on; empty when nothing.
fn search_differences(
    oracle: &Oracle,
    saved: &TrialSettings,
    space: &SearchSpace,
    strategy: &Strategy,
    trials: usize,
    settings: &TrialSettings,
) -> Result<Vec<String>> {
    let mut differences = Vec::new();
    if oracle.space != *space {
        differences.push("the search space differs".to_string());
    }
    if oracle.strategy != *strategy {
        let (was, now) = (serde_json::to_string(&oracle.strategy)?, serde_json::to_string(strategy)?);
        differences.push(format!("strategy was {was}, now {now}"));
    }
    if oracle.max_trials != trials {
        differences.push(format!("trials was {}, now {trials}", oracle.max_trials));
    }
    if saved != settings {
        // Line by line over the settings as they are saved, so the message names the field.
        let (was, now) = (toml::to_string(saved)?, toml::to_string(settings)?);
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

fn trial_dir(out: &Path, id: usize) -> PathBuf {
    out.join(format!("trial_{id:03}"))
}

/// Runs (or resumes) a search; returns the best trial.
pub fn tune(options: TuneOptions, events: &dyn Events) -> Result<Option<BestTrial>> {
    let TuneOptions { space, strategy, trials, mut settings, out, workers } = options;
    // Canonical data paths, so the same search (from `tune` or `reproduce`) resumes whatever
    // directory it is started from, and its trial processes read the same files.
    settings.data = settings.data.canonical();
    std::fs::create_dir_all(&out).with_context(|| format!("{}: cannot create", out.display()))?;
    crate::util::atomic::remove_stale_temporaries(&out, 2); // a killed search's half-written files
    let state_path = out.join("oracle.json");
    let settings_path = out.join("settings.toml");
    let direction = match settings.objective {
        Monitor::ValLoss => Direction::Minimize,
        Monitor::ValAccuracy => Direction::Maximize,
    };
    let mut oracle = if state_path.exists() {
        let oracle = Oracle::load(&state_path)?;
        let saved: TrialSettings = toml::from_str(&std::fs::read_to_string(&settings_path).unwrap_or_default())
            .with_context(|| format!("{}: missing or unreadable", settings_path.display()))?;
        let differences = search_differences(&oracle, &saved, &space, &strategy, trials, &settings)?;
        if !differences.is_empty() {
            bail!(Config @ "search_out",
                "{} holds a different search ({})",
                out.display(),
                differences.join("; ")
            );
        }
        let done = oracle.trials.iter().filter(|t| t.status != TrialStatus::Pending).count();
        events.note(&format!(
            "resuming {}: {done} trials finished, {} to re-run",
            out.display(),
            oracle.pending().len()
        ));
        oracle
    } else {
        write_atomic(&settings_path, toml::to_string(&settings)?)?;
        Oracle::new(space, strategy, direction, trials, settings.seed)
    };
    oracle.save(&state_path)?;

    let exe = std::env::current_exe().context("cannot find the ferkit executable")?;
    let mut queue: VecDeque<Trial> = oracle.pending().into();
    let mut running: Vec<Running> = Vec::new();
    let search_start = Instant::now();
    loop {
        while running.len() < workers.max(1) {
            let trial = match queue.pop_front() {
                Some(t) => t,
                None => match oracle.ask() {
                    Some(t) => {
                        oracle.save(&state_path)?;
                        t
                    }
                    None => break,
                },
            };
            let mut child = start_trial(&exe, &oracle.space, &trial, &settings, &out)?;
            let log = TrialLog::attach(&mut child, &trial_dir(&out, trial.id).join("train.log"))?;
            events.note(&format!("trial {} started: {}", trial.id, serde_json::to_string(&trial.values)?));
            running.push(Running { trial, child, log, started: Instant::now() });
        }
        if running.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
        let mut i = 0;
        while i < running.len() {
            let status = running[i].child.try_wait().context("cannot watch a trial process")?;
            let Some(status) = status else {
                i += 1;
                continue;
            };
            let done = running.swap_remove(i);
            if let Err(e) = done.log.finish() {
                events.note(&format!("trial {}: its log is incomplete: {e:#}", done.trial.id));
            }
            let seconds = done.started.elapsed().as_secs_f64();
            let dir = trial_dir(&out, done.trial.id);
            let result = if status.success() { trial_result(&dir, settings.objective) } else { None };
            match result {
                Some((objective, epoch)) => {
                    oracle.tell(done.trial.id, Some(objective), Some(epoch), Some(seconds));
                    events.note(&format!(
                        "trial {} finished: {objective:.4} at epoch {epoch}, {seconds:.0} s",
                        done.trial.id
                    ));
                }
                None => {
                    oracle.tell(done.trial.id, None, None, Some(seconds));
                    events.note(&format!(
                        "trial {} FAILED ({status}); see {}",
                        done.trial.id,
                        dir.join("train.log").display()
                    ));
                }
            }
            oracle.save(&state_path)?;
            // A long search shows its table as it goes, and leaves it behind when interrupted.
            write_trials_table(&oracle, &out)?;
        }
    }
    events.note(&format!("search finished in {:.0} s", search_start.elapsed().as_secs_f64()));
    let best = write_reports(&oracle, &out)?;
    crate::util::atomic::remove_stale_temporaries(&out, 2);
    Ok(best)
}

fn start_trial(exe: &Path, space: &SearchSpace, trial: &Trial, settings: &TrialSettings, out: &Path) -> Result<Child> {
    let dir = trial_dir(out, trial.id);
    std::fs::create_dir_all(&dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    let net = space.net_for(&trial.values)?;
    let net_path = dir.join("net.toml");
    write_atomic(&net_path, net.to_toml())?;
    let mut cmd = Command::new(exe);
    // A trial that a killed search left after some epochs goes on from its checkpoint.
    let run = RunDir { path: dir.clone() };
    if run.has_checkpoint() && run.config().exists() && !run.metrics().exists() {
        cmd.arg("train").arg("--resume").arg(&dir);
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        die_with_parent(&mut cmd);
        return cmd.spawn().with_context(|| format!("cannot resume trial {}", trial.id));
    }
    // The trial's whole training config, written out and trained as it is (`ferkit train
    // --config`), so that what a trial trains is never rebuilt from flags.
    let config_path = dir.join("trial.toml");
    write_atomic(&config_path, settings.train_config(net, space.batch_size).to_toml())?;
    cmd.arg("train").arg("--config").arg(&config_path).arg("--out").arg(&dir).arg("--overwrite");
    // Its output goes through pipes into train.log ([`TrialLog`]: whole lines only).
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    die_with_parent(&mut cmd);
    cmd.spawn().with_context(|| format!("cannot start trial {}", trial.id))
}

/// A trial process must not outlive the search that started it: a killed search would leave
/// it writing into a trial folder that the resumed search is about to run again.
#[cfg(target_os = "linux")]
fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe and touches only the new process's own settings.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn die_with_parent(_cmd: &mut Command) {}

/// The objective of a finished trial, from its history: the best validation loss (or accuracy)
/// and the epoch it came at.
fn trial_result(dir: &Path, objective: Monitor) -> Option<(f64, usize)> {
    let history = read_csv(&dir.join("history.csv")).ok()?;
    let pick = |r: &crate::run::history::EpochRecord| match objective {
        Monitor::ValLoss => r.val_loss,
        Monitor::ValAccuracy => -r.val_accuracy,
    };
    let best = history.iter().filter(|r| pick(r).is_finite()).min_by(|a, b| pick(a).total_cmp(&pick(b)))?;
    let value = match objective {
        Monitor::ValLoss => best.val_loss,
        Monitor::ValAccuracy => best.val_accuracy,
    };
    Some((value, best.epoch))
}

/// `trials.csv`, `trials.png`, `best.json` and `best_model.bpk` in the search folder.
fn write_reports(oracle: &Oracle, out: &Path) -> Result<Option<BestTrial>> {
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
