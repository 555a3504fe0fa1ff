//! Augmentation that makes clean synthesized audio sound recorded: a room (a generated impulse
//! response), microphone and instrument-body colouring (random peaking EQ and a roll-off),
//! background noise, and gain. Applied on the fly to 16 kHz training crops, seeded, so a run
//! is reproducible from its seed.
//!
//! Each effect is drawn with its own probability; [`Augmentation::none`] leaves audio alone
//! (the paper trained on the dry renders with FluidSynth's own reverb only).

use realfft::RealFftPlanner;

use crate::rng::Rng;

/// What to draw and how wide. Ranges are `(low, high)`, drawn uniformly.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Augmentation {
    /// Probability of convolving with a generated room impulse response.
    pub room_probability: f32,
    /// Reverberation time (60 dB decay), seconds.
    pub rt60_s: (f32, f32),
    /// Energy of the reverberant part relative to the direct sound, dB.
    pub wet_db: (f32, f32),
    /// Probability of applying the EQ (peaking bands and a roll-off).
    pub eq_probability: f32,
    /// Number of peaking bands (inclusive range).
    pub eq_bands: (usize, usize),
    /// Gain of each band, dB (drawn in ±this).
    pub eq_gain_db: f32,
    /// Cut-off of the high roll-off (a first-order low-pass), Hz.
    pub rolloff_hz: (f32, f32),
    /// Probability of adding noise.
    pub noise_probability: f32,
    /// Signal-to-noise ratio of the added (pink or white) noise, dB.
    pub snr_db: (f32, f32),
    /// Gain of the result, dB (the log of the CQT adds 1e-5, so level matters a little).
    pub gain_db: (f32, f32),
}

impl Augmentation {
    /// No augmentation: the audio is returned unchanged.
    pub fn none() -> Self {
        Self {
            room_probability: 0.0,
            rt60_s: (0.2, 1.6),
            wet_db: (-12.0, 0.0),
            eq_probability: 0.0,
            eq_bands: (1, 4),
            eq_gain_db: 9.0,
            rolloff_hz: (3000.0, 8000.0),
            noise_probability: 0.0,
            snr_db: (20.0, 50.0),
            gain_db: (0.0, 0.0),
        }
    }

    /// Recorded-sounding defaults: rooms of RT60 0.2–1.6 s, EQ of up to ±9 dB, noise at
    /// 20–50 dB SNR, gain ±6 dB.
    pub fn recorded() -> Self {
        Self {
            room_probability: 0.7,
            eq_probability: 0.8,
            noise_probability: 0.5,
            gain_db: (-6.0, 6.0),
            ..Self::none()
        }
    }

    /// Whether this configuration can change audio at all.
    pub fn is_none(&self) -> bool {
        self.room_probability <= 0.0
            && self.eq_probability <= 0.0
            && self.noise_probability <= 0.0
            && self.gain_db == (0.0, 0.0)
    }

    /// Augments `audio` (mono, `sample_rate_hz`) in place with draws from `rng`. The same
    /// generator state gives the same result. Audio stays finite.
    pub fn apply(&self, audio: &mut [f32], sample_rate_hz: u32, rng: &mut Rng) {
        if self.is_none() || audio.is_empty() {
            return;
        }
        let rate = sample_rate_hz as f32;
        // Every draw is taken whether or not its effect applies, so one effect's probability
        // does not shift the others' draws.
        let room = rng.uniform_f32() < self.room_probability;
        let rt60 = range(rng, self.rt60_s);
        let wet_db = range(rng, self.wet_db);
        let room_seed = rng.next_u64();
        let eq = rng.uniform_f32() < self.eq_probability;
        let eq_seed = rng.next_u64();
        let noise = rng.uniform_f32() < self.noise_probability;
        let snr_db = range(rng, self.snr_db);
        let noise_seed = rng.next_u64();
        let gain_db = range(rng, self.gain_db);

        if room {
            let ir = room_impulse_response(rt60, wet_db, rate, &mut Rng::new(room_seed));
            convolve_in_place(audio, &ir);
        }
        if eq {
            let mut eq_rng = Rng::new(eq_seed);
            let bands = eq_rng.range_usize(self.eq_bands.0, self.eq_bands.1.max(self.eq_bands.0));
            for _ in 0..bands {
                // Centre frequencies log-uniform over 80 Hz .. 0.4 × rate.
                let low = 80f32.ln();
                let high = (0.4 * rate).ln();
                let centre = eq_rng.range_f32(low, high).exp();
                let gain = eq_rng.range_f32(-self.eq_gain_db, self.eq_gain_db);
                let q = eq_rng.range_f32(0.5, 2.5);
                Biquad::peaking(centre, q, gain, rate).run(audio);
            }
            let cutoff = range(&mut eq_rng, self.rolloff_hz).min(0.45 * rate);
            one_pole_lowpass(audio, cutoff, rate);
        }
        if noise {
            add_noise(audio, snr_db, &mut Rng::new(noise_seed));
        }
        let gain = 10f32.powf(gain_db / 20.0);
        for x in audio.iter_mut() {
            *x *= gain;
        }
    }
}

fn range(rng: &mut Rng, (low, high): (f32, f32)) -> f32 {
    if high > low {
        rng.range_f32(low, high)
    } else {
        low
    }
}

/// A standard normal draw (Box–Muller).
fn gaussian(rng: &mut Rng) -> f32 {
    let u1 = rng.uniform_f64().max(1e-300);
    let u2 = rng.uniform_f64();
    ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
}

/// A room: the direct sound (a unit impulse), a few early reflections within 5–40 ms, then
/// exponentially decaying Gaussian noise that falls 60 dB in `rt60_s`, scaled so the
/// reverberant energy is `wet_db` relative to the direct sound. Cut where it has decayed 50 dB.
pub fn room_impulse_response(rt60_s: f32, wet_db: f32, rate: f32, rng: &mut Rng) -> Vec<f32> {
    let length = ((rt60_s * 50.0 / 60.0) * rate).ceil().max(2.0) as usize;
    // Amplitude decays 60 dB (×1e-3) over rt60: exp(-ln(1000) t / rt60).
    let decay_per_sample = (1000f32).ln() / (rt60_s.max(1e-3) * rate);
    let mut tail: Vec<f32> = (0..length)
        .map(|n| gaussian(rng) * (-decay_per_sample * n as f32).exp())
        .collect();
    tail[0] = 0.0;
    // A short onset ramp, so the diffuse tail builds up rather than starting at full level.
    let ramp = (0.005 * rate) as usize;
    for (n, x) in tail.iter_mut().enumerate().take(ramp) {
        *x *= n as f32 / ramp as f32;
    }
    for _ in 0..4 {
        let at = ((rng.range_f32(0.005, 0.04) * rate) as usize).min(length - 1);
        tail[at] += rng.range_f32(-0.6, 0.6);
    }
    let energy: f32 = tail.iter().map(|x| x * x).sum();
    let scale = if energy > 0.0 {
        (10f32.powf(wet_db / 10.0) / energy).sqrt()
    } else {
        0.0
    };
    let mut ir: Vec<f32> = tail.iter().map(|x| x * scale).collect();
    ir[0] = 1.0;
    ir
}

/// `audio ← (audio * kernel)[..audio.len()]`, the causal linear convolution cut to the input's
/// length, by real FFT.
pub fn convolve_in_place(audio: &mut [f32], kernel: &[f32]) {
    let n = audio.len();
    if n == 0 || kernel.is_empty() {
        return;
    }
    let size = (n + kernel.len() - 1).next_power_of_two();
    let mut planner = RealFftPlanner::<f32>::new();
    let forward = planner.plan_fft_forward(size);
    let inverse = planner.plan_fft_inverse(size);
    let mut a = vec![0.0f32; size];
    a[..n].copy_from_slice(audio);
    let mut b = vec![0.0f32; size];
    b[..kernel.len()].copy_from_slice(kernel);
    let mut spec_a = forward.make_output_vec();
    let mut spec_b = forward.make_output_vec();
    // The buffers have the plan's lengths, so the transforms cannot fail.
    forward
        .process(&mut a, &mut spec_a)
        .expect("FFT buffers sized by the plan");
    forward
        .process(&mut b, &mut spec_b)
        .expect("FFT buffers sized by the plan");
    for (x, y) in spec_a.iter_mut().zip(&spec_b) {
        *x *= y;
    }
    // realfft's inverse wants purely real DC and Nyquist bins; the product of two real
    // signals' spectra has them, up to rounding.
    spec_a[0].im = 0.0;
    if let Some(last) = spec_a.last_mut() {
        last.im = 0.0;
    }
    inverse
        .process(&mut spec_a, &mut a)
        .expect("FFT buffers sized by the plan");
    let norm = 1.0 / size as f32;
    for (out, x) in audio.iter_mut().zip(&a) {
        *out = x * norm;
    }
}

/// A biquad section (RBJ cookbook), direct form I.
#[derive(Debug, Clone, Copy)]
struct Biquad {
    b: [f32; 3],
    a: [f32; 2],
}

impl Biquad {
    fn peaking(centre_hz: f32, q: f32, gain_db: f32, rate: f32) -> Self {
        let amp = 10f32.powf(gain_db / 40.0);
        let w0 = 2.0 * std::f32::consts::PI * centre_hz / rate;
        let alpha = w0.sin() / (2.0 * q);
        let cos = w0.cos();
        let a0 = 1.0 + alpha / amp;
        Self {
            b: [
                (1.0 + alpha * amp) / a0,
                (-2.0 * cos) / a0,
                (1.0 - alpha * amp) / a0,
            ],
            a: [(-2.0 * cos) / a0, (1.0 - alpha / amp) / a0],
        }
    }

    fn run(&self, audio: &mut [f32]) {
        let (mut x1, mut x2, mut y1, mut y2) = (0.0f32, 0.0f32, 0.0f32, 0.0f32);
        for x in audio.iter_mut() {
            let y =
                self.b[0] * *x + self.b[1] * x1 + self.b[2] * x2 - self.a[0] * y1 - self.a[1] * y2;
            x2 = x1;
            x1 = *x;
            y2 = y1;
            y1 = y;
            *x = y;
        }
    }
}

/// First-order low-pass at `cutoff_hz` (6 dB/octave): a gentle microphone / body roll-off.
fn one_pole_lowpass(audio: &mut [f32], cutoff_hz: f32, rate: f32) {
    let k = (-2.0 * std::f32::consts::PI * cutoff_hz / rate).exp();
    let mut y = 0.0f32;
    for x in audio.iter_mut() {
        y = (1.0 - k) * *x + k * y;
        *x = y;
    }
}

/// Adds white or pink noise (half the time each) at `snr_db` below the audio's RMS. Silent
/// audio gets no noise.
fn add_noise(audio: &mut [f32], snr_db: f32, rng: &mut Rng) {
    let signal_rms = rms(audio);
    if signal_rms == 0.0 {
        return;
    }
    let pink = rng.uniform_f32() < 0.5;
    let mut noise: Vec<f32> = (0..audio.len()).map(|_| gaussian(rng)).collect();
    if pink {
        // Paul Kellet's economy pink filter.
        let (mut b0, mut b1, mut b2) = (0.0f32, 0.0f32, 0.0f32);
        for x in noise.iter_mut() {
            b0 = 0.99765 * b0 + *x * 0.0990460;
            b1 = 0.96300 * b1 + *x * 0.2965164;
            b2 = 0.57000 * b2 + *x * 1.0526913;
            *x = b0 + b1 + b2 + *x * 0.1848;
        }
    }
    let scale =
        (signal_rms / rms(&noise).max(1e-30) * 10f64.powf(-f64::from(snr_db) / 20.0)) as f32;
    for (x, n) in audio.iter_mut().zip(&noise) {
        *x += n * scale;
    }
}

/// Root mean square, summed in f64 so long crops lose nothing.
fn rms(x: &[f32]) -> f64 {
    (x.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>() / x.len() as f64).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(len: usize) -> Vec<f32> {
        (0..len)
            .map(|n| (2.0 * std::f32::consts::PI * 440.0 * n as f32 / 16_000.0).sin() * 0.5)
            .collect()
    }

    #[test]
    fn none_leaves_audio_unchanged() {
        let mut audio = tone(4000);
        Augmentation::none().apply(&mut audio, 16_000, &mut Rng::new(1));
        assert_eq!(audio, tone(4000));
    }

    #[test]
    fn the_same_seed_gives_the_same_audio_and_another_seed_another() {
        let augment = Augmentation::recorded();
        let run = |seed| {
            let mut audio = tone(16_000);
            augment.apply(&mut audio, 16_000, &mut Rng::new(seed));
            audio
        };
        assert_eq!(run(7), run(7));
        let differing = (1..6).filter(|&s| run(s) != run(7)).count();
        assert_eq!(differing, 5);
        assert!(run(7).iter().all(|x| x.is_finite()));
    }

    #[test]
    fn fft_convolution_equals_the_direct_sum() {
        let mut rng = Rng::new(3);
        let signal = rng.vec_f32(300, -1.0, 1.0);
        let kernel = rng.vec_f32(37, -1.0, 1.0);
        let mut fast = signal.clone();
        convolve_in_place(&mut fast, &kernel);
        for (n, &got) in fast.iter().enumerate() {
            let want: f32 = (0..kernel.len())
                .filter(|&k| k <= n)
                .map(|k| kernel[k] * signal[n - k])
                .sum();
            assert!((got - want).abs() <= 1e-4, "sample {n}: {got} vs {want}");
        }
    }

    #[test]
    fn the_room_decays_by_its_rt60_and_has_its_wet_energy() {
        let rate = 16_000.0;
        let ir = room_impulse_response(0.8, -6.0, rate, &mut Rng::new(5));
        assert_eq!(ir[0], 1.0);
        let wet: f32 = ir[1..].iter().map(|x| x * x).sum();
        assert!((10.0 * wet.log10() + 6.0).abs() < 0.01, "wet energy {wet}");
        // Energy in 50 ms windows 0.1 s and 0.5 s in: 60 dB per 0.8 s → 30 dB apart.
        let window = |t: f32| {
            let start = (t * rate) as usize;
            ir[start..start + 800].iter().map(|x| x * x).sum::<f32>()
        };
        let drop_db = 10.0 * (window(0.1) / window(0.5)).log10();
        assert!((drop_db - 30.0).abs() < 4.0, "decay {drop_db} dB");
    }

    #[test]
    fn noise_lands_at_its_snr() {
        let clean = tone(32_000);
        let mut noisy = clean.clone();
        add_noise(&mut noisy, 20.0, &mut Rng::new(9));
        let noise: Vec<f32> = noisy.iter().zip(&clean).map(|(a, b)| a - b).collect();
        let snr = 20.0 * (rms(&clean) / rms(&noise)).log10();
        assert!((snr - 20.0).abs() < 0.01, "snr {snr}");
    }

    #[test]
    fn peaking_eq_boosts_its_centre_by_its_gain() {
        let mut audio = tone(32_000);
        Biquad::peaking(440.0, 1.0, 6.0, 16_000.0).run(&mut audio);
        let gain_db = 20.0 * (rms(&audio[16_000..]) / rms(&tone(32_000)[16_000..])).log10();
        assert!((gain_db - 6.0).abs() < 0.1, "gain {gain_db}");
    }
}
