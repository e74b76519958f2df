//! What the user pointed at (`--data F` or `--train F --val F --test F`), and loading it.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::error::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use super::dataset::{Dataset, SplitName};
use super::fer_csv::{SplitAssignment, read_csv};
use super::image_folder::{FolderNaming, read_image_folder};
use super::load_report::LoadReport;

/// A data source, as recorded in a run's config so that `ferkit eval` can load it again.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct DataSource {
    /// One CSV with a `Usage` column, or an image-folder root.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<PathBuf>,
    /// One CSV per split, as the notebook had.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub train: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub val: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test: Option<PathBuf>,
    /// Image folders: class folder names mapped to the seven classes (`--class-map`), before the
    /// built-in synonyms.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub class_map: std::collections::BTreeMap<String, String>,
    /// Image folders: leave out class folders outside the seven (counted) instead of failing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub skip_unknown_classes: bool,
    /// The share of each class's training rows held out as the validation split, for data with
    /// no validation rows (`--val-split`); drawn with [`VAL_SPLIT_SEED`], so that every command
    /// that loads this source holds out the same rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_split: Option<f64>,
}

/// The seed of `--val-split`'s draw: fixed, not the run's seed, so that `eval` and `--resume`
/// carve the same validation rows the training did.
pub const VAL_SPLIT_SEED: u64 = 2013;

#[derive(Clone, Copy, Debug, Default)]
pub struct LoadOptions {
    /// Skip malformed rows (or unreadable images) and count them instead of failing.
    pub skip_bad_rows: bool,
}

impl DataSource {
    pub fn from_path(path: impl Into<PathBuf>) -> Self {
        Self { data: Some(path.into()), ..Default::default() }
    }

    /// The same files named by canonical paths (a path that cannot be resolved is kept as given,
    /// for loading to report), so a saved source matches whatever directory it is given from.
    pub fn canonical(&self) -> Self {
        let resolve = |p: &Option<PathBuf>| p.as_ref().map(|p| p.canonicalize().unwrap_or_else(|_| p.clone()));
        Self {
            data: resolve(&self.data),
            train: resolve(&self.train),
            val: resolve(&self.val),
            test: resolve(&self.test),
            ..self.clone()
        }
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_none() && self.train.is_none() && self.val.is_none() && self.test.is_none()
    }

    pub fn load(&self, options: LoadOptions) -> Result<(Dataset, LoadReport)> {
        let start = Instant::now();
        let mut dataset = Dataset::default();
        let mut report = LoadReport::default();
        let per_split = [(SplitName::Train, &self.train), (SplitName::Val, &self.val), (SplitName::Test, &self.test)];
        match (&self.data, per_split.iter().any(|(_, p)| p.is_some())) {
            (Some(_), true) => {
                bail!(BadInput @ "data", "give either one data source (data) or one file per split (train, val, test), not both")
            }
            (None, false) => bail!(BadInput @ "data", "no data given"),
            (Some(path), false) => load_one(self, path, options, &mut dataset, &mut report)?,
            (None, true) => {
                for (split, path) in per_split {
                    if let Some(path) = path {
                        read_csv(path, SplitAssignment::All(split), options.skip_bad_rows, &mut dataset, &mut report)?;
                    }
                }
            }
        }
        if let Some(fraction) = self.val_split {
            let held = dataset.carve_validation(fraction, VAL_SPLIT_SEED)?;
            report.note(format!("val_split {fraction}: {held} training rows held out as the validation split"));
        }
        report.seconds = start.elapsed().as_secs_f64();
        Ok((dataset, report))
    }
}

fn load_one(
    source: &DataSource,
    path: &Path,
    options: LoadOptions,
    dataset: &mut Dataset,
    report: &mut LoadReport,
) -> Result<()> {
    if path.is_dir() {
        let naming = FolderNaming { class_map: &source.class_map, skip_unknown: source.skip_unknown_classes };
        read_image_folder(path, options.skip_bad_rows, naming, dataset, report)
    } else if path.exists() {
        read_csv(path, SplitAssignment::ByUsage, options.skip_bad_rows, dataset, report)
    } else {
        bail!(BadInput, "{}: no such file or folder", path.display())
    }
}

/// CRC-32 of each file the source names (for a folder: of every file under it, in path order,
/// with the paths), so that an evaluation says exactly which bytes it read.
pub fn data_checksums(source: &DataSource) -> Result<serde_json::Value> {
    let mut out = serde_json::Map::new();
    for path in [&source.data, &source.train, &source.val, &source.test].into_iter().flatten() {
        let mut crc = flate2::Crc::new();
        let mut files = vec![path.clone()];
        if path.is_dir() {
            files = crate::util::fs::files_under(path)?;
        }
        for file in &files {
            if path.is_dir() {
                crc.update(file.strip_prefix(path).unwrap_or(file).to_string_lossy().as_bytes());
            }
            crc.update(&std::fs::read(file).with_context(|| format!("{}: cannot read", file.display()))?);
        }
        out.insert(path.display().to_string(), serde_json::json!(format!("{:08x}", crc.sum())));
    }
    Ok(serde_json::Value::Object(out))
}
