//! Choosing where tensors live: the pure-Rust Flex CPU backend by default, Burn's wgpu backend
//! with the `gpu` cargo feature.

use crate::error::Result;
use burn::prelude::Device;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceKind {
    /// Burn's Flex backend on the CPU (always available).
    #[default]
    Cpu,
    /// Burn's wgpu backend (build with `--features gpu`).
    Gpu,
}

impl crate::util::choice::Choice for DeviceKind {
    const CHOICES: &'static [(&'static str, Self, &'static str)] = &[
        ("cpu", DeviceKind::Cpu, "Burn's Flex backend on the CPU (always available)"),
        ("gpu", DeviceKind::Gpu, "Burn's wgpu backend (build with `--features gpu`)"),
    ];
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
                crate::bail!(
                    Unsupported,
                    "this ferkit was built without GPU support: rebuild with `cargo build --release --features gpu`"
                )
            }
        }
    }

    /// The device to use a trained net on: the one it was trained on when this build has it,
    /// otherwise the CPU (weights are stored device-independently, so a net trained on a GPU
    /// evaluates and predicts on a CPU-only build), with a note for the user when it is not the
    /// training device.
    pub fn inference_device(self) -> (Device, Option<&'static str>) {
        match self.device() {
            Ok(device) => (device, None),
            Err(_) => (
                Device::flex(),
                Some("note: the net was trained on the GPU; this ferkit has no GPU support, so it runs on the CPU"),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gpu_run_is_used_on_the_cpu_when_the_build_has_no_gpu() {
        let (device, note) = DeviceKind::Gpu.inference_device();
        #[cfg(not(feature = "gpu"))]
        assert!(device == Device::flex() && note.is_some_and(|n| n.contains("runs on the CPU")));
        #[cfg(feature = "gpu")]
        assert!(device == Device::wgpu(Default::default()) && note.is_none());
        assert_eq!(DeviceKind::Cpu.inference_device(), (Device::flex(), None));
    }
}
