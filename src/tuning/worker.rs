//! The trial loop of one worker process (`ferkit tune`, `ferkit tune-worker`): claims trials
//! from a study's storage, trains each one with `ferkit train` in a process of its own (up to
//! `slots` at once) in its run directory under the worker's folder, renews the leases while they
//! train, and reports each result. Ends when the study has no trial left to hand out and this
//! worker's own trials have finished.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::oracle::Trial;
use super::space::SearchSpace;
use super::study::{Claim, StudySpec, StudyStorage, TrialOutcome, WorkerId};
use super::trial_log::TrialLog;
use crate::error::{Context, Result};
use crate::events::Events;
use crate::run::history::read_csv;
use crate::training::{Monitor, RunDir};
use crate::util::atomic::write_atomic;

/// A claimed trial's lease when none is given, in seconds: renewed every 20 s, so a worker
/// must be silent for a minute (a dead machine, a lost network) before its trial goes to
/// another.
pub const DEFAULT_LEASE_SECONDS: f64 = 60.0;

/// How a worker runs its trials.
#[derive(Clone, Debug)]
pub struct WorkerOptions {
    /// The folder that holds this worker's trial run directories (`trial_NNN`).
    pub out: PathBuf,
    /// Trials trained at once, each in its own process.
    pub slots: usize,
    /// How long a claimed trial stays this worker's without a renewal, in seconds; leases are
    /// renewed every third of it.
    pub lease_seconds: f64,
}

struct Running {
    trial: Trial,
    child: Child,
    log: TrialLog,
    started: Instant,
}

/// A trial's run directory under a worker's folder.
pub fn trial_dir(out: &Path, id: usize) -> PathBuf {
    out.join(format!("trial_{id:03}"))
}

/// Runs trials of the study in `storage` (whose spec is `spec`) until none is left; calls
/// `after_each` after every finished trial (the search's table). Returns how many trials this
/// worker finished.
///
/// Errors: the storage fails (its message names it), a trial process cannot be started.
pub fn run_trials(
    storage: &mut dyn StudyStorage,
    spec: &StudySpec,
    options: &WorkerOptions,
    events: &dyn Events,
    after_each: &mut dyn FnMut(&mut dyn StudyStorage) -> Result<()>,
) -> Result<usize> {
    let WorkerOptions { out, slots, lease_seconds } = options;
    let me = WorkerId::this_process();
    let exe = std::env::current_exe().context("cannot find the ferkit executable")?;
    let mut running: Vec<Running> = Vec::new();
    let mut finished = 0;
    let mut last_renewal = Instant::now();
    let renew_every = Duration::from_secs_f64((lease_seconds / 3.0).max(0.05));
    loop {
        // Renewals first: a worker that was held up (a busy database, a suspended machine)
        // keeps its trials before it asks for more.
        if last_renewal.elapsed() >= renew_every {
            last_renewal = Instant::now();
            renew_or_drop(storage, &me, *lease_seconds, &mut running, events)?;
        }
        let mut others_hold_trials = false;
        let mut study_done = false;
        while running.len() < (*slots).max(1) {
            match storage.claim(&me, *lease_seconds)? {
                Claim::Trial(trial) => {
                    let mut child = start_trial(&exe, &spec.space, &trial, spec, out)?;
                    let log = TrialLog::attach(&mut child, &trial_dir(out, trial.id).join("train.log"))?;
                    events.note(&format!("trial {} started: {}", trial.id, serde_json::to_string(&trial.values)?));
                    running.push(Running { trial, child, log, started: Instant::now() });
                }
                Claim::Wait => {
                    others_hold_trials = true;
                    break;
                }
                Claim::Done => {
                    study_done = true;
                    break;
                }
            }
        }
        if running.is_empty() && study_done {
            break;
        }
        // Nothing of ours runs and the rest is held by others: ask again, as one of their
        // leases may run out.
        let pause = if running.is_empty() && others_hold_trials {
            renew_every.min(Duration::from_secs(2))
        } else {
            Duration::from_millis(200)
        };
        std::thread::sleep(pause);
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
            let dir = trial_dir(out, done.trial.id);
            let result = if status.success() { trial_result(&dir, spec.settings.objective) } else { None };
            let outcome = TrialOutcome { objective: result.map(|r| r.0), best_epoch: result.map(|r| r.1), seconds };
            if !storage.finish(done.trial.id, &me, outcome)? {
                events.note(&format!(
                    "trial {} finished after its lease was lost: its result is not recorded (another worker's counts)",
                    done.trial.id
                ));
                continue;
            }
            finished += 1;
            match result {
                Some((objective, epoch)) => events.note(&format!(
                    "trial {} finished: {objective:.4} at epoch {epoch}, {seconds:.0} s",
                    done.trial.id
                )),
                None => events.note(&format!(
                    "trial {} FAILED ({status}); see {}",
                    done.trial.id,
                    dir.join("train.log").display()
                )),
            }
            after_each(storage)?;
        }
    }
    Ok(finished)
}

/// Renews the lease of every trial in `running`; a trial whose lease went to another worker is
/// stopped and dropped.
fn renew_or_drop(
    storage: &mut dyn StudyStorage,
    me: &WorkerId,
    lease_seconds: f64,
    running: &mut Vec<Running>,
    events: &dyn Events,
) -> Result<()> {
    let mut i = 0;
    while i < running.len() {
        if storage.renew(running[i].trial.id, me, lease_seconds)? {
            i += 1;
            continue;
        }
        let mut lost = running.swap_remove(i);
        let _ = lost.child.kill();
        let _ = lost.child.wait();
        let _ = lost.log.finish();
        events.note(&format!("trial {}: lease lost (renewed too late); another worker has it now", lost.trial.id));
    }
    Ok(())
}

fn start_trial(exe: &Path, space: &SearchSpace, trial: &Trial, spec: &StudySpec, out: &Path) -> Result<Child> {
    let dir = trial_dir(out, trial.id);
    std::fs::create_dir_all(&dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    let net = space.net_for(&trial.values)?;
    let net_path = dir.join("net.toml");
    write_atomic(&net_path, net.to_toml())?;
    let mut cmd = Command::new(exe);
    // Its output goes through pipes into train.log ([`TrialLog`]: whole lines only).
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    die_with_parent(&mut cmd);
    // A trial that a killed worker left after some epochs goes on from its checkpoint.
    let run = RunDir { path: dir.clone() };
    if run.has_checkpoint() && run.config().exists() && !run.metrics().exists() {
        cmd.arg("train").arg("--resume").arg(&dir);
        return cmd.spawn().with_context(|| format!("cannot resume trial {}", trial.id));
    }
    // The trial's whole training config, written out and trained as it is (`ferkit train
    // --config`), so that what a trial trains is never rebuilt from flags.
    let config_path = dir.join("trial.toml");
    write_atomic(&config_path, spec.settings.train_config(net, space.batch_size).to_toml())?;
    cmd.arg("train").arg("--config").arg(&config_path).arg("--out").arg(&dir).arg("--overwrite");
    cmd.spawn().with_context(|| format!("cannot start trial {}", trial.id))
}

/// A trial process must not outlive the worker that started it: a killed worker would leave
/// it writing into a trial folder that the trial's next holder is about to run again.
#[cfg(target_os = "linux")]
fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: prctl and getppid are async-signal-safe and touch only the new process's own
    // settings.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // A worker killed between the fork and the line above sent no signal: the trial
            // would train on, orphaned, beside the one the resumed search starts in the same
            // folder. It stops here instead.
            if libc::getppid() != parent {
                // ESRCH (no such process): no allocation in the forked child.
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
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
