//! Listing folders in a fixed order, so that every reader sees files in the same order on every
//! machine (`read_dir`'s order is the file system's).

use std::path::{Path, PathBuf};

use crate::error::{Context, Result};

/// The entries of `dir` (files and folders), sorted by path. Errors name the folder.
pub fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut entries = std::fs::read_dir(dir)
        .with_context(|| format!("{}: cannot list the folder", dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<Vec<_>>>()
        .with_context(|| format!("{}: cannot list the folder", dir.display()))?;
    entries.sort();
    Ok(entries)
}

/// Every file under `dir`, recursively, in path order (a folder's files where its name sorts).
/// Links to folders are not followed (a link loop would never end); links to files are kept.
pub fn files_under(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in sorted_entries(dir)? {
        let linked = std::fs::symlink_metadata(&entry).is_ok_and(|m| m.file_type().is_symlink());
        if entry.is_dir() && linked {
            continue;
        }
        if entry.is_dir() {
            files.extend(files_under(&entry)?);
        } else {
            files.push(entry);
        }
    }
    Ok(files)
}
