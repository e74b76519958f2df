//! `ferkit reproduce --quick` end to end on synthetic data: every step, the report, and a second
//! run that keeps every finished step instead of redoing it.

mod common;
use common::*;

#[test]
fn quick_reproduction_writes_a_report_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let data = write(&dir.path().join("fer.csv"), synthetic_csv(42));
    let out = dir.path().join("repro");
    let args = ["reproduce", "--data", data.to_str().unwrap(), "--out", out.to_str().unwrap(), "--quick"];
    let first = ferkit(&args);
    assert!(first.status.success(), "{}", stderr(&first));
    for file in [
        "report.md",
        "report.html",
        "data/grid.png",
        "data/augment_preview.png",
        "nets/cnn1/metrics.json",
        "tune/trials.csv",
        "augmented/metrics.json",
    ] {
        assert!(out.join(file).exists(), "{file} missing");
    }
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    for row in
        ["| fnn1 |", "| cnn3 |", "| tuned (best trial) |", "| tuned + augmentation |", "54.00% (best CNN)", "58.26%"]
    {
        assert!(md.contains(row), "`{row}` not in the report:\n{md}");
    }
    // The last step points the final model at ../shared's photos, when they are there.
    if shared("data/photos").is_some() && shared("models/haarcascade_frontalface_default.xml").is_some() {
        assert!(out.join("photos/predictions.json").exists() && out.join("photos/astronaut.png").exists());
        assert!(md.contains("## Photos") && md.contains("| coffee.png | none found |"), "{md}");
    } else {
        common::skip("the photos step (../shared/data/photos or the Haar cascade is absent)");
    }
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.matches("<img ").count() >= 15, "the HTML report embeds every picture");
    assert!(!html.contains("src=\"nets/"), "images are embedded, not linked");

    let second = ferkit(&args);
    assert!(second.status.success(), "{}", stderr(&second));
    let log = stderr(&second);
    assert_eq!(
        log.matches("already trained, kept").count(),
        6 + 1 + usize::from(out.join("transfer/metrics.json").exists()),
        "{log}"
    );
    assert!(log.contains("2 trials finished, 0 to re-run"), "{log}");
}
