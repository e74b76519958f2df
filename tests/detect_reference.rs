//! ferkit's face detector against OpenCV 4's `CascadeClassifier.detectMultiScale` with the same
//! cascade on the photos in ../shared: the fixture was written by
//! tests/fixtures/make_opencv_detect_reference.py (OpenCV 4.14). Raw windows (no grouping) and
//! grouped faces, several scale steps, each photo as is and mirrored.

#[path = "../crates/ferkit-cli/tests/common/mod.rs"]
mod common;

use ferkit::detection::{BoundingBox, Cascade, DetectOptions, GreyImage};

#[test]
fn detections_match_opencv() {
    let (Some(cascade_path), Some(photos)) =
        (common::shared("models/haarcascade_frontalface_default.xml"), common::shared("data/photos"))
    else {
        common::skip("../shared/models or ../shared/data/photos is absent");
        return;
    };
    let cascade = Cascade::load(&cascade_path).expect("the cascade loads");
    let doc: serde_json::Value =
        serde_json::from_str(include_str!("fixtures/opencv_detect_reference.json")).expect("the fixture is JSON");
    let (raw_total, raw_differing) = compare(&cascade, doc["cases"].as_array().unwrap(), &photos);
    // Measured: 2 of 427 (one window at scale 1.3 that OpenCV keeps, one at 1.05 on the mirrored
    // astronaut that only ferkit keeps); neither changes a grouped face. Cause not found: the
    // grey conversion, resampling, integral images and float types follow OpenCV's code.
    assert!(raw_differing * 100 <= raw_total, "{raw_differing} of {raw_total} raw windows differ");
}

/// OpenCV's other frontal-face cascades: Haar with two-split trees (alt2) and both LBP ones, from
/// Debian's `opencv-data` (fixture: tests/fixtures/make_opencv_cascades_reference.py, OpenCV 4.14).
#[test]
fn tree_and_lbp_cascades_match_opencv() {
    let Some(photos) = common::shared("data/photos") else {
        common::skip("../shared/data/photos is absent");
        return;
    };
    let doc: serde_json::Value =
        serde_json::from_str(include_str!("fixtures/opencv_cascades_reference.json")).expect("the fixture is JSON");
    let mut totals = Vec::new();
    for entry in doc["cascades"].as_array().unwrap() {
        let file = entry["file"].as_str().unwrap();
        let path = std::path::Path::new("/usr/share/opencv4").join(file);
        if !path.exists() {
            common::skip(&format!(
                "{} is absent: install Debian's opencv-data (apt-get install opencv-data)",
                path.display()
            ));
            return;
        }
        let bytes = std::fs::read(&path).unwrap();
        if sha256_hex(&bytes) != entry["sha256"].as_str().unwrap() {
            // Another release of the file: the fixture's boxes do not apply to it.
            common::skip_optional(&format!(
                "{} differs from the file the fixture was made from (Debian opencv-data 4.6.0): regenerate with tests/fixtures/make_opencv_cascades_reference.py",
                path.display()
            ));
            continue;
        }
        let cascade = Cascade::load(&path).expect("the cascade loads");
        let (raw_total, raw_differing) = compare(&cascade, entry["cases"].as_array().unwrap(), &photos);
        common::figure(&format!("{file}: {raw_differing} of {raw_total} raw windows differ"));
        totals.push((file.to_string(), raw_total, raw_differing));
    }
    // Measured: alt2 2 of 132 (one window ferkit misses at scale 1.1 on the astronaut, one extra on
    // the coffee photo; grouped faces all equal), both LBP cascades 0 of 127 and 0 of 102.
    for (file, total, differing) in &totals {
        assert!(differing * 100 <= total * 2, "{file}: {differing} of {total} raw windows differ");
    }
}

/// SHA-256 through the `sha256sum` tool (coreutils), to avoid a hashing dependency for one test.
fn sha256_hex(bytes: &[u8]) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("sha256sum runs");
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8(out.stdout).unwrap().split_whitespace().next().unwrap().to_string()
}

/// Runs every case of a fixture: grouped faces must equal OpenCV's, raw windows may differ by one
/// per case. Returns (raw windows OpenCV found, raw windows that differ).
fn compare(cascade: &Cascade, cases: &[serde_json::Value], photos: &std::path::Path) -> (usize, usize) {
    let mut report = Vec::new();
    let (mut raw_total, mut raw_differing) = (0, 0);
    for case in cases {
        let photo = case["photo"].as_str().unwrap();
        let rgb = image::open(photos.join(photo)).expect("the photo opens").to_rgb8();
        let rgb = if case["flipped"].as_bool().unwrap() { image::imageops::flip_horizontal(&rgb) } else { rgb };
        let grey = GreyImage::from_rgb(rgb.width() as usize, rgb.height() as usize, rgb.as_raw());
        let options = DetectOptions {
            scale_factor: case["scale_factor"].as_f64().unwrap(),
            min_neighbors: case["min_neighbors"].as_u64().unwrap() as usize,
            min_size: case["min_size"].as_u64().unwrap() as usize,
            max_size: None,
        };
        let mut ours: Vec<[usize; 4]> =
            cascade.detect(&grey, &options).iter().map(|b: &BoundingBox| [b.x, b.y, b.width, b.height]).collect();
        ours.sort();
        let theirs: Vec<[usize; 4]> = case["boxes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| {
                let v: Vec<usize> = b.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as usize).collect();
                [v[0], v[1], v[2], v[3]]
            })
            .collect();
        let missing = theirs.iter().filter(|b| !ours.contains(b)).count();
        let extra = ours.iter().filter(|b| !theirs.contains(b)).count();
        let line = format!(
            "{photo} flipped={} scale {} neighbours {} min {}: OpenCV {} boxes, ferkit {}, {missing} missing, {extra} extra",
            case["flipped"],
            options.scale_factor,
            options.min_neighbors,
            options.min_size,
            theirs.len(),
            ours.len()
        );
        if options.min_neighbors == 0 {
            raw_total += theirs.len();
            raw_differing += missing + extra;
            assert!(missing + extra <= 1, "raw windows differ:\n{line}\nOpenCV {theirs:?}\nferkit {ours:?}");
        } else {
            assert_eq!(ours, theirs, "faces differ:\n{line}");
        }
        report.push(line);
    }
    // Every case's counts, shown when the test fails; the summary line above is the figure.
    eprintln!("{}", report.join("\n"));
    (raw_total, raw_differing)
}
