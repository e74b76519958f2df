//! The files people have, read correctly or refused clearly (../shared/cases, README there), and
//! for each kind an input built here that differs from the shared one.

mod common;
use common::*;

use std::io::Write;

use ferkit::data::image_folder::load_face;
use ferkit::prediction::{Frame, crop_face};

fn stats_json(args: &[&str]) -> serde_json::Value {
    let mut all = vec!["data", "stats", "--json"];
    all.extend_from_slice(args);
    let out = ferkit(&all);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    serde_json::from_str(&stdout(&out)).unwrap()
}

fn total(json: &serde_json::Value, split: &str) -> u64 {
    json[split]["total"].as_u64().unwrap()
}

/// No message prints raw binary: every character is printable or a line break.
fn assert_printable(text: &str) {
    assert!(!text.chars().any(|c| c.is_control() && c != '\n' && c != '\t'), "control characters in: {text:?}");
}

#[test]
fn fer2013_inside_archives_is_read_or_named() {
    let dir = tempfile::tempdir().unwrap();
    if let Some(download) = shared("cases/01-fer2013-archive/fer2013.tar.gz") {
        let json = stats_json(&["--data", download.to_str().unwrap()]);
        assert_eq!(total(&json, "train") + total(&json, "val") + total(&json, "test"), 84);
    } else {
        common::skip("the shared part (../shared/cases/01-fer2013-archive is absent)");
    }

    // A plain (not gzipped) tar with another layout: the CSV at the top, beside a README.
    let csv = synthetic_csv(7);
    let mut builder = tar::Builder::new(Vec::new());
    for (name, body) in [("README.txt", "FER2013 sample".as_bytes()), ("icml_face_data.csv", csv.as_bytes())] {
        let mut header = tar::Header::new_gnu();
        header.set_size(body.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, name, body).unwrap();
    }
    let tar_path = write(&dir.path().join("faces.tar"), builder.into_inner().unwrap());
    let json = stats_json(&["--data", tar_path.to_str().unwrap()]);
    assert_eq!((total(&json, "train"), total(&json, "val"), total(&json, "test")), (7, 7, 7));

    // A tar without a CSV is named as such, with what it holds.
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(4);
    header.set_cksum();
    builder.append_data(&mut header, "images/a.png", &b"\x89PNG"[..]).unwrap();
    let no_csv = write(&dir.path().join("images.tar"), builder.into_inner().unwrap());
    let out = ferkit(&["data", "stats", "--data", no_csv.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("a tar archive holding no CSV file") && stderr(&out).contains("images/a.png"));
    assert_printable(&stderr(&out));

    // A zip: named, with its files, and how to unpack it; no raw bytes in the message.
    let zip = write(&dir.path().join("fer2013.zip"), stored_zip("fer2013/fer2013.csv", csv.as_bytes()));
    let out = ferkit(&["data", "stats", "--data", zip.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("a zip archive holding `fer2013/fer2013.csv`") && err.contains("unzip"), "{err}");
    assert_printable(&err);

    // Any other binary file: the header is quoted with its bytes escaped and cut.
    let binary = write(&dir.path().join("weights.bin"), [0u8, 159, 146, 150, 7, 27, b'a', b'\n', 1, 2]);
    let out = ferkit(&["data", "stats", "--data", binary.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("weights.bin line 1"), "{}", stderr(&out));
    assert_printable(&stderr(&out));
}

/// A zip archive holding one file, stored (no compression), written by hand.
fn stored_zip(name: &str, body: &[u8]) -> Vec<u8> {
    let crc = {
        let mut c = flate2::Crc::new();
        c.update(body);
        c.sum()
    };
    let mut out = Vec::new();
    let local = |out: &mut Vec<u8>| {
        out.extend_from_slice(b"PK\x03\x04");
        out.extend_from_slice(&[20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(body);
    };
    local(&mut out);
    let directory_at = out.len() as u32;
    out.extend_from_slice(b"PK\x01\x02");
    out.extend_from_slice(&[20, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&(name.len() as u16).to_le_bytes());
    out.extend_from_slice(&[0; 12]); // extra, comment, disk, attributes
    out.extend_from_slice(&0u32.to_le_bytes()); // local header offset
    out.extend_from_slice(name.as_bytes());
    let directory_size = out.len() as u32 - directory_at;
    out.extend_from_slice(b"PK\x05\x06");
    out.extend_from_slice(&[0, 0, 0, 0, 1, 0, 1, 0]);
    out.extend_from_slice(&directory_size.to_le_bytes());
    out.extend_from_slice(&directory_at.to_le_bytes());
    out.extend_from_slice(&[0, 0]);
    out
}

#[test]
fn a_spreadsheets_bom_and_crlf_read_as_the_plain_csv() {
    let dir = tempfile::tempdir().unwrap();
    if let (Some(bom), Some(download)) =
        (shared("cases/02-spreadsheet-bom/fer_bom_crlf.csv"), shared("cases/01-fer2013-archive/fer2013.tar.gz"))
    {
        assert_eq!(stats_json(&["--data", bom.to_str().unwrap()]), stats_json(&["--data", download.to_str().unwrap()]));
    } else {
        common::skip("the shared part (../shared/cases/02-spreadsheet-bom is absent)");
    }
    // Built here: BOM, CRLF, quoted fields, Usage first, gzipped.
    let plain = synthetic_csv(7);
    let mut text = String::from("\u{feff}\"Usage\",\"emotion\",\"pixels\"\r\n");
    for line in plain.lines().skip(1) {
        let mut f = line.split(',');
        let (e, p, u) = (f.next().unwrap(), f.next().unwrap(), f.next().unwrap());
        text += &format!("\"{u}\",{e},\"{p}\"\r\n");
    }
    let spreadsheet = write_gz(&dir.path().join("export.csv.gz"), &text);
    let reference = write(&dir.path().join("plain.csv"), &plain);
    assert_eq!(
        stats_json(&["--data", spreadsheet.to_str().unwrap()]),
        stats_json(&["--data", reference.to_str().unwrap()])
    );
}

#[test]
fn train_and_test_folders_get_a_validation_split_carved_from_train() {
    let dir = tempfile::tempdir().unwrap();
    // Built here: FER2013's image release layout, 14 faces per class in train.
    let root = dir.path().join("fer2013");
    for (split, per_class) in [("train", 14), ("test", 2)] {
        for (label, class) in ferkit::data::CLASS_NAMES.iter().enumerate() {
            let folder = root.join(split).join(class);
            std::fs::create_dir_all(&folder).unwrap();
            for i in 0..per_class {
                let face = synthetic_face(label, 1000 * label + i);
                image::GrayImage::from_raw(48, 48, face).unwrap().save(folder.join(format!("{i}.png"))).unwrap();
            }
        }
    }
    let run = dir.path().join("run");
    let base = ["train", "cnn3", "--data", root.to_str().unwrap(), "--epochs", "1", "--out", run.to_str().unwrap()];
    let out = ferkit(&base);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--val-split"), "{}", stderr(&out));
    assert!(!run.exists(), "a refused run leaves no run directory");

    let out = ferkit(&[&base[..], &["--val-split", "0.15"]].concat());
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("14 training rows held out"), "{}", stderr(&out)); // 2 of 14 per class
    let config = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(config.contains("val_split = 0.15"), "{config}");
    // eval on the run's own data carves the same rows.
    let eval = ferkit(&["eval", run.to_str().unwrap(), "--split", "val"]);
    assert!(eval.status.success(), "{}", stderr(&eval));
    assert!(stdout(&eval).contains("on val: 14 rows"), "{}", stdout(&eval));

    if let Some(release) = shared("cases/03-train-test-folders/fer2013") {
        let json = stats_json(&["--data", release.to_str().unwrap(), "--val-split", "0.2"]);
        assert!(total(&json, "val") > 0);
        assert_eq!(total(&json, "train") + total(&json, "val"), 28);
    } else {
        common::skip("the shared part (../shared/cases/03-train-test-folders is absent)");
    }
}

#[test]
fn other_data_sets_class_names_are_mapped_or_left_out_with_a_count() {
    if let Some(faces) = shared("cases/04-other-class-names/faces") {
        let path = faces.to_str().unwrap();
        let out = ferkit(&["data", "stats", "--data", path]);
        assert!(!out.status.success());
        assert!(stderr(&out).contains("`contempt`") && stderr(&out).contains("--skip-unknown-classes"));
        let skipped = ferkit(&["data", "stats", "--data", path, "--skip-unknown-classes"]);
        assert!(skipped.status.success(), "{}", stderr(&skipped));
        assert!(stderr(&skipped).contains("class `contempt` is not one of the seven"), "{}", stderr(&skipped));
        let mapped = stats_json(&["--data", path, "--class-map", "contempt=disgust"]);
        let left_out = stats_json(&["--data", path, "--skip-unknown-classes"]);
        assert!(mapped["train"]["disgust"].as_u64() > left_out["train"]["disgust"].as_u64());
        assert!(left_out["train"]["angry"].as_u64().unwrap() > 0, "`anger` is read as angry");
    } else {
        common::skip("the shared part (../shared/cases/04-other-class-names is absent)");
    }
    // Built here: AffectNet/RAF-DB style names.
    let dir = tempfile::tempdir().unwrap();
    for class in ["Fearful", "Disgusted", "Surprised", "Happiness"] {
        let folder = dir.path().join("train").join(class);
        std::fs::create_dir_all(&folder).unwrap();
        image::GrayImage::from_raw(48, 48, synthetic_face(0, 1)).unwrap().save(folder.join("a.png")).unwrap();
    }
    let json = stats_json(&["--data", dir.path().to_str().unwrap()]);
    for class in ["fear", "disgust", "surprise", "happy"] {
        assert_eq!(json["train"][class], 1, "{class}: {json}");
    }
}

#[test]
fn an_image_reaches_the_net_as_the_same_pixels_from_a_folder_and_from_predict() {
    let dir = tempfile::tempdir().unwrap();
    // Built here: a colour photo stored sideways with EXIF orientation 8 (turn 90 degrees
    // counter-clockwise), and its upright original.
    let upright =
        image::RgbImage::from_fn(40, 64, |x, y| image::Rgb([(x * 6) as u8, (y * 4) as u8, ((x + y) * 2) as u8]));
    let upright_path = dir.path().join("upright.png");
    upright.save(&upright_path).unwrap();
    let sideways = image::imageops::rotate90(&upright); // orientation 8 undoes a clockwise turn
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 100).encode_image(&sideways).unwrap();
    let phone = dir.path().join("phone.jpg");
    std::fs::write(&phone, with_exif_orientation(&jpeg, 8)).unwrap();
    let png_named_jpg = dir.path().join("really_a_png.jpg");
    std::fs::copy(&upright_path, &png_named_jpg).unwrap();

    for path in [&upright_path, &phone, &png_named_jpg] {
        let from_folder = load_face(path).unwrap();
        let photo = Frame::open(path).unwrap();
        let whole = ferkit::detection::BoundingBox { x: 0, y: 0, width: photo.grey.width, height: photo.grey.height };
        assert_eq!(from_folder, crop_face(&photo.grey, whole), "{}", path.display());
    }
    // The sideways JPEG is read upright: close to the original (JPEG's loss aside).
    let (a, b) = (load_face(&upright_path).unwrap(), load_face(&phone).unwrap());
    let mean_diff = a.iter().zip(&b).map(|(x, y)| (*x as f64 - *y as f64).abs()).sum::<f64>() / a.len() as f64;
    assert!(mean_diff < 3.0, "mean difference {mean_diff}");

    if let Some(faces) = shared("cases/05-exif-in-image-folder/faces") {
        for dir in ["train/happy", "test/sad"] {
            let (p, u) = (faces.join(dir).join("phone_face.jpg"), faces.join(dir).join("upright_face.jpg"));
            let (a, b) = (load_face(&p).unwrap(), load_face(&u).unwrap());
            let diff = a.iter().zip(&b).map(|(x, y)| (*x as f64 - *y as f64).abs()).sum::<f64>() / a.len() as f64;
            assert!(diff < 8.0, "{dir}: the phone face differs from the upright one by {diff} on average");
        }
    } else {
        common::skip("the shared part (../shared/cases/05-exif-in-image-folder is absent)");
    }
}

/// A JPEG with an APP1 Exif block holding one tag: orientation.
fn with_exif_orientation(jpeg: &[u8], orientation: u16) -> Vec<u8> {
    let mut tiff = b"MM\x00\x2a\x00\x00\x00\x08\x00\x01".to_vec();
    tiff.extend_from_slice(&[0x01, 0x12, 0x00, 0x03, 0x00, 0x00, 0x00, 0x01]);
    tiff.extend_from_slice(&orientation.to_be_bytes());
    tiff.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    let mut app1 = b"Exif\x00\x00".to_vec();
    app1.extend_from_slice(&tiff);
    let mut out = jpeg[..2].to_vec(); // SOI
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&((app1.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(&app1);
    out.extend_from_slice(&jpeg[2..]);
    out
}

#[test]
fn every_decodable_image_in_a_folder_is_read_and_the_rest_counted() {
    if let Some(faces) = shared("cases/07-image-extensions/faces") {
        let json = stats_json(&["--data", faces.to_str().unwrap()]);
        assert_eq!(total(&json, "train") + total(&json, "val") + total(&json, "test"), 63);
    } else {
        common::skip("the shared part (../shared/cases/07-image-extensions is absent)");
    }
    if let Some(faces) = shared("cases/06-png-named-jpg/faces") {
        let json = stats_json(&["--data", faces.to_str().unwrap()]);
        assert_eq!(total(&json, "train"), 2);
    }
    // Built here: other formats and endings, and files that are not images beside them.
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("val/sad");
    std::fs::create_dir_all(&folder).unwrap();
    let grey = image::DynamicImage::ImageLuma8(image::GrayImage::from_raw(48, 48, synthetic_face(4, 9)).unwrap());
    let face = image::DynamicImage::ImageRgb8(grey.to_rgb8()); // GIF writes colour only
    for (name, format) in [
        ("a.TIF", image::ImageFormat::Tiff),
        ("b.gif", image::ImageFormat::Gif),
        ("c.jpe", image::ImageFormat::Jpeg),
        ("d.bmp", image::ImageFormat::Bmp),
        ("e", image::ImageFormat::Png), // no ending at all
    ] {
        face.save_with_format(folder.join(name), format).unwrap();
    }
    std::fs::write(folder.join("Thumbs.db"), [0xD0u8, 0xCF, 0x11, 0xE0]).unwrap();
    let mut f = std::fs::File::create(folder.join("labels.txt")).unwrap();
    writeln!(f, "sad").unwrap();
    let out = ferkit(&["data", "stats", "--data", dir.path().to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json["val"]["sad"], 5);
    let err = stderr(&out);
    assert!(err.contains("left out 2 files or folders"), "{err}");
    assert!(err.contains("Thumbs.db: not an image") && err.contains("labels.txt: not an image"), "{err}");
}

#[test]
fn evaluation_on_other_data_never_replaces_the_runs_own_figures() {
    let dir = tempfile::tempdir().unwrap();
    let own = write_gz(&dir.path().join("fer.csv.gz"), &synthetic_csv(21));
    let other = write(&dir.path().join("lab photos.csv"), synthetic_csv(14));
    let run = dir.path().join("run");
    let out =
        ferkit(&["train", "fnn1", "--data", own.to_str().unwrap(), "--epochs", "1", "--out", run.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = ferkit(&["eval", run.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let own_figures = std::fs::read_to_string(run.join("eval_test.json")).unwrap();

    let out = ferkit(&["eval", run.to_str().unwrap(), "--data", other.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(run.join("eval_test.json")).unwrap(), own_figures);
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("eval_test_lab_photos.json")).unwrap()).unwrap();
    assert_eq!(doc["rows"], 14);
    assert_eq!(doc["data"]["source"]["data"], other.to_str().unwrap());
    let crc = doc["data"]["crc32"][other.to_str().unwrap()].as_str().unwrap();
    assert_eq!(crc.len(), 8, "{doc}");
    assert!(run.join("confusion_test_lab_photos.png").exists());
}

/// Issue 14, item 6: a checkpoint that does not fit the net is named briefly in PyTorch's key
/// names, and the failed training leaves no run directory behind.
#[test]
fn weights_that_do_not_fit_stop_training_before_a_run_directory_exists() {
    let dir = tempfile::tempdir().unwrap();
    let data = write_gz(&dir.path().join("fer.csv.gz"), &synthetic_csv(30));
    let weights = common::repo_root().join("tests/fixtures/pytorch_checkpoints/pnet_f32.pt");
    let run = dir.path().join("run");
    let out = ferkit(&[
        "train",
        "efficientnet-lite0",
        "--weights",
        weights.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("pnet_f32.pt: not EfficientNet-Lite0 weights") && err.contains("unexpected conv1.bias"),
        "{err}"
    );
    assert!(err.contains("missing") && err.contains("more"), "{err}");
    assert!(err.lines().count() <= 3, "a brief message:\n{err}");
    assert!(!run.exists(), "the failed run left {} behind", run.display());
}
