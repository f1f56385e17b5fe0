//! Which instruction-set paths this binary runs.

/// A one-line description of the SIMD paths in use, for benchmark and example output.
///
/// GEMM (and the training convolutions built on it) detects AVX-512 or AVX2/FMA at run
/// time; so do the inference kernels (implicit convolution, packed linear layer), which
/// run their own AVX-512 kernels or fall back to GEMM; the elementwise kernels use the
/// vector width `wide` was compiled for.
pub fn describe() -> String {
    format!(
        "gemm: {}; inference: {}; elementwise: {}",
        gemm_path(),
        inference_path(),
        elementwise_path()
    )
}

fn inference_path() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            return "implicit conv + packed linear avx512 (detected at run time)";
        }
    }
    "im2col + gemm (no avx512)"
}

fn gemm_path() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        // matrixmultiply's own dispatch order: its AVX-512 kernel first, then FMA+AVX2.
        if std::is_x86_feature_detected!("avx512f") {
            return "matrixmultiply avx512 (detected at run time)";
        }
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            return "matrixmultiply avx2+fma (detected at run time)";
        }
        if std::is_x86_feature_detected!("avx") {
            return "matrixmultiply avx (detected at run time)";
        }
        "matrixmultiply sse2"
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        "matrixmultiply portable"
    }
}

fn elementwise_path() -> &'static str {
    if cfg!(all(target_arch = "x86_64", target_feature = "avx2")) {
        "wide f32x8 on avx2 (compiled in)"
    } else if cfg!(target_arch = "x86_64") {
        "wide f32x8 as two sse halves (build with -C target-cpu=native for avx2)"
    } else {
        "wide f32x8 portable"
    }
}
