//! Writing files so that a reader never sees a partial one: write to a temporary name in the
//! same folder, then rename into place (atomic on the same file system).

use std::path::{Path, PathBuf};

use crate::error::{Context, Result};

/// The temporary name used while `path` is being written.
pub fn temp_path(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// The process id in a temporary name [`temp_path`] made, or `None` for any other name. Also
/// names with a suffix after the id: Burn's burnpack writer saves to our temporary name through
/// a temporary file of its own (`.model.bpk.tmp-PID.PID-N.tmp`).
fn temp_owner(name: &str) -> Option<i32> {
    let (stem, rest) = name.strip_prefix('.')?.split_once(".tmp-")?;
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    if stem.is_empty() || digits == 0 || !(digits == rest.len() || rest[digits..].starts_with('.')) {
        return None;
    }
    rest[..digits].parse().ok()
}

/// Whether process `pid` still runs: it exists and is not a zombie (a killed process whose exit
/// has not been collected yet, e.g. a trial killed with its search, which can write no more).
pub(crate) fn process_runs(pid: i32) -> bool {
    // kill(pid, 0) fails with ESRCH exactly when no such process exists.
    // SAFETY: signal 0 sends nothing; it only asks whether the process exists.
    let exists = pid > 0
        && (unsafe { libc::kill(pid, 0) } == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH));
    if !exists {
        return false;
    }
    // /proc/PID/stat: "PID (COMMAND) STATE ...", the command may hold spaces and parentheses.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !matches!(stat.rsplit_once(") ").and_then(|(_, rest)| rest.chars().next()), Some('Z' | 'X')),
        Err(_) => true,
    }
}

/// Removes the temporary files that a killed ferkit process left in `dir` and its subfolders
/// down to `depth` levels (1: a run folder and its checkpoint folder): names [`temp_path`] makes whose process no longer runs. A command
/// calls this on the folder it writes into before writing, and again when it has finished, so
/// that a SIGKILL's leftovers do not outlive the next run (the second pass catches those of a
/// process that was still dying at the start). Returns how many it removed; a folder that cannot be listed counts as
/// empty.
pub fn remove_stale_temporaries(dir: &Path, depth: usize) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    let mut removed = 0;
    for entry in entries.flatten() {
        let Ok(kind) = entry.file_type() else { continue };
        if kind.is_dir() && depth > 0 {
            removed += remove_stale_temporaries(&entry.path(), depth - 1);
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = temp_owner(&name) else { continue };
        if !process_runs(pid) && kind.is_file() && std::fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
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
        // The file the user knows by name first (the temporary one's error follows it).
        return Err(e).with_context(|| format!("{}: not written", path.display()));
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
        .with_context(|| format!("{}: cannot flush to disk", path.display()))
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
        let file = std::fs::File::create(&tmp).with_context(|| format!("{}: cannot create", path.display()))?;
        Ok(Self { path: path.to_path_buf(), tmp, writer: Some(std::io::BufWriter::new(file)) })
    }

    /// Appends `bytes`. Errors name the file.
    pub fn write(&mut self, bytes: &[u8]) -> Result<()> {
        use std::io::Write;
        let writer = self.writer.as_mut().expect("open until commit");
        writer.write_all(bytes).with_context(|| format!("{}: cannot write", self.path.display()))
    }

    /// Writes out what is buffered and moves the file into place ([`move_into_place`]).
    pub fn commit(mut self) -> Result<()> {
        let writer = self.writer.take().expect("open until commit");
        if let Err(e) = writer.into_inner() {
            let _ = std::fs::remove_file(&self.tmp);
            return Err(e.into_error()).with_context(|| format!("{}: cannot write", self.path.display()));
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

    /// Issue 20: a dead process's temporary files go, a live one's and other files stay.
    #[test]
    fn stale_temporaries_of_dead_processes_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        // A zombie (exited, not yet collected) writes no more: its files go too.
        let zombie = std::process::Command::new("true").spawn().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while process_runs(zombie.id() as i32) {
            assert!(std::time::Instant::now() < deadline, "`true` still runs after 10 s");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let mut child = zombie;
        let dead = child.id();
        assert!(!process_runs(dead as i32) && process_runs(std::process::id() as i32));
        let names = [
            format!(".history.csv.tmp-{dead}"),
            format!(".history.csv.tmp-{}", std::process::id()),
            "history.csv".to_string(),
            format!("notes.tmp-{dead}"),
            format!(".model.bpk.tmp-{dead}.{dead}-3.tmp"),
        ];
        for name in &names {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        std::fs::create_dir(dir.path().join("checkpoint")).unwrap();
        std::fs::write(dir.path().join("checkpoint").join(&names[0]), b"x").unwrap();
        assert_eq!(remove_stale_temporaries(dir.path(), 1), 3);
        child.wait().unwrap(); // only now is the zombie collected
        assert!(!dir.path().join(&names[0]).exists() && !dir.path().join("checkpoint").join(&names[0]).exists());
        assert!(names[1..4].iter().all(|n| dir.path().join(n).exists()) && !dir.path().join(&names[4]).exists());
        assert_eq!(
            temp_owner(&temp_path(Path::new("/x/model.bpk")).file_name().unwrap().to_string_lossy()),
            Some(std::process::id() as i32)
        );
    }

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
