//! Training progress: a bar with ETA on a terminal, one plain line per epoch otherwise.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use crate::run::history::EpochRecord;

pub struct Progress {
    bar: Option<ProgressBar>,
    epochs: usize,
}

impl Progress {
    /// `steps` batches in all over `epochs` epochs, `done` of them before this process (a
    /// resumed run); a bar only when stderr is a terminal.
    pub fn new(label: &str, epochs: usize, steps: u64, done: u64) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(steps);
            bar.set_style(
                ProgressStyle::with_template(
                    "{prefix} [{bar:30}] {pos}/{len} batches  {elapsed_precise} elapsed, ETA {eta_precise}  {msg}",
                )
                .expect("a valid template")
                .progress_chars("=> "),
            );
            bar.set_prefix(label.to_string());
            bar.set_position(done);
            bar.reset_eta();
            bar.enable_steady_tick(Duration::from_millis(500));
            bar
        });
        Self { bar, epochs }
    }

    pub fn batch_done(&self, epoch: usize, running_loss: f64) {
        if let Some(bar) = &self.bar {
            bar.set_message(format!("epoch {epoch}/{} loss {running_loss:.4}", self.epochs));
            bar.inc(1);
        }
    }

    /// One line per finished epoch, above the bar or on stderr; `eta` is the estimate for the
    /// remaining epochs.
    pub fn epoch_done(&self, r: &EpochRecord, kept: bool, eta_seconds: f64) {
        let line = format!(
            "epoch {:>3}/{}  loss {:.4}  acc {:.4}  val_loss {:.4}  val_acc {:.4}  {:.1} s  ETA {}{}",
            r.epoch,
            self.epochs,
            r.train_loss,
            r.train_accuracy,
            r.val_loss,
            r.val_accuracy,
            r.seconds,
            format_eta(eta_seconds),
            if kept { "  (kept)" } else { "" }
        );
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

fn format_eta(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    format!("{}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
}
