//! A spectrogram as a PNG: one pixel per (frame, bin), time left to right, low frequencies at
//! the bottom, the normalised log magnitude through a small dark-to-bright colormap.

use std::path::Path;

use super::features::{log_compress, normalize_imagewise};
use super::{Spectrogram, SpectrogramError};
use crate::fsutil;

/// Control points of the colormap (black, purple, red, orange, pale yellow, like "magma"),
/// evenly spaced over [0, 1] and interpolated linearly.
const COLORMAP: [[u8; 3]; 5] = [
    [0, 0, 4],
    [81, 18, 124],
    [183, 55, 121],
    [252, 137, 97],
    [252, 253, 191],
];

/// The colour of a value in [0, 1] (clamped).
pub fn colormap(value: f32) -> [u8; 3] {
    let x = value.clamp(0.0, 1.0) * (COLORMAP.len() - 1) as f32;
    let i = (x.floor() as usize).min(COLORMAP.len() - 2);
    let frac = x - i as f32;
    std::array::from_fn(|c| {
        let (a, b) = (COLORMAP[i][c] as f32, COLORMAP[i + 1][c] as f32);
        (a + (b - a) * frac).round() as u8
    })
}

/// RGB pixels (`n_frames` wide, `n_bins` high, row-major from the top) of `magnitudes`.
pub fn render_rgb(magnitudes: &Spectrogram) -> Vec<u8> {
    let mut values = magnitudes.values.clone();
    log_compress(&mut values);
    normalize_imagewise(&mut values);
    let (width, height) = (magnitudes.n_frames, magnitudes.n_bins);
    let mut rgb = Vec::with_capacity(width * height * 3);
    for row in 0..height {
        let bin = height - 1 - row;
        for frame in 0..width {
            rgb.extend_from_slice(&colormap(values[bin * width + frame]));
        }
    }
    rgb
}

/// Writes the picture of `magnitudes` (CQT magnitudes, before any log) to `path` atomically.
pub fn write_png(magnitudes: &Spectrogram, path: &Path) -> Result<(), SpectrogramError> {
    let io_err = |source: std::io::Error| SpectrogramError::Io {
        path: path.to_path_buf(),
        source,
    };
    let rgb = render_rgb(magnitudes);
    fsutil::write_atomic(path, |w| {
        let mut encoder =
            png::Encoder::new(w, magnitudes.n_frames as u32, magnitudes.n_bins as u32);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().map_err(std::io::Error::other)?;
        writer
            .write_image_data(&rgb)
            .map_err(std::io::Error::other)?;
        writer.finish().map_err(std::io::Error::other)
    })
    .map_err(io_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colormap_runs_from_dark_to_bright() {
        assert_eq!(colormap(0.0), COLORMAP[0]);
        assert_eq!(colormap(1.0), COLORMAP[4]);
        assert_eq!(colormap(-3.0), COLORMAP[0]);
        let brightness = |c: [u8; 3]| c.iter().map(|&v| v as u32).sum::<u32>();
        assert!((0..10)
            .all(|i| brightness(colormap(i as f32 / 10.0))
                < brightness(colormap((i + 1) as f32 / 10.0))));
    }

    #[test]
    fn low_bins_are_drawn_at_the_bottom() {
        // Bin 0 loud, bin 1 silent, over 2 frames.
        let spec = Spectrogram {
            n_bins: 2,
            n_frames: 2,
            values: vec![1.0, 1.0, 0.0, 0.0],
        };
        let rgb = render_rgb(&spec);
        assert_eq!(&rgb[..3], &COLORMAP[0], "top row is the silent high bin");
        assert_eq!(&rgb[6..9], &COLORMAP[4], "bottom row is the loud low bin");
    }

    #[test]
    fn png_round_trips_through_the_decoder() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.png");
        let spec = Spectrogram {
            n_bins: 3,
            n_frames: 5,
            values: (0..15).map(|i| i as f32).collect(),
        };
        write_png(&spec, &path).unwrap();
        let decoder =
            png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&path).unwrap()));
        let reader = decoder.read_info().unwrap();
        assert_eq!((reader.info().width, reader.info().height), (5, 3));
    }
}
