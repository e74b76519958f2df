//! Data: FER2013-shaped data sets in memory, how they are read, and how they become tensors.
//!
//! - [`dataset`]: the in-memory form (pixels as `u8`, one [`Split`] per usage) and class names.
//! - [`fer_csv`]: the FER2013 CSV reader (plain or gzip, one file or one file per split).
//! - [`class_names`]: other data sets' class folder names mapped to the seven.
//! - [`image_folder`]: `ROOT/<split>/<class>/<images>` trees.
//! - [`image_io`]: the one image decoder (format from the content, EXIF orientation), also used
//!   for photos.
//! - [`load_report`]: what loading did (rows read, skipped, left out, notes).
//! - [`source`]: picks the reader from what the user pointed at.
//! - [`standardize`]: the notebook's per-image standardisation.
//! - [`batch`]: shuffled mini-batches as Burn tensors.

pub mod augment;
pub mod batch;
pub mod class_names;
pub mod dataset;
pub mod fer_csv;
pub mod image_folder;
pub mod image_io;
pub mod load_report;
pub mod source;
pub mod standardize;

pub use dataset::{ByClass, CLASS_NAMES, Dataset, IMAGE_PIXELS, IMAGE_SIDE, NUM_CLASSES, Split, SplitName};
pub use load_report::LoadReport;
pub use source::{DataSource, LoadOptions};
