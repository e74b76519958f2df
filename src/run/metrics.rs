//! Typed readers of a run's `metrics.json` (written by the trainer from
//! [`crate::training::RunMetrics`]) and of a search's `best.json`, for the fronts and reports
//! that read them back.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::RunDir;
use crate::error::{Context, Result};

/// One split's figures in metrics.json (the per-class rows and confusion matrix are left out).
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct SplitFigures {
    pub rows: usize,
    /// Mean cross-entropy plus the L2 term.
    pub loss: f64,
    /// Fraction in [0, 1].
    pub accuracy: f64,
    pub macro_f1: f64,
}

/// A finished run's metrics.json.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct RunFigures {
    pub model: String,
    pub trainable_params: usize,
    pub non_trainable_params: usize,
    pub epochs: usize,
    /// The kept epoch (1-based).
    pub best_epoch: usize,
    pub train_seconds: f64,
    pub train: SplitFigures,
    pub val: SplitFigures,
    #[serde(default)]
    pub test: Option<SplitFigures>,
}

impl RunFigures {
    /// Reads `run`'s metrics.json. Errors: no file (the run has not finished), not the
    /// trainer's JSON (naming the file and the field).
    pub fn read(run: &RunDir) -> Result<Self> {
        read_json(&run.metrics(), "has the run finished?")
    }
}

/// A search's best.json: the best trial and its run directory.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct BestTrialFile {
    pub trial: usize,
    pub objective: f64,
    pub best_epoch: Option<usize>,
    pub run_dir: PathBuf,
    /// The best trial's kept checkpoint on the test split (chosen on validation).
    pub test_accuracy: Option<f64>,
}

impl BestTrialFile {
    /// Reads `path` (a search folder's best.json).
    pub fn read(path: &Path) -> Result<Self> {
        read_json(path, "did the search finish a trial?")
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path, missing: &str) -> Result<T> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read ({missing})", path.display()))?;
    serde_json::from_str(&text).map_err(|e| {
        crate::err!(BadInput, "{}: not ferkit's JSON: {e}", path.display()).at(Some(path), Some(e.line()), None)
    })
}
