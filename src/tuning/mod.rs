//! Hyperparameter search, keras-tuner's shape: a search space ([`space`]), a strategy with
//! ask/tell whose state saves to JSON ([`oracle`], using the Gaussian process in [`gp`]), and a
//! trial runner that trains each trial in its own process and run directory ([`runner`]), its
//! output kept in the trial's `train.log` ([`trial_log`]).

pub mod gp;
pub mod oracle;
pub mod runner;
pub mod space;
pub mod trial_log;

pub use oracle::{Acquisition, Direction, Oracle, Strategy, Trial, TrialStatus};
pub use space::{Assignment, SearchSpace};
