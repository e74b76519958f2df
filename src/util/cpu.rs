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

/// The widest instruction set the matrix products run with on this CPU: "AVX-512" (avx512f,
/// in a build with the `avx512` feature), "AVX2+FMA", or "baseline" (SSE2, or not x86-64).
pub fn matrix_isa() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if cfg!(feature = "avx512") && std::arch::is_x86_feature_detected!("avx512f") {
            return "AVX-512";
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            return "AVX2+FMA";
        }
    }
    "baseline"
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
