//! Every kind of bad input exits non-zero with a message naming the file and line (or path),
//! and --skip-bad-rows skips row-level problems and says how many.

mod common;
use common::*;

/// Runs `ferkit data stats` on a CSV with `text` and returns (success, stderr).
fn stats_on(text: &str, name: &str, extra: &[&str]) -> (bool, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir.path().join(name), text);
    let mut args = vec!["data", "stats", "--data", path.to_str().unwrap()];
    args.extend_from_slice(extra);
    let out = ferkit(&args);
    (out.status.success(), stderr(&out), stdout(&out))
}

fn good_row(label: usize, usage: &str) -> String {
    format!("{label},{},{usage}\n", pixels_text(&synthetic_face(label, 1)))
}

fn csv_with_bad_row(bad: &str) -> String {
    format!(
        "emotion,pixels,Usage\n{}{}{bad}\n{}",
        good_row(0, "Training"),
        good_row(1, "PublicTest"),
        good_row(2, "PrivateTest")
    )
}

fn assert_fails_at(text: &str, line: usize, needle: &str) {
    let (ok, err, _) = stats_on(text, "bad.csv", &[]);
    assert!(!ok, "should fail: {needle}");
    assert!(err.contains(&format!("bad.csv line {line}")), "no file and line in: {err}");
    assert!(err.contains(needle), "`{needle}` not in: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn wrong_pixel_count() {
    let short = format!("3,{},Training", pixels_text(&synthetic_face(3, 2)[..2303]));
    assert_fails_at(&csv_with_bad_row(&short), 4, "expected 2304 values (48x48), found 2303");
    let long = format!("3,{} 7,Training", pixels_text(&synthetic_face(3, 2)));
    assert_fails_at(&csv_with_bad_row(&long), 4, "found 2305");
}

#[test]
fn non_numeric_pixel() {
    let mut px: Vec<String> = synthetic_face(3, 2).iter().map(|p| p.to_string()).collect();
    px[10] = "1O".into();
    assert_fails_at(&csv_with_bad_row(&format!("3,{},Training", px.join(" "))), 4, "pixel 11 is `1O`, not a number");
}

#[test]
fn out_of_range_pixel() {
    let mut px: Vec<String> = synthetic_face(3, 2).iter().map(|p| p.to_string()).collect();
    px[0] = "256".into();
    assert_fails_at(&csv_with_bad_row(&format!("3,{},Training", px.join(" "))), 4, "pixel 1 is 256, outside 0..=255");
}

#[test]
fn label_outside_0_to_6() {
    let row = good_row(3, "Training").replacen('3', "7", 1);
    assert_fails_at(&csv_with_bad_row(row.trim_end()), 4, "emotion `7` is not a label in 0..=6");
    let row = good_row(3, "Training").replacen('3', "x", 1);
    assert_fails_at(&csv_with_bad_row(row.trim_end()), 4, "emotion `x`");
}

#[test]
fn unknown_usage() {
    assert_fails_at(&csv_with_bad_row(good_row(3, "Holdout").trim_end()), 4, "Usage `Holdout` is unknown");
}

#[test]
fn missing_columns() {
    let text = format!("emotion,Usage\n{}", good_row(0, "Training"));
    assert_fails_at(&text, 1, "missing column `pixels`");
    let text = format!("label,pixels,Usage\n{}", good_row(0, "Training"));
    assert_fails_at(&text, 1, "missing column `emotion`");
    let text = format!("emotion,pixels\n0,{}\n", pixels_text(&synthetic_face(0, 0)));
    assert_fails_at(&text, 1, "missing column `Usage`");
}

#[test]
fn wrong_field_count() {
    assert_fails_at(&csv_with_bad_row("3,1 2 3"), 4, "expected 3 comma-separated fields, found 2");
}

#[test]
fn empty_and_header_only_files() {
    let (ok, err, _) = stats_on("", "empty.csv", &[]);
    assert!(!ok && err.contains("empty.csv") && err.contains("empty"), "{err}");
    let (ok, err, _) = stats_on("emotion,pixels,Usage\n", "header.csv", &[]);
    assert!(!ok && err.contains("header.csv") && err.contains("no data rows"), "{err}");
}

#[test]
fn truncated_plain_file() {
    let full = synthetic_csv(3);
    let cut = &full[..full.len() - 3000];
    let (ok, err, _) = stats_on(cut, "cut.csv", &[]);
    assert!(!ok, "{err}");
    assert!(err.contains("cut.csv line 10") && err.contains("cut short"), "{err}");
}

#[test]
fn truncated_gzip_file() {
    let dir = tempfile::tempdir().unwrap();
    let gz = write_gz(&dir.path().join("whole.csv.gz"), &synthetic_csv(20));
    let bytes = std::fs::read(&gz).unwrap();
    let cut = write(&dir.path().join("cut.csv.gz"), &bytes[..bytes.len() / 2]);
    let out = ferkit(&["data", "stats", "--data", cut.to_str().unwrap()]);
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(err.contains("cut.csv.gz line") && err.contains("truncated"), "{err}");
    // The whole file reads fine.
    let out = ferkit(&["data", "stats", "--data", gz.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn missing_file_is_named() {
    let out = ferkit(&["data", "stats", "--data", "/nonexistent/fer.csv"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("/nonexistent/fer.csv"), "{}", stderr(&out));
}

#[test]
fn skip_bad_rows_reports_the_count() {
    let text = format!(
        "{}{}\n9,{},Training\n",
        csv_with_bad_row("3,1 2 3,Training"),
        "4,abc,PublicTest",
        pixels_text(&synthetic_face(0, 0))
    );
    let (ok, err, out) = stats_on(&text, "mixed.csv", &["--skip-bad-rows"]);
    assert!(ok, "{err}");
    assert!(err.contains("loaded 3 rows") && err.contains("skipped 3 bad rows"), "{err}");
    assert!(err.contains("mixed.csv line 4"), "{err}");
    let train_line = out.lines().find(|l| l.starts_with("train")).unwrap();
    assert!(train_line.trim_end().ends_with(" 1"), "{out}");
}

#[test]
fn unreadable_image_in_a_folder_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let class = dir.path().join("train/happy");
    std::fs::create_dir_all(&class).unwrap();
    image::GrayImage::from_raw(48, 48, synthetic_face(3, 0)).unwrap().save(class.join("good.png")).unwrap();
    write(&class.join("broken.png"), b"not a png at all");
    let out = ferkit(&["data", "stats", "--data", dir.path().to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("broken.png"), "{}", stderr(&out));
    let out = ferkit(&["data", "stats", "--data", dir.path().to_str().unwrap(), "--skip-bad-rows"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("skipped 1 bad rows"), "{}", stderr(&out));
}

#[test]
fn unknown_class_folder_is_named() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("train/bored")).unwrap();
    let out = ferkit(&["data", "stats", "--data", dir.path().to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("bored") && stderr(&out).contains("not a class name"), "{}", stderr(&out));
}
