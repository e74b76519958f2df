//! Whole-line output. `println!`/`eprintln!` may write a line in several system calls (the text,
//! then the newline); a process killed between them leaves a half line in a log that outlives it
//! (a trial's train.log, a redirected run). These write each line, newline included, in one call.

use std::io::Write;

/// `line` and a newline on standard output, in one write.
pub fn say(line: &str) {
    let _ = std::io::stdout().lock().write_all(format!("{line}\n").as_bytes());
}

/// `line` and a newline on standard error, in one write.
pub fn tell(line: &str) {
    let _ = std::io::stderr().lock().write_all(format!("{line}\n").as_bytes());
}
