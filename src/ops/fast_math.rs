//! Vectorised exp, sigmoid and tanh over slices, for the LSTM's gates (where the scalar
//! library calls dominated the recurrence). Cephes' single-precision exp: range reduction by
//! ln 2 in two parts and a degree-6 polynomial, within 2 ulp of the exact value, written
//! branch-free so that the compiler vectorises it; compiled for AVX-512, AVX2+FMA or the
//! baseline and chosen at run time.

#[inline(always)]
fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // 1.5·2^23: adding and subtracting it rounds to the nearest integer in float arithmetic.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let n = (x * LOG2E + ROUND) - ROUND;
    let r = x - n * 0.693_359_4 + n * 2.121_944_4e-4;
    let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 1.666_666_5e-1)
        * r
        + 0.5;
    let y = p * r * r + r + 1.0;
    y * f32::from_bits(((n as i32 + 127) << 23) as u32)
}

#[inline(always)]
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

#[inline(always)]
fn tanh(x: f32) -> f32 {
    // tanh x = 1 − 2/(e^{2x} + 1): no cancellation for large |x|, and near 0 an absolute error
    // of ~1e-7, as for sigmoid.
    1.0 - 2.0 / (exp(2.0 * x) + 1.0)
}

macro_rules! dispatch {
    ($name:ident, $scalar:ident, $doc:literal) => {
        #[doc = $doc]
        pub(crate) fn $name(values: &mut [f32]) {
            #[inline(always)]
            fn body(values: &mut [f32]) {
                for v in values {
                    *v = $scalar(*v);
                }
            }
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,fma")]
                unsafe fn wide(values: &mut [f32]) {
                    body(values)
                }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn narrow(values: &mut [f32]) {
                    body(values)
                }
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: AVX-512F is available (checked).
                    return unsafe { wide(values) };
                }
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: AVX2 and FMA are available (checked).
                    return unsafe { narrow(values) };
                }
            }
            body(values)
        }
    };
}

dispatch!(
    sigmoid_in_place,
    sigmoid,
    "`v ← 1/(1 + e^−v)` for every value."
);
dispatch!(tanh_in_place, tanh, "`v ← tanh v` for every value.");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_sigmoid_tanh_stay_within_a_few_ulp() {
        // A dense sweep of the range the gates see, plus the saturated ends.
        let xs: Vec<f32> = (-20_000..=20_000)
            .map(|i| i as f32 * 1e-3)
            .chain([-90.0, 90.0])
            .collect();
        let mut s = xs.clone();
        let mut t = xs.clone();
        sigmoid_in_place(&mut s);
        tanh_in_place(&mut t);
        for ((&x, &s), &t) in xs.iter().zip(&s).zip(&t) {
            let exact_s = 1.0 / (1.0 + (-(x as f64)).exp());
            let exact_t = (x as f64).tanh();
            // Relative 1e-6 for sigmoid (outputs in (0, 1)); absolute 3e-7 for tanh near 0.
            assert!(
                (s as f64 - exact_s).abs() <= 1e-6 * exact_s.max(1e-30) + 1e-30,
                "sigmoid({x}) = {s}, exact {exact_s}"
            );
            assert!(
                (t as f64 - exact_t).abs() <= 1e-6 * exact_t.abs() + 3e-7,
                "tanh({x}) = {t}, exact {exact_t}"
            );
            let e = exp(x.clamp(-80.0, 80.0)) as f64;
            let exact_e = (x.clamp(-80.0, 80.0) as f64).exp();
            assert!(
                (e - exact_e).abs() <= 3e-7 * exact_e,
                "exp({x}) = {e}, exact {exact_e}"
            );
        }
    }
}
