//! Issue 20, item 5: a disk that fills up under `train` and `predict --out`. Each command writes
//! into a small tmpfs (mounted here; it needs root or CAP_SYS_ADMIN, which CI has) and must stop
//! with an error that names the file it could not write and says the disk is full, exit with
//! ferkit's error status (no panic), leave every file it wrote earlier whole, and leave no
//! temporary file.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::outputs::{Verdict, check_complete, files, temporaries};
use common::*;

/// A tmpfs of `kib` KiB at `dir`, unmounted when dropped.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(dir: &Path, kib: usize) -> Option<SmallDisk> {
        std::fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={kib}k"), "tmpfs"])
            .arg(dir)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| SmallDisk(dir.to_path_buf()))
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Runs `args` with its output on a `kib` KiB disk; checks the failure and what is left.
/// Returns the files left, or `None` when no disk could be mounted (the test skips).
fn fills_the_disk(name: &str, kib: usize, args: impl Fn(&Path) -> Vec<String>) -> Option<Vec<PathBuf>> {
    let dir = tempfile::tempdir().unwrap();
    let Some(disk) = SmallDisk::mount(&dir.path().join("disk"), kib) else {
        skip(&format!(
            "{name} on a full disk: cannot mount a tmpfs (needs root or CAP_SYS_ADMIN; run the tests as root, as CI does)"
        ));
        return None;
    };
    let out_dir = disk.0.join("out");
    let out =
        Command::new(env!("CARGO_BIN_EXE_ferkit")).current_dir(repo_root()).args(args(&out_dir)).output().unwrap();
    let err = stderr(&out);
    assert!(!out.status.success(), "{name} fitted on a {kib} KiB disk: make the disk smaller\n{err}");
    assert!(!err.contains("panicked"), "{name} panicked on a full disk:\n{err}");
    // "error: OUT/NAME: ..." with the file's own name, not its temporary one.
    let named = err.lines().find_map(|l| l.strip_prefix("error: ")?.strip_prefix(&*out_dir.to_string_lossy()));
    assert!(
        err.contains("No space left on device")
            && named.is_some_and(|rest| rest.contains(": ") && !rest.split(": ").next().unwrap().contains("/.")),
        "{name}: the error does not say the disk is full and which file:\n{err}"
    );
    let left = files(&out_dir);
    for (path, bytes) in &left {
        let verdict = check_complete(path, bytes);
        assert!(!matches!(verdict, Verdict::Partial(_)), "{name}: {} is {verdict:?}", path.display());
    }
    assert!(temporaries(&out_dir).is_empty(), "{name}: temporaries left {:?}", temporaries(&out_dir));
    let first_line = err.lines().find(|l| l.contains("No space")).unwrap_or_default().to_string();
    figure(&format!("full disk, {name} on {kib} KiB: {} files left whole; \"{first_line}\"", left.len()));
    drop(disk);
    Some(left.into_keys().collect())
}

#[test]
fn train_on_a_full_disk_stops_naming_the_file_and_keeps_earlier_files_whole() {
    let data_dir = tempfile::tempdir().unwrap();
    let data = write(&data_dir.path().join("fer.csv"), synthetic_csv(20));
    // cnn1's weights are about 1.8 MB: the config and summary fit in 64 KiB, a checkpoint does not.
    let left = fills_the_disk("train", 64, |out| {
        ["train", "cnn1", "--data", data.to_str().unwrap(), "--epochs", "2", "--out", out.to_str().unwrap()]
            .map(String::from)
            .to_vec()
    });
    if let Some(left) = left {
        assert!(left.iter().any(|p| p.ends_with("config.toml")), "the run's config was lost: {left:?}");
    }
}

#[test]
fn predict_out_on_a_full_disk_stops_naming_the_file_and_keeps_earlier_files_whole() {
    let dir = tempfile::tempdir().unwrap();
    let photos = dir.path().join("photos");
    std::fs::create_dir_all(&photos).unwrap();
    // Noise compresses badly: each annotated picture takes about 200 KB of PNG.
    for i in 0..12 {
        let pixels: Vec<u8> = (0..320 * 240 * 3).map(|j| ((j * 7919 + i * 104_729) % 251) as u8).collect();
        image::RgbImage::from_raw(320, 240, pixels).unwrap().save(photos.join(format!("photo_{i:02}.png"))).unwrap();
    }
    let left = fills_the_disk("predict --out", 600, |out| {
        ["predict", photos.to_str().unwrap(), "--whole-image", "--out", out.to_str().unwrap()]
            .map(String::from)
            .to_vec()
    });
    if let Some(left) = left {
        assert!(
            left.iter().any(|p| p.extension().is_some_and(|e| e == "png")),
            "no picture was written before the disk filled: {left:?}"
        );
    }
}
