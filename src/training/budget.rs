//! A time budget for a training run (`--time-budget MINUTES`, and the `fast` preset's own): the
//! run fits the epochs it trains to the wall time it is given, on whatever machine it runs.
//!
//! Two decisions, both from measured times, never from a guess of the machine's speed:
//! - after the first epoch, the epoch count is cut to what fits (the first epoch's time, 5% more
//!   for drift, times the epochs, plus the final evaluation): the schedule then ends over the
//!   epochs that will really run. Epoch 1 ran at the rates of the longer plan: under a warm-up of
//!   at least one epoch (the `fast` preset's cosine) that is what a run asked for the shorter
//!   count would have done too, since warm-up rates do not depend on the epoch count; one-cycle
//!   and cosine without warm-up move at epoch 2 to the shorter plan's rates (a step in the rate);
//! - before every later epoch, the run stops when that epoch would no longer end in time (the
//!   longest epoch so far, 5% more, plus the final evaluation): a machine that slows down during
//!   the run ends it an epoch early, with the checkpoint kept so far, rather than overrun.
//!
//! A run whose epochs fit is not changed at all: the same schedule, the same bits.
//!
//! The clock starts with the first epoch of the process (reading the data before it, seconds,
//! is not counted; the `fast` preset leaves two minutes for it and for writing the results). A
//! resumed run plans again only if it resumes before its first epoch ended; its guard counts the
//! resumed process's time alone.

/// Epoch times are taken 5% longer than measured, for the drift of a shared machine.
const DRIFT_MARGIN: f64 = 1.05;

/// What the budget allows next, from the times measured so far.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TimeBudget {
    /// The budget in seconds (wall time from the first epoch's start to the run's end).
    pub seconds: f64,
}

impl TimeBudget {
    /// A budget of `minutes` (finite, > 0: the config checks it).
    pub fn minutes(minutes: f64) -> Self {
        Self { seconds: minutes * 60.0 }
    }

    /// The epochs the run should train, decided after its first epoch: `elapsed` seconds since
    /// the clock started (the first epoch included), the first epoch's `epoch_seconds`, the
    /// estimated `final_seconds` of the evaluation after the last epoch, and the `configured`
    /// epoch count, which is never raised. At least 1 (the epoch already done).
    pub fn epochs_that_fit(&self, elapsed: f64, epoch_seconds: f64, final_seconds: f64, configured: usize) -> usize {
        let left = self.seconds - elapsed - final_seconds;
        let more = (left / (epoch_seconds.max(1e-9) * DRIFT_MARGIN)).floor().max(0.0) as usize;
        (1 + more).clamp(1, configured.max(1))
    }

    /// Whether one more epoch ends in time: `elapsed` seconds so far, the `longest_epoch` so far
    /// (seconds) and the estimated `final_seconds`.
    pub fn next_epoch_fits(&self, elapsed: f64, longest_epoch: f64, final_seconds: f64) -> bool {
        elapsed + longest_epoch * DRIFT_MARGIN + final_seconds <= self.seconds
    }
}

/// The final evaluation's estimated seconds: the run evaluates its kept net on every split
/// (`rows_evaluated_at_end` rows) at the speed measured on the validation split during the
/// epochs (`val_rows` rows in `val_seconds`), plus 5 s to load the net and write the results.
pub fn final_evaluation_seconds(val_seconds: f64, val_rows: usize, rows_evaluated_at_end: usize) -> f64 {
    val_seconds / val_rows.max(1) as f64 * rows_evaluated_at_end as f64 + 5.0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Session 15's seed 1 of the `fast` preset (first epoch 230 s, final evaluation about 60 s)
    /// fits its 12 epochs in 58 minutes and is left alone; at 340 s an epoch (this machine on a
    /// slow day), 8 more epochs fit after the first (9 in all); a budget smaller than one epoch
    /// keeps 1.
    #[test]
    fn plans_the_epochs_that_fit_and_never_more_than_asked() {
        let budget = TimeBudget::minutes(58.0);
        assert_eq!(budget.epochs_that_fit(240.0, 230.0, 60.0, 12), 12);
        // (3480 - 350 - 60) / (340 * 1.05) = 8.6: 8 more.
        assert_eq!(budget.epochs_that_fit(350.0, 340.0, 60.0, 12), 9);
        assert_eq!(budget.epochs_that_fit(4000.0, 3990.0, 60.0, 12), 1);
        assert_eq!(TimeBudget::minutes(600.0).epochs_that_fit(240.0, 230.0, 60.0, 12), 12);
    }

    /// Session 16's seed 2 (epochs 252-323 s as the machine slowed): after epoch 11 (3,255 s
    /// of epochs) the guard stops before epoch 12, which would end past 58 minutes.
    #[test]
    fn stops_before_an_epoch_that_would_end_late() {
        let budget = TimeBudget::minutes(58.0);
        // 3,000 + 300 * 1.05 + 60 = 3,375 <= 3,480; 3,255 + 323 * 1.05 + 60 = 3,654 > 3,480.
        assert!(budget.next_epoch_fits(3000.0, 300.0, 60.0));
        assert!(!budget.next_epoch_fits(3255.0, 323.0, 60.0));
    }

    #[test]
    fn the_final_evaluation_scales_with_the_rows() {
        // 3,589 rows in 10 s; 35,890 rows at the end: 100 s, plus 5.
        assert!((final_evaluation_seconds(10.0, 3589, 35_890) - 105.0).abs() < 1e-9);
    }
}
