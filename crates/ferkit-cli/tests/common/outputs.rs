//! What a killed or failed command left in its output folder: every file, ferkit's temporary
//! files, and whether a file is whole (kill and full-disk tests, issue 20).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// ferkit's temporary names (`.NAME.tmp-PID`, util::atomic::temp_path).
pub fn is_temporary(path: &Path) -> bool {
    let name = path.file_name().unwrap().to_string_lossy();
    name.starts_with('.') && name.contains(".tmp-")
}

/// Every file under `dir` (relative path -> bytes), and the temporaries apart (full paths).
fn walk(dir: &Path) -> (BTreeMap<PathBuf, Vec<u8>>, Vec<PathBuf>) {
    fn visit(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>, temps: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                visit(root, &path, out, temps);
            } else if is_temporary(&path) {
                temps.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                out.insert(path.strip_prefix(root).unwrap().to_path_buf(), bytes);
            }
        }
    }
    let (mut out, mut temps) = (BTreeMap::new(), Vec::new());
    visit(dir, dir, &mut out, &mut temps);
    (out, temps)
}

/// Every file under `dir` (relative path -> bytes), temporaries apart.
pub fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    walk(dir).0
}

/// ferkit's temporary files under `dir`.
pub fn temporaries(dir: &Path) -> Vec<PathBuf> {
    walk(dir).1
}

#[derive(Debug, PartialEq)]
pub enum Verdict {
    Complete,
    Partial(String),
    /// A format the checker does not read.
    Unknown,
}

/// Whether `bytes` is a whole file of the format `path`'s extension names. A text file cut
/// right after a newline can look whole (every line of it is); a cut anywhere else cannot.
pub fn check_complete(path: &Path, bytes: &[u8]) -> Verdict {
    let ext = path.extension().map(|e| e.to_string_lossy().to_lowercase()).unwrap_or_default();
    let text = || std::str::from_utf8(bytes).map_err(|e| e.to_string());
    let result: Result<(), String> = match ext.as_str() {
        "json" => serde_json::from_slice::<serde_json::Value>(bytes).map(drop).map_err(|e| e.to_string()),
        "jsonl" => text().and_then(|t| {
            if !t.ends_with('\n') {
                return Err("no final newline".into());
            }
            t.lines()
                .try_for_each(|l| serde_json::from_str::<serde_json::Value>(l).map(drop).map_err(|e| e.to_string()))
        }),
        "toml" => text().and_then(|t| {
            if !t.ends_with('\n') {
                return Err("no final newline".into());
            }
            toml::from_str::<toml::Table>(t).map(drop).map_err(|e| e.to_string())
        }),
        "csv" => text().and_then(|t| {
            let fields = |line: &str| {
                line.chars().fold((1, false), |(n, quoted), c| match c {
                    '"' => (n, !quoted),
                    ',' if !quoted => (n + 1, quoted),
                    _ => (n, quoted),
                })
            };
            let mut lines = t.lines();
            let header = lines.next().ok_or("empty")?;
            let width = fields(header).0;
            if !t.ends_with('\n') {
                return Err("no final newline".into());
            }
            match lines.map(fields).find(|&(n, quoted)| n != width || quoted) {
                Some((n, _)) => Err(format!("a row of {n} fields under a header of {width}")),
                None => Ok(()),
            }
        }),
        "png" => image::load_from_memory(bytes).map(drop).map_err(|e| e.to_string()),
        "bpk" => burn::store::ModuleRecord::from_bytes(burn::tensor::Bytes::from_bytes_vec(bytes.to_vec()))
            .map(drop)
            .map_err(|e| e.to_string()),
        "crc32" => text().and_then(|t| {
            let t = t.trim_end();
            if t.len() == 8 && t.chars().all(|c| c.is_ascii_hexdigit()) { Ok(()) } else { Err(format!("{t:?}")) }
        }),
        // ferkit's text files (summaries, load reports, Markdown reports) end with a newline; a log (a trial's
        // train.log) is appended to line by line and holds whole lines only.
        "txt" | "log" | "md" => {
            text().and_then(|t| if t.ends_with('\n') { Ok(()) } else { Err("no final newline".into()) })
        }
        "html" => {
            text().and_then(|t| if t.trim_end().ends_with("</html>") { Ok(()) } else { Err("no </html>".into()) })
        }
        _ => return Verdict::Unknown,
    };
    match result {
        Ok(()) => Verdict::Complete,
        Err(why) => Verdict::Partial(why),
    }
}
