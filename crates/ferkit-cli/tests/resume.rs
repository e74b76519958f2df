//! Training survives its process: a run killed with SIGKILL in the middle of an epoch goes on with
//! `ferkit train --resume` to the same history and weights as a run that never stopped, and a
//! loss that turns non-finite stops the run at once, naming the epoch and step, with the best
//! checkpoint so far kept.

mod common;
use common::*;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn state(run: &Path) -> Option<serde_json::Value> {
    let text = std::fs::read_to_string(run.join("checkpoint/state.json")).ok()?;
    serde_json::from_str(&text).ok()
}

/// history.csv without its wall-time column.
fn history_without_seconds(run: &Path) -> Vec<String> {
    std::fs::read_to_string(run.join("history.csv"))
        .unwrap()
        .lines()
        .map(|l| l.rsplit_once(',').unwrap().0.to_string())
        .collect()
}

#[test]
fn a_run_killed_mid_epoch_resumes_to_the_uninterrupted_result() {
    // Dropout, batch norm, augmentation and a per-step schedule: every source of run state.
    killed_run_resumes(
        &["--schedule", "cosine", "--warmup-epochs", "1"],
        &["epoch-4.bpk", "optimizer-4.bpk", "state.json"],
    );
}

/// The newer recipe's state too: SGD's momentum, the weight EMA (kept and validated), a
/// schedule driven by the validation history, and CutMix's per-batch draws.
#[test]
fn a_run_with_ema_sgd_plateau_and_cutmix_resumes_to_the_uninterrupted_result() {
    let recipe = [
        "--optimizer",
        "sgd-nesterov",
        "--lr",
        "0.01",
        "--weight-decay",
        "1e-4",
        "--label-smoothing",
        "0.1",
        "--ema",
        "0.99",
        "--schedule",
        "plateau",
        "--plateau-patience",
        "0",
        "--cutmix",
        "1.0",
    ];
    killed_run_resumes(&recipe, &["ema-4.bpk", "epoch-4.bpk", "optimizer-4.bpk", "state.json"]);
}

fn killed_run_resumes(recipe: &[&str], checkpoint_files: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let data = write_gz(&dir.path().join("fer.csv.gz"), &synthetic_csv(1400));
    let (reference, killed) = (dir.path().join("reference"), dir.path().join("killed"));
    let args = |out: &Path| -> Vec<String> {
        let mut args: Vec<String> = [
            "train",
            "cnn3",
            "--data",
            data.to_str().unwrap(),
            "--epochs",
            "4",
            "--batch",
            "32",
            "--augment",
            "rotation=10,zoom=0.1,hflip",
            "--subset",
            "1400",
            "--seed",
            "7",
            "--out",
            out.to_str().unwrap(),
        ]
        .map(String::from)
        .to_vec();
        args.extend(recipe.iter().map(|a| a.to_string()));
        args
    };

    let out = ferkit(&args(&reference).iter().map(String::as_str).collect::<Vec<_>>());
    assert!(out.status.success(), "{}", stderr(&out));

    // The same run, killed in its third epoch.
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferkit"))
        .current_dir(common::repo_root())
        .args(args(&killed))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    let epoch_two = loop {
        if let Some(s) = state(&killed)
            && s["epochs_done"] == 2
        {
            break s;
        }
        assert!(child.try_wait().unwrap().is_none(), "the run ended before its second epoch was saved");
        assert!(Instant::now() < deadline, "no checkpoint after epoch 2 within 300 s");
        std::thread::sleep(Duration::from_millis(5));
    };
    // Well inside epoch 3: a third of the time epoch 2 took.
    let epoch_seconds = epoch_two["history"][1]["seconds"].as_f64().unwrap();
    std::thread::sleep(Duration::from_secs_f64(epoch_seconds / 3.0));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert_eq!(state(&killed).unwrap()["epochs_done"], 2, "the kill came after epoch 3 had finished");
    assert!(!killed.join("metrics.json").exists());

    // Starting it afresh is refused, pointing at --resume.
    let again = ferkit(&args(&killed).iter().map(String::as_str).collect::<Vec<_>>());
    assert!(!again.status.success());
    assert!(stderr(&again).contains("--resume"), "{}", stderr(&again));

    let resumed = ferkit(&["train", "--resume", killed.to_str().unwrap()]);
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    assert!(stderr(&resumed).contains("resuming") && stderr(&resumed).contains("after epoch 2 of 4"));

    assert_eq!(history_without_seconds(&killed), history_without_seconds(&reference));
    let (a, b) = (state(&reference).unwrap(), state(&killed).unwrap());
    assert_eq!(a["epochs_done"], 4);
    for key in ["train_loss", "train_accuracy", "val_loss", "val_accuracy"] {
        for epoch in 0..4 {
            assert_eq!(a["history"][epoch][key], b["history"][epoch][key], "{key} of epoch {}", epoch + 1);
        }
    }
    assert_eq!(a["best"], b["best"]);
    assert_eq!(
        parameters(&reference, &reference.join("model.bpk")),
        parameters(&killed, &killed.join("model.bpk")),
        "kept weights differ"
    );
    assert_eq!(
        parameters(&reference, &reference.join("checkpoint/epoch-4.bpk")),
        parameters(&killed, &killed.join("checkpoint/epoch-4.bpk")),
        "last weights differ"
    );
    let metrics = |run: &Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(run.join("metrics.json")).unwrap()).unwrap()
    };
    assert_eq!(metrics(&reference)["test"]["accuracy"], metrics(&killed)["test"]["accuracy"]);
    // Only the last epoch's checkpoint files remain.
    let mut files: Vec<String> = std::fs::read_dir(killed.join("checkpoint"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files, checkpoint_files);

    // A finished run has nothing to resume.
    let done = ferkit(&["train", "--resume", killed.to_str().unwrap()]);
    assert!(done.status.success() && stdout(&done).contains("nothing to resume"), "{}", stdout(&done));
    // --resume takes its options from the run: others are refused.
    let mixed = ferkit(&["train", "--resume", killed.to_str().unwrap(), "--epochs", "9"]);
    assert!(!mixed.status.success());
}

/// Softmax regression: nothing but a dense layer, so that the loss grows with the weights and
/// a large enough learning rate overflows float32 after a few steps.
const LINEAR_NET: &str = r#"
name = "linear"
description = "softmax regression, for the divergence test"
input = [48, 48, 1]
learning_rate = 1e-3

[[layers]]
kind = "flatten"

[[layers]]
kind = "dense"
units = 7
activation = "softmax"
"#;

#[test]
fn a_non_finite_loss_stops_the_run_naming_epoch_and_step_and_keeps_the_best_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    // Half the labels are scrambled, so the gradient never vanishes and the weights keep growing.
    let mut text = String::from("emotion,pixels,Usage\n");
    for (u, usage) in USAGES.iter().enumerate() {
        for i in 0..[420, 70, 70][u] {
            let face_label = i % 7;
            let label = if i % 2 == 1 { (i * 3) % 7 } else { face_label };
            text += &format!("{label},{},{usage}\n", pixels_text(&synthetic_face(face_label, u * 100_000 + i)));
        }
    }
    let data = write(&dir.path().join("noisy.csv"), text);
    let net = write(&dir.path().join("linear.toml"), LINEAR_NET);
    let run = dir.path().join("run");
    // The warm-up raises the rate step by step: epoch 1 stays finite, a later one overflows.
    let out = ferkit(&[
        "train",
        net.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--epochs",
        "12",
        "--batch",
        "64",
        "--lr",
        "2e35",
        "--schedule",
        "cosine",
        "--warmup-epochs",
        "10",
        "--out",
        run.to_str().unwrap(),
    ]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let line = err.lines().find(|l| l.contains("training diverged")).unwrap_or_else(|| panic!("{err}"));
    // "... the loss is inf at epoch E, step S of 7; the best checkpoint so far (epoch K) is kept in ..."
    let after = |key: &str| -> usize {
        let rest = &line[line.find(key).unwrap_or_else(|| panic!("no `{key}` in: {line}")) + key.len()..];
        rest.chars().take_while(char::is_ascii_digit).collect::<String>().parse().unwrap()
    };
    let (epoch, step) = (after("at epoch "), after(", step "));
    assert!(line.contains("the loss is inf") || line.contains("the loss is NaN"), "{line}");
    assert!(epoch >= 2 && (1..=7).contains(&step), "{line}");
    let kept = after("so far (epoch ");
    assert!(kept < epoch, "{line}");
    assert!(
        line.contains(&run.join("model.bpk").display().to_string())
            && err.contains("hint: start again with a lower --lr"),
        "{err}"
    );

    // The finished epochs are in the history, no metrics were written, and the kept net loads.
    let history = std::fs::read_to_string(run.join("history.csv")).unwrap();
    assert_eq!(history.lines().count(), epoch, "{history}"); // header + epochs 1..epoch-1
    assert!(!run.join("metrics.json").exists());
    let eval = ferkit(&["eval", run.to_str().unwrap(), "--split", "val"]);
    assert!(eval.status.success(), "{}", stderr(&eval));
    assert!(stdout(&eval).contains("accuracy"), "{}", stdout(&eval));
}
