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
    // The results table ends with the `fast` preset's "beyond the notebook" row: trained when
    // the ImageNet weights are there (as the transfer step), else marked as not run.
    let beyond = "| beyond the notebook: fast preset |";
    let table_end = md.lines().skip_while(|l| !l.starts_with("| fnn1 |")).take_while(|l| l.starts_with('|')).last();
    assert!(table_end.is_some_and(|l| l.starts_with(beyond)), "the results table does not end with {beyond}:\n{md}");
    let fast_ran = out.join("fast/metrics.json").exists();
    assert_eq!(
        fast_ran,
        out.join("transfer/metrics.json").exists(),
        "the fast preset runs when the transfer step does"
    );
    if !fast_ran {
        common::skip("the fast preset's row (../shared/models/efficientnet-lite0-57934424.pth is absent)");
    }
    // Each step's row holds its run's own figures from metrics.json.
    let runs: Vec<(String, std::path::PathBuf)> = ["fnn1", "fnn2", "fnn3", "cnn1", "cnn2", "cnn3"]
        .iter()
        .map(|n| (n.to_string(), out.join("nets").join(n)))
        .chain([("tuned + augmentation".to_string(), out.join("augmented"))])
        .chain(fast_ran.then(|| ("beyond the notebook: fast preset".to_string(), out.join("fast"))))
        .collect();
    let pct = |m: &serde_json::Value, split: &str| format!("{:.2}%", 100.0 * m[split]["accuracy"].as_f64().unwrap());
    for (step, run) in &runs {
        let m: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(run.join("metrics.json")).unwrap()).unwrap();
        let row: Vec<&str> = md
            .lines()
            .find(|l| l.starts_with(&format!("| {step} |")))
            .unwrap_or_else(|| panic!("no row for {step}:\n{md}"))
            .split('|')
            .map(str::trim)
            .collect();
        // | step | model | params | kept epoch | train acc | val acc | test acc | seconds | notebook |
        assert_eq!(row[4], format!("{}/{}", m["best_epoch"], m["epochs"]), "{step}: kept epoch");
        // A figure says when it averages views of each face (the fast preset's mirror).
        let cell = |split: &str| match m[split]["tta"].as_str() {
            None => pct(&m, split),
            Some(tta) => {
                assert_eq!((step.as_str(), tta), ("beyond the notebook: fast preset", "hflip"));
                format!("{} (mirror TTA)", pct(&m, split))
            }
        };
        assert_eq!(&row[5..8], &[pct(&m, "train"), cell("val"), cell("test")], "{step}: {row:?}");
    }
    // Every picture the Markdown report names exists and decodes; the HTML embeds as many, each decoding.
    let linked: Vec<&str> =
        md.lines().filter_map(|l| l.strip_prefix("![")).map(|l| &l[l.find("](").unwrap() + 2..l.len() - 1]).collect();
    assert!(linked.len() >= 15, "{} pictures", linked.len());
    for path in &linked {
        let picture = image::open(out.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert!(picture.width() > 50 && picture.height() > 50, "{path}");
    }
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    let embedded: Vec<&str> =
        html.split("src=\"data:image/png;base64,").skip(1).map(|rest| &rest[..rest.find('"').unwrap()]).collect();
    assert_eq!(embedded.len(), linked.len(), "the HTML report embeds every picture the Markdown one links");
    for data in embedded {
        use base64::Engine;
        let bytes = base64::engine::general_purpose::STANDARD.decode(data).unwrap();
        image::load_from_memory(&bytes).unwrap();
    }
    assert!(!html.contains("src=\"nets/"), "images are embedded, not linked");

    let second = ferkit(&args);
    assert!(second.status.success(), "{}", stderr(&second));
    let log = stderr(&second);
    assert_eq!(
        log.matches("already trained, kept").count(),
        6 + 1 + 2 * usize::from(out.join("transfer/metrics.json").exists()),
        "{log}"
    );
    assert!(log.contains("2 trials finished, 0 to re-run"), "{log}");
}
