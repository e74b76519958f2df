//! Models: net specifications (TOML), the preset registry, the Burn module built from a spec,
//! and Keras-style summaries.

pub mod dtype;
pub mod efficientnet;
pub mod fold;
pub mod model;
pub mod net;
pub mod pytorch_weights;
pub mod registry;
pub mod spec;
pub mod summary;
pub mod transfer;
pub mod vgg16;

pub use model::{Model, ModelSpec};
pub use net::Net;
pub use registry::{PRESETS, RegistryEntry, entry, preset_names, registry, resolve, resolve_net};
pub use spec::NetSpec;
pub use summary::summary;
