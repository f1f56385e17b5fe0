//! The dot product of the small-batch linear kernel, which is limited by how fast it streams
//! the weights.
//!
//! NOTE: the portable build targets SSE2, where a product and a sum take two instructions
//! on four lanes; with a batch of one the weights are read once per call and the loop runs
//! near memory speed only with fused multiply-adds on wider vectors, so the AVX2+FMA path is
//! chosen at run time like matrixmultiply's kernels.

/// Independent accumulators: enough to hide the latency of the fused multiply-add.
const LANES: usize = 32;

/// `sum of a[i] * b[i]`.
///
/// # Panics
/// If the slices differ in length.
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "dot: lengths differ");
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU has the features `dot_fma` is compiled for.
            return unsafe { dot_fma(a, b) };
        }
    }
    dot_lanes(a, b, |x, y, acc| acc + x * y)
}

/// [`dot_lanes`] compiled for AVX2 with fused multiply-adds.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_fma(a: &[f32], b: &[f32]) -> f32 {
    dot_lanes(a, b, f32::mul_add)
}

/// The dot product in [`LANES`] interleaved partial sums, then blocks of eight (a channel
/// of a flattened map is often a multiple of 8 but not of 32 long), each step
/// `acc = step(a, b, acc)`.
#[inline(always)]
fn dot_lanes(a: &[f32], b: &[f32], step: impl Fn(f32, f32, f32) -> f32) -> f32 {
    let mut acc = [0.0_f32; LANES];
    let (a_blocks, b_blocks) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (a_rest, b_rest) = (a_blocks.remainder(), b_blocks.remainder());
    for (x, y) in a_blocks.zip(b_blocks) {
        for lane in 0..LANES {
            acc[lane] = step(x[lane], y[lane], acc[lane]);
        }
    }
    let (a_eights, b_eights) = (a_rest.chunks_exact(8), b_rest.chunks_exact(8));
    let tail: f32 = a_eights
        .remainder()
        .iter()
        .zip(b_eights.remainder())
        .map(|(&x, &y)| x * y)
        .sum();
    // NOTE: separate accumulators, so that the main loop keeps its own in registers.
    let mut eights = [0.0_f32; 8];
    for (x, y) in a_eights.zip(b_eights) {
        for lane in 0..8 {
            eights[lane] = step(x[lane], y[lane], eights[lane]);
        }
    }
    acc.iter().sum::<f32>() + eights.iter().sum::<f32>() + tail
}
