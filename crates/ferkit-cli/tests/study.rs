//! Searches shared by several worker processes through a database (issue 21): `ferkit tune
//! --storage URL --study NAME --workers 0` makes the study, `ferkit tune-worker` processes train
//! its trials under leases, one worker is SIGKILLed while it holds a trial, and the finished
//! study must equal the one a single worker gives with the same seed: every trial once, the same
//! values and results per trial number.
//!
//! SQLite: two workers of this machine (a dead process's lease is taken back at once).
//! PostgreSQL: three workers standing for three machines (`FERKIT_WORKER_HOST`), so the killed
//! one's trial goes out again only when its lease runs out; the server is the one `.ci/run`
//! starts (`.ci/postgres.sh`), named by `FERKIT_TEST_POSTGRES`.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TRIALS: usize = 6;

struct Setup {
    dir: tempfile::TempDir,
    space: String,
    data: String,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let space = write(&dir.path().join("space.toml"), TINY_SEARCH_SPACE).to_str().unwrap().to_string();
    let data = write(&dir.path().join("fer.csv"), synthetic_csv(40)).to_str().unwrap().to_string();
    Setup { dir, space, data }
}

/// `ferkit tune ... --workers 0`: makes the study.
fn create_study(s: &Setup, storage: &str, study: &str) {
    let out = s.dir.path().join(format!("search-{study}"));
    let trials = TRIALS.to_string();
    let o = ferkit(&[
        "tune",
        &s.space,
        "--data",
        &s.data,
        "--trials",
        &trials,
        "--epochs",
        "3",
        "--strategy",
        "random",
        "--seed",
        "11",
        "--storage",
        storage,
        "--study",
        study,
        "--workers",
        "0",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("ready"), "{}", stdout(&o));
}

fn start_worker(s: &Setup, storage: &str, study: &str, name: &str, host: &str, lease: &str) -> (Child, PathBuf) {
    let out = s.dir.path().join(format!("worker-{study}-{name}"));
    let child = Command::new(env!("CARGO_BIN_EXE_ferkit"))
        .args(["tune-worker", "--storage", storage, "--study", study, "--lease-seconds", lease])
        .arg("--out")
        .arg(&out)
        .env("FERKIT_WORKER_HOST", host)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    (child, out)
}

fn finish(mut child: Child, what: &str) {
    let status = child.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(status.success(), "{what} failed:\n{err}");
}

/// One row of `ferkit tune --status`: trial, status, objective, epoch, seconds, worker,
/// attempts, lease left, units, learning_rate.
#[derive(Debug, Clone)]
struct Row {
    trial: usize,
    status: String,
    objective: String,
    worker: String,
    attempts: u32,
    values: Vec<String>,
}

fn status(storage: &str, study: &str) -> (String, Vec<Row>) {
    let o = ferkit(&["tune", "--status", "--storage", storage, "--study", study]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    let rows = text
        .lines()
        .skip(2)
        .map(|l| {
            let c: Vec<&str> = l.split_whitespace().collect();
            Row {
                trial: c[0].parse().unwrap(),
                status: c[1].to_string(),
                objective: c[2].to_string(),
                worker: c[5].to_string(),
                attempts: c[6].parse().unwrap(),
                values: c[8..].iter().map(|v| v.to_string()).collect(),
            }
        })
        .collect();
    (text, rows)
}

/// Waits until `worker_out` holds a trial folder with its config (written once the trial is
/// claimed, just before its process starts): the worker then holds a trial that has not
/// finished. Returns that trial's number (its folder is `trial_NNN`).
fn wait_for_a_claimed_trial(worker_out: &Path) -> usize {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let claimed = std::fs::read_dir(worker_out).ok().and_then(|d| {
            d.flatten().find(|e| e.path().join("trial.toml").exists()).map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.strip_prefix("trial_")
                    .and_then(|n| n.parse().ok())
                    .unwrap_or_else(|| panic!("trial folder {name}?"))
            })
        });
        if let Some(trial) = claimed {
            return trial;
        }
        assert!(Instant::now() < deadline, "no worker claimed a trial within 60 s");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The shared-study test: `workers` processes (`hosts[i]` their machine names), the first
/// killed as soon as it holds a trial; then the same study with one worker. Returns the
/// seconds of each.
fn shared_study_equals_one_worker(storage: &str, hosts: &[&str], lease: &str, tag: &str) -> (f64, f64) {
    let s = setup();
    let (many, one) = (format!("{tag}-many"), format!("{tag}-one"));
    create_study(&s, storage, &many);
    let start = Instant::now();
    let mut workers: Vec<(Child, PathBuf)> = hosts
        .iter()
        .enumerate()
        .map(|(i, host)| start_worker(&s, storage, &many, &format!("w{i}"), host, lease))
        .collect();
    let lost = wait_for_a_claimed_trial(&workers[0].1);
    let (mut victim, _) = workers.remove(0);
    victim.kill().unwrap(); // SIGKILL: its trial process dies with it
    victim.wait().unwrap();
    let (_, at_kill) = status(storage, &many);
    let victim_name = format!("{}/{}", hosts[0], victim.id());
    // The killed worker's trial is either still under its name or, where a survivor on the same
    // machine saw the process gone before this read, already handed out again (attempt 2).
    let row = at_kill.iter().find(|r| r.trial == lost).unwrap_or_else(|| panic!("trial {lost} missing: {at_kill:?}"));
    let still_held = row.status == "pending" && row.worker == victim_name && row.attempts == 1;
    let handed_out_again = row.worker != victim_name && row.attempts == 2;
    assert!(
        still_held || handed_out_again,
        "the killed worker's trial {lost} is neither held nor handed out again: {at_kill:?}"
    );
    let held = at_kill.iter().filter(|r| r.worker == victim_name).count();
    assert!(held <= 1, "the killed worker held more than one trial: {at_kill:?}");
    for (i, (child, _)) in workers.into_iter().enumerate() {
        finish(child, &format!("worker {}", i + 1));
    }
    let many_seconds = start.elapsed().as_secs_f64();
    let (table, rows) = status(storage, &many);

    create_study(&s, storage, &one);
    let start = Instant::now();
    let (child, _) = start_worker(&s, storage, &one, "solo", hosts[1], lease);
    finish(child, "the single worker");
    let one_seconds = start.elapsed().as_secs_f64();
    let (_, alone) = status(storage, &one);

    assert_eq!(rows.len(), TRIALS, "every trial handed out, none twice:\n{table}");
    for (r, a) in rows.iter().zip(&alone) {
        assert_eq!(r.trial, a.trial);
        assert_eq!(r.status, "completed", "{table}");
        assert_eq!(r.values, a.values, "trial {}: the values one worker gets with the same seed\n{table}", r.trial);
        assert_eq!(r.objective, a.objective, "trial {}: the result one worker gets\n{table}", r.trial);
        assert_ne!(r.worker, victim_name, "trial {} finished by the killed worker?\n{table}", r.trial);
        let attempts = if r.trial == lost { 2 } else { 1 };
        assert_eq!(r.attempts, attempts, "trial {}: handed out {attempts} time(s)\n{table}", r.trial);
    }
    figure(&format!(
        "{tag}: {} workers, the first SIGKILLed holding trial {lost}: {many_seconds:.1} s; one worker: {one_seconds:.1} s; the shared study's table:\n{table}",
        hosts.len()
    ));
    (many_seconds, one_seconds)
}

#[test]
fn sqlite_study_with_two_workers_one_killed_equals_one_worker() {
    let db = tempfile::tempdir().unwrap();
    let storage = format!("sqlite:{}", db.path().join("studies.db").display());
    // Both workers on this machine: the killed one's trial goes out again at once.
    shared_study_equals_one_worker(&storage, &["this-machine", "this-machine"], "60", "sqlite");
}

#[test]
fn postgres_study_with_three_workers_one_killed_equals_one_worker() {
    let Ok(url) = std::env::var("FERKIT_TEST_POSTGRES") else {
        return skip(
            "FERKIT_TEST_POSTGRES is not set (a PostgreSQL URL, e.g. postgresql://postgres@127.0.0.1:54329/postgres; \
             `bash .ci/run` starts a server with .ci/postgres.sh, which needs Debian's postgresql package)",
        );
    };
    // Three machines: the killed one's trial goes out again when its 3 s lease runs out.
    let tag = format!("pg{}", std::process::id());
    shared_study_equals_one_worker(&url, &["machine-a", "machine-b", "machine-c"], "3", &tag);
}

#[test]
fn an_oracle_json_search_is_migrated_into_a_database_and_goes_on_there() {
    let s = setup();
    let out = s.dir.path().join("search");
    let args = |trials: &str, storage: bool| {
        let mut a: Vec<String> = ["tune", &s.space, "--data", &s.data, "--trials", trials, "--epochs", "1"]
            .iter()
            .map(|v| v.to_string())
            .collect();
        a.extend(["--strategy", "random", "--seed", "5", "--out", out.to_str().unwrap()].map(String::from));
        if storage {
            a.extend(["--storage".to_string(), "--study".to_string(), "moved".to_string()]);
        }
        a
    };
    let run = |a: Vec<String>| {
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        let o = ferkit(&refs);
        assert!(o.status.success(), "{}", stderr(&o));
        o
    };
    run(args("2", false));
    let before = std::fs::read_to_string(out.join("oracle.json")).unwrap();
    // The same search (2 trials) in a database: migrated, nothing to train again.
    let o = run(args("2", true));
    assert!(stderr(&o).contains("migrated"), "{}", stderr(&o));
    let storage = format!("sqlite:{}", out.join("study.db").display());
    let (table, rows) = status(&storage, "moved");
    assert_eq!(rows.len(), 2, "{table}");
    assert!(rows.iter().all(|r| r.status == "completed" && r.attempts == 1), "{table}");
    let saved: serde_json::Value = serde_json::from_str(&before).unwrap();
    for r in &rows {
        let units = saved["trials"][r.trial]["values"]["units"].to_string();
        assert_eq!(r.values[0], units, "trial {}'s values kept\n{table}", r.trial);
    }
    // A different search in the same place is refused, naming what differs.
    let o = ferkit(&args("3", true).iter().map(String::as_str).collect::<Vec<_>>());
    assert!(!o.status.success() && stderr(&o).contains("trials was 2, now 3"), "{}", stderr(&o));
}
