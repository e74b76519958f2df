//! Per-epoch history, written as `history.csv`.

use std::fmt::Write as _;
use std::path::Path;

use crate::error::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::util::atomic::write_atomic;

/// One epoch's figures. Losses include the L2 penalty, as Keras reports them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    pub epoch: usize,
    pub train_loss: f64,
    pub train_accuracy: f64,
    pub val_loss: f64,
    pub val_accuracy: f64,
    pub seconds: f64,
}

const HEADER: &str = "epoch,train_loss,train_accuracy,val_loss,val_accuracy,seconds";

pub fn to_csv(history: &[EpochRecord]) -> String {
    let mut out = format!("{HEADER}\n");
    for r in history {
        writeln!(
            out,
            "{},{:.6},{:.6},{:.6},{:.6},{:.3}",
            r.epoch, r.train_loss, r.train_accuracy, r.val_loss, r.val_accuracy, r.seconds
        )
        .unwrap();
    }
    out
}

pub fn write_csv(path: &Path, history: &[EpochRecord]) -> Result<()> {
    write_atomic(path, to_csv(history))
}

pub fn read_csv(path: &Path) -> Result<Vec<EpochRecord>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))?;
    let mut lines = text.lines();
    if lines.next() != Some(HEADER) {
        bail!(BadInput, "{} line 1: expected the header `{HEADER}`", path.display());
    }
    lines
        .enumerate()
        .map(|(i, line)| {
            let f: Vec<&str> = line.split(',').collect();
            let num = |k: usize| -> Result<f64> {
                f.get(k)
                    .and_then(|v| v.parse().ok())
                    .with_context(|| format!("{} line {}: field {} is not a number", path.display(), i + 2, k + 1))
            };
            Ok(EpochRecord {
                epoch: num(0)? as usize,
                train_loss: num(1)?,
                train_accuracy: num(2)?,
                val_loss: num(3)?,
                val_accuracy: num(4)?,
                seconds: num(5)?,
            })
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An epoch with the given validation figures (training figures fixed), for tests.
    pub(crate) fn rec(epoch: usize, val_loss: f64, val_accuracy: f64) -> EpochRecord {
        EpochRecord { epoch, train_loss: 1.0, train_accuracy: 0.5, val_loss, val_accuracy, seconds: 1.0 }
    }

    #[test]
    fn csv_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.csv");
        let h = vec![rec(1, 1.5, 0.25), rec(2, 1.25, 0.5)];
        write_csv(&path, &h).unwrap();
        assert_eq!(read_csv(&path).unwrap(), h);
    }
}
