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
        let out =
            ferkit(&["train", "fnn1", "--data", data.to_str().unwrap(), "--lr", lr, "--out", run.to_str().unwrap()]);
        assert!(!out.status.success(), "--lr {lr} was accepted");
        assert!(
            stderr(&out).contains("learning_rate must be a positive finite number")
                && stderr(&out).contains("hint: set with --lr"),
            "{lr}: {}",
            stderr(&out)
        );
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
        let out =
            ferkit(&["predict", face.to_str().unwrap(), "--mtcnn", dir.path().to_str().unwrap(), "--min-size", size]);
        assert!(!out.status.success());
        assert!(stderr(&out).contains("--min-size must be at least 12 with --mtcnn"), "{size}: {}", stderr(&out));
    }
    let out = ferkit(&["train", "fnn1", "--data", "x.csv", "--augment", "hflip=false,hflip=true"]);
    assert!(!out.status.success() && stderr(&out).contains("given twice"), "{}", stderr(&out));
}

#[test]
fn a_damaged_weights_file_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let data = write_gz(&dir.path().join("fer.csv.gz"), &synthetic_csv(14));
    let run = dir.path().join("run");
    let out =
        ferkit(&["train", "fnn1", "--data", data.to_str().unwrap(), "--epochs", "1", "--out", run.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(run.join("model.bpk.crc32").exists());
    let eval = ferkit(&["eval", run.to_str().unwrap()]);
    assert!(eval.status.success(), "{}", stderr(&eval));

    // The last bytes overwritten, as a cut-off copy or a bad disk leaves them.
    let weights = run.join("model.bpk");
    let mut bytes = std::fs::read(&weights).unwrap();
    let n = bytes.len();
    for b in &mut bytes[n - 64..] {
        *b ^= 0x5a;
    }
    std::fs::write(&weights, &bytes).unwrap();
    for args in [
        vec!["eval", run.to_str().unwrap()],
        vec!["predict", "x.png", "--model", run.to_str().unwrap(), "--whole-image"],
    ] {
        let out = ferkit(&args);
        assert!(!out.status.success(), "{args:?}");
        assert!(stderr(&out).contains("model.bpk: damaged"), "{args:?}: {}", stderr(&out));
    }
    let again = dir.path().join("again");
    let out = ferkit(&[
        "train",
        "fnn1",
        "--data",
        data.to_str().unwrap(),
        "--init-from",
        run.to_str().unwrap(),
        "--out",
        again.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("model.bpk: damaged"), "{}", stderr(&out));
}
