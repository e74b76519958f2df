//! `ferkit predict RUN_DIR PHOTO... --cascade F [--out DIR]`

use std::collections::HashSet;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use crate::data::CLASS_NAMES;
use crate::detection::{DetectOptions, HaarCascade};
use crate::prediction::{EmotionClassifier, FaceFinder, FacePrediction, Photo};
use crate::reporting::plots::annotate_photo;
use crate::util::atomic::write_atomic;

#[derive(Args, Debug)]
pub struct PredictArgs {
    /// A run directory written by `ferkit train`: its kept weights read the faces.
    pub run_dir: PathBuf,
    /// Photos, PNG or JPEG.
    #[arg(required = true)]
    pub photos: Vec<PathBuf>,
    /// OpenCV Haar cascade XML that finds the faces, e.g. ../shared/models/haarcascade_frontalface_default.xml.
    #[arg(long, required_unless_present = "whole_image")]
    pub cascade: Option<PathBuf>,
    /// Each photo is one face already (cropped): no detection.
    #[arg(long, conflicts_with = "cascade")]
    pub whole_image: bool,
    /// How much the detector's window grows from one scale to the next (above 1).
    #[arg(long, default_value_t = DetectOptions::default().scale_factor)]
    pub scale_factor: f64,
    /// A face needs more than this many overlapping detector windows (fewer: more faces, more false ones).
    #[arg(long, default_value_t = DetectOptions::default().min_neighbors)]
    pub min_neighbors: usize,
    /// Smallest face side, in pixels.
    #[arg(long, default_value_t = DetectOptions::default().min_size)]
    pub min_size: usize,
    /// Folder for predictions.json, predictions.csv and each photo with its faces marked (PNG).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub fn run(args: PredictArgs) -> Result<()> {
    if args.scale_factor <= 1.0 || !args.scale_factor.is_finite() {
        bail!("--scale-factor must be above 1 (got {})", args.scale_factor);
    }
    let finder = match &args.cascade {
        Some(path) => FaceFinder::Cascade {
            cascade: HaarCascade::load(path)?,
            options: DetectOptions {
                scale_factor: args.scale_factor,
                min_neighbors: args.min_neighbors,
                min_size: args.min_size,
                max_size: None,
            },
        },
        None => FaceFinder::WholeImage,
    };
    let classifier = EmotionClassifier::from_run(&args.run_dir)?;
    // A missing file or one that is not an image stops the run before anything is written.
    for path in &args.photos {
        Photo::check(path)?;
    }
    if let Some(out) = &args.out {
        std::fs::create_dir_all(out).with_context(|| format!("{}: cannot create the folder", out.display()))?;
    }
    // One photo at a time, so that a thousand phone photos never sit in memory together; each
    // marked photo is written whole (temporary name, then renamed), the tables at the end.
    let progress = Progress::new(args.photos.len());
    let mut used_names = HashSet::new();
    let mut done = Vec::with_capacity(args.photos.len());
    for path in &args.photos {
        let photo = Photo::open(path)?;
        let faces = classifier.predict(&finder, &photo);
        progress.println(&describe(&photo, &faces));
        let picture = match &args.out {
            Some(out) => {
                let name = picture_name(path, &mut used_names);
                let labels: Vec<_> =
                    faces.iter().map(|f| (f.bbox, format!("{} {:.0}%", f.emotion, 100.0 * f.confidence()))).collect();
                annotate_photo(&photo.rgb, &labels, &out.join(&name))?;
                Some(name)
            }
            None => None,
        };
        done.push(PhotoResult {
            path: path.clone(),
            width: photo.grey.width,
            height: photo.grey.height,
            picture,
            faces,
        });
        progress.inc();
    }
    progress.finish();
    if let Some(out) = &args.out {
        write_tables(out, &classifier, &args, &done)?;
    }
    Ok(())
}

/// What `predict` found in one photo.
struct PhotoResult {
    path: PathBuf,
    width: usize,
    height: usize,
    /// The marked photo's file name in the output folder.
    picture: Option<String>,
    faces: Vec<FacePrediction>,
}

/// A bar over the photos on a terminal (when there are several); lines go above it.
struct Progress(Option<ProgressBar>);

impl Progress {
    fn new(photos: usize) -> Self {
        Self((photos > 1 && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::new(photos as u64);
            bar.set_style(
                ProgressStyle::with_template(
                    "[{bar:30}] {pos}/{len} photos  {elapsed_precise} elapsed, ETA {eta_precise}",
                )
                .expect("a valid template")
                .progress_chars("=> "),
            );
            bar
        }))
    }

    fn println(&self, text: &str) {
        match &self.0 {
            Some(bar) => bar.println(text),
            None => println!("{text}"),
        }
    }

    fn inc(&self) {
        if let Some(bar) = &self.0 {
            bar.inc(1);
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}

/// One line per face, or one saying there is none.
fn describe(photo: &Photo, faces: &[FacePrediction]) -> String {
    if faces.is_empty() {
        return format!("{}: no face found", photo.path.display());
    }
    let lines: Vec<String> = faces
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let b = f.bbox;
            format!(
                "{} face {} at ({}, {}) {}x{}: {} {:.1}%  ({})",
                photo.path.display(),
                i + 1,
                b.x,
                b.y,
                b.width,
                b.height,
                f.emotion,
                100.0 * f.confidence(),
                runners_up(f)
            )
        })
        .collect();
    lines.join("\n")
}

/// The next two classes, e.g. "neutral 6.2%, sad 3.0%".
fn runners_up(f: &FacePrediction) -> String {
    let mut order: Vec<usize> = (0..CLASS_NAMES.len()).collect();
    order.sort_by(|&a, &b| f.probabilities[b].total_cmp(&f.probabilities[a]));
    order[1..3]
        .iter()
        .map(|&c| format!("{} {:.1}%", CLASS_NAMES[c], 100.0 * f.probabilities[c]))
        .collect::<Vec<_>>()
        .join(", ")
}

/// predictions.json and predictions.csv.
fn write_tables(out: &Path, classifier: &EmotionClassifier, args: &PredictArgs, done: &[PhotoResult]) -> Result<()> {
    let mut entries = Vec::new();
    let mut csv = format!("photo,face,x,y,width,height,emotion,{}\n", CLASS_NAMES.join(","));
    for r in done {
        for (i, f) in r.faces.iter().enumerate() {
            let b = f.bbox;
            let probabilities: Vec<String> = f.probabilities.iter().map(|p| format!("{p:.6}")).collect();
            csv += &format!(
                "{},{},{},{},{},{},{},{}\n",
                csv_field(&r.path.display().to_string()),
                i + 1,
                b.x,
                b.y,
                b.width,
                b.height,
                f.emotion,
                probabilities.join(",")
            );
        }
        entries.push(json!({
            "photo": r.path.display().to_string(),
            "width": r.width,
            "height": r.height,
            "picture": r.picture,
            "faces": r.faces.iter().map(|f| json!({
                "box": f.bbox,
                "emotion": f.emotion,
                "probabilities": CLASS_NAMES.iter().zip(f.probabilities).map(|(c, p)| (c.to_string(), json!(p))).collect::<serde_json::Map<_, _>>(),
            })).collect::<Vec<_>>(),
        }));
    }
    let detector = match &args.cascade {
        Some(path) => json!({
            "cascade": path.display().to_string(),
            "scale_factor": args.scale_factor,
            "min_neighbors": args.min_neighbors,
            "min_size": args.min_size,
        }),
        None => json!("whole image"),
    };
    let doc = json!({
        "run": args.run_dir.display().to_string(),
        "model": classifier.model_name,
        "detector": detector,
        "photos": entries,
    });
    write_atomic(&out.join("predictions.json"), serde_json::to_string_pretty(&doc)?)?;
    write_atomic(&out.join("predictions.csv"), csv)?;
    println!("wrote {}: predictions.json, predictions.csv and {} marked photos", out.display(), done.len());
    Ok(())
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
