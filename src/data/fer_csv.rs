//! The FER2013 CSV reader: `emotion,pixels[,Usage]`, plain or gzip-compressed, also inside a tar
//! archive (FER2013's download, `fer2013.tar.gz`, holds `fer2013/fer2013.csv`), with or without
//! a UTF-8 byte-order mark and CRLF line ends (spreadsheets write both). A zip archive is named
//! as one, with what it holds.
//!
//! Every problem is reported with the file and the 1-based line number (the header is line 1).
//! Row-level problems can be skipped (`skip_bad_rows`); file-level ones (unreadable, empty,
//! no header, truncated gzip) always fail.

use std::io::Read;
use std::path::Path;

use crate::error::{Context, Result, bail};

use super::dataset::{Dataset, IMAGE_PIXELS, NUM_CLASSES, SplitName};
use super::load_report::LoadReport;

/// Where the rows of one file go.
#[derive(Clone, Copy, Debug)]
pub enum SplitAssignment {
    /// Each row's `Usage` column decides (the file must have one).
    ByUsage,
    /// Every row goes to this split; a `Usage` column, if present, is ignored.
    All(SplitName),
}

/// Column positions found in the header.
struct Columns {
    emotion: usize,
    pixels: usize,
    usage: Option<usize>,
    count: usize,
}

/// The longest data row read: 1 MiB. A FER2013 row is about 9 KB (2304 numbers of up to three
/// digits); a longer line is a bad row (an error, or skipped and counted with --skip-bad-rows)
/// before any of it is parsed.
pub const MAX_ROW_BYTES: usize = 1 << 20;

/// Reads `path` and appends its rows to `dataset`.
pub fn read_csv(
    path: &Path,
    assignment: SplitAssignment,
    skip_bad_rows: bool,
    dataset: &mut Dataset,
    report: &mut LoadReport,
) -> Result<()> {
    let shown = path.display();
    let (text, truncated) = read_text(path, report)?;
    if text.iter().all(|b| b.is_ascii_whitespace()) {
        bail!(BadInput, "{shown}: the file is empty (expected a header line `emotion,pixels[,Usage]`)");
    }
    let mut lines = text.split(|&b| b == b'\n').enumerate().peekable();
    let (_, header) = lines.next().expect("non-empty text has a first line");
    let columns = parse_header(trim_line(header)).with_context(|| format!("{shown} line 1"))?;
    if matches!(assignment, SplitAssignment::ByUsage) && columns.usage.is_none() {
        bail!(
            BadInput,
            "{shown} line 1: missing column `Usage`, needed to tell train, validation and test \
             apart (or give one file per split with --train/--val/--test)"
        );
    }

    let mut rows_here = 0usize;
    let mut image = vec![0u8; IMAGE_PIXELS];
    while let Some((index, raw)) = lines.next() {
        let line_no = index + 1;
        let line = trim_line(raw);
        let is_last = lines.peek().is_none();
        if line.is_empty() {
            continue;
        }
        if truncated && is_last {
            bail!(
                BadInput,
                "{shown} line {line_no}: the file is truncated (the gzip stream ends in the middle \
                 of the data)"
            );
        }
        let parsed = if line.len() > MAX_ROW_BYTES {
            Err(format!(
                "expected a row of at most {MAX_ROW_BYTES} bytes (a FER2013 row is about 9 KB); this line has {} bytes",
                line.len()
            ))
        } else {
            parse_row(line, &columns, assignment, &mut image)
        };
        match parsed {
            Ok((split, label)) => {
                dataset.split_mut(split).push(&image, label);
                rows_here += 1;
            }
            Err(msg) => {
                // parse_row's messages start with the column they are about.
                let column = if msg.starts_with("emotion") {
                    Some("emotion")
                } else if msg.starts_with("Usage") {
                    Some("Usage")
                } else if msg.starts_with("expected") {
                    None
                } else {
                    Some("pixels")
                };
                let msg = format!("{shown} line {line_no}: {msg}");
                if skip_bad_rows {
                    report.skip(msg);
                } else {
                    // A front may offer to skip such rows (the CLI: --skip-bad-rows).
                    return Err(crate::err!(BadInput, "{msg}").at(Some(path), Some(line_no), column));
                }
            }
        }
    }
    if truncated {
        bail!(BadInput, "{shown}: the file is truncated (the gzip stream ends early)");
    }
    if rows_here == 0 {
        bail!(BadInput, "{shown}: no data rows after the header");
    }
    report.rows_read += rows_here;
    Ok(())
}

/// The file's bytes, decompressed when it starts with the gzip magic, taken out of a tar archive
/// when it is one, without a UTF-8 byte-order mark. The flag says the gzip stream ended early;
/// the bytes are then what could be decompressed.
fn read_text(path: &Path, report: &mut LoadReport) -> Result<(Vec<u8>, bool)> {
    read_text_limited(path, max_text_bytes(), report)
}

/// The most bytes a data file may hold once decompressed: 4 GB (FER2013 is 0.29 GB), or
/// `$FERKIT_MAX_CSV_BYTES`. A few megabytes of gzip can decompress to any size.
fn max_text_bytes() -> u64 {
    std::env::var("FERKIT_MAX_CSV_BYTES").ok().and_then(|v| v.parse().ok()).unwrap_or(4_000_000_000)
}

/// [`read_text`] with the decompressed size capped at `limit` bytes (an error names the file).
fn read_text_limited(path: &Path, limit: u64, report: &mut LoadReport) -> Result<(Vec<u8>, bool)> {
    let raw = std::fs::read(path).with_context(|| format!("{}: cannot read the file", path.display()))?;
    let (mut text, truncated) = if raw.len() >= 2 && raw[0] == 0x1f && raw[1] == 0x8b {
        let mut text = Vec::with_capacity(raw.len() * 4);
        let mut decoder = flate2::read::GzDecoder::new(&raw[..]).take(limit + 1);
        // read_to_end keeps what it decoded before an error: a truncated file still shows
        // the line where it breaks off.
        let truncated = decoder.read_to_end(&mut text).is_err();
        if text.len() as u64 > limit {
            bail!(
                BadInput,
                "{}: decompresses to more than {limit} bytes, the limit for a data file (set FERKIT_MAX_CSV_BYTES to allow more)",
                path.display()
            );
        }
        (text, truncated)
    } else {
        (raw, false)
    };
    if is_tar(&text) {
        let (name, inner) = csv_in_tar(path, &text)?;
        report.note(format!("{}: a tar archive; reading {name} inside it", path.display()));
        text = inner;
    } else if text.starts_with(b"PK\x03\x04") || text.starts_with(b"PK\x05\x06") {
        let names = zip_entry_names(&text);
        bail!(
            BadInput,
            "{}: a zip archive holding {}; unpack it (e.g. `unzip {}`) and give the CSV inside",
            path.display(),
            if names.is_empty() { "no readable list of files".to_string() } else { quote_list(&names) },
            path.display()
        );
    }
    if text.starts_with(b"\xEF\xBB\xBF") {
        text.drain(..3);
    }
    Ok((text, truncated))
}

/// A POSIX tar archive has `ustar` at byte 257 of its first header.
fn is_tar(bytes: &[u8]) -> bool {
    bytes.len() >= 512 && &bytes[257..262] == b"ustar"
}

/// The one `.csv` file in a tar archive; errors list the archive's files when there is none or
/// more than one.
fn csv_in_tar(path: &Path, bytes: &[u8]) -> Result<(String, Vec<u8>)> {
    let shown = path.display();
    let mut archive = tar::Archive::new(bytes);
    let mut names = Vec::new();
    let mut csv: Option<(String, Vec<u8>)> = None;
    for entry in archive.entries().with_context(|| format!("{shown}: a damaged tar archive"))? {
        let mut entry = entry.with_context(|| format!("{shown}: a damaged tar archive"))?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = entry.path().map(|p| p.display().to_string()).unwrap_or_else(|_| "?".into());
        let is_csv =
            name.to_ascii_lowercase().ends_with(".csv") && !name.rsplit('/').next().unwrap_or("").starts_with("._");
        if is_csv && csv.is_none() {
            let mut data = Vec::new();
            entry.read_to_end(&mut data).with_context(|| format!("{shown}: {name} in the archive is cut short"))?;
            csv = Some((name.clone(), data));
        } else if is_csv {
            bail!(
                BadInput,
                "{shown}: a tar archive holding several CSV files ({}); unpack it and give one",
                quote_list(&[csv.unwrap().0, name])
            );
        }
        names.push(name);
    }
    match csv {
        Some(found) => Ok(found),
        None => bail!(BadInput, "{shown}: a tar archive holding no CSV file (it holds {})", quote_list(&names)),
    }
}

/// The file names listed in a zip archive's central directory (best effort: empty when the
/// archive is damaged).
fn zip_entry_names(bytes: &[u8]) -> Vec<String> {
    let u16_at = |i: usize| bytes.get(i..i + 2).map(|b| u16::from_le_bytes([b[0], b[1]]) as usize);
    let u32_at = |i: usize| bytes.get(i..i + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize);
    // The end-of-central-directory record: within the last 64 KiB + 22 bytes.
    let Some(end) =
        (0..bytes.len().saturating_sub(21)).rev().take(65_557).find(|&i| bytes[i..].starts_with(b"PK\x05\x06"))
    else {
        return Vec::new();
    };
    let (Some(count), Some(mut at)) = (u16_at(end + 10), u32_at(end + 16)) else { return Vec::new() };
    let mut names = Vec::new();
    for _ in 0..count.min(1000) {
        if !bytes.get(at..).is_some_and(|b| b.starts_with(b"PK\x01\x02")) {
            break;
        }
        let (Some(n), Some(extra), Some(comment)) = (u16_at(at + 28), u16_at(at + 30), u16_at(at + 32)) else { break };
        let Some(name) = bytes.get(at + 46..at + 46 + n) else { break };
        names.push(String::from_utf8_lossy(name).into_owned());
        at += 46 + n + extra + comment;
    }
    names
}

/// Up to five names, quoted and shown safely, then how many more.
fn quote_list(names: &[String]) -> String {
    let mut shown: Vec<String> = names.iter().take(5).map(|n| format!("`{}`", printable(n.as_bytes(), 80))).collect();
    if names.len() > 5 {
        shown.push(format!("and {} more", names.len() - 5));
    }
    if shown.is_empty() { "nothing".to_string() } else { shown.join(", ") }
}

/// Text fit for a message: control characters and bytes that are not UTF-8 escaped, cut to
/// `max` characters. No error message prints raw binary.
pub fn printable(bytes: &[u8], max: usize) -> String {
    let text: String = String::from_utf8_lossy(bytes).chars().flat_map(char::escape_debug).collect();
    if text.chars().count() > max { format!("{}...", text.chars().take(max).collect::<String>()) } else { text }
}

fn trim_line(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    line.trim_ascii()
}

fn parse_header(line: &[u8]) -> Result<Columns> {
    let Ok(text) = std::str::from_utf8(line) else {
        bail!(BadInput, "the header is not text: `{}` (is this a CSV file?)", printable(line, 60));
    };
    let names: Vec<String> = text.split(',').map(|c| c.trim().trim_matches('"').to_ascii_lowercase()).collect();
    let find = |name: &str| names.iter().position(|n| n == name);
    let emotion = find("emotion");
    let pixels = find("pixels");
    match (emotion, pixels) {
        (Some(emotion), Some(pixels)) => Ok(Columns { emotion, pixels, usage: find("usage"), count: names.len() }),
        _ => {
            let missing = if emotion.is_none() { "emotion" } else { "pixels" };
            bail!(
                BadInput,
                "missing column `{missing}` in the header `{}` (expected `emotion,pixels[,Usage]`)",
                printable(text.as_bytes(), 80)
            )
        }
    }
}

/// Parses one data row into `image`; returns its split and label, or a message.
fn parse_row(
    line: &[u8],
    columns: &Columns,
    assignment: SplitAssignment,
    image: &mut [u8],
) -> Result<(SplitName, u8), String> {
    let fields: Vec<&[u8]> = line.split(|&b| b == b',').collect();
    if fields.len() != columns.count {
        return Err(format!(
            "expected {} comma-separated fields, found {} (is the line cut short?)",
            columns.count,
            fields.len()
        ));
    }
    let field = |i: usize| -> &[u8] {
        let f = fields[i].trim_ascii();
        f.strip_prefix(b"\"").and_then(|f| f.strip_suffix(b"\"")).unwrap_or(f)
    };

    let emotion = field(columns.emotion);
    let label = std::str::from_utf8(emotion)
        .ok()
        .and_then(|s| s.parse::<u8>().ok())
        .filter(|&l| (l as usize) < NUM_CLASSES)
        .ok_or_else(|| format!("emotion `{}` is not a label in 0..=6", printable(emotion, 40)))?;

    let split = match assignment {
        SplitAssignment::All(split) => split,
        SplitAssignment::ByUsage => {
            let usage = field(columns.usage.expect("checked with the header"));
            let usage = printable(usage, 40);
            SplitName::parse(&usage)
                .ok_or_else(|| format!("Usage `{usage}` is unknown (expected Training, PublicTest or PrivateTest)"))?
        }
    };

    parse_pixels(field(columns.pixels), image)?;
    Ok((split, label))
}

/// Parses space-separated grey levels into `image`, which must be filled exactly.
fn parse_pixels(text: &[u8], image: &mut [u8]) -> Result<(), String> {
    let mut count = 0usize;
    for token in text.split(|b| b.is_ascii_whitespace()).filter(|t| !t.is_empty()) {
        let value = parse_grey(token).ok_or_else(|| {
            let shown = printable(token, 40);
            if token.iter().all(u8::is_ascii_digit) {
                format!("pixel {} is {shown}, outside 0..=255", count + 1)
            } else {
                format!("pixel {} is `{shown}`, not a number", count + 1)
            }
        })?;
        if count < image.len() {
            image[count] = value;
        }
        count += 1;
    }
    if count != image.len() {
        return Err(format!(
            "pixels: expected {} values (48x48), found {count}{}",
            image.len(),
            if count < image.len() { " (is the line cut short?)" } else { "" }
        ));
    }
    Ok(())
}

/// A decimal grey level in 0..=255; `None` for anything else.
fn parse_grey(token: &[u8]) -> Option<u8> {
    if token.is_empty() {
        return None;
    }
    let mut value: u32 = 0;
    for &b in token {
        if !b.is_ascii_digit() {
            return None;
        }
        value = value * 10 + (b - b'0') as u32;
        if value > 255 {
            return None;
        }
    }
    Some(value as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grey_levels() {
        assert_eq!(parse_grey(b"0"), Some(0));
        assert_eq!(parse_grey(b"255"), Some(255));
        assert_eq!(parse_grey(b"256"), None);
        assert_eq!(parse_grey(b"0012"), Some(12));
        assert_eq!(parse_grey(b"1x"), None);
        assert_eq!(parse_grey(b"-1"), None);
        assert_eq!(parse_grey(b"1000"), None);
    }

    #[test]
    fn pixel_errors_name_the_position() {
        let mut img = vec![0u8; 4];
        assert!(parse_pixels(b"1 2 3 4", &mut img).is_ok());
        assert_eq!(img, vec![1, 2, 3, 4]);
        let e = parse_pixels(b"1 2 x 4", &mut img).unwrap_err();
        assert!(e.contains("pixel 3") && e.contains("not a number"), "{e}");
        let e = parse_pixels(b"1 2 300 4", &mut img).unwrap_err();
        assert!(e.contains("pixel 3") && e.contains("outside 0..=255"), "{e}");
        let e = parse_pixels(b"1 2 3", &mut img).unwrap_err();
        assert!(e.contains("found 3"), "{e}");
        let e = parse_pixels(b"1 2 3 4 5", &mut img).unwrap_err();
        assert!(e.contains("found 5"), "{e}");
    }

    /// Issue 20: a gzip bomb is refused by name once its decompressed size passes the limit.
    #[test]
    fn a_gzip_that_decompresses_past_the_limit_is_refused() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bomb.csv.gz");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(b"emotion,pixels,Usage\n").unwrap();
        gz.write_all(&vec![b'0'; 5_000_000]).unwrap();
        let bytes = gz.finish().unwrap();
        assert!(bytes.len() < 20_000, "{} bytes", bytes.len());
        std::fs::write(&path, bytes).unwrap();
        let err = format!("{:#}", read_text_limited(&path, 1_000_000, &mut LoadReport::default()).unwrap_err());
        assert!(err.contains("bomb.csv.gz") && err.contains("more than 1000000 bytes"), "{err}");
        assert_eq!(read_text_limited(&path, 10_000_000, &mut LoadReport::default()).unwrap().0.len(), 5_000_021);
    }

    /// Issue 20: a line longer than MAX_ROW_BYTES is a bad row named by its line, before it is
    /// parsed; with skipping on it is counted and the good rows are kept.
    #[test]
    fn a_row_past_the_size_limit_is_a_bad_row() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("long.csv");
        let good = format!("3,{},Training\n", vec!["7"; IMAGE_PIXELS].join(" "));
        let long = format!("3,{},Training\n", "1 ".repeat(MAX_ROW_BYTES));
        std::fs::write(&path, format!("emotion,pixels,Usage\n{good}{long}{good}")).unwrap();
        let (mut dataset, mut report) = (Dataset::default(), LoadReport::default());
        let err = read_csv(&path, SplitAssignment::ByUsage, false, &mut dataset, &mut report).unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains("long.csv line 3") && text.contains(&format!("{} bytes", long.len() - 1)), "{text}");
        let (mut dataset, mut report) = (Dataset::default(), LoadReport::default());
        read_csv(&path, SplitAssignment::ByUsage, true, &mut dataset, &mut report).unwrap();
        assert_eq!((dataset.train.len(), report.rows_read, report.skipped.len()), (2, 2, 1));
    }
}
