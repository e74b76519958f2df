//! `ferkit tune` end to end on synthetic data: trials as run directories, reports, parallel
//! workers, and a search killed mid-trial that resumes without redoing finished trials.

mod common;
use common::*;
use std::path::Path;
use std::time::{Duration, Instant};

fn setup(dir: &Path, rows: usize) -> (String, String) {
    let space = write(&dir.join("space.toml"), TINY_SEARCH_SPACE);
    let data = write(&dir.join("fer.csv"), synthetic_csv(rows));
    (space.to_str().unwrap().to_string(), data.to_str().unwrap().to_string())
}

fn oracle_state(out: &Path) -> serde_json::Value {
    std::fs::read_to_string(out.join("oracle.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

#[test]
fn search_writes_trials_and_the_best_run() {
    let dir = tempfile::tempdir().unwrap();
    let (space, data) = setup(dir.path(), 28);
    let out = dir.path().join("search");
    let args = [
        "tune",
        &space,
        "--data",
        &data,
        "--trials",
        "4",
        "--epochs",
        "2",
        "--initial-points",
        "2",
        "--workers",
        "2",
        "--out",
        out.to_str().unwrap(),
    ];
    let o = ferkit(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let csv = std::fs::read_to_string(out.join("trials.csv")).unwrap();
    assert!(csv.starts_with("trial,units,activation,learning_rate,objective,best_epoch,seconds,status"), "{csv}");
    assert_eq!(csv.lines().filter(|l| l.ends_with("Completed")).count(), 4, "{csv}");
    // Each trial's run is whole: its net spec parses and its kept weights load into it.
    for i in 0..4 {
        let trial = out.join(format!("trial_{i:03}"));
        let text = std::fs::read_to_string(trial.join("net.toml")).unwrap();
        ferkit::models::NetSpec::from_toml(&text, "net.toml").unwrap();
        let run = ferkit::run::RunDir::open(&trial).unwrap();
        run.load_model(&run.load_config().unwrap(), &burn::prelude::Device::flex()).unwrap();
    }
    assert!(image::open(out.join("trials.png")).unwrap().width() >= 400);
    assert!(out.join("best_model.bpk").exists());
    let best: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("best.json")).unwrap()).unwrap();
    assert!(best["test_accuracy"].is_number(), "{best}");
    // best.json and best_model.bpk are the best trial's: the lowest validation loss of the table.
    let (best_trial, _) = csv
        .lines()
        .skip(1)
        .map(|l| {
            let cells: Vec<&str> = l.split(',').collect();
            (cells[0].parse::<u64>().unwrap(), cells[4].parse::<f64>().unwrap())
        })
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap();
    assert_eq!(best["trial"], best_trial, "{best}\n{csv}");
    let trial_dir = out.join(format!("trial_{best_trial:03}"));
    assert_eq!(std::fs::read(out.join("best_model.bpk")).unwrap(), std::fs::read(trial_dir.join("model.bpk")).unwrap());
    let trial_metrics: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(trial_dir.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(best["test_accuracy"], trial_metrics["test"]["accuracy"]);
    assert!(stdout(&o).contains("best trial"), "{}", stdout(&o));
    // The same command again finds nothing left to do.
    let again = ferkit(&args);
    assert!(again.status.success() && stderr(&again).contains("4 trials finished, 0 to re-run"), "{}", stderr(&again));
    // The same data by another path to the same file is the same search.
    let data_path = std::path::Path::new(&data);
    let same_data = data_path.parent().unwrap().join(".").join(data_path.file_name().unwrap());
    let mut other_path = args;
    other_path[3] = same_data.to_str().unwrap();
    let again = ferkit(&other_path);
    assert!(again.status.success() && stderr(&again).contains("0 to re-run"), "{}", stderr(&again));
    // Other options on the same folder are refused, with what differs named.
    let other =
        ferkit(&["tune", &space, "--data", &data, "--trials", "5", "--epochs", "3", "--out", out.to_str().unwrap()]);
    let message = stderr(&other);
    assert!(!other.status.success() && message.contains("different search"), "{message}");
    assert!(
        message.contains("trials was 4, now 5")
            && message.contains("hint: use another --out")
            && message.contains("epochs = 3"),
        "{message}"
    );
    assert!(message.contains(r#""initial_points":2"#), "{message}");
}

#[test]
fn killed_search_resumes_without_redoing_finished_trials() {
    let dir = tempfile::tempdir().unwrap();
    let (space, data) = setup(dir.path(), 200);
    let out = dir.path().join("search");
    let args = [
        "tune",
        &space,
        "--data",
        &data,
        "--trials",
        "3",
        "--epochs",
        "6",
        "--initial-points",
        "2",
        "--out",
        out.to_str().unwrap(),
    ];
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ferkit"))
        .current_dir(common::repo_root())
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait until one trial has finished and the next is running, then kill the whole search.
    let start = Instant::now();
    loop {
        let state = oracle_state(&out);
        let statuses: Vec<String> =
            state["trials"].as_array().map(|t| t.iter().map(|t| t["status"].to_string()).collect()).unwrap_or_default();
        if statuses.first().is_some_and(|s| s.contains("completed"))
            && statuses.get(1).is_some_and(|s| s.contains("pending"))
            && out.join("trials.csv").exists()
        {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(120), "the search did not get going: {statuses:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    // SIGKILL to the search alone: its trial process dies with it (PR_SET_PDEATHSIG).
    child.kill().unwrap();
    let _ = child.wait();
    // The table of the trials so far was written as trial 0 finished, before the search ended.
    let table = std::fs::read_to_string(out.join("trials.csv")).unwrap();
    assert!(table.lines().nth(1).is_some_and(|row| row.starts_with("0,") && row.ends_with("Completed")), "{table}");
    let first_history = out.join("trial_000/history.csv");
    let finished_before = std::fs::metadata(&first_history).unwrap().modified().unwrap();

    let o = ferkit(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("resuming") && stderr(&o).contains(": 1 trials finished, 1 to re-run"),
        "{}",
        stderr(&o)
    );
    assert!(!stderr(&o).contains("trial 0 started"), "trial 0 was redone: {}", stderr(&o));
    assert_eq!(std::fs::metadata(&first_history).unwrap().modified().unwrap(), finished_before);
    let state = oracle_state(&out);
    let trials = state["trials"].as_array().unwrap();
    assert_eq!(trials.len(), 3);
    assert!(trials.iter().all(|t| t["status"] == "completed"), "{state}");
}

/// Issue 23: a trial that fails is recorded as failed and the search goes on; a search in which
/// no trial finished exits non-zero, saying where the trials' logs are.
#[test]
fn a_search_whose_every_trial_fails_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let (space, _) = setup(dir.path(), 7);
    // Training rows only: every trial stops for want of validation rows.
    let training_only: String = synthetic_csv(7)
        .lines()
        .filter(|l| !l.ends_with("PublicTest") && !l.ends_with("PrivateTest"))
        .map(|l| format!("{l}\n"))
        .collect();
    let data = write(&dir.path().join("train_only.csv"), training_only);
    let out = dir.path().join("search");
    let o = ferkit(&[
        "tune",
        &space,
        "--data",
        data.to_str().unwrap(),
        "--trials",
        "2",
        "--epochs",
        "1",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!o.status.success(), "{}", stdout(&o));
    assert!(stderr(&o).contains("no trial finished") && stderr(&o).contains("train.log"), "{}", stderr(&o));
    let csv = std::fs::read_to_string(out.join("trials.csv")).unwrap();
    assert_eq!(csv.lines().filter(|l| l.ends_with("Failed")).count(), 2, "{csv}");
    let log = std::fs::read_to_string(out.join("trial_000/train.log")).unwrap();
    assert!(log.contains("no validation rows"), "{log}");
}
