//! What users write is checked before any work starts: values that cannot mean what they say
//! are refused with the range, and nothing is left behind.

mod common;
use common::*;

#[test]
fn learning_rates_that_cannot_train_are_refused_before_a_run_directory_exists() {
    let dir = tempfile::tempdir().unwrap();
    let data = write_gz(&dir.path().join("fer.csv.gz"), &synthetic_csv(14));
    let run = dir.path().join("run");
    for lr in ["-0.0005", "0", "nan", "inf"] {
        let out = ferkit(&["train", "fnn1", "--data", data.to_str().unwrap(), "--lr", lr, "--out", run.to_str().unwrap()]);
        assert!(!out.status.success(), "--lr {lr} was accepted");
        assert!(stderr(&out).contains("--lr must be a positive finite number"), "{lr}: {}", stderr(&out));
        assert!(!run.exists(), "--lr {lr} left {}", run.display());
    }
}

#[test]
fn a_layer_after_the_final_softmax_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let net = write(
        &dir.path().join("net.toml"),
        "name = \"n\"\ninput = [2304]\n[[layers]]\nkind = \"dense\"\nunits = 7\nactivation = \"softmax\"\n\
         [[layers]]\nkind = \"dropout\"\nrate = 0.5\n",
    );
    let out = ferkit(&["summary", net.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("softmax belongs on the last layer"), "{}", stderr(&out));
}

#[test]
fn detector_settings_that_would_blow_up_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let face = dir.path().join("face.png");
    image::GrayImage::from_raw(48, 48, synthetic_face(3, 1)).unwrap().save(&face).unwrap();
    for size in ["0", "1", "11"] {
        let out = ferkit(&["predict", face.to_str().unwrap(), "--mtcnn", dir.path().to_str().unwrap(), "--min-size", size]);
        assert!(!out.status.success());
        assert!(stderr(&out).contains("--min-size must be at least 12 with --mtcnn"), "{size}: {}", stderr(&out));
    }
    let out = ferkit(&["train", "fnn1", "--data", "x.csv", "--augment", "hflip=false,hflip=true"]);
    assert!(!out.status.success() && stderr(&out).contains("given twice"), "{}", stderr(&out));
}
