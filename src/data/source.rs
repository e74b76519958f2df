//! What the user pointed at (`--data F` or `--train F --val F --test F`), and loading it.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

use super::dataset::{Dataset, SplitName};
use super::fer_csv::{SplitAssignment, read_csv};
use super::image_folder::read_image_folder;

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
}

#[derive(Clone, Copy, Debug, Default)]
pub struct LoadOptions {
    /// Skip malformed rows (or unreadable images) and count them instead of failing.
    pub skip_bad_rows: bool,
}

/// What loading did: rows kept, rows skipped (with the first few reasons), seconds.
#[derive(Clone, Debug, Default)]
pub struct LoadReport {
    pub rows_read: usize,
    pub rows_skipped: usize,
    pub skipped_examples: Vec<String>,
    pub seconds: f64,
}

impl LoadReport {
    const EXAMPLES_KEPT: usize = 5;

    pub fn skip(&mut self, message: String) {
        self.rows_skipped += 1;
        if self.skipped_examples.len() < Self::EXAMPLES_KEPT {
            self.skipped_examples.push(message);
        }
    }

    /// A line for stderr, plus the first skipped rows' reasons.
    pub fn describe(&self) -> String {
        let mut s = format!("loaded {} rows in {:.2} s", self.rows_read, self.seconds);
        if self.rows_skipped > 0 {
            s += &format!(", skipped {} bad rows:", self.rows_skipped);
            for e in &self.skipped_examples {
                s += &format!("\n  {e}");
            }
            if self.rows_skipped > self.skipped_examples.len() {
                s += "\n  ...";
            }
        }
        s
    }
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
            (Some(_), true) => bail!("give either --data or --train/--val/--test, not both"),
            (None, false) => bail!("no data given: use --data FILE_OR_FOLDER, or --train/--val/--test FILE"),
            (Some(path), false) => load_one(path, options, &mut dataset, &mut report)?,
            (None, true) => {
                for (split, path) in per_split {
                    if let Some(path) = path {
                        read_csv(path, SplitAssignment::All(split), options.skip_bad_rows, &mut dataset, &mut report)?;
                    }
                }
            }
        }
        report.seconds = start.elapsed().as_secs_f64();
        Ok((dataset, report))
    }
}

fn load_one(path: &Path, options: LoadOptions, dataset: &mut Dataset, report: &mut LoadReport) -> Result<()> {
    if path.is_dir() {
        read_image_folder(path, options.skip_bad_rows, dataset, report)
    } else if path.exists() {
        read_csv(path, SplitAssignment::ByUsage, options.skip_bad_rows, dataset, report)
    } else {
        bail!("{}: no such file or folder", path.display())
    }
}
