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

    /// The device to use a trained net on: the one it was trained on when this build has it,
    /// otherwise the CPU (weights are stored device-independently, so a net trained on a GPU
    /// evaluates and predicts on a CPU-only build; a note on stderr says so).
    pub fn inference_device(self) -> Device {
        match self.device() {
            Ok(device) => device,
            Err(_) => {
                eprintln!(
                    "note: the net was trained on the GPU; this ferkit has no GPU support, so it runs on the CPU"
                );
                Device::flex()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gpu_run_is_used_on_the_cpu_when_the_build_has_no_gpu() {
        let device = DeviceKind::Gpu.inference_device();
        #[cfg(not(feature = "gpu"))]
        assert_eq!(device, Device::flex());
        #[cfg(feature = "gpu")]
        assert_eq!(device, Device::wgpu(Default::default()));
        assert_eq!(DeviceKind::Cpu.inference_device(), Device::flex());
    }
}
