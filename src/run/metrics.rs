//! A finished run's `metrics.json`: [`RunMetrics`], written by the trainer and read back by the
//! fronts, the runs table, the search and the reproduction report; and [`read_json`], the one
//! reader of ferkit's JSON files (a search's `best.json` is read with it by
//! `crate::tuning::runner::BestTrial::read`).

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::RunDir;
use crate::error::{Context, Result};
use crate::evaluation::SplitEvaluation;

/// What a finished run reports, saved as `metrics.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunMetrics {
    pub model: String,
    pub trainable_params: usize,
    pub non_trainable_params: usize,
    pub epochs: usize,
    /// The kept epoch (1-based).
    pub best_epoch: usize,
    /// Wall time of the training loop (all epochs, validation included), in seconds.
    pub train_seconds: f64,
    /// The kept checkpoint on each split, in inference mode (no dropout, moving BN stats).
    pub train: SplitEvaluation,
    pub val: SplitEvaluation,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test: Option<SplitEvaluation>,
}

impl RunMetrics {
    /// Reads `run`'s metrics.json. Errors: no file (the run has not finished), not the
    /// trainer's JSON (naming the file, the line and serde's account of the field).
    pub fn read(run: &RunDir) -> Result<Self> {
        read_json(&run.metrics(), "has the run finished?")
    }
}

/// Reads ferkit's JSON file `path` as a `T`; `missing` is the question the error asks when the
/// file cannot be read (e.g. "has the run finished?").
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path, missing: &str) -> Result<T> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read ({missing})", path.display()))?;
    serde_json::from_str(&text).map_err(|e| {
        crate::err!(BadInput, "{}: not ferkit's JSON: {e}", path.display()).at(Some(path), Some(e.line()), None)
    })
}
