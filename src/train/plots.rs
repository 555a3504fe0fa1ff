//! The run's pictures: the training-loss and validation curves (the paper's Fig. 3) as SVG
//! line charts, redrawn from `metrics.jsonl`, and a reference-vs-estimate piano roll of a
//! validation clip as a PNG. Every file is written atomically.

use std::fmt::Write as _;
use std::path::Path;

use crate::fsutil;

/// One named series of (x, y) points.
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

const COLOURS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

fn nice_ticks(low: f64, high: f64, count: usize) -> Vec<f64> {
    if high.is_nan() || low.is_nan() || high <= low {
        return vec![low];
    }
    let raw = (high - low) / count as f64;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * magnitude);
    let first = (low / step).ceil() * step;
    (0..)
        .map(|i| first + i as f64 * step)
        .take_while(|v| *v <= high + step * 1e-9)
        .collect()
}

fn format_tick(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 1000.0 || v.abs() < 0.01 {
        format!("{v:.2e}")
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// An SVG line chart of `series` (non-finite points are left out), with axes, ticks and a legend.
pub fn line_chart_svg(title: &str, x_label: &str, y_label: &str, series: &[Series]) -> String {
    let (width, height) = (720.0, 420.0);
    let (left, right, top, bottom) = (70.0, 170.0, 40.0, 50.0);
    let finite: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|s| s.points.iter().copied())
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .collect();
    let (mut x0, mut x1, mut y0, mut y1) = finite.iter().fold(
        (
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ),
        |(a, b, c, d), &(x, y)| (a.min(x), b.max(x), c.min(y), d.max(y)),
    );
    if finite.is_empty() {
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    if y1 <= y0 {
        let pad = if y0 == 0.0 { 1.0 } else { y0.abs() * 0.1 };
        y0 -= pad;
        y1 += pad;
    }
    let plot_w = width - left - right;
    let plot_h = height - top - bottom;
    let sx = |x: f64| left + (x - x0) / (x1 - x0) * plot_w;
    let sy = |y: f64| top + plot_h - (y - y0) / (y1 - y0) * plot_h;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="15">{}</text>"#,
        left + plot_w / 2.0,
        escape(title)
    );
    let _ = writeln!(
        svg,
        r#"<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="black"/>"#
    );
    for t in nice_ticks(x0, x1, 8) {
        let x = sx(t);
        let _ = writeln!(
            svg,
            r##"<line x1="{x:.1}" y1="{}" x2="{x:.1}" y2="{}" stroke="#ddd"/><text x="{x:.1}" y="{}" text-anchor="middle">{}</text>"##,
            top,
            top + plot_h,
            top + plot_h + 16.0,
            format_tick(t)
        );
    }
    for t in nice_ticks(y0, y1, 6) {
        let y = sy(t);
        let _ = writeln!(
            svg,
            r##"<line x1="{left}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            left + plot_w,
            left - 6.0,
            y + 4.0,
            format_tick(t)
        );
    }
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
        left + plot_w / 2.0,
        height - 12.0,
        escape(x_label)
    );
    let _ = writeln!(
        svg,
        r#"<text x="18" y="{}" text-anchor="middle" transform="rotate(-90 18 {})">{}</text>"#,
        top + plot_h / 2.0,
        top + plot_h / 2.0,
        escape(y_label)
    );
    for (i, s) in series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let points: Vec<String> = s
            .points
            .iter()
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y)))
            .collect();
        if points.len() == 1 {
            let _ = writeln!(
                svg,
                r#"<circle cx="{}" cy="{}" r="3" fill="{colour}"/>"#,
                points[0].split(',').next().unwrap(),
                points[0].split(',').nth(1).unwrap()
            );
        } else if !points.is_empty() {
            let _ = writeln!(
                svg,
                r#"<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{}"/>"#,
                points.join(" ")
            );
        }
        let ly = top + 14.0 + 18.0 * i as f64;
        let lx = left + plot_w + 12.0;
        let _ = writeln!(
            svg,
            r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{colour}" stroke-width="2"/><text x="{}" y="{}">{}</text>"#,
            lx + 20.0,
            lx + 26.0,
            ly + 4.0,
            escape(&s.name)
        );
    }
    svg.push_str("</svg>\n");
    svg
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The values of `key` (a `metrics.jsonl` field such as `val_note_f1`) per epoch, from a run's
/// metrics lines; lines without it are skipped.
pub fn metric_points(metrics_jsonl: &str, key: &str) -> Vec<(f64, f64)> {
    metrics_jsonl
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| Some((v["epoch"].as_f64()?, v[key].as_f64()?)))
        .collect()
}

/// Redraws `loss.svg` (training and validation loss per epoch) and, when the metrics hold
/// validation scores, `validation-f1.svg` (frame, note and note-with-offset F1 per epoch), from
/// the run's `metrics.jsonl`.
pub fn write_curves(metrics_path: &Path, plots_dir: &Path) -> std::io::Result<()> {
    let text = std::fs::read_to_string(metrics_path)?;
    let lines: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let series = |name: &str, key: &str| Series {
        name: name.into(),
        points: lines
            .iter()
            .filter_map(|v| Some((v["epoch"].as_f64()?, v[key].as_f64()?)))
            .collect(),
    };
    let loss = [
        series("training loss", "loss"),
        series("validation loss", "val_loss"),
    ];
    fsutil::write_bytes_atomic(
        &plots_dir.join("loss.svg"),
        line_chart_svg("Loss (binary cross-entropy)", "epoch", "loss", &loss).as_bytes(),
    )?;
    let f1: Vec<Series> = [
        ("frame F1", "val_frame_f1"),
        ("note F1", "val_note_f1"),
        ("note-with-offset F1", "val_note_with_offset_f1"),
    ]
    .iter()
    .map(|(n, k)| series(n, k))
    .filter(|s| !s.points.is_empty())
    .collect();
    if !f1.is_empty() {
        fsutil::write_bytes_atomic(
            &plots_dir.join("validation-f1.svg"),
            line_chart_svg("Validation F1", "epoch", "F1", &f1).as_bytes(),
        )?;
    }
    Ok(())
}

/// At most this many frames (≈ 32 s) of a validation recording are drawn.
pub const ROLL_PLOT_FRAMES: usize = 1000;

/// A PNG of two piano rolls (`frames × keys`, row-major) one above the other, time left to
/// right, low keys at the bottom: the reference (white where a key sounds) on top, the
/// estimate's probabilities below (dark to bright), parted by a grey line; at most
/// [`ROLL_PLOT_FRAMES`] frames. `title` goes into the PNG's text metadata.
pub fn write_roll_plot(
    path: &Path,
    title: &str,
    reference: &[f32],
    estimate: &[f32],
    keys: usize,
) -> std::io::Result<()> {
    let frames = (reference.len() / keys)
        .min(estimate.len() / keys)
        .min(ROLL_PLOT_FRAMES);
    let key_px = 3;
    let panel_h = keys * key_px;
    let (width, height) = (frames.max(1), 2 * panel_h + 2);
    let mut rgb = vec![0u8; width * height * 3];
    let mut put = |x: usize, y: usize, c: [u8; 3]| {
        let i = (y * width + x) * 3;
        rgb[i..i + 3].copy_from_slice(&c);
    };
    for frame in 0..frames {
        for key in 0..keys {
            let r = reference[frame * keys + key];
            let e = estimate[frame * keys + key];
            let ref_colour = if r > 0.5 { [255, 255, 255] } else { [0, 0, 30] };
            let est_colour = crate::spectrogram::picture::colormap(e);
            for dy in 0..key_px {
                let row = (keys - 1 - key) * key_px + dy;
                put(frame, row, ref_colour);
                put(frame, panel_h + 2 + row, est_colour);
            }
        }
    }
    for x in 0..width {
        put(x, panel_h, [128, 128, 128]);
        put(x, panel_h + 1, [128, 128, 128]);
    }
    fsutil::write_atomic(path, |w| {
        let mut encoder = png::Encoder::new(w, width as u32, height as u32);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        encoder
            .add_text_chunk(
                "Title".into(),
                format!("{title}: reference (top), estimate (bottom)"),
            )
            .map_err(std::io::Error::other)?;
        let mut writer = encoder.write_header().map_err(std::io::Error::other)?;
        writer
            .write_image_data(&rgb)
            .map_err(std::io::Error::other)?;
        writer.finish().map_err(std::io::Error::other)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_draws_one_polyline_per_series_and_skips_nan() {
        let series = [
            Series {
                name: "a".into(),
                points: vec![(1.0, 0.5), (2.0, f64::NAN), (3.0, 0.25)],
            },
            Series {
                name: "b <&>".into(),
                points: vec![(1.0, 0.1), (2.0, 0.2)],
            },
        ];
        let svg = line_chart_svg("t", "x", "y", &series);
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("b &lt;&amp;&gt;"));
        assert!(!svg.contains("NaN"));
    }

    #[test]
    fn ticks_cover_the_range_with_round_steps() {
        let t = nice_ticks(0.0, 1.0, 5);
        assert_eq!(t.first(), Some(&0.0));
        assert!((t.last().unwrap() - 1.0).abs() < 1e-12);
        assert!(t.windows(2).all(|w| (w[1] - w[0] - 0.2).abs() < 1e-12));
    }

    #[test]
    fn the_roll_png_has_two_panels() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.png");
        let keys = 88;
        let frames = 20;
        let mut reference = vec![0.0; frames * keys];
        reference[5 * keys + 40] = 1.0;
        let estimate = vec![0.3; frames * keys];
        write_roll_plot(&path, "x", &reference, &estimate, keys).unwrap();
        let decoder =
            png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&path).unwrap()));
        let reader = decoder.read_info().unwrap();
        assert_eq!(
            (reader.info().width, reader.info().height),
            (20, 2 * 88 * 3 + 2)
        );
    }
}
