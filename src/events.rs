//! What long work reports while it runs: a trait the library calls and the fronts implement
//! (the CLI draws a progress bar, the Python package will call back into Python, a server can
//! stream them). The library itself never prints.
//!
//! Every method has an empty default, so an implementation picks what it shows; [`Silent`]
//! shows nothing (tests, servers that only want the result).

use crate::run::history::EpochRecord;

/// Progress of training runs, searches and studies. Called from the thread that does the work;
/// implementations must be cheap (a batch event comes every few milliseconds on small nets).
pub trait Events: Sync {
    /// A training run starts (or resumes): `model`'s name, `epochs` in all, `steps` optimizer
    /// steps (batches) over all of them, of which `done` were taken before (a resumed run).
    fn training_started(&self, _model: &str, _epochs: usize, _steps: u64, _done: u64) {}

    /// A running training run's epochs were cut (its time budget, [`crate::training::budget`]):
    /// now `epochs` in all, `steps` optimizer steps over all of them.
    fn training_replanned(&self, _epochs: usize, _steps: u64) {}

    /// One optimizer step of `epoch` (1-based) finished; `running_loss` is the epoch's mean
    /// training loss so far (cross-entropy plus L2, as Keras shows it).
    fn batch_finished(&self, _epoch: usize, _running_loss: f64) {}

    /// An epoch finished and was validated; `kept` when its weights became the run's kept
    /// checkpoint; `eta_seconds` estimates the remaining epochs' wall time.
    fn epoch_finished(&self, _record: &EpochRecord, _kept: bool, _eta_seconds: f64) {}

    /// The training run ended (finished, diverged or failed); no more batch or epoch events.
    fn training_finished(&self) {}

    /// One line a user should see: a run resumed, a trial started or finished, a study's step.
    fn note(&self, _message: &str) {}

    /// Asked after every training step: true stops the run there (an interrupt: Ctrl-C in a
    /// notebook, a cancelled request) with an [`crate::ErrorKind::Interrupted`] error. The run
    /// directory keeps its last finished epoch's checkpoint, so the run can be resumed.
    fn should_stop(&self) -> bool {
        false
    }
}

/// Reports nothing.
pub struct Silent;

impl Events for Silent {}

/// Collects notes and epoch records in memory (tests, and fronts that show them at the end).
#[derive(Default)]
pub struct Recorded {
    pub notes: std::sync::Mutex<Vec<String>>,
    pub epochs: std::sync::Mutex<Vec<(EpochRecord, bool)>>,
}

impl Events for Recorded {
    fn epoch_finished(&self, record: &EpochRecord, kept: bool, _eta_seconds: f64) {
        self.epochs.lock().expect("not poisoned").push((record.clone(), kept));
    }

    fn note(&self, message: &str) {
        self.notes.lock().expect("not poisoned").push(message.to_string());
    }
}
