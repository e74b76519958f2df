//! The command line's view of long work ([`Events`]): a progress bar with ETA on a terminal, one
//! plain line per epoch and per note otherwise (logs, CI, a trial's train.log).

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use ferkit::events::Events;
use ferkit::run::history::EpochRecord;

/// Shows training as a bar (stderr a terminal) or as lines (otherwise); notes go above the bar.
#[derive(Default)]
pub struct TerminalProgress {
    /// The bar of the run in progress, and that run's number of epochs.
    state: Mutex<(Option<ProgressBar>, usize)>,
}

impl TerminalProgress {
    fn line(&self, line: &str) {
        match &self.state.lock().expect("not poisoned").0 {
            Some(bar) => bar.println(line),
            // One write per line: a killed process's log keeps whole lines (see `lines`).
            None => super::lines::tell(line),
        }
    }
}

impl Events for TerminalProgress {
    fn training_started(&self, model: &str, epochs: usize, steps: u64, done: u64) {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(steps);
            bar.set_style(
                ProgressStyle::with_template(
                    "{prefix} [{bar:30}] {pos}/{len} batches  {elapsed_precise} elapsed, ETA {eta_precise}  {msg}",
                )
                .expect("a valid template")
                .progress_chars("=> "),
            );
            bar.set_prefix(model.to_string());
            bar.set_position(done);
            bar.reset_eta();
            bar.enable_steady_tick(Duration::from_millis(500));
            bar
        });
        *self.state.lock().expect("not poisoned") = (bar, epochs);
    }

    fn training_replanned(&self, epochs: usize, steps: u64) {
        let mut state = self.state.lock().expect("not poisoned");
        if let Some(bar) = &state.0 {
            bar.set_length(steps);
        }
        state.1 = epochs;
    }

    fn batch_finished(&self, epoch: usize, running_loss: f64) {
        if let (Some(bar), epochs) = &*self.state.lock().expect("not poisoned") {
            bar.set_message(format!("epoch {epoch}/{epochs} loss {running_loss:.4}"));
            bar.inc(1);
        }
    }

    fn epoch_finished(&self, r: &EpochRecord, kept: bool, eta_seconds: f64) {
        let epochs = self.state.lock().expect("not poisoned").1;
        self.line(&format!(
            "epoch {:>3}/{}  loss {:.4}  acc {:.4}  val_loss {:.4}  val_acc {:.4}  {:.1} s  ETA {}{}",
            r.epoch,
            epochs,
            r.train_loss,
            r.train_accuracy,
            r.val_loss,
            r.val_accuracy,
            r.seconds,
            format_eta(eta_seconds),
            if kept { "  (kept)" } else { "" }
        ));
    }

    fn training_finished(&self) {
        if let Some(bar) = self.state.lock().expect("not poisoned").0.take() {
            bar.finish_and_clear();
        }
    }

    fn note(&self, message: &str) {
        self.line(message);
    }
}

fn format_eta(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    format!("{}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
}
