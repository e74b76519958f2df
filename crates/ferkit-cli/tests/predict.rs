//! `ferkit predict`: faces found in photos and read by a trained net, end to end on the real
//! photos and FER2013 in ../shared, and its errors on bad input.

mod common;

use std::path::Path;

use common::{ferkit, shared, shared_fer2013, stderr, stdout, synthetic_csv, synthetic_face, write, write_gz};

fn train(data: &Path, out: &Path, extra: &[&str]) {
    let mut args = vec!["train", "cnn3", "--data", data.to_str().unwrap(), "--out", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    let o = ferkit(&args);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn a_trained_net_reads_the_face_in_a_real_photo() {
    let (Some(data), Some(cascade), Some(photos)) =
        (shared_fer2013(), shared("models/haarcascade_frontalface_default.xml"), shared("data/photos"))
    else {
        common::skip("FER2013, the Haar cascade or the photos are absent from ../shared");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("cnn3");
    // Three epochs of the notebook's cnn3 on all of FER2013's training rows (about 40% on
    // validation): enough to read a broad smile, in about 40 s.
    train(&data, &run, &["--epochs", "3"]);
    let out_dir = dir.path().join("pred");
    let astronaut = photos.join("astronaut.png");
    let coffee = photos.join("coffee.png");
    // `ferkit predict RUN astronaut.png coffee.png DETECTOR PATH --out OUT`, which must succeed.
    let predict = |detector: &str, path: &Path, out: &Path| {
        let photos = [&run, &astronaut, &coffee].map(|p| p.to_str().unwrap());
        let o = ferkit(
            &[&["predict"], &photos[..], &[detector, path.to_str().unwrap(), "--out", out.to_str().unwrap()]].concat(),
        );
        assert!(o.status.success(), "{}", stderr(&o));
        o
    };
    let text = stdout(&predict("--cascade", &cascade, &out_dir));
    eprintln!("{text}");
    assert!(text.contains("coffee.png: no face found"), "{text}");

    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("predictions.json")).unwrap()).unwrap();
    let photos = doc["photos"].as_array().unwrap();
    assert_eq!(photos.len(), 2);
    // The README of ../shared/data/photos: one frontal, smiling face in astronaut.png, none in coffee.png.
    let faces = photos[0]["faces"].as_array().unwrap();
    assert_eq!(faces.len(), 1, "{faces:?}");
    assert_eq!(faces[0]["emotion"], "happy", "{faces:?}");
    let probabilities = faces[0]["probabilities"].as_object().unwrap();
    let sum: f64 = probabilities.values().map(|p| p.as_f64().unwrap()).sum();
    assert!((sum - 1.0).abs() < 1e-4, "probabilities sum to {sum}");
    // Not the prior: happy is 25.1% of FER2013's training rows (7215 of 28709); the smile is read
    // with far more confidence than that.
    let happy = probabilities["happy"].as_f64().unwrap();
    common::figure(&format!("cnn3 after 3 epochs reads the astronaut as happy with probability {happy:.4}"));
    assert!(happy >= 0.6, "happy {happy}: not clearly above the training prior 0.251");
    // The box is where OpenCV puts the face (tests/detect_reference.rs compares the detector itself).
    assert_eq!(faces[0]["box"], serde_json::json!({"x": 177, "y": 66, "width": 95, "height": 95}));
    assert!(photos[1]["faces"].as_array().unwrap().is_empty());

    let csv = std::fs::read_to_string(out_dir.join("predictions.csv")).unwrap();
    assert_eq!(csv.lines().count(), 2, "{csv}");
    assert!(csv.lines().nth(1).unwrap().contains(",1,177,66,95,95,happy,"), "{csv}");
    // Each photo comes back with its faces marked, at its own size.
    let marked = image::open(out_dir.join("astronaut.png")).unwrap();
    assert_eq!((marked.width(), marked.height()), (512, 512));
    assert!(out_dir.join("coffee.png").exists());

    // The same photos through MTCNN (tests/mtcnn_reference.rs compares the detector itself).
    let Some(mtcnn) = shared("models/mtcnn") else {
        common::skip("the MTCNN part (../shared/models/mtcnn is absent)");
        return;
    };
    let mtcnn_out = dir.path().join("pred-mtcnn");
    predict("--mtcnn", &mtcnn, &mtcnn_out);
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(mtcnn_out.join("predictions.json")).unwrap()).unwrap();
    let faces = doc["photos"][0]["faces"].as_array().unwrap();
    assert_eq!(faces.len(), 1, "{faces:?}");
    assert_eq!(faces[0]["emotion"], "happy", "{faces:?}");
    assert!(faces[0]["detector_score"].as_f64().unwrap() > 0.99);
    assert_eq!(faces[0]["landmarks"].as_array().unwrap().len(), 5);
    // MTCNN's box is squared around the Haar cascade's face: the two overlap by far.
    let b = &faces[0]["box"];
    let (x, y, side) = (b["x"].as_f64().unwrap(), b["y"].as_f64().unwrap(), b["width"].as_f64().unwrap());
    let overlap =
        ((x + side).min(177.0 + 95.0) - x.max(177.0)).max(0.0) * ((y + side).min(66.0 + 95.0) - y.max(66.0)).max(0.0);
    assert!(overlap / (95.0 * 95.0) > 0.8, "{b}");
    assert!(doc["photos"][1]["faces"].as_array().unwrap().is_empty());

    // `--mtcnn` with no folder finds the weights ($FERKIT_MTCNN here), and the photo after it
    // stays a photo.
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_ferkit"))
        .current_dir(common::repo_root())
        .args(["predict", "--model", run.to_str().unwrap(), "--mtcnn", astronaut.to_str().unwrap()])
        .env("FERKIT_MTCNN", &mtcnn)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("astronaut.png face 1 at"), "{}", stdout(&o));

    // Turned upright by the eyes and read with its mirror image: the same face, still happy.
    let aligned_out = dir.path().join("pred-aligned");
    let o = ferkit(&[
        "predict",
        astronaut.to_str().unwrap(),
        "--model",
        run.to_str().unwrap(),
        "--mtcnn",
        mtcnn.to_str().unwrap(),
        "--align",
        "--tta",
        "hflip",
        "--out",
        aligned_out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    eprintln!("{}", stdout(&o));
    let aligned: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(aligned_out.join("predictions.json")).unwrap()).unwrap();
    assert_eq!((&aligned["align"], &aligned["tta"]), (&serde_json::json!(true), &serde_json::json!("hflip")));
    let face = &aligned["photos"][0]["faces"][0];
    assert_eq!((&face["box"], &face["emotion"]), (&faces[0]["box"], &serde_json::json!("happy")), "{face}");
    assert_ne!(face["probabilities"], faces[0]["probabilities"], "alignment and the mirror change what the net reads");
}

#[test]
fn bad_input_names_the_file_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = write_gz(&dir.path().join("fer.csv.gz"), &synthetic_csv(35));
    let run = dir.path().join("run");
    train(&data, &run, &["--epochs", "1", "--batch", "16"]);
    let run = run.to_str().unwrap();
    let face = dir.path().join("face.png");
    image::GrayImage::from_raw(48, 48, synthetic_face(3, 1)).unwrap().save(&face).unwrap();
    let face = face.to_str().unwrap();
    let out_dir = dir.path().join("out");
    let out = out_dir.to_str().unwrap();

    // An already-cropped face: no detector, one face per photo.
    let o = ferkit(&["predict", run, face, "--whole-image"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("face 1 at (0, 0) 48x48:"), "{}", stdout(&o));

    let not_an_image = write(&dir.path().join("notes.png"), "not a picture").to_str().unwrap().to_string();
    let missing = dir.path().join("missing.jpg").to_str().unwrap().to_string();
    let cascade = write(
        &dir.path().join("cascade.xml"),
        "<opencv_storage>\n<cascade>\n<stageType>BOOST</stageType>\n</cascade>\n</opencv_storage>\n",
    );
    let cascade = cascade.to_str().unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["predict", run, face, not_an_image.as_str(), "--whole-image", "--fail-fast", "--out", out],
            "notes.png: cannot read the image",
        ),
        (
            vec!["predict", run, missing.as_str(), "--whole-image", "--fail-fast", "--out", out],
            "missing.jpg: cannot read the image",
        ),
        (vec!["predict", run, face, "--cascade", cascade, "--out", out], "cascade.xml: not a usable OpenCV cascade"),
        (
            vec!["predict", run, face, "--whole-image", "--align", "--out", out],
            "--align needs --mtcnn: only MTCNN gives the eyes' positions",
        ),
        (
            vec!["predict", run, face, "--mtcnn", dir.path().to_str().unwrap(), "--out", out],
            "pnet.pt: no such weights file",
        ),
        (
            vec!["predict", run, face, "--whole-image", "--scale-factor", "1", "--out", out],
            "--scale-factor must be in [1.01, 4] (above 1; got 1)",
        ),
        (
            vec!["predict", run, face, "--cascade", cascade, "--scale-factor", "1.0001", "--out", out],
            "--scale-factor must be in [1.01, 4] (above 1; got 1.0001)",
        ),
        (
            vec!["predict", face, "--model", dir.path().to_str().unwrap(), "--whole-image", "--out", out],
            "not a ferkit run directory (no config.toml)",
        ),
        (
            vec!["predict", face, "--model", missing.as_str(), "--whole-image", "--out", out],
            "missing.jpg: no such run directory or model file",
        ),
    ];
    for (args, expected) in cases {
        let o = ferkit(&args);
        assert!(!o.status.success(), "{args:?} succeeded");
        assert!(stderr(&o).contains(expected), "{args:?}: expected `{expected}` in\n{}", stderr(&o));
        assert!(!out_dir.exists(), "{args:?} wrote {}", out_dir.display());
    }
    // A photo whose header reads but whose pixels are cut off fails when its turn comes: the
    // photos before it keep their complete marked pictures, no tables are written, and no
    // temporary file is left behind.
    let whole = std::fs::read(face).unwrap();
    let truncated = write(&dir.path().join("cut.png"), &whole[..whole.len() / 2]);
    let o = ferkit(&["predict", run, face, truncated.to_str().unwrap(), "--whole-image", "--fail-fast", "--out", out]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("cut.png: cannot read the image"), "{}", stderr(&o));
    let mut left: Vec<String> =
        std::fs::read_dir(&out_dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    left.sort();
    assert_eq!(left, vec!["face.png"]);
    assert!(image::open(out_dir.join("face.png")).is_ok());

    // Without --fail-fast, photos that cannot be read are reported and the others predicted:
    // the exit code says some failed, and predictions.json lists them under `failed`.
    std::fs::remove_dir_all(&out_dir).unwrap();
    let o = ferkit(&[
        "predict",
        run,
        not_an_image.as_str(),
        face,
        missing.as_str(),
        truncated.to_str().unwrap(),
        "--whole-image",
        "--out",
        out,
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    for bad in ["notes.png", "missing.jpg", "cut.png"] {
        assert!(err.contains(&format!("{bad}: cannot read the image")), "{err}");
    }
    assert!(err.contains("3 of 4 photos could not be read"), "{err}");
    assert!(stdout(&o).contains("face.png face 1 at (0, 0) 48x48:"), "{}", stdout(&o));
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("predictions.json")).unwrap()).unwrap();
    assert_eq!(doc["photos"].as_array().unwrap().len(), 1);
    assert_eq!(doc["failed"].as_array().unwrap().len(), 3);
    assert!(doc["failed"][0]["photo"].as_str().unwrap().ends_with("notes.png"));

    // The cascade error also names the line of the XML that is wrong.
    let o = ferkit(&["predict", run, face, "--cascade", cascade]);
    assert!(stderr(&o).contains("line 2"), "{}", stderr(&o));
}

/// `ferkit predict PHOTO` with nothing else: the shipped model, and OpenCV's cascade found where
/// Debian's opencv-data installs it; run from another folder, as an installed binary would be.
#[test]
fn predict_needs_no_model_and_no_detector_path() {
    let Some(photos) = shared("data/photos") else {
        common::skip("../shared/data/photos is absent");
        return;
    };
    let installed = ["/usr/share/opencv4/haarcascades", "/usr/share/opencv/haarcascades"]
        .iter()
        .any(|d| Path::new(d).join("haarcascade_frontalface_default.xml").is_file());
    if !installed {
        common::skip("OpenCV's cascade is not installed (apt-get install opencv-data)");
        return;
    }
    let elsewhere = tempfile::tempdir().unwrap();
    let astronaut = photos.join("astronaut.png");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_ferkit"))
        .args(["predict", astronaut.to_str().unwrap()])
        .current_dir(elsewhere.path())
        .env_remove("FERKIT_CASCADE")
        .env_remove("XDG_DATA_DIRS")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert_eq!(text.lines().count(), 1, "{text}");
    // The shared photos' README: one frontal, smiling face.
    assert!(text.contains("astronaut.png face 1 at (177, 66) 95x95: happy"), "{text}");
}

/// No detector given and none installed: the error lists where ferkit looked and how to install one.
#[test]
fn no_detector_found_names_the_places_searched_and_the_install_command() {
    let dir = tempfile::tempdir().unwrap();
    let face = dir.path().join("face.png");
    image::GrayImage::from_raw(48, 48, synthetic_face(3, 1)).unwrap().save(&face).unwrap();
    let empty = dir.path().join("share");
    std::fs::create_dir_all(&empty).unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_ferkit"))
        .current_dir(common::repo_root())
        .args(["predict", face.to_str().unwrap()])
        .env_remove("FERKIT_CASCADE")
        .env("XDG_DATA_DIRS", &empty)
        .env("PATH", &empty) // no python3: no pip-installed OpenCV either
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = stderr(&o);
    let searched = empty.join("opencv4/haarcascades/haarcascade_frontalface_default.xml");
    assert!(err.contains(&searched.display().to_string()), "{err}");
    assert!(err.contains("apt-get install opencv-data") && err.contains("--cascade"), "{err}");

    // A named cascade that does not exist is an error too, not a fall back to the search.
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_ferkit"))
        .current_dir(common::repo_root())
        .args(["predict", face.to_str().unwrap()])
        .env("FERKIT_CASCADE", dir.path().join("gone.xml"))
        .env("XDG_DATA_DIRS", &empty)
        .env("PATH", &empty)
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(stderr(&o).contains("$FERKIT_CASCADE names") && stderr(&o).contains("gone.xml"), "{}", stderr(&o));
}

/// A photo export as a folder: walked recursively, the photos predicted, the sidecar files,
/// notes and thumbnail databases passed over and counted (../shared/cases/08-photo-folder).
#[test]
fn a_photo_folder_is_walked_and_what_is_not_a_photo_is_counted() {
    let Some(export) = shared("cases/08-photo-folder/export") else {
        common::skip("../shared/cases/08-photo-folder is absent");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let o = ferkit(&["predict", export.to_str().unwrap(), "--whole-image", "--out", dir.path().to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("passed over 3 files that are not images"), "{err}");
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("predictions.json")).unwrap()).unwrap();
    let photos: Vec<&str> = doc["photos"].as_array().unwrap().iter().map(|p| p["photo"].as_str().unwrap()).collect();
    assert_eq!(photos.len(), 3, "{photos:?}");
    assert!(photos[0].ends_with("export/2024/IMG_0003.jpg"), "the sub-folder's photo, in path order: {photos:?}");

    // The same walk on a folder built here: another nesting, other non-image files.
    let root = dir.path().join("album");
    std::fs::create_dir_all(root.join("2024/summer")).unwrap();
    image::GrayImage::from_raw(48, 48, synthetic_face(3, 1)).unwrap().save(root.join("b.png")).unwrap();
    image::GrayImage::from_raw(48, 48, synthetic_face(4, 2)).unwrap().save(root.join("2024/summer/a.bmp")).unwrap();
    std::fs::write(root.join("2024/.DS_Store"), [0u8, 1, 2, 3]).unwrap();
    std::fs::write(root.join("desktop.ini"), "[.ShellClassInfo]").unwrap();
    let o = ferkit(&["predict", root.to_str().unwrap(), "--whole-image"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("passed over 2 files that are not images"), "{}", stderr(&o));
    let lines: Vec<String> = stdout(&o).lines().map(String::from).collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0].contains("2024/summer/a.bmp") && lines[1].contains("album/b.png"), "sorted by path: {lines:?}");
}

/// `--tta hflip` reads each face and its mirror image and averages the two: its probabilities
/// equal the mean of those of the face and of the mirrored face read plainly (the shipped model,
/// `--whole-image`, so no detector is involved).
#[test]
fn mirror_tta_is_the_mean_of_the_face_and_its_mirror() {
    let dir = tempfile::tempdir().unwrap();
    let face = synthetic_face(4, 11);
    let mirrored: Vec<u8> = face.chunks(48).flat_map(|row| row.iter().rev().copied()).collect();
    assert_ne!(face, mirrored);
    let save = |name: &str, pixels: &[u8]| {
        let path = dir.path().join(name);
        image::GrayImage::from_raw(48, 48, pixels.to_vec()).unwrap().save(&path).unwrap();
        path
    };
    let (plain, mirror) = (save("face.png", &face), save("mirror.png", &mirrored));
    let probabilities = |photo: &std::path::Path, tta: &str| -> Vec<f64> {
        let out = dir.path().join(format!("{}-{tta}", photo.file_stem().unwrap().to_string_lossy()));
        let o = ferkit(&[
            "predict",
            photo.to_str().unwrap(),
            "--whole-image",
            "--tta",
            tta,
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        let doc: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("predictions.json")).unwrap()).unwrap();
        let p = &doc["photos"][0]["faces"][0]["probabilities"];
        ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
            .iter()
            .map(|c| p[c].as_f64().unwrap())
            .collect()
    };
    let (a, b, tta) = (probabilities(&plain, "none"), probabilities(&mirror, "none"), probabilities(&plain, "hflip"));
    let worst = a.iter().zip(&b).zip(&tta).map(|((a, b), t)| ((a + b) / 2.0 - t).abs()).fold(0.0, f64::max);
    assert!(worst < 1e-6, "TTA {tta:?} vs the mean of {a:?} and {b:?}");
    // The mirror reads differently, so the check above can fail.
    assert!(a.iter().zip(&b).any(|(a, b)| (a - b).abs() > 1e-3), "{a:?} {b:?}");
}
