//! PyTorch's default initialisation drawn from our own seeded, counter-based generator.
//!
//! Every tensor draws from its own stream, keyed by the seed and the tensor's state_dict name,
//! and value `i` of a stream is a pure function of `i` (splitmix64's finaliser on a Weyl
//! sequence). So initial weights do not depend on the order layers are built in, and
//! `tools/reference/model_torch.py:deterministic_init` computes the same bits in NumPy, which
//! is why the golden fixtures need not store initial weights.

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn fnv1a64(text: &str) -> u64 {
    text.bytes().fold(0xCBF2_9CE4_8422_2325, |h, byte| {
        (h ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01B3)
    })
}

/// `count` values in [0, 1), multiples of 2⁻²⁴ (so exact in f32 and f64), from the stream `name`.
pub fn uniform_unit(seed: u64, name: &str, count: usize) -> impl Iterator<Item = f64> {
    let stream = mix64(seed.wrapping_mul(GOLDEN).wrapping_add(GOLDEN)) ^ fnv1a64(name);
    (1..=count as u64).map(move |i| {
        let bits = mix64(stream.wrapping_add(i.wrapping_mul(GOLDEN))) >> 40;
        bits as f64 / (1u64 << 24) as f64
    })
}

/// `count` values uniform in [-bound, bound): PyTorch's default for conv, linear and LSTM
/// parameters (kaiming_uniform with a = √5 gives bound = 1/√fan_in for weights and biases).
pub fn uniform_symmetric(seed: u64, name: &str, count: usize, bound: f64) -> Vec<f32> {
    uniform_unit(seed, name, count)
        .map(|u| ((2.0 * u - 1.0) * bound) as f32)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_reproducible_distinct_and_in_range() {
        let a = uniform_symmetric(5, "lstm1.weight_ih_l0", 1000, 0.25);
        assert_eq!(a, uniform_symmetric(5, "lstm1.weight_ih_l0", 1000, 0.25));
        assert_ne!(a, uniform_symmetric(6, "lstm1.weight_ih_l0", 1000, 0.25));
        assert_ne!(a, uniform_symmetric(5, "lstm1.weight_hh_l0", 1000, 0.25));
        assert!(a.iter().all(|v| (-0.25..0.25).contains(v)));
        let mean = a.iter().map(|&v| v as f64).sum::<f64>() / a.len() as f64;
        // The mean of 1000 uniforms on ±0.25 has standard deviation 0.0046.
        assert!(mean.abs() < 0.02, "mean {mean}");
    }

    #[test]
    fn matches_the_numpy_generator() {
        // uniform_unit(2026, "fixture.input.T32", 3) in tools/reference/model_torch.py.
        let values: Vec<f64> = uniform_unit(2026, "fixture.input.T32", 3).collect();
        assert_eq!(
            values,
            [0.39500248432159424, 0.9888132214546204, 0.925213634967804]
        );
    }
}
