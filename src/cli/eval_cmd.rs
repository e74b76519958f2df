//! `ferkit eval [RUN_DIR | --model RUN_DIR|FILE] [--split test] [--tta hflip] [--data F] [--out DIR]`

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use super::DataArgs;
use super::train_cmd::load_config_data;
use crate::data::SplitName;
use crate::evaluation::{Tta, evaluate};
use crate::models::{ModelSource, TrainedModel};
use crate::reporting::plots::plot_confusion;
use crate::training::RunDir;
use crate::util::atomic::write_atomic;

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// A run directory written by `ferkit train` (its own data by default; results written into it).
    #[arg(conflicts_with = "model")]
    pub run_dir: Option<PathBuf>,
    /// Another net: a run directory or a model file NAME.bpk (NAME.toml beside it). Without
    /// RUN_DIR or --model: the model shipped with ferkit, on the data --data names.
    #[arg(long, value_name = "RUN_DIR|FILE")]
    pub model: Option<PathBuf>,
    /// Folder for eval_<split>.json and the confusion matrix PNG (default: the run directory;
    /// for a model file or the shipped model, nothing is written without it).
    #[arg(long)]
    pub out: Option<PathBuf>,
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
    let source = ModelSource::from_arg(args.run_dir.as_deref().or(args.model.as_deref()))?;
    let model = TrainedModel::load(&source)?;
    let other_data = args.data.source();
    // A run evaluates on its own data unless told otherwise; other models need --data.
    let (dataset, out_dir) = match &source {
        ModelSource::RunDir(path) if other_data.is_empty() => {
            let config = RunDir::open(path)?.load_config()?;
            (load_config_data(&config)?.0, Some(args.out.clone().unwrap_or_else(|| path.clone())))
        }
        ModelSource::RunDir(path) => (args.data.load()?, Some(args.out.clone().unwrap_or_else(|| path.clone()))),
        _ if other_data.is_empty() => {
            anyhow::bail!("{} has no data of its own: give --data FILE_OR_FOLDER (or --train/--val/--test)", source.describe())
        }
        _ => (args.data.load()?, args.out.clone()),
    };
    let split = dataset.split(args.split);
    anyhow::ensure!(!split.is_empty(), "the data has no {} rows", args.split.as_str());
    let result =
        evaluate(&model.net, model.spec.preprocess(), split, args.split.as_str(), model.batch_size, &model.device, args.tta);
    let name = format!("{}{}", args.split.as_str(), args.tta.suffix());
    let name = name.as_str();
    let config_name = model.spec.name();

    println!("{} ({}) on {name}: {} rows", config_name, source.describe(), result.rows);
    println!(
        "accuracy {:.4}  loss {:.4}  cross-entropy {:.4}  macro F1 {:.4}",
        result.accuracy, result.loss, result.cross_entropy, result.macro_f1
    );
    println!("{:<10}{:>10}{:>10}{:>10}{:>10}", "class", "precision", "recall", "f1", "support");
    for m in &result.per_class {
        println!("{:<10}{:>10.4}{:>10.4}{:>10.4}{:>10}", m.class, m.precision, m.recall, m.f1, m.support);
    }
    println!("confusion matrix (rows true, columns predicted):");
    for row in &result.confusion.counts {
        println!("  {}", row.iter().map(|c| format!("{c:>6}")).collect::<String>());
    }
    if let Some(dir) = out_dir {
        std::fs::create_dir_all(&dir).with_context(|| format!("{}: cannot create", dir.display()))?;
        let files = RunDir { path: dir };
        write_atomic(&files.evaluation(name), serde_json::to_string_pretty(&result)?)?;
        plot_confusion(
            &result.confusion,
            &format!("{config_name} on {name} ({} rows)", result.rows),
            &files.confusion_png(name),
        )?;
        println!("wrote {} and {}", files.evaluation(name).display(), files.confusion_png(name).display());
    }
    Ok(())
}
