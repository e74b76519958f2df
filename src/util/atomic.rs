//! Writing files so that a reader never sees a partial one: write to a temporary name in the
//! same folder, then rename into place (atomic on the same file system).

use std::path::{Path, PathBuf};

use crate::error::{Context, Result};

/// The temporary name used while `path` is being written.
pub fn temp_path(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// Writes `bytes` to `path` through a temporary file.
pub fn write_atomic(path: &Path, bytes: impl AsRef<[u8]>) -> Result<()> {
    write_atomic_with(path, |tmp| {
        std::fs::write(tmp, bytes.as_ref()).with_context(|| format!("{}: cannot write", tmp.display()))
    })
}

/// Lets `write` produce the file at a temporary path, flushes it to disk, then renames it to
/// `path` (and flushes the folder, so the rename survives a power loss too). On failure the
/// temporary file is removed and `path` is left as it was.
pub fn write_atomic_with(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let tmp = temp_path(path);
    if let Err(e) = write(&tmp) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    move_into_place(&tmp, path)
}

/// The end of every atomic write: flushes the finished temporary file `tmp` to disk, renames it
/// to `path` and flushes the folder, so the rename survives a power loss too. On failure `tmp`
/// is removed and `path` is left as it was. Writers that stream (a video's rows, an encoder's
/// output) write `temp_path(path)` themselves and end here.
pub fn move_into_place(tmp: &Path, path: &Path) -> Result<()> {
    let moved = std::fs::File::open(tmp)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("{}: cannot flush to disk", tmp.display()))
        .and_then(|()| {
            std::fs::rename(tmp, path).with_context(|| format!("{}: cannot move into place", path.display()))
        });
    if let Err(e) = moved {
        let _ = std::fs::remove_file(tmp);
        return Err(e);
    }
    // A folder's entries reach the disk when the folder is flushed; not every file system allows
    // opening a folder for that, so a failure here is not an error.
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
    }
    Ok(())
}

/// A file written piece by piece (a video's rows as they come) under its temporary name, and
/// renamed into place by [`AtomicFile::commit`]; dropped uncommitted (an error, a panic), it is
/// removed and `path` is left as it was.
pub struct AtomicFile {
    path: PathBuf,
    tmp: PathBuf,
    writer: Option<std::io::BufWriter<std::fs::File>>,
}

impl AtomicFile {
    /// Starts writing `path`. Errors: the temporary file cannot be created (naming it).
    pub fn create(path: &Path) -> Result<Self> {
        let tmp = temp_path(path);
        let file = std::fs::File::create(&tmp).with_context(|| format!("{}: cannot create", tmp.display()))?;
        Ok(Self { path: path.to_path_buf(), tmp, writer: Some(std::io::BufWriter::new(file)) })
    }

    /// Appends `bytes`. Errors name the file.
    pub fn write(&mut self, bytes: &[u8]) -> Result<()> {
        use std::io::Write;
        let writer = self.writer.as_mut().expect("open until commit");
        writer.write_all(bytes).with_context(|| format!("{}: cannot write", self.tmp.display()))
    }

    /// Writes out what is buffered and moves the file into place ([`move_into_place`]).
    pub fn commit(mut self) -> Result<()> {
        let writer = self.writer.take().expect("open until commit");
        if let Err(e) = writer.into_inner() {
            let _ = std::fs::remove_file(&self.tmp);
            return Err(e.into_error()).with_context(|| format!("{}: cannot write", self.tmp.display()));
        }
        move_into_place(&self.tmp, &self.path)
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.writer.take().is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_write_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.txt");
        let r = write_atomic_with(&target, |tmp| {
            std::fs::write(tmp, b"half")?;
            crate::bail!(Io, "disk full")
        });
        assert!(r.is_err());
        assert!(!target.exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        write_atomic(&target, b"whole").unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"whole");
    }
}
