//! Predicting a list of photos and what that leaves in an output folder: each photo with its
//! faces boxed and labelled (PNG), `predictions.json` and `predictions.csv`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::error::{Context, Result};
use serde_json::{Value, json};

use super::{EmotionClassifier, FaceDetector, FacePrediction, Frame};
use crate::data::CLASS_NAMES;
use crate::data::image_io::{has_image_extension, is_image_file};
use crate::detection::BoundingBox;
use crate::reporting::plots::{FaceMark, annotate_photo};
use crate::util::atomic::write_atomic;
use crate::util::fs::files_under;

/// What was found in one photo.
pub struct PhotoResult {
    pub path: PathBuf,
    pub width: usize,
    pub height: usize,
    /// The marked photo's file name in the output folder.
    pub picture: Option<String>,
    pub faces: Vec<FacePrediction>,
}

/// A photo that could not be read, and why.
#[derive(Clone, Debug)]
pub struct PhotoFailure {
    /// The photo as given (or as found in a folder).
    pub path: PathBuf,
    /// The error, with its causes, naming the file.
    pub error: String,
}

/// Predicts `photos` one at a time (so that a thousand phone photos never sit in memory
/// together), writing each marked photo whole to `out` when given; `each` sees every result as
/// it comes, `failed` every photo that cannot be read, which is then passed over.
///
/// With `fail_fast` every path is checked first (it exists and is an image) and the first bad
/// one stops the run before anything is written; a photo whose pixels turn out damaged later
/// stops it too (marked photos already written stay whole).
pub fn predict_photos(
    classifier: &EmotionClassifier,
    detector: &dyn FaceDetector,
    photos: &[PathBuf],
    out: Option<&Path>,
    fail_fast: bool,
    mut each: impl FnMut(&PhotoResult),
    mut failed: impl FnMut(&PhotoFailure),
) -> Result<(Vec<PhotoResult>, Vec<PhotoFailure>)> {
    if fail_fast {
        for path in photos {
            Frame::check(path)?;
        }
    }
    if let Some(out) = out {
        std::fs::create_dir_all(out).with_context(|| format!("{}: cannot create the folder", out.display()))?;
        crate::util::atomic::remove_stale_temporaries(out, 0); // a killed run's half-written files
    }
    let mut used_names = HashSet::new();
    let mut results = Vec::with_capacity(photos.len());
    let mut failures = Vec::new();
    for path in photos {
        let photo = match Frame::open(path) {
            Ok(photo) => photo,
            Err(e) if fail_fast => return Err(e),
            Err(e) => {
                let failure = PhotoFailure { path: path.clone(), error: format!("{e:#}") };
                failed(&failure);
                failures.push(failure);
                continue;
            }
        };
        let faces = classifier.predict(detector, &photo);
        let picture = match out {
            Some(out) => {
                let name = picture_name(path, &mut used_names);
                let marks: Vec<FaceMark> = faces
                    .iter()
                    .map(|f| FaceMark {
                        bbox: f.bbox,
                        label: format!("{} {:.0}%", f.emotion, 100.0 * f.confidence()),
                        points: f.landmarks.map(|l| l.to_vec()).unwrap_or_default(),
                    })
                    .collect();
                annotate_photo(&photo.rgb, &marks, &out.join(&name))?;
                Some(name)
            }
            None => None,
        };
        let result =
            PhotoResult { path: path.clone(), width: photo.grey.width, height: photo.grey.height, picture, faces };
        each(&result);
        results.push(result);
    }
    Ok((results, failures))
}

/// The photos that paths name: files as given, folders walked recursively in name order. Files
/// inside folders that are neither named nor made as images (sidecars, notes, `Thumbs.db`) are
/// passed over and returned apart, so that the caller counts them.
pub fn expand_photo_paths(paths: &[PathBuf]) -> Result<(Vec<PathBuf>, Vec<PathBuf>)> {
    let (mut photos, mut others) = (Vec::new(), Vec::new());
    for path in paths {
        if !path.is_dir() {
            photos.push(path.clone());
            continue;
        }
        for file in files_under(path)? {
            if has_image_extension(&file) || is_image_file(&file).unwrap_or(false) {
                photos.push(file);
            } else {
                others.push(file);
            }
        }
    }
    Ok((photos, others))
}

/// Writes `predictions.json` (with `about`: the run, model and detector; and the photos that
/// could not be read, under `failed`) and `predictions.csv`.
pub fn write_tables(out: &Path, about: Value, results: &[PhotoResult], failures: &[PhotoFailure]) -> Result<()> {
    let mut entries = Vec::new();
    let mut csv = format!("photo,face,x,y,width,height,emotion,{}\n", CLASS_NAMES.join(","));
    for r in results {
        for (i, f) in r.faces.iter().enumerate() {
            let BoundingBox { x, y, width, height } = f.bbox;
            let probabilities: Vec<String> = f.probabilities.iter().map(|p| format!("{p:.6}")).collect();
            let (photo, face, emotion) = (csv_field(&r.path.display().to_string()), i + 1, f.emotion);
            csv += &format!("{photo},{face},{x},{y},{width},{height},{emotion},{}\n", probabilities.join(","));
        }
        entries.push(json!({
            "photo": r.path.display().to_string(),
            "width": r.width,
            "height": r.height,
            "picture": r.picture,
            "faces": r.faces,
        }));
    }
    let mut doc = about;
    doc["photos"] = Value::Array(entries);
    doc["failed"] = failures.iter().map(|f| json!({"photo": f.path.display().to_string(), "error": f.error})).collect();
    write_atomic(&out.join("predictions.json"), serde_json::to_string_pretty(&doc)?)?;
    write_atomic(&out.join("predictions.csv"), csv)?;
    crate::util::atomic::remove_stale_temporaries(out, 0); // those of a process that was still dying at the start
    Ok(())
}

/// The model (its source and name) and detector, for predictions.json.
pub fn describe_setup(classifier: &EmotionClassifier, detector: &dyn FaceDetector) -> Value {
    json!({
        "run": classifier.source.describe(),
        "model": classifier.model_name,
        "tta": classifier.tta,
        "align": classifier.align,
        "detector": detector.describe(),
    })
}

/// The images (by their names' endings) directly in `dir`, sorted by name.
pub fn photos_in(dir: &Path) -> Result<Vec<PathBuf>> {
    Ok(crate::util::fs::sorted_entries(dir)?.into_iter().filter(|p| p.is_file() && has_image_extension(p)).collect())
}

/// `<stem>.png`, or `<stem>-2.png` ... when two photos share a stem.
fn picture_name(photo: &Path, used: &mut HashSet<String>) -> String {
    let stem = photo.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "photo".into());
    let mut name = format!("{stem}.png");
    let mut k = 2;
    while !used.insert(name.clone()) {
        name = format!("{stem}-{k}.png");
        k += 1;
    }
    name
}

/// Quotes a CSV field when it holds a comma, quote or line break.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picture_names_do_not_collide_and_csv_fields_are_quoted() {
        let mut used = HashSet::new();
        let names: Vec<_> =
            ["a/face.jpg", "b/face.png", "c/face.png"].iter().map(|p| picture_name(Path::new(p), &mut used)).collect();
        assert_eq!(names, ["face.png", "face-2.png", "face-3.png"]);
        assert_eq!(csv_field("plain.png"), "plain.png");
        assert_eq!(csv_field("a,\"b\".png"), "\"a,\"\"b\"\".png\"");
    }
}
