//! On real FER2013 rows from ../shared: the notebook's counts, and cnn3 learning in 2 epochs.
//! Skips, saying so, when ../shared is absent.

mod common;
use common::*;

#[test]
fn real_data_counts_match_the_notebook() {
    let Some(data) = shared_fer2013() else {
        common::skip("../shared/data/fer2013/fer2013.csv.gz is absent");
        return;
    };
    let out = ferkit(&["data", "stats", "--data", data.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let train: Vec<u64> = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
        .iter()
        .map(|c| json["train"][c].as_u64().unwrap())
        .collect();
    assert_eq!(train, [3995, 436, 4097, 7215, 4830, 3171, 4965]);
    assert_eq!(json["val"]["total"], 3589);
    assert_eq!(json["test"]["total"], 3589);
}

#[test]
fn cnn3_learns_in_two_epochs_on_a_few_thousand_real_rows() {
    let Some(data) = shared_fer2013() else {
        common::skip("../shared/data/fer2013/fer2013.csv.gz is absent");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("cnn3");
    // 6000 training rows, the whole validation split (3589 rows).
    let out = ferkit(&[
        "train",
        "cnn3",
        "--data",
        data.to_str().unwrap(),
        "--subset",
        "6000",
        "--epochs",
        "2",
        "--batch",
        "64",
        "--seed",
        "1",
        "--out",
        run.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let metrics: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(metrics["val"]["rows"], 3589);
    let val_accuracy = metrics["val"]["accuracy"].as_f64().unwrap();
    // The majority class (happy) is 895 / 3589 = 24.9% of the validation split.
    let macro_f1 = metrics["val"]["macro_f1"].as_f64().unwrap();
    common::figure(&format!(
        "cnn3, 2 epochs on 6000 rows: validation accuracy {val_accuracy:.4}, macro F1 {macro_f1:.4}"
    ));
    // Measured (seed 1, the same on 1 and 3 threads): accuracy 0.3522, macro F1 0.2478 when
    // written; 0.3561 and 0.2511 in session 21 (AMD EPYC, kernels changed since). The bounds leave
    // room for that and for another CPU, whose matrix products may sum in another order:
    // accuracy above 0.30, still well above the majority rate (0.249), and macro F1 above 0.15
    // (a net that answers one class has about 0.06).
    assert!(val_accuracy > 0.30, "validation accuracy {val_accuracy} (measured 0.3522)");
    assert!(macro_f1 > 0.15, "macro F1 {macro_f1} (measured 0.2478): the net answers too few classes");
}
