//! The reproduction report: `report.md` (images beside it) and `report.html` (self-contained,
//! images embedded), built from the files each step left in the output folder: runs through their
//! typed `metrics.json` ([`RunMetrics`]) and the search through its `best.json` ([`BestTrial`]).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::error::{Context, Result};
use base64::Engine;
use serde_json::Value;

use super::notebook::{
    NOTEBOOK_AUGMENTED, NOTEBOOK_CNN, NOTEBOOK_FNN, NOTEBOOK_NETS, NOTEBOOK_TRANSFER, NOTEBOOK_TUNED,
};
use crate::data::CLASS_NAMES;
use crate::evaluation::SplitEvaluation;
use crate::models::summary::thousands;
use crate::reporting::plots::plot_confusion;
use crate::run::{RunDir, RunMetrics};
use crate::tuning::runner::BestTrial;
use crate::util::atomic::write_atomic;

enum Block {
    Text(String),
    Table(Vec<Vec<String>>),
    Image(String, PathBuf),
}

struct Section {
    title: String,
    blocks: Vec<Block>,
}

/// Untyped JSON for the files the report only shows (the data's class counts, the photos'
/// predictions); None when absent or unreadable, and the report leaves that part out.
fn read_json(path: &Path) -> Option<Value> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

fn pct(v: &Value) -> String {
    v.as_f64().map_or("—".into(), |a| format!("{:.2}%", a * 100.0))
}

fn percent(fraction: f64) -> String {
    format!("{:.2}%", fraction * 100.0)
}

/// A step's run: its metrics.json, or None when the step has not run (no run directory or no
/// metrics.json yet). Errors: a metrics.json that is not the trainer's.
fn finished_run(dir: &Path) -> Result<Option<(RunDir, RunMetrics)>> {
    let run = RunDir { path: dir.to_path_buf() };
    if !run.metrics().exists() {
        return Ok(None);
    }
    let metrics = RunMetrics::read(&run)?;
    Ok(Some((run, metrics)))
}

/// One results row for a finished run.
/// A split's accuracy, saying when it averages views of each face (test-time augmentation).
fn accuracy_cell(e: &SplitEvaluation) -> String {
    match e.tta.label() {
        "" => percent(e.accuracy),
        label => format!("{} ({label})", percent(e.accuracy)),
    }
}

fn run_row(step: &str, m: &RunMetrics, notebook: &str) -> Vec<String> {
    vec![
        step.to_string(),
        m.model.clone(),
        thousands(m.trainable_params + m.non_trainable_params),
        format!("{}/{}", m.best_epoch, m.epochs),
        percent(m.train.accuracy),
        accuracy_cell(&m.val),
        m.test.as_ref().map_or("—".into(), accuracy_cell),
        format!("{:.0}", m.train_seconds),
        notebook.to_string(),
    ]
}

/// A step's results row and pictures when its run in `dir` finished, else a row saying `why`
/// it did not run.
fn step_rows(
    step: &str,
    dir: &Path,
    why: &str,
    notebook: &str,
    table: &mut Vec<Vec<String>>,
    images: &mut Vec<Block>,
) -> Result<()> {
    match finished_run(dir)? {
        Some((run, m)) => {
            table.push(run_row(step, &m, notebook));
            images.extend(run_images(step, &run, &m)?);
        }
        None => {
            let mut row = vec![step.to_string(), why.to_string()];
            row.extend(std::iter::repeat_n(String::new(), 6));
            row.push(notebook.to_string());
            table.push(row);
        }
    }
    Ok(())
}

/// The run's pictures: curves, and the test confusion matrix drawn from its metrics.
fn run_images(label: &str, run: &RunDir, m: &RunMetrics) -> Result<Vec<Block>> {
    let mut blocks = Vec::new();
    if run.curves().exists() {
        blocks.push(Block::Image(format!("{label}: loss and accuracy"), run.curves()));
    }
    if let Some(test) = &m.test {
        let png = run.path.join("confusion_test.png");
        plot_confusion(&test.confusion, &format!("{label} on test"), &png)?;
        blocks.push(Block::Image(format!("{label}: test confusion matrix"), png));
    }
    Ok(blocks)
}

pub fn write_report(out: &Path, quick: bool) -> Result<()> {
    let mut sections = Vec::new();
    let mode = if quick {
        "Quick mode: a small subset of each split and one epoch per step. The figures show the pipeline works, not what the models can do."
    } else {
        "Full mode: the notebook's recipes on the whole data set."
    };
    sections.push(Section {
        title: "ferkit: the notebook, reproduced".into(),
        blocks: vec![Block::Text(format!(
            "{mode} Models and epochs are chosen on the validation split (PublicTest); test accuracy (PrivateTest) is \
             that of the kept checkpoint, never used for a choice. The notebook's figures are its test accuracies."
        ))],
    });

    // Data.
    let mut data = Vec::new();
    if let Some(stats) = read_json(&out.join("data/stats.json")) {
        let mut table = vec![
            std::iter::once("split".to_string())
                .chain(CLASS_NAMES.iter().map(|c| c.to_string()))
                .chain(["total".to_string()])
                .collect::<Vec<_>>(),
        ];
        for split in ["train", "val", "test"] {
            let row = std::iter::once(split.to_string())
                .chain(CLASS_NAMES.iter().chain(["total"].iter()).map(|c| stats[split][*c].to_string()))
                .collect();
            table.push(row);
        }
        data.push(Block::Table(table));
    }
    data.push(Block::Image("Two faces per class".into(), out.join("data/grid.png")));
    data.push(Block::Image(
        "Augmented training faces (rotation 20, shear 20, zoom 0.1, flip, nearest fill)".into(),
        out.join("data/augment_preview.png"),
    ));
    sections.push(Section { title: "Data".into(), blocks: data });

    // Results.
    let header: Vec<String> =
        ["step", "model", "params", "kept epoch", "train acc", "val acc", "test acc", "seconds", "notebook test"]
            .iter()
            .map(|s| s.to_string())
            .collect();
    let mut table = vec![header];
    let mut images = Vec::new();
    for name in NOTEBOOK_NETS {
        let notebook = if name.starts_with("fnn") {
            format!("{NOTEBOOK_FNN:.2}% (best FNN)")
        } else {
            format!("{NOTEBOOK_CNN:.2}% (best CNN)")
        };
        if let Some((run, m)) = finished_run(&out.join("nets").join(name))? {
            table.push(run_row(name, &m, &notebook));
            images.extend(run_images(name, &run, &m)?);
        }
    }
    let best = out.join("tune/best.json");
    if best.exists()
        && let Some((run, m)) = finished_run(&BestTrial::read(&best)?.run_dir)?
    {
        table.push(run_row("tuned (best trial)", &m, &format!("{NOTEBOOK_TUNED:.2}%")));
        images.extend(run_images("tuned", &run, &m)?);
    }
    for (step, dir, notebook) in [
        ("transfer", out.join("transfer"), format!("{NOTEBOOK_TRANSFER:.2}% (VGG16)")),
        ("tuned + augmentation", out.join("augmented"), format!("{NOTEBOOK_AUGMENTED:.2}%")),
    ] {
        step_rows(step, &dir, "not run", &notebook, &mut table, &mut images)?;
    }
    // The last row: what ferkit's own `fast` preset reaches beyond the notebook's recipes.
    let beyond = format!("beyond the notebook: {} preset", super::FAST_PRESET);
    let why = "not run (--notebook-only, or no ImageNet weights)";
    step_rows(&beyond, &out.join(super::FAST_PRESET), why, "—", &mut table, &mut images)?;
    let mut results = vec![Block::Table(table)];
    results.extend(images);
    sections.push(Section { title: "Results".into(), blocks: results });

    // Tuning.
    if let Ok(csv) = std::fs::read_to_string(out.join("tune/trials.csv")) {
        let table: Vec<Vec<String>> =
            csv.lines().map(|l| l.split(',').map(|c| c.replace(';', ",")).collect()).collect();
        let mut blocks = vec![
            Block::Text("Bayesian optimisation (Gaussian process, Matern 5/2, UCB beta 2.6) over the notebook's space; objective: validation loss.".into()),
            Block::Table(table),
        ];
        blocks.push(Block::Image("Objective per trial and best so far".into(), out.join("tune/trials.png")));
        sections.push(Section { title: "Hyperparameter search".into(), blocks });
    }

    if let Some(section) = photos_section(out) {
        sections.push(section);
    }

    write_atomic(&out.join("report.md"), markdown(&sections, out))?;
    write_atomic(&out.join("report.html"), html(&sections)?)?;
    Ok(())
}

/// The final model on real photos: a row per face, and each photo with its faces marked.
fn photos_section(out: &Path) -> Option<Section> {
    let dir = out.join("photos");
    let doc = read_json(&dir.join("predictions.json"))?;
    let mut table = vec![["photo", "face", "box (x, y, side)", "emotion", "probability"].map(String::from).to_vec()];
    let mut images = Vec::new();
    for photo in doc["photos"].as_array()? {
        let name = Path::new(photo["photo"].as_str()?).file_name()?.to_string_lossy().into_owned();
        let faces = photo["faces"].as_array()?;
        if faces.is_empty() {
            table.push(vec![name.clone(), "none found".into(), String::new(), String::new(), String::new()]);
        }
        for (i, f) in faces.iter().enumerate() {
            let b = &f["box"];
            let emotion = f["emotion"].as_str()?;
            table.push(vec![
                name.clone(),
                (i + 1).to_string(),
                format!("{}, {}, {}", b["x"], b["y"], b["width"]),
                emotion.to_string(),
                pct(&f["probabilities"][emotion]),
            ]);
        }
        if let Some(picture) = photo["picture"].as_str() {
            images.push(Block::Image(name, dir.join(picture)));
        }
    }
    let mut blocks = vec![
        Block::Text(format!(
            "The final model (tuned + augmentation) pointed at real photos: faces found with OpenCV's Haar cascade ({}), \
             each cut out as a 48x48 grey face and read by the net.",
            doc["detector"]["cascade"].as_str().unwrap_or("?")
        )),
        Block::Table(table),
    ];
    blocks.extend(images);
    Some(Section { title: "Photos".into(), blocks })
}

fn markdown(sections: &[Section], out: &Path) -> String {
    let mut md = String::new();
    for (i, s) in sections.iter().enumerate() {
        let _ = writeln!(md, "{} {}\n", if i == 0 { "#" } else { "##" }, s.title);
        for b in &s.blocks {
            match b {
                Block::Text(t) => {
                    let _ = writeln!(md, "{t}\n");
                }
                Block::Table(rows) => {
                    for (r, row) in rows.iter().enumerate() {
                        let _ = writeln!(md, "| {} |", row.join(" | "));
                        if r == 0 {
                            let _ = writeln!(md, "|{}", "---|".repeat(row.len()));
                        }
                    }
                    md.push('\n');
                }
                Block::Image(caption, path) if path.exists() => {
                    let rel = path.strip_prefix(out).unwrap_or(path);
                    let _ = writeln!(md, "![{caption}]({})\n", rel.display());
                }
                Block::Image(..) => {}
            }
        }
    }
    md
}

/// Text for HTML element content and double- or single-quoted attribute values.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

fn html(sections: &[Section]) -> Result<String> {
    let mut h = String::from(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>ferkit report</title><style>\
         body{font-family:sans-serif;max-width:1250px;margin:2em auto;padding:0 1em;color:#222}\
         table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;padding:4px 8px;text-align:right}\
         td:first-child,th:first-child{text-align:left}th{background:#eee}figure{margin:1em 0}\
         img{max-width:100%;border:1px solid #ddd}figcaption{color:#555;font-size:90%}</style></head><body>\n",
    );
    for (i, s) in sections.iter().enumerate() {
        let tag = if i == 0 { "h1" } else { "h2" };
        let _ = writeln!(h, "<{tag}>{}</{tag}>", escape(&s.title));
        for b in &s.blocks {
            match b {
                Block::Text(t) => {
                    let _ = writeln!(h, "<p>{}</p>", escape(t));
                }
                Block::Table(rows) => {
                    h += "<table>\n";
                    for (r, row) in rows.iter().enumerate() {
                        let cell = if r == 0 { "th" } else { "td" };
                        h += "<tr>";
                        for c in row {
                            let _ = write!(h, "<{cell}>{}</{cell}>", escape(c));
                        }
                        h += "</tr>\n";
                    }
                    h += "</table>\n";
                }
                Block::Image(caption, path) if path.exists() => {
                    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
                    let data = base64::engine::general_purpose::STANDARD.encode(bytes);
                    let _ = writeln!(
                        h,
                        "<figure><img alt=\"{0}\" src=\"data:image/png;base64,{data}\"><figcaption>{0}</figcaption></figure>",
                        escape(caption)
                    );
                }
                Block::Image(..) => {}
            }
        }
    }
    h += "</body></html>\n";
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_attribute_quotes() {
        // A photo named a"b.png must not end an alt="..." attribute early.
        assert_eq!(escape(r#"a"b<&>'.png"#), "a&quot;b&lt;&amp;&gt;&#39;.png");
    }
}
