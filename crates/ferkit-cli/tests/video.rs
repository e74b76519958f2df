//! `ferkit predict VIDEO`: short videos built with the ffmpeg tool from the shared photos (a
//! still, a pan with a zoom, the astronaut beside her mirror image), checked against `ferkit
//! predict` on the same frames as photos, for track ids, times, sampling, the annotated video,
//! and the errors of damaged, unreadable and audio-only files. Needs `ffmpeg` on PATH (`.ci/run`
//! installs Debian's package) and ../shared's photos and Haar cascade.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{ferkit, stderr, stdout};

/// The astronaut photo and OpenCV's cascade from ../shared, and ffmpeg; None (skipping, saying
/// why) when one is missing.
fn inputs() -> Option<(PathBuf, PathBuf)> {
    if Command::new("ffmpeg").arg("-version").output().is_err() {
        common::skip("ffmpeg is not on PATH (apt-get install ffmpeg)");
        return None;
    }
    match (common::shared("data/photos/astronaut.png"), common::shared("models/haarcascade_frontalface_default.xml")) {
        (Some(photo), Some(cascade)) => Some((photo, cascade)),
        _ => {
            common::skip("../shared's astronaut photo or Haar cascade is absent");
            None
        }
    }
}

/// Runs ffmpeg with `args` (quiet, overwriting), panicking with its words when it fails.
fn ffmpeg(args: &[&str]) {
    let out = Command::new("ffmpeg").args(["-nostdin", "-v", "error", "-y"]).args(args).output().unwrap();
    assert!(out.status.success(), "ffmpeg {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// An H.264 video of `seconds` at `fps` made from `photo` through the filter graph `filter`,
/// a key frame every 5 frames (so that a file cut short still holds whole frames).
fn make_video(photo: &Path, filter: &str, seconds: u32, fps: u32, path: &Path) -> PathBuf {
    let (t, r) = (seconds.to_string(), fps.to_string());
    ffmpeg(&[
        "-loop",
        "1",
        "-i",
        photo.to_str().unwrap(),
        "-t",
        &t,
        "-r",
        &r,
        "-filter_complex",
        filter,
        "-c:v",
        "libx264",
        "-g",
        "5",
        "-pix_fmt",
        "yuv420p",
        path.to_str().unwrap(),
    ]);
    path.to_path_buf()
}

/// frames.csv's rows as maps from column name to text.
fn csv_rows(path: &Path) -> Vec<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    lines.map(|l| header.iter().map(|h| h.to_string()).zip(l.split(',').map(String::from)).collect()).collect()
}

fn num(row: &BTreeMap<String, String>, column: &str) -> f64 {
    row[column].parse().unwrap_or_else(|_| panic!("{column} = {}", row[column]))
}

/// Runs `ferkit predict VIDEO --cascade CASCADE --out DIR EXTRA...`, which must succeed, and
/// returns DIR's frames.csv rows and tracks.json.
fn predict_video(
    video: &Path,
    cascade: &Path,
    out: &Path,
    extra: &[&str],
) -> (Vec<BTreeMap<String, String>>, serde_json::Value) {
    let mut args = vec![
        "predict",
        video.to_str().unwrap(),
        "--cascade",
        cascade.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let o = ferkit(&args);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let report = serde_json::from_str(&std::fs::read_to_string(out.join("tracks.json")).unwrap()).unwrap();
    (csv_rows(&out.join("frames.csv")), report)
}

const CLASSES: [&str; 7] = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"];

/// Frames counted by decoding them all.
fn decoded_frames(video: &Path) -> u64 {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-count_frames",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=nb_read_frames",
            "-of",
            "csv=p=0",
        ])
        .arg(video)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

#[test]
fn two_faces_keep_two_track_ids_and_read_as_the_same_frames_do_as_photos() {
    let Some((photo, cascade)) = inputs() else { return };
    let dir = tempfile::tempdir().unwrap();
    // 640x320: the astronaut (320x320) beside her mirror image; 2 s at 10 frames/s.
    let video = make_video(
        &photo,
        "[0]scale=320:320,split[a][b];[b]hflip[m];[a][m]hstack",
        2,
        10,
        &dir.path().join("pair.mp4"),
    );
    let out = dir.path().join("out");
    let o = ferkit(&[
        "predict",
        video.to_str().unwrap(),
        "--cascade",
        cascade.to_str().unwrap(),
        "--annotate",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("20 frames read, 20 analysed"), "{}", stdout(&o));

    let rows = csv_rows(&out.join("frames.csv"));
    assert_eq!(rows.len(), 40, "two faces in each of 20 frames");
    // Two tracks, each in every frame, the left face always one id and the right the other.
    let mut side_of_track: BTreeMap<String, bool> = BTreeMap::new();
    for row in &rows {
        let left = num(row, "x") < 320.0;
        assert_eq!(*side_of_track.entry(row["track"].clone()).or_insert(left), left, "a track changed sides: {row:?}");
        // Times are frame / rate.
        assert!((num(row, "time_s") - num(row, "frame") / 10.0).abs() < 1e-4, "{row:?}");
        assert_eq!(row["detected"], "1");
    }
    assert_eq!(side_of_track.len(), 2, "{side_of_track:?}");
    let tracks = csv_rows(&out.join("tracks.csv"));
    assert_eq!(tracks.len(), 2);
    assert!(tracks.iter().all(|t| t["frames"] == "20"), "{tracks:?}");
    for t in &tracks {
        assert!(out.join(format!("timeline_track_{}.png", t["track"])).is_file());
    }
    let jsonl = std::fs::read_to_string(out.join("frames.jsonl")).unwrap();
    assert_eq!(jsonl.lines().count(), 40);
    let first: serde_json::Value = serde_json::from_str(jsonl.lines().next().unwrap()).unwrap();
    assert!(first["box"]["width"].as_u64().unwrap() > 0 && first["probabilities"]["happy"].is_number(), "{first}");

    // The annotated video decodes and has the input's frame count.
    assert_eq!(decoded_frames(&out.join("annotated.mp4")), 20);

    // Frame 13 as a photo, through `ferkit predict`: the same boxes and probabilities.
    let still = dir.path().join("frame13.png");
    ffmpeg(&[
        "-i",
        video.to_str().unwrap(),
        "-vf",
        "select=eq(n\\,13)",
        "-frames:v",
        "1",
        "-pix_fmt",
        "rgb24",
        still.to_str().unwrap(),
    ]);
    let photo_out = dir.path().join("photo");
    let o = ferkit(&[
        "predict",
        still.to_str().unwrap(),
        "--cascade",
        cascade.to_str().unwrap(),
        "--out",
        photo_out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(photo_out.join("predictions.json")).unwrap()).unwrap();
    let faces = doc["photos"][0]["faces"].as_array().unwrap();
    let video_faces: Vec<_> = rows.iter().filter(|r| r["frame"] == "13").collect();
    assert_eq!(faces.len(), video_faces.len());
    for (face, row) in faces.iter().zip(&video_faces) {
        for k in ["x", "y", "width", "height"] {
            assert_eq!(face["box"][k].as_f64().unwrap(), num(row, k), "{k}: {face} vs {row:?}");
        }
        assert_eq!(face["emotion"].as_str().unwrap(), row["emotion"]);
        for c in CLASSES {
            let (p, q) = (face["probabilities"][c].as_f64().unwrap(), num(row, c));
            assert!((p - q).abs() < 2e-6, "{c}: photo {p} vs video {q}");
        }
    }
}

#[test]
fn a_panned_zoomed_face_keeps_one_track_and_detection_every_k_frames_stays_close() {
    let Some((photo, cascade)) = inputs() else { return };
    let dir = tempfile::tempdir().unwrap();
    // 3 s at 10 frames/s: the picture grows from 560 to 740 pixels while a 480x360 window pans over it.
    let video = make_video(
        &photo,
        "[0]scale=w='560+60*t':h='560+60*t':eval=frame,crop=480:360:'20*t':'10*t'",
        3,
        10,
        &dir.path().join("pan.mp4"),
    );
    let run = |name: &str, extra: &[&str]| predict_video(&video, &cascade, &dir.path().join(name), extra);
    let (every, report) = run("every", &[]);
    // The face: the track in the most frames; it is in (nearly) all of them.
    let longest = |rows: &[BTreeMap<String, String>]| {
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for r in rows {
            *counts.entry(r["track"].clone()).or_default() += 1;
        }
        counts.into_iter().max_by_key(|(_, n)| *n).unwrap()
    };
    let (face, frames) = longest(&every);
    assert!(frames >= 28, "the face's track holds {frames} of 30 frames: {report}");
    assert_eq!(report["detections"], 30);

    let (sparse, report) = run("sparse", &["--detect-every", "3"]);
    assert_eq!(report["detections"], 10, "{report}");
    let (sparse_face, sparse_frames) = longest(&sparse);
    assert!(sparse_frames >= 28, "{sparse_frames}");
    // Frame by frame, the carried boxes read nearly as the detected ones.
    let by_frame = |rows: &[BTreeMap<String, String>], track: &str| -> BTreeMap<String, BTreeMap<String, String>> {
        rows.iter().filter(|r| r["track"] == track).map(|r| (r["frame"].clone(), r.clone())).collect()
    };
    let (a, b) = (by_frame(&every, &face), by_frame(&sparse, &sparse_face));
    let (mut compared, mut same_emotion, mut worst) = (0, 0, 0.0f64);
    for (frame, ra) in &a {
        let Some(rb) = b.get(frame) else { continue };
        compared += 1;
        same_emotion += (ra["emotion"] == rb["emotion"]) as usize;
        for c in CLASSES {
            worst = worst.max((num(ra, c) - num(rb, c)).abs());
        }
    }
    assert!(compared >= 27, "{compared}");
    assert!(same_emotion as f64 >= 0.9 * compared as f64, "{same_emotion} of {compared}");
    assert!(worst < 0.25, "largest probability difference {worst}");
    // Carried frames are marked as such.
    assert!(sparse.iter().any(|r| r["detected"] == "0") && sparse.iter().any(|r| r["detected"] == "1"));
}

#[test]
fn sampling_and_the_time_range_pick_the_frames_asked_for() {
    let Some((photo, cascade)) = inputs() else { return };
    let dir = tempfile::tempdir().unwrap();
    let video = make_video(&photo, "[0]scale=320:320", 3, 10, &dir.path().join("still.mp4"));
    let frames_of = |name: &str, extra: &[&str]| -> Vec<u64> {
        let (rows, _) = predict_video(&video, &cascade, &dir.path().join(name), extra);
        // The frames with rows (a frame may hold a false detection beside the face).
        let mut frames: Vec<u64> = rows.iter().map(|r| num(r, "frame") as u64).collect();
        frames.dedup();
        frames
    };
    assert_eq!(frames_of("all", &[]), (0..30).collect::<Vec<_>>());
    assert_eq!(frames_of("every4", &["--every", "4"]), vec![0, 4, 8, 12, 16, 20, 24, 28]);
    assert_eq!(frames_of("fps2", &["--fps", "2"]), vec![0, 5, 10, 15, 20, 25]);
    assert_eq!(frames_of("range", &["--start", "1", "--end", "00:02"]), (10..20).collect::<Vec<_>>());
    // Smoothing over 3 frames of a still: the same faces, probabilities averaged (equal here).
    assert_eq!(frames_of("smooth", &["--smooth", "3", "--every", "10"]), vec![0, 10, 20]);
    // Video options with photos are refused.
    let o = ferkit(&["predict", photo.to_str().unwrap(), "--fps", "2"]);
    assert!(!o.status.success() && stderr(&o).contains("apply to videos only"), "{}", stderr(&o));
    let o = ferkit(&["predict", video.to_str().unwrap(), "--cascade", cascade.to_str().unwrap(), "--start", "1:75"]);
    assert!(!o.status.success() && stderr(&o).contains("not a time"), "{}", stderr(&o));
}

#[test]
fn damaged_unreadable_and_audio_only_files_get_errors_that_say_what_and_where() {
    let Some((photo, cascade)) = inputs() else { return };
    let dir = tempfile::tempdir().unwrap();
    let cascade = cascade.to_str().unwrap();
    // A Matroska file cut in half: the frames before the cut are analysed and written.
    let whole = make_video(&photo, "[0]scale=480:480,crop=320:320:'20*t':'10*t'", 4, 10, &dir.path().join("whole.mkv"));
    let bytes = std::fs::read(&whole).unwrap();
    let cut = dir.path().join("cut.mkv");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let out = dir.path().join("cut");
    let o = ferkit(&["predict", cut.to_str().unwrap(), "--cascade", cascade, "--out", out.to_str().unwrap()]);
    let err = stderr(&o);
    assert!(!o.status.success(), "a damaged file fails the command");
    assert!(err.contains("cut.mkv") && err.contains("damaged") && err.contains("decoding stopped after"), "{err}");
    let rows = csv_rows(&out.join("frames.csv"));
    assert!(!rows.is_empty() && rows.len() < 40, "{} rows", rows.len());
    // No temporary file is left beside the outputs.
    let names: Vec<String> =
        std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(names.iter().all(|n| !n.starts_with('.')), "{names:?}");

    // Not a video at all.
    let text = common::write(&dir.path().join("notes.mp4"), "not a video\n");
    let o = ferkit(&["predict", text.to_str().unwrap(), "--cascade", cascade]);
    assert!(
        !o.status.success() && stderr(&o).contains("notes.mp4: ffmpeg cannot read this file as a video"),
        "{}",
        stderr(&o)
    );

    // Sound only.
    let audio = dir.path().join("tone.mkv");
    ffmpeg(&["-f", "lavfi", "-i", "sine=frequency=440:duration=1", audio.to_str().unwrap()]);
    let o = ferkit(&["predict", audio.to_str().unwrap(), "--cascade", cascade]);
    assert!(!o.status.success() && stderr(&o).contains("tone.mkv: no video stream"), "{}", stderr(&o));

    // A missing file.
    let o = ferkit(&["predict", "no-such-clip.mp4", "--cascade", cascade]);
    assert!(!o.status.success() && stderr(&o).contains("no-such-clip.mp4: no such video file"), "{}", stderr(&o));

    // No ffmpeg on PATH: the error says how to install it.
    let exe = env!("CARGO_BIN_EXE_ferkit");
    let o = Command::new(exe)
        .current_dir(common::repo_root())
        .env("PATH", "")
        .args(["predict", whole.to_str().unwrap(), "--cascade", cascade])
        .output()
        .unwrap();
    assert!(
        !o.status.success()
            && stderr(&o).contains("ffprobe not found on PATH")
            && stderr(&o).contains("apt-get install ffmpeg"),
        "{}",
        stderr(&o)
    );
}
