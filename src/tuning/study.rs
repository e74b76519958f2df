//! A study: one search's fixed definition ([`StudySpec`]) and its trials, kept in a storage that
//! one or many workers share ([`StudyStorage`]), the shape of Optuna's studies and storages.
//!
//! Workers take trials under a **lease**: a claimed trial belongs to its worker until the lease's
//! end (the storage's clock, in seconds since 1970), which the worker pushes forward while the
//! trial trains ([`StudyStorage::renew`]). A worker that dies stops renewing; once its lease has
//! run out, the trial is handed out again ([`decide`]). A worker on the same machine whose
//! process is gone loses its leases at once. A result counts only from the worker holding the
//! lease, so every trial finishes exactly once. The decision of what to hand out is this
//! module's [`decide`], taken by every storage inside its own lock, so that two workers never
//! get the same trial or, through the oracle's `is_new`, the same point.

use serde::{Deserialize, Serialize};

use super::oracle::{Direction, Oracle, Strategy, Trial, TrialStatus};
use super::space::SearchSpace;
use crate::data::DataSource;
use crate::error::Result;
use crate::models::{ModelSpec, NetSpec};
use crate::training::{Monitor, TrainConfig};
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

/// What defines a search, fixed when the study is created: a worker reads it to know what to
/// train, and a `tune` started again must give the same.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StudySpec {
    pub space: SearchSpace,
    pub strategy: Strategy,
    pub direction: Direction,
    /// Trials handed out in all (`--trials`).
    pub max_trials: usize,
    /// Seeds the strategy's draws (per trial number) and every trial's training.
    pub seed: u64,
    pub settings: TrialSettings,
}

impl StudySpec {
    /// An oracle over this study's `trials`: what the strategy proposes from.
    pub fn oracle(&self, trials: Vec<Trial>) -> Oracle {
        let mut oracle =
            Oracle::new(self.space.clone(), self.strategy.clone(), self.direction, self.max_trials, self.seed);
        oracle.trials = trials;
        oracle
    }
}

/// A trial as a storage keeps it: the oracle's trial and who holds it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredTrial {
    pub trial: Trial,
    /// The worker ([`WorkerId`]) that holds (pending) or finished the trial; None for a pending
    /// trial nobody holds (one a stopped single-machine search left).
    pub worker: Option<String>,
    /// When the holder's lease ends, seconds since 1970 on the storage's clock.
    pub lease_until: Option<f64>,
    /// How many times the trial was handed out (more than 1 after a worker died).
    pub attempts: u32,
}

/// A worker's name in a study: `HOST/PID`. The host is the machine's name, or
/// `FERKIT_WORKER_HOST` when set (tests use it to stand for other machines).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerId(pub String);

impl WorkerId {
    /// This process's name.
    pub fn this_process() -> WorkerId {
        WorkerId(format!("{}/{}", this_host(), std::process::id()))
    }

    /// Whether the worker named `holder` is a process of this machine that no longer runs.
    fn is_gone_from_this_machine(holder: &str) -> bool {
        let Some((host, pid)) = holder.rsplit_once('/') else { return false };
        host == this_host() && pid.parse::<i32>().is_ok_and(|pid| !crate::util::atomic::process_runs(pid))
    }
}

fn this_host() -> String {
    if let Ok(host) = std::env::var("FERKIT_WORKER_HOST") {
        return host;
    }
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// What a worker gets when it asks for work.
#[derive(Clone, Debug, PartialEq)]
pub enum Claim {
    /// Train this trial (new, or handed out again); it is leased to the asking worker.
    Trial(Trial),
    /// Every trial is handed out and some are still held by live workers: ask again later
    /// (a lease may run out).
    Wait,
    /// Every trial has finished.
    Done,
}

/// What [`decide`] chose, for a storage to write.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// Hand out again the pending trial `id` (its holder is gone).
    Reclaim(usize),
    /// Hand out a new trial, proposed by the strategy.
    New(Trial),
    Wait,
    Done,
}

/// The one rule every storage applies, inside its lock, with `now` from its clock, for the
/// worker `asking`: a pending trial whose holder is gone (no holder, a lease that has run out, or
/// a dead process of this machine; never the asking worker itself) goes out again first, lowest number first; otherwise the strategy proposes a new
/// trial (pending trials count as the oracle says: their points are taken, and the Gaussian
/// process sees them as the worst result so far); otherwise wait while others hold trials.
pub fn decide(spec: &StudySpec, trials: &[StoredTrial], now: f64, asking: &WorkerId) -> Decision {
    let gone = |t: &StoredTrial| match (&t.worker, t.lease_until) {
        (None, _) | (_, None) => true,
        // The asking worker is alive: its own trial stays its own even when it renewed late
        // (handing it back would start the same trial twice in one folder).
        (Some(holder), _) if *holder == asking.0 => false,
        (Some(holder), Some(until)) => until < now || WorkerId::is_gone_from_this_machine(holder),
    };
    let pending = trials.iter().filter(|t| t.trial.status == TrialStatus::Pending);
    if let Some(t) = pending.clone().filter(|t| gone(t)).min_by_key(|t| t.trial.id) {
        return Decision::Reclaim(t.trial.id);
    }
    let mut oracle = spec.oracle(trials.iter().map(|t| t.trial.clone()).collect());
    if let Some(trial) = oracle.ask() {
        return Decision::New(trial);
    }
    if pending.count() > 0 { Decision::Wait } else { Decision::Done }
}

/// A finished trial's result as a worker reports it; `objective` None (or not finite) marks it
/// failed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TrialOutcome {
    pub objective: Option<f64>,
    pub best_epoch: Option<usize>,
    /// Wall time of the trial's process, in seconds.
    pub seconds: f64,
}

/// Where a study lives: a JSON file in the search folder ([`super::storage::JsonStudy`], one
/// process) or a database that many workers share ([`super::storage::SqlStudy`]: SQLite or
/// PostgreSQL). Every method is one atomic step of the storage.
pub trait StudyStorage {
    /// The saved spec, or None when the study does not exist yet.
    fn spec(&mut self) -> Result<Option<StudySpec>>;
    /// Creates the study with `spec` and, when given, the trials of an earlier search (a
    /// migrated `oracle.json`). Errors: a study of that name exists.
    fn create(&mut self, spec: &StudySpec, trials: &[Trial]) -> Result<()>;
    /// Hands `worker` its next trial under a lease of `lease_seconds` ([`decide`]).
    fn claim(&mut self, worker: &WorkerId, lease_seconds: f64) -> Result<Claim>;
    /// Pushes `worker`'s lease on trial `id` to now + `lease_seconds`; false when the worker no
    /// longer holds it (its lease ran out and the trial went to another worker).
    fn renew(&mut self, id: usize, worker: &WorkerId, lease_seconds: f64) -> Result<bool>;
    /// Records trial `id`'s result; false (nothing recorded) when `worker` no longer holds it.
    fn finish(&mut self, id: usize, worker: &WorkerId, outcome: TrialOutcome) -> Result<bool>;
    /// Every trial, in number order.
    fn trials(&mut self) -> Result<Vec<StoredTrial>>;
    /// Where the study is, for messages (a path or a URL without its password).
    fn describe(&self) -> String;
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn spec(max_trials: usize) -> StudySpec {
        let space = SearchSpace::from_toml(
            r#"
name = "s"
[[params]]
name = "units"
type = "int"
min = 8
max = 512
[net]
name = "n"
input = [2304]
[[net.layers]]
kind = "dense"
units = "$units"
activation = "relu"
[[net.layers]]
kind = "dense"
units = 7
activation = "softmax"
"#,
            "test",
        )
        .unwrap();
        StudySpec {
            space,
            strategy: Strategy::Random,
            direction: Direction::Minimize,
            max_trials,
            seed: 7,
            settings: TrialSettings {
                epochs: 1,
                objective: Monitor::ValLoss,
                seed: 7,
                device: DeviceKind::Cpu,
                subset: None,
                skip_bad_rows: false,
                data: DataSource::default(),
            },
        }
    }

    fn stored(trial: Trial, worker: Option<&str>, lease_until: Option<f64>) -> StoredTrial {
        StoredTrial { trial, worker: worker.map(str::to_string), lease_until, attempts: 1 }
    }

    #[test]
    fn expired_or_unheld_trials_go_out_again_before_new_ones_and_live_leases_make_others_wait() {
        let spec = spec(2);
        let asker = WorkerId("asker/1".to_string());
        let decide = |trials: &[StoredTrial], now: f64| decide(&spec, trials, now, &asker);
        let mut oracle = spec.oracle(Vec::new());
        let (t0, t1) = (oracle.ask().unwrap(), oracle.ask().unwrap());
        // Both held by a live worker elsewhere: nothing new (2 of 2 handed out), so wait.
        let live = [
            stored(t0.clone(), Some("elsewhere/1"), Some(100.0)),
            stored(t1.clone(), Some("elsewhere/2"), Some(100.0)),
        ];
        assert_eq!(decide(&live, 50.0), Decision::Wait);
        // Trial 1's lease ran out: it goes out again.
        let expired = [live[0].clone(), stored(t1.clone(), Some("elsewhere/2"), Some(40.0))];
        assert_eq!(decide(&expired, 50.0), Decision::Reclaim(1));
        // A pending trial nobody holds (a stopped search's) goes first.
        let unheld = [stored(t0.clone(), None, None), expired[1].clone()];
        assert_eq!(decide(&unheld, 50.0), Decision::Reclaim(0));
        // A dead process of this machine loses its lease at once.
        let me = this_host();
        let dead = [stored(t0.clone(), Some(&format!("{me}/999999999")), Some(100.0)), live[1].clone()];
        assert_eq!(decide(&dead, 50.0), Decision::Reclaim(0));
        let alive = [stored(t0.clone(), Some(&WorkerId::this_process().0), Some(100.0)), live[1].clone()];
        assert_eq!(decide(&alive, 50.0), Decision::Wait);
        // All finished: done. One handed out of two: a new trial, the one a single worker gets.
        let mut done = live.clone();
        for t in &mut done {
            t.trial.status = TrialStatus::Completed;
        }
        assert_eq!(decide(&done, 50.0), Decision::Done);
        assert_eq!(decide(&live[..1], 50.0), Decision::New(t1.clone()));
        // The asker's own trial, even past its lease, is not handed back to it.
        let own = [stored(t0.clone(), Some("asker/1"), Some(40.0)), live[1].clone()];
        assert_eq!(decide(&own, 50.0), Decision::Wait);
    }
}
