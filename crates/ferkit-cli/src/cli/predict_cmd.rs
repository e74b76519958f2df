//! `ferkit predict PHOTO... [--model RUN_DIR|FILE] [--cascade F | --mtcnn [DIR] | --whole-image] [--out DIR]`;
//! videos go to [`super::video_cmd`].

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::Args;
use ferkit::error::{Result, bail};
use indicatif::{ProgressBar, ProgressStyle};

use ferkit::data::CLASS_NAMES;
use ferkit::detection::mtcnn::MtcnnOptions;
use ferkit::detection::{BoundingBox, DetectOptions, locate};
use ferkit::evaluation::Tta;
use ferkit::prediction::output::{PhotoResult, describe_setup, expand_photo_paths, predict_photos, write_tables};
use ferkit::prediction::{CascadeDetector, EmotionClassifier, FaceDetector, FacePrediction, MtcnnDetector, WholeImage};
use ferkit::trained::ModelSource;

#[derive(Args, Debug)]
#[command(group = clap::ArgGroup::new("detector").multiple(false))]
pub struct PredictArgs {
    /// Photos (PNG, JPEG, WebP, BMP, GIF, TIFF) and folders of them (walked recursively; files
    /// that are not images are passed over and counted), or videos (MP4, MOV, MKV, WebM, AVI, ...:
    /// any file the ffmpeg tool reads, named with a video extension; see the Videos options).
    /// For compatibility, a run directory given first is taken as --model.
    pub photos: Vec<PathBuf>,
    /// Stop at the first photo that cannot be read (every path is checked before any work),
    /// instead of reporting it and going on with the others.
    #[arg(long)]
    pub fail_fast: bool,
    /// The net that reads the faces: a run directory written by `ferkit train`, or a model file
    /// NAME.bpk with NAME.toml beside it (`ferkit export`). Default: the model shipped with ferkit
    /// (models/MODEL_CARD.md).
    #[arg(long, value_name = "RUN_DIR|FILE")]
    pub model: Option<PathBuf>,
    /// Find faces with an OpenCV Haar cascade XML, e.g. ../shared/models/haarcascade_frontalface_default.xml
    /// (fast; frontal faces). Default when no detector is given: OpenCV's frontal-face cascade where
    /// OpenCV installs it ($FERKIT_CASCADE, apt's opencv-data, pip's opencv-python).
    #[arg(long, group = "detector")]
    pub cascade: Option<PathBuf>,
    /// Find faces with MTCNN: the folder holding facenet-pytorch's pnet.pt, rnet.pt and onet.pt,
    /// e.g. ../shared/models/mtcnn (slower; turned and tilted faces too, with landmarks). Without
    /// a folder: $FERKIT_MTCNN, then pip's facenet-pytorch.
    #[arg(long, group = "detector", num_args = 0..=1, value_name = "DIR")]
    pub mtcnn: Option<Option<PathBuf>>,
    /// Each photo is one face already (cropped): no detection.
    #[arg(long, group = "detector")]
    pub whole_image: bool,
    /// How much the Haar detector's window grows from one scale to the next (above 1).
    #[arg(long, default_value_t = DetectOptions::default().scale_factor)]
    pub scale_factor: f64,
    /// A Haar face needs more than this many overlapping detector windows (fewer: more faces, more false ones).
    #[arg(long, default_value_t = DetectOptions::default().min_neighbors)]
    pub min_neighbors: usize,
    /// Smallest face side, in pixels (both detectors).
    #[arg(long, default_value_t = DetectOptions::default().min_size)]
    pub min_size: usize,
    /// Turn each face upright by its eyes (MTCNN's landmarks) before the net reads it.
    #[arg(long)]
    pub align: bool,
    /// Test-time augmentation: `hflip` averages the probabilities of each face and its mirror
    /// image (default: the model file's own `tta`, none for a run directory).
    #[arg(long, value_parser = super::choice::<Tta>())]
    pub tta: Option<Tta>,
    /// Folder for predictions.json, predictions.csv and each photo with its faces marked (PNG);
    /// for a video, frames.csv, frames.jsonl, tracks.csv, tracks.json, the timelines and
    /// annotated.mp4 (one subfolder per video when there are several).
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub video: super::video_cmd::VideoArgs,
}

pub fn run(mut args: PredictArgs) -> Result<()> {
    // The older form `predict RUN_DIR PHOTO...`: a first argument that is a run directory.
    if args.model.is_none() && args.photos.len() > 1 && args.photos[0].join("config.toml").is_file() {
        args.model = Some(args.photos.remove(0));
    }
    // Below 1.01 the pyramid has hundreds of levels (ln(100) / ln(1.01) = 463 over a hundredfold
    // range of face sizes) and a scan takes minutes for no better faces; OpenCV users pick 1.05-1.3.
    if !(1.01..=4.0).contains(&args.scale_factor) {
        bail!(Config, "--scale-factor must be in [1.01, 4] (above 1; got {})", args.scale_factor);
    }
    // `--mtcnn photo.jpg ...`: clap took the first photo for MTCNN's folder.
    if let Some(Some(path)) = &args.mtcnn
        && path.is_file()
    {
        let photo = path.clone();
        args.photos.insert(0, photo);
        args.mtcnn = Some(None);
    }
    if args.photos.is_empty() {
        bail!(Config, "no photos given: ferkit predict PHOTO_OR_FOLDER... (see --help)");
    }
    if args.mtcnn.is_some() && args.min_size < 12 {
        // MTCNN's pyramid starts at 12 / min_size: smaller sides mean images many times the
        // photo's size (a 1-pixel face would need a pyramid 12x the photo on each side).
        bail!(Config, "--min-size must be at least 12 with --mtcnn (P-Net's 12-pixel window), got {}", args.min_size);
    }
    if args.align && args.mtcnn.is_none() {
        bail!(Config, "--align needs --mtcnn: only MTCNN gives the eyes' positions");
    }
    let options = DetectOptions {
        scale_factor: args.scale_factor,
        min_neighbors: args.min_neighbors,
        min_size: args.min_size,
        max_size: None,
    };
    let finder: Box<dyn FaceDetector> = match (&args.cascade, &args.mtcnn, args.whole_image) {
        (Some(path), _, _) => Box::new(CascadeDetector::load(path, options)?),
        (_, Some(path), _) => {
            let path = match path {
                Some(path) => path.clone(),
                None => locate::find_mtcnn()?,
            };
            let options = MtcnnOptions { min_size: args.min_size as f64, ..MtcnnOptions::default() };
            Box::new(MtcnnDetector::load(&path, options)?)
        }
        (_, _, true) => Box::new(WholeImage),
        (None, None, false) => Box::new(CascadeDetector::load(&locate::find_cascade()?, options)?),
    };
    let mut classifier = EmotionClassifier::load(&ModelSource::from_arg(args.model.as_deref())?)?;
    classifier.notes.iter().for_each(|n| super::lines::tell(n));
    classifier.tta = args.tta.unwrap_or(classifier.tta);
    classifier.align = args.align;
    let (videos, still): (Vec<PathBuf>, Vec<PathBuf>) =
        args.photos.iter().cloned().partition(|p| ferkit::video::is_video_path(p));
    if !videos.is_empty() {
        if !still.is_empty() {
            bail!(
                Config,
                "videos and photos in one call: give the {} videos and the {} photos in two calls",
                videos.len(),
                still.len()
            );
        }
        return super::video_cmd::run(&videos, &args.video, &classifier, finder.as_ref(), args.out.as_deref());
    }
    if args.video.any_given() {
        bail!(Config, "--fps, --every, --start, --end, --detect-every, --smooth and --annotate apply to videos only");
    }
    let (photos, others) = expand_photo_paths(&args.photos)?;
    if !others.is_empty() {
        let shown: Vec<String> = others.iter().take(5).map(|p| p.display().to_string()).collect();
        super::lines::tell(&format!(
            "passed over {} files that are not images: {}{}",
            others.len(),
            shown.join(", "),
            if others.len() > 5 { ", ..." } else { "" }
        ));
    }
    if photos.is_empty() {
        bail!(Config, "no photos among {} (files that are not images: {})", args.photos.len(), others.len());
    }
    let bar = progress_bar(photos.len());
    let print = |text: String| match &bar {
        Some(bar) => bar.println(text),
        None => super::lines::say(&text),
    };
    let (results, failures) = predict_photos(
        &classifier,
        finder.as_ref(),
        &photos,
        args.out.as_deref(),
        args.fail_fast,
        |r| {
            print(describe(r));
            if let Some(bar) = &bar {
                bar.inc(1);
            }
        },
        |f| {
            super::lines::tell(&format!("error: {}", f.error));
            if let Some(bar) = &bar {
                bar.inc(1);
            }
        },
    )?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    if let Some(out) = &args.out {
        write_tables(out, describe_setup(&classifier, finder.as_ref()), &results, &failures)?;
        super::lines::say(&format!(
            "wrote {}: predictions.json, predictions.csv and {} marked photos",
            out.display(),
            results.len()
        ));
    }
    if !failures.is_empty() {
        bail!(
            Config,
            "{} of {} photos could not be read (listed above{}); the others were predicted",
            failures.len(),
            photos.len(),
            if args.out.is_some() { " and under `failed` in predictions.json" } else { "" }
        );
    }
    Ok(())
}

/// A bar over the photos, on a terminal and when there are several.
fn progress_bar(photos: usize) -> Option<ProgressBar> {
    (photos > 1 && std::io::stderr().is_terminal()).then(|| {
        let bar = ProgressBar::new(photos as u64);
        bar.set_style(
            ProgressStyle::with_template("[{bar:30}] {pos}/{len} photos  {elapsed_precise} elapsed, ETA {eta_precise}")
                .expect("a valid template")
                .progress_chars("=> "),
        );
        bar
    })
}

/// One line per face, or one saying there is none.
fn describe(r: &PhotoResult) -> String {
    if r.faces.is_empty() {
        return format!("{}: no face found", r.path.display());
    }
    let lines: Vec<String> = r
        .faces
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let BoundingBox { x, y, width, height } = f.bbox;
            let (face, emotion, percent) = (i + 1, f.emotion, 100.0 * f.confidence());
            format!(
                "{} face {face} at ({x}, {y}) {width}x{height}: {emotion} {percent:.1}%  ({})",
                r.path.display(),
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
