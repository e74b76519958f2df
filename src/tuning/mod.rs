//! Hyperparameter search, keras-tuner's shape: a search space ([`space`]), a strategy with
//! ask/tell ([`oracle`], using the Gaussian process in [`gp`]), a study that holds the search's
//! trials under leases ([`study`]) in a storage (`oracle.json` or SQLite/PostgreSQL:
//! [`storage`]), the trial loop of a worker that trains each trial in its own process and run
//! directory ([`worker`], its output in the trial's `train.log`: [`trial_log`]), and the search
//! from end to end ([`runner`]).

pub mod gp;
pub mod oracle;
pub mod runner;
pub mod space;
pub mod storage;
pub mod study;
pub mod trial_log;
pub mod worker;

pub use oracle::{Acquisition, Direction, Oracle, Strategy, Trial, TrialStatus};
pub use space::{Assignment, SearchSpace};
