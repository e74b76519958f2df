//! Loading an ImageNet backbone's weights from a PyTorch state dict (`.pth`, zip or legacy
//! pickle) with burn-store, strictly: every tensor the backbone has must be found, and every
//! tensor in the file must be used, except those the caller names as not wanted.

use std::path::Path;

use anyhow::{Result, bail};
use burn::store::{ModuleSnapshot, PytorchStore};

/// Loads `path` into `net` after renaming the file's keys with `remaps` (regex, replacement).
/// `unwanted` tells which of the file's tensors have no counterpart on purpose (PyTorch's
/// batch-norm step counters, a classifier that transfer learning replaces).
pub fn load<M: ModuleSnapshot>(
    net: &mut M,
    path: &Path,
    what: &str,
    remaps: &[(&str, &str)],
    unwanted: impl Fn(&str) -> bool,
) -> Result<()> {
    if !path.exists() {
        bail!("{}: no such weights file", path.display());
    }
    let mut store = PytorchStore::from_file(path).allow_partial(false);
    for &(pattern, replacement) in remaps {
        store = store.with_key_remapping(pattern, replacement);
    }
    let result = net
        .load_from(&mut store)
        .map_err(|e| anyhow::anyhow!("{}: cannot load it as {what} weights: {e}", path.display()))?;
    if !result.errors.is_empty() || !result.missing.is_empty() {
        bail!(
            "{}: not {what} weights: {} tensors missing (e.g. {:?}), {} errors (e.g. {:?})",
            path.display(),
            result.missing.len(),
            result.missing.first().map(|m| &m.0),
            result.errors.len(),
            result.errors.first()
        );
    }
    let unused: Vec<&String> = result.unused.iter().filter(|u| !unwanted(u)).collect();
    if !unused.is_empty() {
        bail!("{}: {} tensors are not {what}'s (e.g. {})", path.display(), unused.len(), unused[0]);
    }
    Ok(())
}
