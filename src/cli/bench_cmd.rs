//! `ferkit bench`: images/s of nets on random data.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use crate::bench::bench_model;
use crate::util::atomic::write_atomic;
use crate::util::device::DeviceKind;

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// MODEL:BATCH pairs.
    #[arg(long, value_delimiter = ',', default_value = "cnn3:512,vgg-lite:64")]
    pub models: Vec<String>,
    /// Steps per timing.
    #[arg(long, default_value_t = 5)]
    pub steps: usize,
    /// Timings per figure (the median is reported).
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// CPU threads (Burn's Flex backend runs on a rayon pool of this size).
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    #[arg(long, value_enum, default_value_t = DeviceKind::Cpu)]
    pub device: DeviceKind,
    /// Augmentation recipe whose data-preparation cost is measured too.
    #[arg(long, default_value = "rotation=20,shear=20,zoom=0.1,hflip,fill=nearest")]
    pub augment: String,
    /// Also write the results as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

pub fn run(args: BenchArgs) -> Result<()> {
    anyhow::ensure!(args.steps >= 1 && args.repeats >= 1, "--steps and --repeats must be at least 1");
    rayon::ThreadPoolBuilder::new()
        .num_threads(args.threads)
        .build_global()
        .context("cannot set up the thread pool")?;
    let device = args.device.device()?;
    println!("{:<10}{:>7}{:>18}{:>18}", "model", "batch", "train img/s", "infer img/s");
    let mut results = Vec::new();
    for pair in &args.models {
        let (name, batch) = pair
            .split_once(':')
            .and_then(|(m, b)| Some((m, b.parse::<usize>().ok()?)))
            .with_context(|| format!("--models: `{pair}` is not MODEL:BATCH"))?;
        let spec = crate::models::resolve(name)?;
        let r = bench_model(&spec, batch, args.steps, args.repeats, &device)?;
        println!("{:<10}{:>7}{:>18.1}{:>18.1}", r.model, r.batch, r.train_images_per_s, r.infer_images_per_s);
        results.push(r);
    }
    let (plain, augmented) =
        crate::bench::bench_preparation(&crate::data::augment::AugmentConfig::parse(&args.augment)?, 28_709);
    println!(
        "batch preparation on one thread, 28709 images: standardise {plain:.0} img/s; standardise + augment ({}) {augmented:.0} img/s",
        args.augment
    );
    if let Some(path) = args.json {
        write_atomic(&path, serde_json::to_string_pretty(&results)?)?;
    }
    Ok(())
}
