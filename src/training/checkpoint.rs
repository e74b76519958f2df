//! The end-of-epoch checkpoint that lets a killed training run go on (`ferkit train --resume RUN`).
//!
//! After every finished epoch the run directory's `checkpoint/` folder holds:
//! - `epoch-N.bpk`: the net's weights after epoch N (Burn's burnpack; parameter ids included, so
//!   the optimizer's state finds its tensors again);
//! - `optimizer-N.bpk`: the optimizer's state, e.g. Adam's moments and step counts
//!   ([`burn::optim::ModuleOptimizer::save`]);
//! - `ema-N.bpk`: the weight EMA after epoch N, for runs that keep one;
//! - `state.json`: [`TrainState`], written last, which names the two files above.
//!
//! Each file goes to a temporary name, is flushed to disk and renamed, and `state.json` only ever
//! names files that are whole, so a run killed at any instant (SIGKILL, power loss) resumes from its
//! last finished epoch. The files of older epochs are removed once `state.json` no longer names
//! them. Nothing else needs saving: the data order is replayed from the seed
//! ([`crate::data::batch::EpochOrder`]), augmentation draws are fixed by (seed, epoch, row), the
//! dropout generator is reseeded at the start of every epoch ([`epoch_seed`]), and the learning-rate
//! schedule is a function of the step count.

use std::path::{Path, PathBuf};

use crate::error::{Context, Result, bail};
use burn::module::Module;
use burn::optim::ModuleOptimizer;
use serde::{Deserialize, Serialize};

use crate::models::Model;
use crate::run::RunDir;
use crate::run::history::EpochRecord;
use crate::util::atomic::{write_atomic, write_atomic_with};

/// Version of the checkpoint layout; a checkpoint of another version is refused by name.
const FORMAT: u32 = 1;

/// Where a run stands after its last finished epoch, saved as `checkpoint/state.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// The checkpoint layout's version (1).
    pub format: u32,
    /// Epochs finished (1-based count); the next epoch to run is `epochs_done + 1`.
    pub epochs_done: usize,
    /// Every finished epoch's record, at full precision (history.csv rounds to 6 digits).
    pub history: Vec<EpochRecord>,
    /// The kept checkpoint's epoch and monitored value (model.bpk holds its weights).
    pub best: Option<(usize, f64)>,
    /// Training rows of the data the run was trained on; a resume on other data is refused.
    pub train_rows: usize,
    /// Training wall time of the finished epochs, over every process that worked on the run, in
    /// seconds (a partial epoch lost to a kill is not counted).
    pub train_seconds: f64,
    /// File names inside `checkpoint/`: the net's weights and Adam's state after the last epoch.
    pub weights: String,
    pub optimizer: String,
    /// File name of the weight EMA inside `checkpoint/`, for runs that keep one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ema: Option<String>,
}

/// The nets at the end of an epoch: the trained one and, for runs that keep one, the weight EMA.
#[derive(Clone, Copy)]
pub struct EpochEnd<'a> {
    pub net: &'a Model,
    pub ema: Option<&'a Model>,
}

/// The seed of the backend's generator (dropout) for one epoch, so that an epoch draws the same
/// masks whether the run went through without a stop or was resumed just before it.
pub fn epoch_seed(seed: u64, epoch: usize) -> u64 {
    // SplitMix64's increment spreads consecutive epochs over the whole seed space.
    seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

impl RunDir {
    /// The folder of the end-of-epoch checkpoint.
    pub fn checkpoint_dir(&self) -> PathBuf {
        self.path.join("checkpoint")
    }

    /// `checkpoint/state.json`, written last at the end of every epoch.
    pub fn checkpoint_state(&self) -> PathBuf {
        self.checkpoint_dir().join("state.json")
    }

    /// Whether the run has a checkpoint to resume from.
    pub fn has_checkpoint(&self) -> bool {
        self.checkpoint_state().exists()
    }
}

/// Saves the end-of-epoch checkpoint: weights, optimizer, then the state that names them.
pub fn save(
    run: &RunDir,
    nets: EpochEnd,
    optimizer: &ModuleOptimizer,
    history: &[EpochRecord],
    best: Option<(usize, f64)>,
    train_rows: usize,
    train_seconds: f64,
) -> Result<()> {
    let dir = run.checkpoint_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    let epoch = history.len();
    let state = TrainState {
        format: FORMAT,
        epochs_done: epoch,
        history: history.to_vec(),
        best,
        train_rows,
        train_seconds,
        weights: format!("epoch-{epoch}.bpk"),
        optimizer: format!("optimizer-{epoch}.bpk"),
        ema: nets.ema.map(|_| format!("ema-{epoch}.bpk")),
    };
    write_atomic_with(&dir.join(&state.weights), |tmp| {
        nets.net.clone().save_file(tmp).map_err(|e| crate::err!(Io, "{}: cannot save weights: {e}", tmp.display()))
    })?;
    if let (Some(average), Some(name)) = (nets.ema, &state.ema) {
        write_atomic_with(&dir.join(name), |tmp| {
            average.clone().save_file(tmp).map_err(|e| crate::err!(Io, "{}: cannot save the EMA: {e}", tmp.display()))
        })?;
    }
    write_atomic_with(&dir.join(&state.optimizer), |tmp| {
        optimizer.save(tmp).map_err(|e| crate::err!(Io, "{}: cannot save the optimizer's state: {e}", tmp.display()))
    })?;
    write_atomic(&run.checkpoint_state(), serde_json::to_string_pretty(&state)?)?;
    remove_other_epochs(&dir, &state);
    Ok(())
}

/// Removes checkpoint files that `state` does not name (older epochs, leftovers of a killed write).
fn remove_other_epochs(dir: &Path, state: &TrainState) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let ours = name == "state.json"
            || name == state.weights
            || name == state.optimizer
            || state.ema.as_deref() == Some(name.as_str());
        let leftover = name.starts_with('.') && name.contains(".tmp-");
        if !ours && (name.ends_with(".bpk") || leftover) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Reads `checkpoint/state.json`; `None` when the run has no checkpoint (no epoch finished).
///
/// Errors name the file: unreadable or damaged JSON, another checkpoint format, a history that
/// does not match the epoch count, or a named weights/optimizer file that is missing.
pub fn load_state(run: &RunDir) -> Result<Option<TrainState>> {
    let path = run.checkpoint_state();
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path).with_context(|| format!("{}: cannot read", path.display()))?;
    let state: TrainState =
        serde_json::from_str(&text).with_context(|| format!("{}: not a ferkit checkpoint state", path.display()))?;
    if state.format != FORMAT {
        bail!(Weights, "{}: checkpoint format {} (this ferkit reads format {FORMAT})", path.display(), state.format);
    }
    if state.history.len() != state.epochs_done || state.history.iter().enumerate().any(|(i, r)| r.epoch != i + 1) {
        bail!(Weights, "{}: the history does not list epochs 1..={} in order", path.display(), state.epochs_done);
    }
    for file in [&state.weights, &state.optimizer].into_iter().chain(&state.ema) {
        let p = run.checkpoint_dir().join(file);
        if !p.exists() {
            bail!(Weights, "{}: names {}, which is missing", path.display(), p.display());
        }
    }
    Ok(Some(state))
}

/// Loads the checkpoint's weights into `net` and its Adam state into `optimizer`.
pub fn restore(
    run: &RunDir,
    state: &TrainState,
    net: Model,
    optimizer: ModuleOptimizer,
) -> Result<(Model, ModuleOptimizer)> {
    let weights = run.checkpoint_dir().join(&state.weights);
    let net = net
        .try_load_file(&weights)
        .map_err(|e| crate::err!(Weights, "{}: cannot load the checkpoint's weights: {e}", weights.display()))?;
    let optim_path = run.checkpoint_dir().join(&state.optimizer);
    let optimizer = optimizer
        .load(&optim_path)
        .map_err(|e| crate::err!(Weights, "{}: cannot load the optimizer's state: {e}", optim_path.display()))?;
    Ok((net, optimizer))
}

/// Loads the checkpoint's weight EMA into `net` (a plain-device net of the run's model).
///
/// Errors: the run keeps an EMA (its config says so) but the checkpoint has none (it was written
/// by a ferkit without EMAs), or the file does not load.
pub fn restore_ema(run: &RunDir, state: &TrainState, net: Model) -> Result<Model> {
    let Some(name) = &state.ema else {
        bail!(Weights, "{}: the run keeps a weight EMA, but its checkpoint has none", run.checkpoint_state().display());
    };
    let path = run.checkpoint_dir().join(name);
    net.try_load_file(&path).map_err(|e| crate::err!(Weights, "{}: cannot load the weight EMA: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_seeds_differ_and_are_fixed() {
        let seeds: Vec<u64> = (1..=50).map(|e| epoch_seed(42, e)).collect();
        let mut unique = seeds.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), seeds.len());
        assert_eq!(epoch_seed(42, 3), epoch_seed(42, 3));
        assert_ne!(epoch_seed(42, 3), epoch_seed(43, 3));
    }

    #[test]
    fn damaged_or_inconsistent_states_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir { path: dir.path().to_path_buf() };
        assert!(load_state(&run).unwrap().is_none());
        std::fs::create_dir_all(run.checkpoint_dir()).unwrap();
        std::fs::write(run.checkpoint_state(), "{\"format\": 1, \"epochs_").unwrap();
        let err = format!("{:#}", load_state(&run).unwrap_err());
        assert!(err.contains("state.json") && err.contains("not a ferkit checkpoint"), "{err}");

        let record = EpochRecord {
            epoch: 2,
            train_loss: 1.0,
            train_accuracy: 0.5,
            val_loss: 1.0,
            val_accuracy: 0.5,
            seconds: 1.0,
        };
        let state = TrainState {
            format: FORMAT,
            epochs_done: 1,
            history: vec![record],
            best: None,
            train_rows: 10,
            train_seconds: 1.0,
            weights: "epoch-1.bpk".into(),
            optimizer: "optimizer-1.bpk".into(),
            ema: None,
        };
        std::fs::write(run.checkpoint_state(), serde_json::to_string(&state).unwrap()).unwrap();
        let err = format!("{:#}", load_state(&run).unwrap_err());
        assert!(err.contains("does not list epochs"), "{err}");

        let state = TrainState { history: vec![EpochRecord { epoch: 1, ..state.history[0].clone() }], ..state };
        std::fs::write(run.checkpoint_state(), serde_json::to_string(&state).unwrap()).unwrap();
        let err = format!("{:#}", load_state(&run).unwrap_err());
        assert!(err.contains("epoch-1.bpk") && err.contains("missing"), "{err}");
    }
}
