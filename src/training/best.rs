//! The choice of the checkpoint to keep: the figure it is chosen on ([`Monitor`]) and the
//! tracker of the best epoch.

use serde::{Deserialize, Serialize};

use crate::run::history::EpochRecord;

impl crate::util::choice::Choice for Monitor {
    const CHOICES: &'static [(&'static str, Self, &'static str)] = &[
        ("val_loss", Monitor::ValLoss, "lowest validation loss (the notebook's choice)"),
        ("val_accuracy", Monitor::ValAccuracy, "highest validation accuracy"),
    ];
}

/// Which validation figure picks the kept checkpoint.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Monitor {
    /// Lowest validation loss (the notebook's choice).
    #[default]
    ValLoss,
    /// Highest validation accuracy.
    ValAccuracy,
}

/// Tracks the best epoch so far, as Keras' `ModelCheckpoint(save_best_only=True)` does: only a
/// strict improvement replaces the kept checkpoint, so on a tie the earlier epoch stays.
#[derive(Clone, Debug)]
pub struct BestTracker {
    monitor: Monitor,
    best: Option<(usize, f64)>,
}

impl BestTracker {
    pub fn new(monitor: Monitor) -> Self {
        Self { monitor, best: None }
    }

    /// A tracker that goes on from a resumed run's kept epoch and value.
    pub fn resume(monitor: Monitor, best: Option<(usize, f64)>) -> Self {
        Self { monitor, best }
    }

    /// Records an epoch; true when it is the new best (its weights should be kept).
    pub fn update(&mut self, record: &EpochRecord) -> bool {
        let value = match self.monitor {
            Monitor::ValLoss => record.val_loss,
            Monitor::ValAccuracy => record.val_accuracy,
        };
        if !value.is_finite() {
            return false;
        }
        let better = match self.best {
            None => true,
            Some((_, best)) => match self.monitor {
                Monitor::ValLoss => value < best,
                Monitor::ValAccuracy => value > best,
            },
        };
        if better {
            self.best = Some((record.epoch, value));
        }
        better
    }

    /// The best epoch (1-based) and its monitored value.
    pub fn best(&self) -> Option<(usize, f64)> {
        self.best
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::history::tests::rec;

    #[test]
    fn keeps_the_lowest_val_loss_and_the_first_of_ties() {
        let mut t = BestTracker::new(Monitor::ValLoss);
        let keeps: Vec<bool> =
            [rec(1, 1.5, 0.3), rec(2, 1.2, 0.4), rec(3, 1.2, 0.5), rec(4, 1.3, 0.6), rec(5, f64::NAN, 0.7)]
                .iter()
                .map(|r| t.update(r))
                .collect();
        assert_eq!(keeps, [true, true, false, false, false]);
        assert_eq!(t.best(), Some((2, 1.2)));
    }

    #[test]
    fn val_accuracy_keeps_the_highest() {
        let mut t = BestTracker::new(Monitor::ValAccuracy);
        for r in [rec(1, 1.5, 0.3), rec(2, 1.2, 0.4), rec(3, 1.0, 0.35)] {
            t.update(&r);
        }
        assert_eq!(t.best(), Some((2, 0.4)));
    }
}
