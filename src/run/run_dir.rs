//! A run directory: everything one training run produced, under fixed names.

use std::ops::Not;
use std::path::{Path, PathBuf};

use crate::error::{Context, Result, bail};

use crate::models::Model;
use crate::util::atomic::write_atomic_with;
use burn::module::Module;

#[derive(Clone, Debug)]
pub struct RunDir {
    pub path: PathBuf,
}

impl RunDir {
    /// Creates the folder for a new run. An existing non-empty folder is refused unless
    /// `overwrite`, so a finished run is never clobbered by accident; with `overwrite` the old
    /// run's weights, metrics, history and checkpoint are removed first, so that nothing of it
    /// can be taken for the new run's (by `--resume`, say).
    pub fn create(path: &Path, overwrite: bool) -> Result<Self> {
        let run = Self { path: path.to_path_buf() };
        run.remove_stale_temporaries();
        if path.exists() {
            let non_empty =
                std::fs::read_dir(path).with_context(|| format!("{}: cannot list", path.display()))?.next().is_some();
            // A run that stopped before its first epoch (bad weights, a panic in the backend)
            // left only its config and summary, and one killed in its first epoch's end before
            // the checkpoint was written (history.csv and model.bpk may be there, nothing to
            // resume from): the same command may use the folder again.
            let finished_nothing = run.config().exists() && !run.has_checkpoint() && !run.metrics().exists();
            if non_empty && !overwrite && !finished_nothing {
                // The setting named tells a front what to offer: another folder or overwriting
                // it, or resuming the stopped run.
                if run.has_checkpoint() && run.metrics().exists().not() {
                    bail!(Config @ "resume", "{} already holds a run that stopped before its end", path.display());
                }
                bail!(Config @ "overwrite", "{} already holds a run", path.display());
            }
            if run.checkpoint_dir().exists() {
                std::fs::remove_dir_all(run.checkpoint_dir())
                    .with_context(|| format!("{}: cannot remove the old checkpoint", run.checkpoint_dir().display()))?;
            }
            // ferkit's own files of the old run (the user's other files stay).
            let evaluations = std::fs::read_dir(path)
                .with_context(|| format!("{}: cannot list", path.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                    (name.starts_with("eval_") && name.ends_with(".json"))
                        || (name.starts_with("confusion_") && name.ends_with(".png"))
                });
            let fixed = [run.weights(), run.weights_checksum(), run.metrics(), run.history(), run.curves()];
            for old in fixed.into_iter().chain([run.path.join("load_report.txt")]).chain(evaluations) {
                if old.exists() {
                    std::fs::remove_file(&old).with_context(|| format!("{}: cannot remove", old.display()))?;
                }
            }
        }
        std::fs::create_dir_all(path).with_context(|| format!("{}: cannot create", path.display()))?;
        Ok(run)
    }

    /// Removes what a killed ferkit process left half-written in the run folder and its
    /// checkpoint folder (see [`crate::util::atomic::remove_stale_temporaries`]); the trainer
    /// calls it before it writes into a folder again.
    pub fn remove_stale_temporaries(&self) {
        crate::util::atomic::remove_stale_temporaries(&self.path, 1);
    }

    /// Opens a finished (or interrupted) run: it must have its `config.toml`.
    pub fn open(path: &Path) -> Result<Self> {
        let run = Self { path: path.to_path_buf() };
        if !run.config().exists() {
            bail!(BadInput, "{}: not a ferkit run directory (no config.toml)", path.display());
        }
        Ok(run)
    }

    pub fn config(&self) -> PathBuf {
        self.path.join("config.toml")
    }
    pub fn history(&self) -> PathBuf {
        self.path.join("history.csv")
    }
    /// The kept (best) weights, in Burn's burnpack format.
    pub fn weights(&self) -> PathBuf {
        self.path.join("model.bpk")
    }
    pub fn curves(&self) -> PathBuf {
        self.path.join("curves.png")
    }
    pub fn summary(&self) -> PathBuf {
        self.path.join("summary.txt")
    }
    pub fn metrics(&self) -> PathBuf {
        self.path.join("metrics.json")
    }
    pub fn evaluation(&self, split: &str) -> PathBuf {
        self.path.join(format!("eval_{split}.json"))
    }
    pub fn confusion_png(&self, split: &str) -> PathBuf {
        self.path.join(format!("confusion_{split}.png"))
    }

    /// The CRC-32 of `model.bpk`'s bytes, written beside it, so that a damaged file is refused
    /// by name instead of predicting nonsense.
    pub fn weights_checksum(&self) -> PathBuf {
        self.path.join("model.bpk.crc32")
    }

    /// Saves the kept weights, then their checksum (a stale checksum is removed first, so the
    /// pair never disagrees about a whole file).
    pub fn save_weights(&self, net: Model) -> Result<()> {
        let _ = std::fs::remove_file(self.weights_checksum());
        write_atomic_with(&self.weights(), |tmp| {
            net.save_file(tmp).map_err(|e| crate::err!(Io, "{}: cannot save weights: {e}", tmp.display()))
        })?;
        let bytes =
            std::fs::read(self.weights()).with_context(|| format!("{}: cannot read", self.weights().display()))?;
        crate::util::atomic::write_atomic(&self.weights_checksum(), format!("{:08x}\n", crc32(&bytes)))
    }

    /// Reads `model.bpk`, checking it against its checksum when the run has one (runs written
    /// before checksums have none). Errors name the file.
    pub fn read_weights(&self) -> Result<Vec<u8>> {
        let path = self.weights();
        let bytes = std::fs::read(&path).with_context(|| format!("{}: cannot read", path.display()))?;
        if let Ok(expected) = std::fs::read_to_string(self.weights_checksum()) {
            let actual = format!("{:08x}", crc32(&bytes));
            if expected.trim() != actual {
                bail!(
                    Weights,
                    "{}: damaged (its CRC-32 is {actual}, {} says {}); train again or restore the file",
                    path.display(),
                    self.weights_checksum().display(),
                    expected.trim()
                );
            }
        }
        Ok(bytes)
    }
}

/// Loads burnpack `bytes` (read from `path`, which errors name) into `net`, and refuses weights
/// that are not finite. Errors: not a burnpack file, tensors that do not fit the net (Burn's list,
/// cut to its first 400 characters), NaN or infinite values.
pub fn load_weights(net: Model, bytes: Vec<u8>, path: &Path) -> Result<Model> {
    let record = burn::store::ModuleRecord::from_bytes(burn::tensor::Bytes::from_bytes_vec(bytes))
        .map_err(|e| crate::err!(Weights, "{}: not a burnpack weights file: {e}", path.display()))?;
    let net = net.try_load_record(record).map_err(|e| {
        // Burn lists every missing tensor; a few name the problem.
        let mut message = e.to_string();
        if message.chars().count() > 400 {
            message = format!("{}... (cut)", message.chars().take(400).collect::<String>());
        }
        crate::err!(
            Weights,
            "{}: the weights do not fit this net (written by another ferkit version, or for another net?): {message}",
            path.display()
        )
    })?;
    let net = to_dtype(net, burn::tensor::FloatDType::F32);
    check_finite(&net, path)?;
    Ok(net)
}

/// See [`crate::models::dtype::to_dtype`].
pub use crate::models::dtype::to_dtype;

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = flate2::Crc::new();
    crc.update(bytes);
    crc.sum()
}

/// Refuses weights with a NaN or infinite value (a damaged file, or one saved from a diverged
/// run); `path` names the file in the error.
pub fn check_finite(net: &Model, path: &Path) -> Result<()> {
    struct Finite(bool);
    impl burn::module::ModuleVisitor for Finite {
        fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<burn::prelude::Tensor<D>>) {
            if self.0 {
                let values = param.val().into_data().convert::<f32>().try_to_vec::<f32>().unwrap_or_default();
                self.0 = values.iter().all(|v| v.is_finite());
            }
        }
    }
    let mut visitor = Finite(true);
    net.visit(&mut visitor);
    if !visitor.0 {
        bail!(Weights, "{}: holds NaN or infinite weights (damaged, or saved from a diverged run)", path.display());
    }
    Ok(())
}
