//! `ferkit reproduce --data F --out DIR [--quick]`

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use super::DataArgs;
use crate::reproduce::{ReproduceOptions, reproduce};
use crate::util::device::DeviceKind;

/// Where the ImageNet weights are looked for when --weights is not given.
const SHARED_WEIGHTS: &str = "../shared/models/efficientnet-lite0-57934424.pth";

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
    /// ImageNet EfficientNet-Lite0 weights for the transfer step (default: ../shared/models/..., if present).
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Tuning trials trained at once.
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    #[arg(long, value_enum, default_value_t = DeviceKind::Cpu)]
    pub device: DeviceKind,
}

pub fn run(args: ReproduceArgs) -> Result<()> {
    let data = args.data.source();
    anyhow::ensure!(!data.is_empty(), "no data given: use --data FILE_OR_FOLDER, or --train/--val/--test FILE");
    let weights = args.weights.or_else(|| Some(PathBuf::from(SHARED_WEIGHTS)).filter(|p| p.exists()));
    reproduce(&ReproduceOptions {
        data,
        out: args.out,
        quick: args.quick,
        seed: args.seed,
        weights,
        workers: args.workers,
        device: args.device,
    })
}
