//! The text of `uerzoo --version` / `-V`: version, git commit, enabled features and the CPU
//! paths the kernels take on this machine.

/// `0.1.0` and, one per line, the commit it was built from, the cargo features compiled in
/// and the CPU paths (`uerzoo` prefixes the first line).
pub fn text() -> String {
    let commit = match option_env!("UERZOO_GIT_COMMIT") {
        Some(hash) => hash.to_string(),
        None => "unknown (not built from a git clone)".to_string(),
    };
    let mut features = Vec::new();
    if cfg!(feature = "cuda") {
        features.push("cuda");
    }
    if cfg!(feature = "wgpu") {
        features.push("wgpu");
    }
    if cfg!(feature = "ndarray") {
        features.push("ndarray");
    }
    let features = if features.is_empty() {
        "none (CPU backend only; build with --features cuda or wgpu for GPUs)".to_string()
    } else {
        format!("{} (and the CPU backend)", features.join(", "))
    };
    format!(
        "{}\ncommit:   {commit}\nfeatures: {features}\ncpu:      {}",
        env!("CARGO_PKG_VERSION"),
        cpu()
    )
}

/// The f32 kernels' SIMD path, the int8 kernels' path (`--dtype int8`, VNNI where the CPU has
/// it), the bf16 kernels' path (`--dtype bf16`, AVX-512 BF16 where the CPU has it) and
/// whether the CPU has VNNI and BF16.
fn cpu() -> String {
    let path = uerzoo::kernels::cpu::simd_path();
    #[cfg(target_arch = "x86_64")]
    {
        let yes = |b: bool| if b { "yes" } else { "no" };
        let vnni = is_x86_feature_detected!("avx512vnni") || is_x86_feature_detected!("avxvnni");
        let bf16 = is_x86_feature_detected!("avx512bf16");
        format!(
            "{path} kernels (f32); int8 {} (--dtype int8); bf16 {} (--dtype bf16); VNNI {}, BF16 {}",
            uerzoo::kernels::int8::Path::best().name(),
            uerzoo::kernels::bf16::Bf16Path::best().name(),
            yes(vnni),
            yes(bf16)
        )
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        format!("{path} kernels ({})", std::env::consts::ARCH)
    }
}
