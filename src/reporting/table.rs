//! A Markdown table of finished runs, from their `metrics.json`.

use std::path::Path;

use crate::error::{Context, Result};
use serde_json::{Map, Value, json};

use crate::data::{CLASS_NAMES, Dataset, SplitName};

use crate::models::summary::thousands;
use crate::run::RunDir;

/// One row per run: model, parameters, kept epoch, accuracy on each split, training seconds.
pub fn runs_table(runs: &[&Path]) -> Result<String> {
    let mut out = String::from(
        "| run | model | params | kept epoch | train acc | val acc | test acc | train seconds |\n\
         |---|---|---:|---:|---:|---:|---:|---:|\n",
    );
    for path in runs {
        let run = RunDir::open(path)?;
        let text = std::fs::read_to_string(run.metrics())
            .with_context(|| format!("{}: no metrics (has the run finished?)", run.metrics().display()))?;
        let m: Value = serde_json::from_str(&text).with_context(|| format!("{}: not JSON", run.metrics().display()))?;
        let pct = |v: &Value| v["accuracy"].as_f64().map_or("—".to_string(), |a| format!("{:.2}%", a * 100.0));
        let params = m["trainable_params"].as_u64().unwrap_or(0) + m["non_trainable_params"].as_u64().unwrap_or(0);
        out += &format!(
            "| {} | {} | {} | {}/{} | {} | {} | {} | {:.0} |\n",
            path.display(),
            m["model"].as_str().unwrap_or("?"),
            thousands(params as usize),
            m["best_epoch"],
            m["epochs"],
            pct(&m["train"]),
            pct(&m["val"]),
            pct(&m["test"]),
            m["train_seconds"].as_f64().unwrap_or(f64::NAN)
        );
    }
    Ok(out)
}

/// Rows per class and split, as a plain-text table.
pub fn stats_table(dataset: &Dataset) -> String {
    let mut out = format!("{:<6}", "split");
    for name in CLASS_NAMES {
        out += &format!("{name:>10}");
    }
    out += &format!("{:>10}\n", "total");
    for split in SplitName::ALL {
        let s = dataset.split(split);
        out += &format!("{:<6}", split.as_str());
        for count in s.class_counts() {
            out += &format!("{count:>10}");
        }
        out += &format!("{:>10}\n", s.len());
    }
    out
}

/// Rows per class and split, as JSON (`{split: {class: n, ..., total: n}}`).
pub fn stats_json(dataset: &Dataset) -> Value {
    let mut root = Map::new();
    for split in SplitName::ALL {
        let s = dataset.split(split);
        let mut counts = Map::new();
        for (name, count) in CLASS_NAMES.iter().zip(s.class_counts()) {
            counts.insert(name.to_string(), json!(count));
        }
        counts.insert("total".into(), json!(s.len()));
        root.insert(split.as_str().into(), Value::Object(counts));
    }
    Value::Object(root)
}
