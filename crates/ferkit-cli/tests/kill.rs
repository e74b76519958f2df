//! Issue 20, item 4: `train`, `tune`, `reproduce` and `predict --out` killed with SIGKILL at 20
//! random moments each (fixed by a seed), on small synthetic data. After every kill each file in
//! the output folder is its previous version or a complete new one; the command run again
//! (`train --resume` once a checkpoint exists) finishes with the uninterrupted run's result, and
//! leaves no temporary file.
//!
//! "Complete" is checked by content for the formats ferkit writes (JSON, JSON lines, TOML, CSV,
//! PNG, burnpack weights, CRC files, HTML); the checker is first shown to reject a cut copy of
//! each of the uninterrupted run's files. A file of another kind that changed must equal the
//! uninterrupted run's final version.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::outputs::{Verdict, check_complete, files, temporaries};
use common::*;

const KILLS: usize = 20;

/// The kill moments: a fraction of the uninterrupted run's time, from a fixed-seed generator
/// (SplitMix64), so a failure can be replayed.
struct Moments(u64);

impl Moments {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A command under test.
struct Scenario {
    name: &'static str,
    /// The command writing into `out`; `resume` after a kill once the run can be resumed.
    args: Box<dyn Fn(&Path, bool) -> Vec<String>>,
    /// Whether the command run again on `out` needs `--resume` (train with a checkpoint).
    resume_when: Box<dyn Fn(&Path) -> bool>,
    /// What must be equal between the uninterrupted run and the killed one (seconds left out).
    result: Box<dyn Fn(&Path) -> String>,
    seed: u64,
}

fn run_to_end(args: &[String]) -> Duration {
    let start = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_ferkit")).current_dir(repo_root()).args(args).output().unwrap();
    assert!(out.status.success(), "ferkit {}:\n{}", args.join(" "), stderr(&out));
    start.elapsed()
}

fn kill_test(s: Scenario) {
    let dir = tempfile::tempdir().unwrap();
    let (reference, killed) = (dir.path().join("reference"), dir.path().join("killed"));
    let full = run_to_end(&(s.args)(&reference, false));
    let expected = (s.result)(&reference);
    let final_files = files(&reference);
    // The checker tells a whole file from a cut one, for every format it reads.
    for (path, bytes) in &final_files {
        let verdict = check_complete(path, bytes);
        assert!(!matches!(verdict, Verdict::Partial(_)), "{}: {verdict:?} in the uninterrupted run", path.display());
        // Cut near the middle, but not right after a newline (see check_complete).
        let middle = (bytes.len() / 2..bytes.len()).find(|&i| i > 0 && bytes[i - 1] != b'\n');
        if let (Verdict::Complete, Some(middle)) = (&verdict, middle) {
            let cut = check_complete(path, &bytes[..middle]);
            assert!(
                matches!(cut, Verdict::Partial(_)),
                "{}: the checker takes half the file for a whole one",
                path.display()
            );
        }
    }

    let mut moments = Moments(s.seed);
    let (mut kills, mut finished, mut attempts) = (0, 0, 0);
    while kills < KILLS {
        attempts += 1;
        assert!(attempts <= 3 * KILLS, "{}: the command finished before the kill {finished} times", s.name);
        let before = files(&killed);
        let resume = killed.exists() && (s.resume_when)(&killed);
        let args = (s.args)(&killed, resume);
        let mut child = Command::new(env!("CARGO_BIN_EXE_ferkit"))
            .current_dir(repo_root())
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // In the first 60% of an uninterrupted run's time: a run that goes on from a kill has
        // less left to do, and later moments would mostly find it finished.
        let at = Instant::now() + full.mul_f64(0.6 * moments.next());
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if Instant::now() >= at {
                break None;
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        if let Some(status) = status {
            let mut err = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
            assert!(status.success(), "{}: ferkit {} (after {kills} kills) failed:\n{err}", s.name, args.join(" "));
            assert_same(&expected, &(s.result)(&killed), &format!("{}: a finished run after {kills} kills", s.name));
            assert!(temporaries(&killed).is_empty(), "{}: {:?}", s.name, temporaries(&killed));
            // Start over, so that the next kills land in a running command.
            finished += 1;
            std::fs::remove_dir_all(&killed).unwrap();
            continue;
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        kills += 1;
        for (path, bytes) in files(&killed) {
            if before.get(&path) == Some(&bytes) {
                continue;
            }
            match check_complete(&path, &bytes) {
                Verdict::Complete => {}
                Verdict::Partial(why) => {
                    panic!("{}: after kill {kills}, {} is partial ({why})", s.name, path.display())
                }
                Verdict::Unknown => assert!(
                    final_files.get(&path) == Some(&bytes),
                    "{}: after kill {kills}, {} changed and is not the uninterrupted run's version ({} bytes)",
                    s.name,
                    path.display(),
                    bytes.len()
                ),
            }
        }
    }
    let resume = (s.resume_when)(&killed);
    run_to_end(&(s.args)(&killed, resume));
    assert_same(&expected, &(s.result)(&killed), &format!("{}: the result after {KILLS} kills", s.name));
    assert!(temporaries(&killed).is_empty(), "{}: temporaries left: {:?}", s.name, temporaries(&killed));
    figure(&format!(
        "kill test {}: {KILLS} SIGKILLs within {:.1} s runs ({finished} more runs finished before their kill), \
         every file whole after each, the result equal to the uninterrupted run's",
        s.name,
        full.as_secs_f64()
    ));
}

/// Fails naming the first line where `got` differs from `expected`.
fn assert_same(expected: &str, got: &str, what: &str) {
    if let Some((i, (e, g))) = expected.lines().zip(got.lines()).enumerate().find(|(_, (e, g))| e != g) {
        panic!("{what}: line {} differs from the uninterrupted run's:\n  expected {e}\n  got      {g}", i + 1);
    }
    assert_eq!(expected.lines().count(), got.lines().count(), "{what}: a different number of lines");
}

/// FNV-1a of a run's kept parameter values, bit for bit (compared without printing them).
fn parameters_digest(run: &Path) -> String {
    let values = parameters(run, &run.join("model.bpk"));
    let hash = values
        .iter()
        .flatten()
        .flat_map(|v| v.to_bits().to_le_bytes())
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
    format!("{} tensors, {} values, fnv1a {hash:016x}", values.len(), values.iter().map(Vec::len).sum::<usize>())
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

/// A CSV file's rows with the named columns left out (times differ between runs).
fn csv_without(path: &Path, drop: &[&str]) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let keep: Vec<usize> = (0..header.len()).filter(|&i| !drop.contains(&header[i])).collect();
    std::iter::once(header)
        .chain(lines.map(|l| l.split(',').collect()))
        .map(|row| keep.iter().map(|&i| row.get(i).copied().unwrap_or("")).collect::<Vec<_>>().join(","))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A JSON value with the named keys removed at any depth.
fn json_without(path: &Path, drop: &[&str]) -> String {
    fn strip(v: &mut serde_json::Value, drop: &[&str]) {
        match v {
            serde_json::Value::Object(map) => {
                map.retain(|k, _| !drop.contains(&k.as_str()));
                map.values_mut().for_each(|v| strip(v, drop));
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(|v| strip(v, drop)),
            _ => {}
        }
    }
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    strip(&mut v, drop);
    serde_json::to_string_pretty(&v).unwrap()
}

const TIMES: &[&str] = &["seconds", "epoch_seconds", "train_seconds", "elapsed_seconds", "images_per_second"];

/// A small FER2013-shaped CSV (`per_split` faces per split) in a folder that lives as long as
/// the test.
fn data_csv(per_split: usize) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir.path().join("fer.csv"), synthetic_csv(per_split));
    (dir, path.to_string_lossy().into_owned())
}

#[test]
fn train_killed_20_times_ends_as_the_uninterrupted_run() {
    let (_data_dir, data_arg) = data_csv(150);
    kill_test(Scenario {
        name: "train",
        args: Box::new(move |out, resume| {
            let out = out.to_string_lossy().into_owned();
            if resume {
                return strings(&["train", "--resume", &out]);
            }
            strings(&[
                "train", "cnn3", "--data", &data_arg, "--epochs", "6", "--batch", "32", "--seed", "3", "--out", &out,
            ])
        }),
        resume_when: Box::new(|out| out.join("checkpoint/state.json").exists() || out.join("metrics.json").exists()),
        result: Box::new(|out| {
            format!(
                "{}\n{}\nmodel.bpk: {}",
                csv_without(&out.join("history.csv"), TIMES),
                json_without(&out.join("metrics.json"), TIMES),
                parameters_digest(out)
            )
        }),
        seed: 1,
    });
}

#[test]
fn tune_killed_20_times_ends_as_the_uninterrupted_search() {
    let (_data_dir, data_arg) = data_csv(40);
    let space = repo_root().join("experiments/tune_cnn.toml").to_string_lossy().into_owned();
    kill_test(Scenario {
        name: "tune",
        args: Box::new(move |out, _| {
            let out = out.to_string_lossy().into_owned();
            strings(&[
                "tune", &space, "--data", &data_arg, "--trials", "3", "--epochs", "2", "--seed", "5", "--out", &out,
            ])
        }),
        resume_when: Box::new(|_| false),
        result: Box::new(|out| json_without(&out.join("oracle.json"), TIMES)),
        seed: 2,
    });
}

#[test]
fn reproduce_killed_20_times_ends_as_the_uninterrupted_run() {
    let (_data_dir, data_arg) = data_csv(40);
    kill_test(Scenario {
        name: "reproduce",
        args: Box::new(move |out, _| {
            let out = out.to_string_lossy().into_owned();
            // The notebook's steps only (the `fast` preset's step is one more training step
            // like the transfer one, and would add a tenth to every one of the 21 runs).
            strings(&["reproduce", "--data", &data_arg, "--quick", "--seed", "4", "--notebook-only", "--out", &out])
        }),
        resume_when: Box::new(|_| false),
        result: Box::new(|out| {
            assert!(!out.join("fast").exists(), "--notebook-only trained the fast preset");
            let report = std::fs::read_to_string(out.join("report.md")).unwrap_or_default();
            assert!(report.is_empty() || report.contains("| beyond the notebook: fast preset | not run"), "{report}");
            let mut runs: Vec<String> = files(out)
                .keys()
                .filter(|p| p.file_name().is_some_and(|n| n == "metrics.json"))
                .map(|p| format!("{}: {}", p.display(), json_without(&out.join(p), TIMES)))
                .collect();
            runs.sort();
            runs.join("\n")
        }),
        seed: 3,
    });
}

#[test]
fn predict_out_killed_20_times_ends_as_the_uninterrupted_run() {
    let dir = tempfile::tempdir().unwrap();
    let photos = dir.path().join("photos");
    std::fs::create_dir_all(&photos).unwrap();
    for i in 0..24 {
        let face = synthetic_face(i % 7, i);
        let img = image::GrayImage::from_raw(48, 48, face).unwrap();
        image::imageops::resize(&img, 160, 160, image::imageops::FilterType::Triangle)
            .save(photos.join(format!("photo_{i:02}.png")))
            .unwrap();
    }
    let photos_arg = photos.to_string_lossy().into_owned();
    kill_test(Scenario {
        name: "predict --out",
        args: Box::new(move |out, _| {
            let out = out.to_string_lossy().into_owned();
            strings(&["predict", &photos_arg, "--whole-image", "--out", &out])
        }),
        resume_when: Box::new(|_| false),
        result: Box::new(|out| {
            let mut all: Vec<String> = files(out)
                .into_iter()
                .filter(|(p, _)| !p.to_string_lossy().ends_with(".json"))
                .map(|(p, bytes)| format!("{}: {}", p.display(), bytes.len()))
                .collect();
            all.sort();
            all.join("\n") + &std::fs::read_to_string(out.join("predictions.csv")).unwrap_or_default()
        }),
        seed: 4,
    });
}
