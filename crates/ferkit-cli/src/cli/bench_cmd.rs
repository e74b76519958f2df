//! `ferkit bench`: images/s of nets on random data.

use std::path::PathBuf;

use clap::Args;
use ferkit::error::{Context, Result};

use ferkit::bench::{DetectBench, bench_detection, bench_model};
use ferkit::detection::DetectOptions;
use ferkit::detection::mtcnn::MtcnnOptions;
use ferkit::evaluation::Tta;
use ferkit::prediction::{CascadeDetector, FaceDetector, Frame, MtcnnDetector};
use ferkit::util::atomic::write_atomic;
use ferkit::util::device::DeviceKind;

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// MODEL:BATCH pairs; MODEL is a preset or a net's TOML file (a layer list, or a transfer net
    /// with `type = "transfer"`, e.g. EfficientNet-Lite0 at `input_size = 96`). An empty list
    /// with --photos times detection only.
    #[arg(long, value_delimiter = ',', default_value = "cnn3:512,vgg-lite:64")]
    pub models: Vec<String>,
    /// Steps (batches) per timing; inference timings take more where these hold fewer than 256 faces.
    #[arg(long, default_value_t = 5)]
    pub steps: usize,
    /// Timings per figure (the median is reported).
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// CPU threads (Burn's Flex backend runs on a rayon pool of this size).
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    #[arg(long, value_parser = super::choice::<DeviceKind>(), default_value = "cpu")]
    pub device: DeviceKind,
    /// Augmentation recipe whose data-preparation cost is measured too.
    #[arg(long, default_value = "rotation=20,shear=20,zoom=0.1,hflip,fill=nearest")]
    pub augment: String,
    /// Photos to time face detection on (with --cascade and/or --mtcnn), e.g. ../shared/data/photos/astronaut.png.
    #[arg(long, value_delimiter = ',')]
    pub photos: Vec<PathBuf>,
    /// A Haar cascade to time on --photos.
    #[arg(long, requires = "photos")]
    pub cascade: Option<PathBuf>,
    /// MTCNN weights (pnet.pt, rnet.pt, onet.pt) to time on --photos.
    #[arg(long, requires = "photos")]
    pub mtcnn: Option<PathBuf>,
    /// Also time inference alone at these batch sizes (e.g. 1,256: one face at a time, and in bulk).
    #[arg(long, value_delimiter = ',')]
    pub infer_batches: Vec<usize>,
    /// Test-time augmentation in the --infer-batches timings: `hflip` reads each face and its
    /// mirror image, as the shipped model does (images/s still count faces).
    #[arg(long, value_parser = super::choice::<Tta>(), requires = "infer_batches")]
    pub tta: Option<Tta>,
    /// Write each benchmarked net (its random weights) as DIR/NAME.onnx, for ONNX Runtime to time
    /// the same nets (bench/onnxruntime_reference.py); a net file's NAME is its path as given,
    /// with `/` and `\` as `_`.
    #[arg(long)]
    pub onnx_dir: Option<PathBuf>,
    /// Also write the results as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

pub fn run(args: BenchArgs) -> Result<()> {
    ferkit::ensure!(Config, args.steps >= 1 && args.repeats >= 1, "--steps and --repeats must be at least 1");
    ferkit::ensure!(
        Config,
        args.infer_batches.iter().all(|&b| b >= 1),
        "--infer-batches: a batch size must be at least 1"
    );
    let device = args.device.device()?;
    let detection = detection_bench(&args)?;
    let models: Vec<&String> = args.models.iter().filter(|m| !m.is_empty()).collect();
    if models.is_empty() {
        return write_json(args.json.as_deref(), &serde_json::json!({ "detection": detection }));
    }
    let machine = ferkit::util::cpu::describe();
    super::lines::say(&format!("machine: {machine}; {} threads", args.threads));
    super::lines::say(&format!(
        "{:<10}{:>7}{:>18}{:>18}{:>14}{:>14}",
        "model", "batch", "train img/s", "infer img/s", "train GFLOP/s", "infer GFLOP/s"
    ));
    let mut results = Vec::new();
    for pair in models {
        let (name, batch) = pair
            .split_once(':')
            .and_then(|(m, b)| Some((m, b.parse::<usize>().ok()?)))
            .with_context(|| format!("--models: `{pair}` is not MODEL:BATCH"))?;
        let spec = ferkit::models::resolve(name)?;
        let r = bench_model(&spec, batch, args.steps, args.repeats, &device)?;
        // Counted for layer-list nets only ("-" for transfer nets).
        let (train_gflops, infer_gflops) =
            r.gflops().map_or(("-".to_string(), "-".to_string()), |(t, i)| (format!("{t:.1}"), format!("{i:.1}")));
        super::lines::say(&format!(
            "{:<10}{:>7}{:>18.1}{:>18.1}{train_gflops:>14}{infer_gflops:>14}",
            r.model, r.batch, r.train_images_per_s, r.infer_images_per_s
        ));
        let needs_net = !args.infer_batches.is_empty() || args.onnx_dir.is_some();
        let tta = args.tta.unwrap_or_default();
        let net = if needs_net { Some(spec.build(&device)?) } else { None };
        // Timed as prediction runs it (batch norm folded); exported as built.
        let folded = net.clone().map(ferkit::models::fold::fold_batch_norm);
        let mut infer = Vec::new();
        if let Some(net) = &folded {
            for &b in &args.infer_batches {
                let rate = ferkit::bench::inference_rate(net, spec.preprocess(), b, args.steps, args.repeats, &device, tta);
                let label = if tta == Tta::None { String::new() } else { format!("  ({})", tta.label()) };
                super::lines::say(&format!("{:<10}{b:>7}{:>18}{rate:>18.1}{label}", r.model, "-"));
                infer.push(serde_json::json!({"batch": b, "infer_images_per_s": rate, "tta": tta}));
            }
        }
        if let (Some(dir), Some(net)) = (&args.onnx_dir, &net) {
            std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))?;
            let bytes = ferkit::export::onnx::to_onnx(net, spec.preprocess(), &r.model, &[])?;
            write_atomic(&dir.join(format!("{}.onnx", name.replace(['/', '\\'], "_"))), bytes)?;
        }
        let mut row = serde_json::to_value(&r)?;
        row["name"] = name.into();
        row["infer_batches"] = infer.into();
        results.push(row);
    }
    let (plain, augmented) =
        ferkit::bench::bench_preparation(&ferkit::data::augment::AugmentConfig::parse(&args.augment)?, 28_709);
    super::lines::say(&format!(
        "batch preparation on one thread, 28709 images: standardise {plain:.0} img/s; standardise + augment ({}) {augmented:.0} img/s",
        args.augment
    ));
    write_json(
        args.json.as_deref(),
        &serde_json::json!({ "machine": machine, "threads": args.threads, "models": results, "detection": detection }),
    )
}

fn write_json(path: Option<&std::path::Path>, value: &serde_json::Value) -> Result<()> {
    match path {
        Some(path) => write_atomic(path, serde_json::to_string_pretty(value)?),
        None => Ok(()),
    }
}

/// Face detection per photo and detector, with the default settings of `ferkit predict`.
fn detection_bench(args: &BenchArgs) -> Result<Vec<DetectBench>> {
    let mut finders: Vec<(&str, Box<dyn FaceDetector>)> = Vec::new();
    if let Some(path) = &args.cascade {
        finders.push(("haar", Box::new(CascadeDetector::load(path, DetectOptions::default())?)));
    }
    if let Some(path) = &args.mtcnn {
        let options = MtcnnOptions { min_size: DetectOptions::default().min_size as f64, ..MtcnnOptions::default() };
        finders.push(("mtcnn", Box::new(MtcnnDetector::load(path, options)?)));
    }
    if finders.is_empty() {
        return Ok(Vec::new());
    }
    let photos =
        args.photos.iter().map(|p| Ok((p.display().to_string(), Frame::open(p)?))).collect::<Result<Vec<_>>>()?;
    super::lines::say(&format!("{:<10}{:<40}{:>11}{:>7}{:>14}", "detector", "photo", "size", "faces", "ms per photo"));
    let mut results = Vec::new();
    for (name, finder) in &finders {
        for r in bench_detection(name, finder.as_ref(), &photos, args.repeats.max(5)) {
            let size = format!("{}x{}", r.width, r.height);
            super::lines::say(&format!(
                "{:<10}{:<40}{size:>11}{:>7}{:>14.2}",
                r.detector,
                r.photo,
                r.faces,
                1000.0 * r.seconds
            ));
            results.push(r);
        }
    }
    Ok(results)
}
