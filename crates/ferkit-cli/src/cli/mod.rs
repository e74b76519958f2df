//! The `ferkit` command line: one subcommand per task, each a thin layer over the library.

mod bench_cmd;
mod data_cmd;
mod eval_cmd;
pub mod hints;
pub mod lines;
mod predict_cmd;
mod progress;
mod reproduce_cmd;
mod serve_cmd;
mod train_cmd;
mod tune_cmd;
mod video_cmd;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use ferkit::error::Result;

use ferkit::data::{DataSource, Dataset, LoadOptions};
use ferkit::util::choice::Choice;

#[derive(Parser, Debug)]
#[command(name = "ferkit", version, about = "Facial-expression recognition on FER2013-shaped data, in Rust")]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// The notebook's whole study in one command, resumable, with a report (report.md, report.html).
    Reproduce(reproduce_cmd::ReproduceArgs),
    /// Look at a data set: class counts, face grids.
    #[command(subcommand)]
    Data(data_cmd::DataCommand),
    /// List the preset nets with their parameter counts.
    Models,
    /// Print a Keras-style summary of a preset or a net TOML file.
    Summary {
        /// A preset (fnn1..3, cnn1..3, vgg-lite, efficientnet-lite0) or a path to a net TOML file.
        model: String,
        #[command(flatten)]
        transfer: train_cmd::TransferArgs,
    },
    /// Train a net; everything goes to one run directory.
    Train(train_cmd::TrainArgs),
    /// Search a net's hyperparameters (Bayesian optimisation, random or grid), each trial a run directory.
    Tune(tune_cmd::TuneArgs),
    /// Work on a study that `ferkit tune --storage URL --study NAME` made: claim trials under a
    /// lease, train them, report results, until none is left (any number, on any machines).
    TuneWorker(tune_cmd::TuneWorkerArgs),
    /// Evaluate a run's kept checkpoint on a split: accuracy, loss, per-class metrics, confusion matrix.
    Eval(eval_cmd::EvalArgs),
    /// Find the faces in photos and say which emotion each shows (a run's kept net, a Haar cascade).
    Predict(predict_cmd::PredictArgs),
    /// A Markdown table of finished runs: parameters, kept epoch, train/val/test accuracy, seconds.
    Report {
        /// Run directories written by `ferkit train`.
        #[arg(required = true)]
        runs: Vec<PathBuf>,
    },
    /// The emotion API over HTTP (POST /v1/emotions, /openapi.json, /metrics) and a page to try it.
    Serve(serve_cmd::ServeArgs),
    /// Training and inference images/s of nets on random data (compare with bench/pytorch_reference.py).
    Bench(bench_cmd::BenchArgs),
    /// Write a trained net for other tools: a ferkit model file (NAME.bpk with NAME.toml, for
    /// --model), ONNX (for ONNX Runtime) or safetensors (PyTorch's names).
    Export {
        /// Run directories written by `ferkit train`, or NAME.bpk model files: one net, or
        /// several for their ensemble (the mean of their class probabilities).
        #[arg(required = true)]
        sources: Vec<PathBuf>,
        /// The file to write (a .bpk gets its .toml beside it).
        #[arg(long)]
        out: PathBuf,
        /// The format (default: from --out's extension, .bpk, .onnx or .safetensors).
        #[arg(long, value_parser = choice::<ferkit::export::ExportFormat>())]
        format: Option<ferkit::export::ExportFormat>,
        /// Store the weights in float16 (bpk only; half the size; read back as float32).
        #[arg(long, conflicts_with = "int8")]
        half: bool,
        /// Store weight matrices and kernels as 8-bit integers, one float32 scale per block of up to 32
        /// values, the rest in float16 (bpk only; about 30% of the size; read back as float32).
        #[arg(long)]
        int8: bool,
        /// The model's name (default: the file's stem).
        #[arg(long)]
        name: Option<String>,
        /// One line saying what the model is.
        #[arg(long, default_value = "")]
        description: String,
        /// bpk only: the views of each face the model is read with unless a front says
        /// otherwise (`predict`, `eval`, Python, the server), e.g. `hflip` when its figures were
        /// measured with the mirror (default: the sources' own when they agree, else none).
        #[arg(long, value_parser = choice::<ferkit::evaluation::Tta>())]
        tta: Option<ferkit::evaluation::Tta>,
        /// Write only net N (from 1) of the ensemble, e.g. one net of the shipped model for ONNX
        /// (`ferkit export models/ferkit-fer2013.bpk --member 2 --out vgg-lite.onnx`).
        #[arg(long, value_name = "N")]
        member: Option<usize>,
    },
}

/// A clap value parser for a library [`Choice`]: its names are the possible values (listed in
/// `--help` with their help lines), parsed into the library's value.
pub fn choice<T: Choice + Send + Sync>() -> impl clap::builder::TypedValueParser<Value = T> {
    use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
    PossibleValuesParser::new(T::CHOICES.iter().map(|&(name, _, help)| PossibleValue::new(name).help(help)))
        .map(|name| T::from_name(&name).expect("clap only passes listed names"))
}

/// `--class-map`'s parser: the library's, its error as clap shows it.
fn parse_class_map(text: &str) -> Result<std::collections::BTreeMap<String, String>, String> {
    ferkit::data::class_names::parse_class_map(text).map_err(|e| format!("{e:#}"))
}

/// Where the data comes from: one file or folder, or one CSV per split.
#[derive(Args, Debug, Clone, Default)]
pub struct DataArgs {
    /// FER2013 CSV (plain or .gz) with a Usage column, or an image folder ROOT/<split>/<class>/.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Training CSV (instead of --data).
    #[arg(long)]
    pub train: Option<PathBuf>,
    /// Validation CSV (instead of --data).
    #[arg(long)]
    pub val: Option<PathBuf>,
    /// Test CSV (instead of --data).
    #[arg(long)]
    pub test: Option<PathBuf>,
    /// Skip malformed rows or unreadable images, and report how many, instead of failing.
    #[arg(long)]
    pub skip_bad_rows: bool,
    /// For data with train and test only (FER2013's image release): hold out this share of each
    /// class's training rows as the validation split, e.g. 0.1 (the same rows every time).
    #[arg(long, value_name = "FRACTION")]
    pub val_split: Option<f64>,
    /// Image folders: class folder names mapped to the seven, e.g. contempt=disgust,rage=angry
    /// (common synonyms such as anger, sadness, happiness are built in).
    #[arg(long, value_name = "NAME=CLASS,...", value_parser = parse_class_map)]
    pub class_map: Option<std::collections::BTreeMap<String, String>>,
    /// Image folders: leave out class folders outside the seven (counted) instead of failing.
    #[arg(long)]
    pub skip_unknown_classes: bool,
}

impl DataArgs {
    pub fn source(&self) -> DataSource {
        DataSource {
            data: self.data.clone(),
            train: self.train.clone(),
            val: self.val.clone(),
            test: self.test.clone(),
            class_map: self.class_map.clone().unwrap_or_default(),
            skip_unknown_classes: self.skip_unknown_classes,
            val_split: self.val_split,
        }
    }

    pub fn load(&self) -> Result<Dataset> {
        load_data(&self.source(), self.skip_bad_rows)
    }
}

/// Loads a source and reports rows, skips and time on stderr.
pub fn load_data(source: &DataSource, skip_bad_rows: bool) -> Result<Dataset> {
    Ok(load_data_reported(source, skip_bad_rows)?.0)
}

/// [`load_data`], keeping the report (for a run directory's load_report.txt).
pub fn load_data_reported(source: &DataSource, skip_bad_rows: bool) -> Result<(Dataset, ferkit::data::LoadReport)> {
    let (dataset, report) = source.load(LoadOptions { skip_bad_rows })?;
    lines::tell(&report.describe());
    Ok((dataset, report))
}

pub fn run() -> Result<()> {
    run_with(Cli::parse())
}

pub fn run_with(cli: Cli) -> Result<()> {
    // The kernels' threads, this one among them, so that the work this thread starts runs at once
    // (`ferkit::util::set_threads` says why). The server's requests arrive on its own threads:
    // it keeps rayon's default pool, in which this thread would sit idle.
    match &cli.command {
        Command::Serve(_) => {}
        Command::Bench(args) => ferkit::util::set_threads(args.threads)?,
        _ => ferkit::util::set_threads(0)?,
    }
    match cli.command {
        Command::Reproduce(args) => reproduce_cmd::run(args),
        Command::Predict(args) => predict_cmd::run(args),
        Command::Data(cmd) => data_cmd::run(cmd),
        Command::Models => {
            lines::say(&format!("{:<18} {:>12} {:>14}  description", "preset", "params", "non-trainable"));
            for e in ferkit::models::registry()? {
                let (t, nt) = e.params;
                let total = ferkit::models::summary::thousands(t + nt);
                lines::say(&format!(
                    "{:<18} {total:>12} {:>14}  {}",
                    e.name,
                    ferkit::models::summary::thousands(nt),
                    e.description
                ));
            }
            lines::say(
                "\ntraining preset    a net with its recipe (`ferkit train NAME`; each flag changes one option)",
            );
            for p in &ferkit::training::TRAINING_PRESETS {
                lines::say(&format!("{:<18} {}", p.name, p.description));
            }
            Ok(())
        }
        Command::Summary { model, transfer } => {
            let spec = transfer.apply(ferkit::models::resolve(&model)?)?;
            print!("{}", spec.summary()?);
            if let ferkit::models::ModelSpec::Transfer(t) = &spec
                && let Some(weights) = &t.weights
            {
                ferkit::models::transfer::Backbone::load(t.backbone, Some(weights), &ferkit::Device::flex())?;
                lines::say(&format!(
                    "ImageNet weights loaded from {}: every tensor found and used.",
                    weights.display()
                ));
            }
            Ok(())
        }
        Command::Train(args) => train_cmd::run(args),
        Command::Serve(args) => serve_cmd::run(args),
        Command::Tune(args) => tune_cmd::run(args),
        Command::TuneWorker(args) => tune_cmd::run_worker(args),
        Command::Eval(args) => eval_cmd::run(args),
        Command::Report { runs } => {
            let paths: Vec<&std::path::Path> = runs.iter().map(PathBuf::as_path).collect();
            print!("{}", ferkit::reporting::table::runs_table(&paths)?);
            Ok(())
        }
        Command::Bench(args) => bench_cmd::run(args),
        Command::Export { sources, out, format, half, int8, name, description, tta, member } => {
            use ferkit::export::{ExportFormat, ExportOptions, StoredPrecision};
            let format = match format.or_else(|| ExportFormat::from_path(&out)) {
                Some(format) => format,
                None => ferkit::bail!(
                    BadInput,
                    "{}: give --format (bpk, onnx or safetensors) or an --out ending in .bpk, .onnx or .safetensors",
                    out.display()
                ),
            };
            let name =
                name.unwrap_or_else(|| out.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default());
            let precision = match (half, int8) {
                (true, _) => StoredPrecision::Float16,
                (_, true) => StoredPrecision::Int8,
                _ => StoredPrecision::Float32,
            };
            ferkit::export::export(
                &sources,
                &out,
                &ExportOptions { format, name, description, precision, tta, member },
            )?;
            if format == ExportFormat::Burnpack {
                lines::say(&format!("wrote {} and {}", out.display(), out.with_extension("toml").display()));
            } else {
                lines::say(&format!("wrote {}", out.display()));
            }
            Ok(())
        }
    }
}
