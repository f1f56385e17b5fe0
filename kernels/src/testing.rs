//! Values shared by the unit tests of the kernels that are checked against another path
//! bit for bit.

/// Deterministic integers in -2..=2 as f32: small enough that every product and sum the
/// tests form is exact, whatever the order of summation.
pub(crate) fn integers(len: usize, seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % 5) as f32 - 2.0
        })
        .collect()
}
