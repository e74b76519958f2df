//! `ferkit eval RUN_DIR [--split test] [--tta hflip]`

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use super::DataArgs;
use super::train_cmd::load_config_data;
use crate::data::SplitName;
use crate::evaluation::{Tta, evaluate};
use crate::reporting::plots::plot_confusion;
use crate::training::RunDir;
use crate::util::atomic::write_atomic;

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// A run directory written by `ferkit train`.
    pub run_dir: PathBuf,
    #[arg(long, value_enum, default_value_t = SplitName::Test)]
    pub split: SplitName,
    /// Test-time augmentation: `hflip` averages the probabilities of each face and its mirror
    /// image (results go to eval_<split>_tta-hflip.json beside the plain ones).
    #[arg(long, value_enum, default_value_t = Tta::None)]
    pub tta: Tta,
    /// Other data than the run was trained on (default: the run's own).
    #[command(flatten)]
    pub data: DataArgs,
}

pub fn run(args: EvalArgs) -> Result<()> {
    let run = RunDir::open(&args.run_dir)?;
    let mut config = run.load_config()?;
    let other_data = args.data.source();
    if !other_data.is_empty() {
        config.data = other_data;
        config.subset = None;
        config.skip_bad_rows = args.data.skip_bad_rows;
    }
    let dataset = load_config_data(&config)?;
    let split = dataset.split(args.split);
    anyhow::ensure!(!split.is_empty(), "the data has no {} rows", args.split.as_str());
    let device = config.device.device()?;
    let net = run.load_model(&config, &device)?;
    let result =
        evaluate(&net, config.model.preprocess(), split, args.split.as_str(), config.batch_size, &device, args.tta);
    let name = format!("{}{}", args.split.as_str(), args.tta.suffix());
    let name = name.as_str();
    write_atomic(&run.evaluation(name), serde_json::to_string_pretty(&result)?)?;
    plot_confusion(
        &result.confusion,
        &format!("{} on {name} ({} rows)", config.model.name(), result.rows),
        &run.confusion_png(name),
    )?;

    println!("{} on {name}: {} rows", config.model.name(), result.rows);
    println!(
        "accuracy {:.4}  loss {:.4}  cross-entropy {:.4}  macro F1 {:.4}",
        result.accuracy, result.loss, result.cross_entropy, result.macro_f1
    );
    println!("{:<10}{:>10}{:>10}{:>10}{:>10}", "class", "precision", "recall", "f1", "support");
    for m in &result.per_class {
        println!("{:<10}{:>10.4}{:>10.4}{:>10.4}{:>10}", m.class, m.precision, m.recall, m.f1, m.support);
    }
    println!("confusion matrix (rows true, columns predicted):");
    for row in result.confusion.counts {
        println!("  {}", row.iter().map(|c| format!("{c:>6}")).collect::<String>());
    }
    println!("wrote {} and {}", run.evaluation(name).display(), run.confusion_png(name).display());
    Ok(())
}
