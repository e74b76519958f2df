//! A Markdown table of finished runs, from their `metrics.json`.

use std::path::Path;

use crate::error::Result;
use serde_json::{Map, Value, json};

use crate::data::{CLASS_NAMES, Dataset, SplitName};

use crate::evaluation::SplitEvaluation;
use crate::models::summary::thousands;
use crate::run::RunDir;
use crate::run::RunMetrics;

/// One row per run: model, parameters, kept epoch, accuracy on each split, training seconds.
pub fn runs_table(runs: &[&Path]) -> Result<String> {
    let mut out = String::from(
        "| run | model | params | kept epoch | train acc | val acc | test acc | train seconds |\n\
         |---|---|---:|---:|---:|---:|---:|---:|\n",
    );
    for path in runs {
        let m = RunMetrics::read(&RunDir::open(path)?)?;
        let pct = |s: Option<&SplitEvaluation>| s.map_or("—".to_string(), |s| format!("{:.2}%", s.accuracy * 100.0));
        out += &format!(
            "| {} | {} | {} | {}/{} | {} | {} | {} | {:.0} |\n",
            path.display(),
            m.model,
            thousands(m.trainable_params + m.non_trainable_params),
            m.best_epoch,
            m.epochs,
            pct(Some(&m.train)),
            pct(Some(&m.val)),
            pct(m.test.as_ref()),
            m.train_seconds
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
