//! Shared forward passes for concurrent requests: one thread owns the net; requests send it
//! their faces' crops and wait for the probabilities. The thread takes the first waiting job,
//! then more until the batch is full or a short wait ends, and reads them all in one
//! [`EmotionClassifier::classify`] call (grouped by test-time augmentation).

use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant};

use ferkit::data::NUM_CLASSES;
use ferkit::evaluation::Tta;
use ferkit::prediction::EmotionClassifier;
use tokio::sync::oneshot;

use crate::metrics::Metrics;

/// Class probabilities of one face.
pub type Probabilities = [f32; NUM_CLASSES];

struct Job {
    faces: Vec<Vec<u8>>,
    tta: Tta,
    reply: oneshot::Sender<Vec<Probabilities>>,
}

/// The handle requests use; cheap to clone.
#[derive(Clone)]
pub struct Batcher {
    jobs: SyncSender<Job>,
}

/// How batches are formed.
#[derive(Clone, Copy, Debug)]
pub struct BatchSettings {
    /// Faces per forward pass at most.
    pub max_faces: usize,
    /// How long the first job of a batch waits for others.
    pub max_wait: Duration,
    /// Jobs that may queue for the thread; more are refused (the server answers 503).
    pub queue: usize,
}

impl Default for BatchSettings {
    fn default() -> Self {
        Self { max_faces: 64, max_wait: Duration::from_millis(5), queue: 256 }
    }
}

impl Batcher {
    /// Starts the thread that owns `classifier`.
    pub fn start(classifier: EmotionClassifier, settings: BatchSettings, metrics: std::sync::Arc<Metrics>) -> Self {
        let (jobs, queue) = sync_channel(settings.queue);
        std::thread::Builder::new()
            .name("ferkit-batcher".into())
            .spawn(move || run(classifier, queue, settings, &metrics))
            .expect("the batch thread starts");
        Self { jobs }
    }

    /// The probabilities of `faces` (48x48 grey crops), read with the views `tta` names; `None`
    /// when the queue is full or the thread is gone (the caller answers 503).
    pub async fn classify(&self, faces: Vec<Vec<u8>>, tta: Tta) -> Option<Vec<Probabilities>> {
        if faces.is_empty() {
            return Some(Vec::new());
        }
        let (reply, answer) = oneshot::channel();
        match self.jobs.try_send(Job { faces, tta, reply }) {
            Ok(()) => answer.await.ok(),
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => None,
        }
    }
}

fn run(mut classifier: EmotionClassifier, queue: Receiver<Job>, settings: BatchSettings, metrics: &Metrics) {
    while let Ok(first) = queue.recv() {
        let deadline = Instant::now() + settings.max_wait;
        let mut faces = first.faces.len();
        let mut jobs = vec![first];
        while faces < settings.max_faces {
            match queue.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(job) => {
                    faces += job.faces.len();
                    jobs.push(job);
                }
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
            }
        }
        for tta in [Tta::None, Tta::Hflip, Tta::TenCrop] {
            let (group, rest): (Vec<Job>, Vec<Job>) = jobs.into_iter().partition(|j| j.tta == tta);
            jobs = rest;
            if group.is_empty() {
                continue;
            }
            classifier.tta = tta;
            let all: Vec<Vec<u8>> = group.iter().flat_map(|j| j.faces.iter().cloned()).collect();
            metrics.batch(all.len());
            let mut probabilities = classifier.classify(&all).into_iter();
            for job in group {
                let mine: Vec<Probabilities> = probabilities.by_ref().take(job.faces.len()).collect();
                let _ = job.reply.send(mine); // the request may have gone (timed out)
            }
        }
    }
}
