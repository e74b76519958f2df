//! The model shipped in `models/` is the one its card describes: its PrivateTest accuracy, measured
//! now on FER2013 from ../shared, equals the card's figure (and the figure in its TOML) to 0.01
//! points, and its file stays under the 10 MB the repository allows.

mod common;
use common::*;

use std::path::Path;

fn repo(relative: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// The percentage in the first cell that holds one, on the card's table row starting `| {row} |`.
fn card_percent(card: &str, row: &str) -> f64 {
    let line = card
        .lines()
        .find(|l| l.starts_with(&format!("| {row} |")))
        .unwrap_or_else(|| panic!("MODEL_CARD.md has no table row `| {row} |`"));
    let cell = line.split('|').map(str::trim).find(|c| c.ends_with('%')).unwrap_or_else(|| panic!("{line}"));
    cell.trim_end_matches('%').parse().unwrap_or_else(|e| panic!("{line}: {e}"))
}

#[test]
fn the_shipped_model_is_small_and_described() {
    let weights = std::fs::metadata(repo("models/ferkit-fer2013.bpk")).unwrap().len();
    assert!(weights <= 10_000_000, "models/ferkit-fer2013.bpk is {weights} bytes, over 10 MB");
    let card = std::fs::read_to_string(repo("models/MODEL_CARD.md")).unwrap();
    for needed in ["PublicTest", "PrivateTest", "macro F1", "disgust", "fear", "confusion_test.png", "ferkit train"] {
        assert!(card.contains(needed), "MODEL_CARD.md does not mention `{needed}`");
    }
    assert!(repo("models/confusion_test.png").exists());
}

#[test]
fn the_shipped_models_private_test_accuracy_is_the_cards() {
    let Some(data) = shared_fer2013() else {
        common::skip("../shared/data/fer2013/fer2013.csv.gz is absent");
        return;
    };
    let card = std::fs::read_to_string(repo("models/MODEL_CARD.md")).unwrap();
    let toml: toml::Value =
        toml::from_str(&std::fs::read_to_string(repo("models/ferkit-fer2013.toml")).unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for (split, name) in [("test", "PrivateTest"), ("val", "PublicTest")] {
        let out = ferkit(&[
            "eval",
            "--data",
            data.to_str().unwrap(),
            "--split",
            split,
            "--out",
            dir.path().to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        let result: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join(format!("eval_{split}.json"))).unwrap())
                .unwrap();
        let measured = 100.0 * result["accuracy"].as_f64().unwrap();
        let on_card = card_percent(&card, name);
        // The card rounds to two decimals: 0.005 points, plus float noise.
        assert!((measured - on_card).abs() <= 0.0051, "{name}: measured {measured:.4}%, card says {on_card}%");
        let in_toml = 100.0 * toml["accuracy"][name].as_float().unwrap();
        assert!((measured - in_toml).abs() < 0.01, "{name}: measured {measured:.4}%, TOML says {in_toml}%");
        assert_eq!(result["rows"], 3589, "FER2013 has 3,589 faces in each of PublicTest and PrivateTest");
    }
}
