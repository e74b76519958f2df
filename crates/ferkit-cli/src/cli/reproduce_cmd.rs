//! `ferkit reproduce --data F --out DIR [--quick]`

use std::path::PathBuf;

use clap::Args;
use ferkit::error::Result;

use super::DataArgs;
use ferkit::reproduce::{ReproduceOptions, reproduce};
use ferkit::util::device::DeviceKind;

/// Where the ImageNet weights, the photos and the face detector are looked for when not given.
const SHARED_WEIGHTS: &str = "../shared/models/efficientnet-lite0-57934424.pth";
const SHARED_PHOTOS: &str = "../shared/data/photos";
const SHARED_CASCADE: &str = "../shared/models/haarcascade_frontalface_default.xml";

#[derive(Args, Debug)]
pub struct ReproduceArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// The output folder (run the same command again to resume).
    #[arg(long, default_value = "runs/reproduce")]
    pub out: PathBuf,
    /// A small subset and one epoch per step: the whole pipeline in a few minutes.
    #[arg(long)]
    pub quick: bool,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// ImageNet EfficientNet-Lite0 weights for the transfer step and the `fast` preset (default: ../shared/models/..., if present).
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Tuning trials trained at once.
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    #[arg(long, value_parser = super::choice::<DeviceKind>(), default_value = "cpu")]
    pub device: DeviceKind,
    /// A folder of photos for the final model to read (default: ../shared/data/photos, if present).
    #[arg(long)]
    pub photos: Option<PathBuf>,
    /// The Haar cascade that finds their faces (default: ../shared/models/haarcascade_frontalface_default.xml, if present).
    #[arg(long)]
    pub cascade: Option<PathBuf>,
    /// Only the notebook's steps: leave out the last training step, ferkit's `fast` preset
    /// (12 epochs within a 58-minute time budget on 2 cores; the report's "beyond the notebook" row then says "not run").
    #[arg(long)]
    pub notebook_only: bool,
}

pub fn run(args: ReproduceArgs) -> Result<()> {
    let data = args.data.source();
    ferkit::ensure!(Config, !data.is_empty(), "no data given: use --data FILE_OR_FOLDER, or --train/--val/--test FILE");
    let or_shared =
        |given: Option<PathBuf>, shared: &str| given.or_else(|| Some(PathBuf::from(shared)).filter(|p| p.exists()));
    let weights = or_shared(args.weights, SHARED_WEIGHTS);
    let photos = or_shared(args.photos, SHARED_PHOTOS).zip(or_shared(args.cascade, SHARED_CASCADE));
    reproduce(&ReproduceOptions {
        data,
        out: args.out,
        quick: args.quick,
        seed: args.seed,
        weights,
        workers: args.workers,
        events: std::sync::Arc::new(super::progress::TerminalProgress::default()),
        device: args.device,
        photos,
        beyond: !args.notebook_only,
    })
}
