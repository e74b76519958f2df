//! Choosing where tensors live: the pure-Rust Flex CPU backend by default, Burn's wgpu backend
//! with the `gpu` cargo feature.

use anyhow::Result;
use burn::prelude::Device;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DeviceKind {
    /// Burn's Flex backend on the CPU (always available).
    #[default]
    Cpu,
    /// Burn's wgpu backend (build with `--features gpu`).
    Gpu,
}

impl DeviceKind {
    /// The plain (inference) device.
    pub fn device(self) -> Result<Device> {
        match self {
            DeviceKind::Cpu => Ok(Device::flex()),
            #[cfg(feature = "gpu")]
            DeviceKind::Gpu => Ok(Device::wgpu(Default::default())),
            #[cfg(not(feature = "gpu"))]
            DeviceKind::Gpu => {
                anyhow::bail!(
                    "this ferkit was built without GPU support: rebuild with `cargo build --release --features gpu`"
                )
            }
        }
    }
}
