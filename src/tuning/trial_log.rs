//! A trial's `train.log`: its process's standard output and error, copied line by line into the
//! trial's folder, every version of the file written whole.
//!
//! Why not hand the child the log file as its stdout: a SIGKILL (of the search, which takes its
//! trials with it) can land inside the child's `write` call, and Linux stops a write to a regular
//! file between pages, so a line that crosses a 4 KiB boundary is cut in half. The kill tests of
//! issue 20 found such a half line. Here the trial writes to pipes, and each line the search reads
//! from them gives a new version of the log through [`write_atomic`]: the file on disk is always
//! some whole number of whole lines. A trial prints a few lines per epoch, so rewriting the
//! (small) file per line costs nothing that shows.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::error::{Context, Result, err};
use crate::util::atomic::write_atomic;

/// Copies a child's piped stdout and stderr into one log file, line by line (see the module).
pub struct TrialLog {
    threads: Vec<JoinHandle<()>>,
    file: Arc<Mutex<LogFile>>,
}

struct LogFile {
    path: PathBuf,
    text: Vec<u8>,
    /// The first write that failed (a full disk); later lines are still drained from the pipes,
    /// so the child never blocks on a full pipe, and tried again.
    error: Option<String>,
}

impl TrialLog {
    /// Starts copying `child`'s stdout and stderr (both must have been spawned with
    /// `Stdio::piped()`) to the end of `path`, which keeps what an earlier run of the trial wrote
    /// (a resumed trial). A last line the child leaves without a newline gets one.
    ///
    /// Errors: `path` exists and cannot be read, or a pipe is missing.
    pub fn attach(child: &mut Child, path: &Path) -> Result<TrialLog> {
        let mut text = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e).with_context(|| format!("{}: cannot read", path.display())),
        };
        if text.last().is_some_and(|&b| b != b'\n') {
            text.push(b'\n');
        }
        let file = Arc::new(Mutex::new(LogFile { path: path.to_path_buf(), text, error: None }));
        let stdout = child.stdout.take().ok_or_else(|| err!(Internal, "a trial's stdout is not piped"))?;
        let stderr = child.stderr.take().ok_or_else(|| err!(Internal, "a trial's stderr is not piped"))?;
        let threads = vec![copy_lines(stdout, file.clone()), copy_lines(stderr, file.clone())];
        Ok(TrialLog { threads, file })
    }

    /// Waits until both pipes are closed (the child has exited) and every line is in the file.
    ///
    /// Errors: a version of the log could not be written (the message names the file); the
    /// lines up to the failed one are in the file.
    pub fn finish(self) -> Result<()> {
        for thread in self.threads {
            let _ = thread.join();
        }
        match self.file.lock().map_err(|_| err!(Internal, "a trial log's copier panicked"))?.error.take() {
            Some(e) => Err(err!(Io, "{e}").into()),
            None => Ok(()),
        }
    }
}

fn copy_lines(pipe: impl Read + Send + 'static, file: Arc<Mutex<LogFile>>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            if line.last() != Some(&b'\n') {
                line.push(b'\n');
            }
            let Ok(mut log) = file.lock() else { break };
            log.text.extend_from_slice(&line);
            if let Err(e) = write_atomic(&log.path, &log.text) {
                log.error.get_or_insert_with(|| format!("{e:#}"));
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    #[test]
    fn both_streams_reach_the_log_after_what_it_held_and_a_last_half_line_is_ended() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("train.log");
        std::fs::write(&path, "earlier run\ncut").unwrap();
        let mut child = Command::new("sh")
            .arg("-c")
            .arg("echo out1; echo err1 >&2; sleep 0.1; echo out2; printf 'no newline'")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = TrialLog::attach(&mut child, &path).unwrap();
        assert!(child.wait().unwrap().success());
        log.finish().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("earlier run\ncut\n"), "{text}");
        for line in ["out1\n", "err1\n", "out2\n", "no newline\n"] {
            assert!(text.contains(line), "{line:?} missing from {text:?}");
        }
        assert!(text.find("out1").unwrap() < text.find("out2").unwrap());
        assert!(text.ends_with('\n'));
        // No temporary file is left beside the log.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
