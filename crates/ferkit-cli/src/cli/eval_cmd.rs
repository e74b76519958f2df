//! `ferkit eval [RUN_DIR | --model RUN_DIR|FILE ...] [--split test] [--tta hflip|ten-crop] [--data F] [--out DIR]`
//!
//! Several `--model`s evaluate their ensemble: the average of the nets' class probabilities.

use std::path::PathBuf;

use clap::Args;
use ferkit::error::{Context, Result};

use super::DataArgs;
use super::progress::TerminalProgress;
use ferkit::data::{DataSource, SplitName};
use ferkit::evaluation::{Tta, evaluate, evaluate_ensemble};
use ferkit::models::ModelSpec;
use ferkit::reporting::plots::plot_confusion;
use ferkit::trained::{ModelSource, TrainedModel};
use ferkit::training::RunDir;
use ferkit::util::atomic::write_atomic;

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// A run directory written by `ferkit train` (its own data by default; results written into it).
    #[arg(conflicts_with = "model")]
    pub run_dir: Option<PathBuf>,
    /// Another net: a run directory or a model file NAME.bpk (NAME.toml beside it). Without
    /// RUN_DIR or --model: the model shipped with ferkit, on the data --data names. Given more
    /// than once: the ensemble of those nets (their class probabilities averaged).
    #[arg(long, value_name = "RUN_DIR|FILE")]
    pub model: Vec<PathBuf>,
    /// Folder for eval_<split>.json and the confusion matrix PNG (default: the run directory;
    /// for a model file or the shipped model, nothing is written without it).
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[arg(long, value_parser = super::choice::<SplitName>(), default_value = "test")]
    pub split: SplitName,
    /// Test-time augmentation: `hflip` averages the probabilities of each face and its mirror
    /// image, `ten-crop` those of ten crops (corners, centre, and their mirrors); results go to
    /// eval_<split>_tta-hflip.json or eval_<split>_tta-ten-crop.json beside the plain ones
    /// (default: a model file's own `tta`; none for run directories and several models).
    #[arg(long, value_parser = super::choice::<Tta>())]
    pub tta: Option<Tta>,
    /// Other data than the run was trained on (default: the run's own).
    #[command(flatten)]
    pub data: DataArgs,
}

pub fn run(args: EvalArgs) -> Result<()> {
    if args.model.len() > 1 {
        return run_ensemble(args);
    }
    let source = ModelSource::from_arg(args.run_dir.as_deref().or(args.model.first().map(PathBuf::as_path)))?;
    let model = TrainedModel::load(&source)?;
    model.notes.iter().for_each(|n| super::lines::tell(n));
    let other_data = args.data.source();
    if other_data.is_empty()
        && (args.data.val_split.is_some() || args.data.class_map.is_some() || args.data.skip_unknown_classes)
    {
        ferkit::bail!(
            Config,
            "--val-split, --class-map and --skip-unknown-classes go with --data (a run's own data keeps its own)"
        );
    }
    // A run evaluates on its own data unless told otherwise; other models need --data.
    let (dataset, out_dir) = match &source {
        ModelSource::RunDir(path) if other_data.is_empty() => {
            let config = RunDir::open(path)?.load_config()?;
            (
                ferkit::training::load_data(&config, &TerminalProgress::default())?.0,
                Some(args.out.clone().unwrap_or_else(|| path.clone())),
            )
        }
        ModelSource::RunDir(path) => (args.data.load()?, Some(args.out.clone().unwrap_or_else(|| path.clone()))),
        _ if other_data.is_empty() => {
            ferkit::bail!(
                Config,
                "{} has no data of its own: give --data FILE_OR_FOLDER (or --train/--val/--test)",
                source.describe()
            )
        }
        _ => (args.data.load()?, args.out.clone()),
    };
    let split = dataset.split(args.split);
    ferkit::ensure!(Config, !split.is_empty(), "the data has no {} rows", args.split.as_str());
    let tta = args.tta.unwrap_or(model.tta);
    let result = if let ModelSpec::Ensemble(_) = &model.spec {
        // An ensemble file: each member on its own preprocessing (see `ModelSpec::into_members`).
        let members = model.spec.into_members(model.net.clone());
        let members: Vec<_> = members.iter().map(|(net, pre)| (net, *pre)).collect();
        evaluate_ensemble(&members, split, args.split.as_str(), model.batch_size, &model.device, tta)
    } else {
        evaluate(&model.net, model.spec.preprocess(), split, args.split.as_str(), model.batch_size, &model.device, tta)
    };
    // Figures on other data never replace a run's own: their files carry the data's name.
    let data_suffix = match (&source, other_data.is_empty()) {
        (ModelSource::RunDir(_), false) if args.out.is_none() => format!("_{}", data_label(&other_data)),
        _ => String::new(),
    };
    let name = format!("{}{}{data_suffix}", args.split.as_str(), tta.suffix());
    let name = name.as_str();
    let config_name = model.spec.name();

    super::lines::say(&format!("{} ({}) on {name}: {} rows", config_name, source.describe(), result.rows));
    print_evaluation(&result);
    if let Some(dir) = out_dir {
        let mut doc = serde_json::to_value(&result)?;
        doc["model"] = serde_json::json!(source.describe());
        if !other_data.is_empty() {
            doc["data"] = serde_json::json!({ "source": other_data, "crc32": ferkit::data::source::data_checksums(&other_data)? });
        }
        write_evaluation(&dir, name, &doc, &result, &format!("{config_name} on {name} ({} rows)", result.rows))?;
    }
    Ok(())
}

/// `--model A --model B ...`: the ensemble's figures, on `--data` (or the first run's own data).
fn run_ensemble(args: EvalArgs) -> Result<()> {
    let sources = args.model.iter().map(|p| ModelSource::from_arg(Some(p))).collect::<Result<Vec<_>>>()?;
    let models = sources.iter().map(TrainedModel::load).collect::<Result<Vec<_>>>()?;
    models.iter().flat_map(|m| &m.notes).for_each(|n| super::lines::tell(n));
    let other_data = args.data.source();
    let dataset = match &sources[0] {
        ModelSource::RunDir(path) if other_data.is_empty() => {
            ferkit::training::load_data(&RunDir::open(path)?.load_config()?, &TerminalProgress::default())?.0
        }
        _ if other_data.is_empty() => {
            ferkit::bail!(Config, "{} has no data of its own: give --data FILE_OR_FOLDER", sources[0].describe())
        }
        _ => args.data.load()?,
    };
    let split = dataset.split(args.split);
    ferkit::ensure!(Config, !split.is_empty(), "the data has no {} rows", args.split.as_str());
    // Members that are ensembles themselves join with their own nets, each on its own preprocessing.
    let nets: Vec<_> = models.iter().flat_map(|m| m.spec.into_members(m.net.clone())).collect();
    let members: Vec<_> = nets.iter().map(|(net, pre)| (net, *pre)).collect();
    let (batch_size, device) = (models[0].batch_size, &models[0].device);
    let tta = args.tta.unwrap_or_default();
    let result = evaluate_ensemble(&members, split, args.split.as_str(), batch_size, device, tta);
    let name = format!("{}{}_ensemble-{}", args.split.as_str(), tta.suffix(), nets.len());
    let described: Vec<String> = sources.iter().map(ModelSource::describe).collect();
    super::lines::say(&format!(
        "ensemble of {} nets ({}) on {name}: {} rows",
        nets.len(),
        described.join(", "),
        result.rows
    ));
    print_evaluation(&result);
    if let Some(dir) = &args.out {
        let mut doc = serde_json::to_value(&result)?;
        doc["models"] = serde_json::json!(described);
        if !other_data.is_empty() {
            doc["data"] = serde_json::json!({ "source": other_data, "crc32": ferkit::data::source::data_checksums(&other_data)? });
        }
        let title = format!("ensemble of {} on {name} ({} rows)", nets.len(), result.rows);
        write_evaluation(dir, &name, &doc, &result, &title)?;
    }
    Ok(())
}

/// Accuracy, loss, macro F1, the per-class table and the confusion matrix on the terminal.
fn print_evaluation(result: &ferkit::evaluation::SplitEvaluation) {
    super::lines::say(&format!(
        "accuracy {:.4}  loss {:.4}  cross-entropy {:.4}  macro F1 {:.4}",
        result.accuracy, result.loss, result.cross_entropy, result.macro_f1
    ));
    super::lines::say(&format!("{:<10}{:>10}{:>10}{:>10}{:>10}", "class", "precision", "recall", "f1", "support"));
    for m in &result.per_class {
        super::lines::say(&format!(
            "{:<10}{:>10.4}{:>10.4}{:>10.4}{:>10}",
            m.class, m.precision, m.recall, m.f1, m.support
        ));
    }
    super::lines::say("confusion matrix (rows true, columns predicted):");
    for row in &result.confusion.counts {
        super::lines::say(&format!("  {}", row.iter().map(|c| format!("{c:>6}")).collect::<String>()));
    }
}

/// `eval_<name>.json` (the document `doc`) and the confusion matrix PNG in `dir`.
fn write_evaluation(
    dir: &std::path::Path,
    name: &str,
    doc: &serde_json::Value,
    result: &ferkit::evaluation::SplitEvaluation,
    title: &str,
) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    let files = RunDir { path: dir.to_path_buf() };
    write_atomic(&files.evaluation(name), serde_json::to_string_pretty(doc)?)?;
    plot_confusion(&result.confusion, title, &files.confusion_png(name))?;
    super::lines::say(&format!(
        "wrote {} and {}",
        files.evaluation(name).display(),
        files.confusion_png(name).display()
    ));
    Ok(())
}

/// A short name for other data: the file or folder's name without `.csv`/`.gz`, in characters
/// safe in a file name (e.g. `fer2013` for ../fer2013.csv.gz).
fn data_label(source: &DataSource) -> String {
    let path = source.data.as_ref().or(source.test.as_ref()).or(source.val.as_ref()).or(source.train.as_ref());
    let name = path.and_then(|p| p.file_name()).map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let stem = name.trim_end_matches(".gz").trim_end_matches(".csv").trim_end_matches(".tar");
    let safe: String = stem.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect();
    if safe.is_empty() { "other".to_string() } else { safe }
}
