//! Loading weights from a PyTorch checkpoint (`.pth`/`.pt`, zip or legacy pickle) with burn-store,
//! as people publish them: any float type (float16, bfloat16 and float64 are converted to
//! float32), keys prefixed `module.` (a model saved from `nn.DataParallel`), and the state dict
//! wrapped in a checkpoint dictionary (`state_dict`, `model_state_dict`, `model`, `net`, ...).
//!
//! Loading is strict: every tensor the net has must be found with its shape, and every tensor in
//! the state dict must be used, except those the caller names as not wanted. A mismatch is
//! reported briefly, in the state dict's key names: what is missing, what is unexpected, what
//! has another shape.

use std::path::Path;

use crate::error::{Result, bail};
use burn::module::Module;
use burn::store::{ApplyError, ApplyResult, ModuleSnapshot, PytorchStore};

/// Keys under which training scripts commonly save the state dict inside a checkpoint, tried in
/// this order when the file's top level is not the state dict itself.
const WRAPPER_KEYS: [&str; 7] = ["state_dict", "model_state_dict", "model", "net", "network", "weights", "params"];

/// How many names of each kind a mismatch message lists.
const LISTED: usize = 4;

/// How many bytes the tensors of a checkpoint may declare per byte of the file. PyTorch stores
/// each storage uncompressed, once (tied weights share one), so a real checkpoint's tensors
/// take about the file's size; the margin covers views of shared storages.
const DECLARED_BYTES_PER_FILE_BYTE: u128 = 4;

/// Refuses a checkpoint whose tensors declare more bytes than the file could hold (issue 20):
/// burn-store makes each tensor contiguous as it loads it, so a 500-byte pickle declaring a
/// [26000, 26000] view of a one-element storage would otherwise allocate 2.7 GB. Only the
/// pickle is read here (tensor data stays on disk); a file the reader cannot parse is left to
/// the loader, whose error names the problem.
fn check_declared_sizes(path: &Path) -> Result<()> {
    let Ok(reader) = burn::store::pytorch_reader::PytorchReader::new(path) else { return Ok(()) };
    let file_bytes = std::fs::metadata(path).map(|m| m.len() as u128).unwrap_or(0);
    let limit = DECLARED_BYTES_PER_FILE_BYTE * file_bytes + (1 << 20);
    let mut declared: u128 = 0;
    for tensor in reader.tensors().values() {
        let elements = tensor.shape().iter().try_fold(1u128, |n, &d| n.checked_mul(d as u128)).unwrap_or(u128::MAX);
        let bytes = elements.saturating_mul(tensor.dtype().size() as u128);
        declared = declared.saturating_add(bytes);
        if declared > limit {
            bail!(
                Weights,
                "{}: its tensors declare more than {limit} bytes (the total passes it at `{}`, of shape {:?}), more than a {file_bytes}-byte checkpoint can hold: a damaged or hostile file",
                path.display(),
                tensor.name,
                tensor.shape()
            );
        }
    }
    Ok(())
}

/// Loads `path` into `net` after renaming the file's keys with `remaps` (regex, replacement).
/// `unwanted` tells which of the state dict's tensors have no counterpart on purpose (PyTorch's
/// batch-norm step counters, a classifier that transfer learning replaces).
///
/// Errors: a missing or unreadable file, and a state dict that does not fit (named briefly).
pub fn load<M: ModuleSnapshot + Module + Clone>(
    net: &mut M,
    path: &Path,
    what: &str,
    remaps: &[(&str, &str)],
    unwanted: impl Fn(&str) -> bool,
) -> Result<()> {
    if !path.exists() {
        bail!(Weights, "{}: no such weights file", path.display());
    }
    check_declared_sizes(path)?;
    let attempt = |top: Option<&str>| -> Result<(M, ApplyResult)> {
        let mut store = PytorchStore::from_file(path).allow_partial(true).validate(false);
        if let Some(key) = top {
            store = store.with_top_level_key(key);
        }
        // nn.DataParallel saves every key under `module.`.
        store = store.with_key_remapping(r"^module\.", "");
        for &(pattern, replacement) in remaps {
            store = store.with_key_remapping(pattern, replacement);
        }
        let mut candidate = net.clone();
        let result = candidate
            .load_from(&mut store)
            .map_err(|e| crate::err!(Weights, "{}: cannot read it as a PyTorch checkpoint: {e}", path.display()))?;
        Ok((candidate, result))
    };
    let (mut loaded, mut result) = attempt(None)?;
    if result.applied.is_empty() {
        // Nothing fits at the top level: the state dict may be wrapped. A key that is not there
        // is an error from burn-store, which only means "not this one".
        for key in WRAPPER_KEYS {
            if let Ok((l, r)) = attempt(Some(key))
                && !r.applied.is_empty()
            {
                (loaded, result) = (l, r);
                break;
            }
        }
    }
    let unused: Vec<&String> = result.unused.iter().filter(|u| !unwanted(u)).collect();
    if !result.missing.is_empty() || !result.errors.is_empty() || !unused.is_empty() {
        let mut parts = Vec::new();
        if !result.missing.is_empty() {
            parts.push(format!("missing {}", listed(result.missing.iter().map(|(p, _)| pytorch_name(p)))));
        }
        if !unused.is_empty() {
            parts.push(format!("unexpected {}", listed(unused.iter().map(|u| u.to_string()))));
        }
        let shapes = result.errors.iter().map(|e| match e {
            ApplyError::ShapeMismatch { path, expected, found } => {
                format!("{path} (file {:?}, expected {:?})", found.as_slice(), expected.as_slice())
            }
            other => other.to_string(),
        });
        if !result.errors.is_empty() {
            parts.push(format!("wrong shape or type {}", listed(shapes)));
        }
        bail!(Weights, "{}: not {what} weights: {}", path.display(), parts.join("; "));
    }
    *net = crate::models::dtype::to_dtype(loaded, burn::tensor::FloatDType::F32);
    Ok(())
}

/// A net's tensor path in PyTorch's naming: batch norm's and PReLU's parameters are `weight` and
/// `bias` there (Burn: `gamma`, `beta`, `alpha`).
fn pytorch_name(path: &str) -> String {
    for (burn, torch) in [(".gamma", ".weight"), (".beta", ".bias"), (".alpha", ".weight")] {
        if let Some(stem) = path.strip_suffix(burn) {
            return format!("{stem}{torch}");
        }
    }
    path.to_string()
}

/// The first few names, then how many more.
fn listed(names: impl Iterator<Item = String>) -> String {
    let names: Vec<String> = names.collect();
    let mut out = names.iter().take(LISTED).cloned().collect::<Vec<_>>().join(", ");
    if names.len() > LISTED {
        out += &format!(" and {} more", names.len() - LISTED);
    }
    out
}
