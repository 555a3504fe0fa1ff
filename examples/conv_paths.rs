//! GFLOP per CPU-second of the convolution paths at the network's shapes (batch 4 × 640 frames,
//! and batch 1 × 1875 for the evaluation), the implicit-GEMM and stride-2 kernels
//! (`MTOSI_CONV_IMPLICIT=1`, the default) against im2col + GEMM (`=0`) and the opt-in Winograd
//! F(2×2, 3×3) path (`MTOSI_CONV_WINOGRAD=1`; its GFLOP are the direct convolution's). CPU
//! time (user + system, all threads) is what a loaded machine disturbs least.
//!
//!     cargo run --release --example conv_paths [filter]

use std::time::Instant;

use mtosi::ops::conv2d::{conv2d_backward, conv2d_forward, IMPLICIT_VAR, WINOGRAD_VAR};

fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    ticks as f64 / 100.0
}

/// (name, n, c_in, h, w, c_out, k, pad); k = 2 is the 2×2 stride-2 downsampling.
type Layer = (
    &'static str,
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
);
const LAYERS: [Layer; 15] = [
    ("enc1.conv2 16-16 640x176", 4, 16, 640, 176, 16, 3, 1),
    ("enc1.ds 16-16 2x2s2 640x176", 4, 16, 640, 176, 16, 2, 0),
    ("enc3.ds 64-64 2x2s2 160x44", 4, 64, 160, 44, 64, 2, 0),
    (
        "eval enc1.ds 16-16 2x2s2 1875x176",
        1,
        16,
        1875,
        176,
        16,
        2,
        0,
    ),
    ("eval enc3.ds 64-64 2x2s2 468x44", 1, 64, 468, 44, 64, 2, 0),
    ("enc2.conv1 16-32 320x88", 4, 16, 320, 88, 32, 3, 1),
    ("enc2.conv2 32-32 320x88", 4, 32, 320, 88, 32, 3, 1),
    ("enc3.conv2 64-64 160x44", 4, 64, 160, 44, 64, 3, 1),
    ("enc4.conv2 128-128 80x22", 4, 128, 80, 22, 128, 3, 1),
    ("dec1 flipped 192-96 80x22", 4, 192, 80, 22, 96, 3, 1),
    ("dec3 flipped 48-24 320x88", 4, 48, 320, 88, 24, 3, 1),
    (
        "enc2.conv2 data grad 32-16 320x88",
        4,
        32,
        320,
        88,
        16,
        3,
        1,
    ),
    ("eval enc2.conv2 32-32 937x88", 1, 32, 937, 88, 32, 3, 1),
    ("eval enc4.conv2 128-128 234x22", 1, 128, 234, 22, 128, 3, 1),
    ("eval dec1 192-96 234x22", 1, 192, 234, 22, 96, 3, 1),
];

fn main() {
    let filter = std::env::args().nth(1).unwrap_or_default();
    let mut seed = 1u32;
    let mut values = |len: usize| -> Vec<f32> {
        (0..len)
            .map(|_| {
                seed = seed.wrapping_mul(1664525).wrapping_add(1013904223);
                (seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5
            })
            .collect()
    };
    for (name, n, c_in, h, w, c_out, k, pad) in LAYERS {
        if !name.contains(&filter) {
            continue;
        }
        let inp = values(n * c_in * h * w);
        let weight = values(c_out * c_in * k * k);
        let bias = values(c_out);
        let stride = if k == 2 { 2 } else { 1 };
        let (h_out, w_out) = (
            (h + 2 * pad - k) / stride + 1,
            (w + 2 * pad - k) / stride + 1,
        );
        let mut out = vec![0.0; n * c_out * h_out * w_out];
        let d_out = values(out.len());
        let mut d_inp = vec![0.0; inp.len()];
        let mut d_weight = vec![0.0; weight.len()];
        let gflop = 2.0 * (n * c_out * h_out * w_out * c_in * k * k) as f64 * 1e-9;
        let mut line = format!("{name:36}");
        for (path, implicit, winograd) in [
            ("im2col", "0", "0"),
            ("implicit", "1", "0"),
            ("winograd", "1", "1"),
        ] {
            if path == "winograd" && !(k == 3 && c_in > 16 && c_out > 16) {
                continue;
            }
            std::env::set_var(IMPLICIT_VAR, implicit);
            std::env::set_var(WINOGRAD_VAR, winograd);
            let time = |f: &mut dyn FnMut()| {
                f();
                let (cpu0, wall0) = (cpu_seconds(), Instant::now());
                let mut reps = 0;
                while wall0.elapsed().as_secs_f64() < 1.5 || reps < 3 {
                    f();
                    reps += 1;
                }
                (cpu_seconds() - cpu0) / reps as f64
            };
            let forward = time(&mut || {
                conv2d_forward(
                    &mut out,
                    &inp,
                    &weight,
                    Some(&bias),
                    n,
                    c_in,
                    h,
                    w,
                    c_out,
                    k,
                    stride,
                    pad,
                )
            });
            let backward = time(&mut || {
                conv2d_backward(
                    Some(&mut d_inp),
                    &mut d_weight,
                    None,
                    &d_out,
                    &inp,
                    &weight,
                    n,
                    c_in,
                    h,
                    w,
                    c_out,
                    k,
                    stride,
                    pad,
                )
            });
            line += &format!(
                "  {path}: fwd {:6.1} ms {:5.0} GF/cpu-s, bwd {:6.1} ms {:5.0} GF/cpu-s",
                forward * 1e3,
                gflop / forward,
                backward * 1e3,
                2.0 * gflop / backward
            );
        }
        println!("{line}");
    }
}
