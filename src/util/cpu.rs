//! What CPU this is and which vector instruction sets the matrix products use on it, for
//! `ferkit bench` and the speed tables (speed differs 2x between CPUs with and without AVX-512).
//!
//! The matrix products (the `gemm` crate, built with its AVX-512 kernels: the `x86-v4`
//! feature) pick their kernels at run time from what the CPU reports, so one binary built for
//! plain x86-64 runs AVX-512 kernels where the CPU has them and AVX2/FMA kernels elsewhere.
//! ferkit's own depthwise convolution of small maps makes the same choice (the `multiversion`
//! crate, `kernels/depthwise_conv2d.rs`); its other kernels are plain x86-64 code. A build
//! without the `avx512` feature (`cargo build --release -p ferkit-cli --no-default-features`, as
//! `bench/isa_ab.sh` does) leaves the AVX-512 kernels out of both, so that one machine can time
//! the AVX2 paths against the AVX-512 ones (Burn's element-wise kernels, through `macerator`,
//! still choose AVX-512 at run time).

/// The CPU's model name (`model name` in /proc/cpuinfo on Linux), or "unknown CPU".
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".to_string())
}

/// The vector instruction set ferkit's own inference kernels (`kernels::conv2d`'s direct
/// convolution, `kernels::dense`) run with on this CPU: AVX-512 (avx512f, in a build with the
/// `avx512` feature), AVX2 with FMA, or `None` (neither, or not x86-64), where they leave the
/// layer to another path.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Isa {
    Avx512,
    Avx2,
}

/// [`Isa`] on this CPU (the standard library caches the CPU's answer).
pub(crate) fn isa() -> Option<Isa> {
    #[cfg(target_arch = "x86_64")]
    {
        if cfg!(feature = "avx512") && is_x86_feature_detected!("avx512f") {
            return Some(Isa::Avx512);
        }
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            return Some(Isa::Avx2);
        }
    }
    None
}

/// [`isa`] as `ferkit bench` names it: "AVX-512", "AVX2+FMA", or "baseline" (SSE2, or not
/// x86-64). The matrix products (`gemm`) dispatch on the same features, with AVX-512 only in a
/// build with the `avx512` feature.
pub fn matrix_isa() -> &'static str {
    match isa() {
        Some(Isa::Avx512) => "AVX-512",
        Some(Isa::Avx2) => "AVX2+FMA",
        None => "baseline",
    }
}

/// "CPU MODEL, N logical cores, matrix products: ISA", one line.
pub fn describe() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{}, {cores} logical cores, matrix products: {}", cpu_model(), matrix_isa())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_description_names_the_cpu_and_an_instruction_set() {
        let line = super::describe();
        assert!(["AVX-512", "AVX2+FMA", "baseline"].iter().any(|isa| line.ends_with(isa)), "{line}");
        assert!(!super::cpu_model().is_empty());
    }
}
