//! The course notebook this study reproduces: its nets, its recipe and its published figures, in
//! one place for the study runner and its report.

/// The notebook's six nets, in its order.
pub const NOTEBOOK_NETS: [&str; 6] = ["fnn1", "fnn2", "fnn3", "cnn1", "cnn2", "cnn3"];
/// The notebook's augmentation (part g).
pub const NOTEBOOK_AUGMENTATION: &str = "rotation=20,shear=20,zoom=0.1,hflip,fill=nearest";
/// The notebook's search space for the tuned CNN (part e), as a ferkit search-space TOML.
pub const TUNE_SPACE: &str = include_str!("../../experiments/tune_cnn.toml");

/// The notebook's test accuracies, for the step they belong to.
pub const NOTEBOOK_FNN: f64 = 43.69;
pub const NOTEBOOK_CNN: f64 = 54.00;
pub const NOTEBOOK_TUNED: f64 = 55.73;
pub const NOTEBOOK_TRANSFER: f64 = 48.59;
pub const NOTEBOOK_AUGMENTED: f64 = 58.26;
