//! Self-contained SVG charts: lines (with optional confidence bands) and grouped bars.
//!
//! A 640×400 canvas, axes with "nice" ticks (1, 2, 5 × 10ᵏ), a legend on the right; text is
//! XML-escaped. The output opens in any browser and renders on GitHub.

use std::fmt::Write;

const W: f64 = 640.0;
const H: f64 = 400.0;
const LEFT: f64 = 62.0;
const RIGHT: f64 = 170.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 52.0;
const COLORS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

/// One line of a [`LineChart`].
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    /// Legend text.
    pub name: String,
    /// `(x, y)` points, drawn in order.
    pub points: Vec<(f64, f64)>,
    /// Optional `(lo, hi)` per point, drawn as a shaded band.
    pub band: Option<Vec<(f64, f64)>>,
    /// Dashed line.
    pub dashed: bool,
}

/// A line chart.
#[derive(Clone, Debug, PartialEq)]
pub struct LineChart {
    /// Title above the plot.
    pub title: String,
    /// x-axis label.
    pub x_label: String,
    /// y-axis label.
    pub y_label: String,
    /// The lines.
    pub series: Vec<Series>,
    /// Fixed y range (otherwise from the data).
    pub y_range: Option<(f64, f64)>,
}

/// A grouped bar chart: one group of bars per category, one bar per group entry.
#[derive(Clone, Debug, PartialEq)]
pub struct BarChart {
    /// Title above the plot.
    pub title: String,
    /// y-axis label.
    pub y_label: String,
    /// Category labels along x.
    pub categories: Vec<String>,
    /// `(legend name, one value per category)`.
    pub groups: Vec<(String, Vec<f64>)>,
    /// Fixed y range (otherwise from 0 and the data).
    pub y_range: Option<(f64, f64)>,
}

/// Escapes `&`, `<`, `>`, `"` for SVG text and attributes.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Tick positions covering `[lo, hi]` with a 1-2-5 step, about `n` of them.
fn ticks(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    let span = (hi - lo).max(1e-12);
    let raw = span / n.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let mut t = (lo / step).ceil() * step;
    let mut out = Vec::new();
    while t <= hi + step * 1e-9 {
        out.push(if t.abs() < step * 1e-9 { 0.0 } else { t });
        t += step;
    }
    out
}

fn fmt_tick(v: f64) -> String {
    let s = format!("{v:.4}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// How a legend entry is drawn.
#[derive(Clone, Copy)]
enum Swatch {
    /// A line sample, as in line charts.
    Line { dashed: bool },
    /// A filled square, as for bars.
    Square,
}

/// A plot frame: maps data to pixels and draws axes, ticks, labels, title.
struct Frame {
    x: (f64, f64),
    y: (f64, f64),
}

impl Frame {
    fn px(&self, x: f64) -> f64 {
        LEFT + (x - self.x.0) / (self.x.1 - self.x.0).max(1e-12) * (W - LEFT - RIGHT)
    }
    fn py(&self, y: f64) -> f64 {
        H - BOTTOM - (y - self.y.0) / (self.y.1 - self.y.0).max(1e-12) * (H - TOP - BOTTOM)
    }

    fn open(&self, out: &mut String, title: &str, x_label: &str, y_label: &str, x_ticks: bool) {
        let _ = write!(
            out,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12"><rect width="{W}" height="{H}" fill="white"/><text x="{}" y="22" text-anchor="middle" font-size="15">{}</text>"#,
            (LEFT + W - RIGHT) / 2.0,
            escape(title)
        );
        for t in ticks(self.y.0, self.y.1, 6) {
            let y = self.py(t);
            let _ = write!(
                out,
                r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#e5e5e5"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
                W - RIGHT,
                LEFT - 6.0,
                y + 4.0,
                fmt_tick(t)
            );
        }
        if x_ticks {
            for t in ticks(self.x.0, self.x.1, 7) {
                let x = self.px(t);
                let _ = write!(
                    out,
                    r##"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}" stroke="#333"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
                    H - BOTTOM,
                    H - BOTTOM + 5.0,
                    H - BOTTOM + 18.0,
                    fmt_tick(t)
                );
            }
        }
        let _ = write!(
            out,
            r##"<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{:.1}" stroke="#333"/><line x1="{LEFT}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#333"/><text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text><text transform="translate(16,{:.1}) rotate(-90)" text-anchor="middle">{}</text>"##,
            H - BOTTOM,
            H - BOTTOM,
            W - RIGHT,
            H - BOTTOM,
            (LEFT + W - RIGHT) / 2.0,
            H - 12.0,
            escape(x_label),
            (TOP + H - BOTTOM) / 2.0,
            escape(y_label)
        );
    }

    /// Legend entry `i`: a line (dashed or not) or, for bars, a filled square, then the name.
    fn legend(out: &mut String, i: usize, name: &str, swatch: Swatch) {
        let y = TOP + 10.0 + 18.0 * i as f64;
        let x = W - RIGHT + 12.0;
        let color = COLORS[i % COLORS.len()];
        let _ = match swatch {
            Swatch::Line { dashed } => {
                let dash = if dashed {
                    r#" stroke-dasharray="5,3""#
                } else {
                    ""
                };
                write!(
                    out,
                    r#"<line x1="{x:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="{color}" stroke-width="2.5"{dash}/>"#,
                    x + 22.0,
                )
            }
            Swatch::Square => write!(
                out,
                r#"<rect x="{:.1}" y="{:.1}" width="12" height="12" fill="{color}"/>"#,
                x + 5.0,
                y - 6.0,
            ),
        };
        let _ = write!(
            out,
            r#"<text x="{:.1}" y="{:.1}">{}</text>"#,
            x + 28.0,
            y + 4.0,
            escape(name)
        );
    }
}

/// `(min, max)` of values, widened when flat, with a little padding.
fn range(values: impl Iterator<Item = f64>, pad: f64) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        });
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let span = (hi - lo).max(hi.abs().max(1.0) * 1e-3);
    (lo - pad * span, hi + pad * span)
}

impl LineChart {
    /// The chart as an SVG document.
    pub fn to_svg(&self) -> String {
        let xs = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.0));
        let ys = self.series.iter().flat_map(|s| {
            s.points.iter().map(|p| p.1).chain(
                s.band
                    .iter()
                    .flat_map(|b| b.iter().flat_map(|(l, h)| [*l, *h])),
            )
        });
        let frame = Frame {
            x: range(xs, 0.0),
            y: self.y_range.unwrap_or_else(|| range(ys, 0.05)),
        };
        let mut out = String::new();
        frame.open(&mut out, &self.title, &self.x_label, &self.y_label, true);
        for (i, s) in self.series.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            if let Some(band) = &s.band {
                let upper = s
                    .points
                    .iter()
                    .zip(band)
                    .map(|(p, b)| format!("{:.1},{:.1}", frame.px(p.0), frame.py(b.1)));
                let lower = s
                    .points
                    .iter()
                    .zip(band)
                    .rev()
                    .map(|(p, b)| format!("{:.1},{:.1}", frame.px(p.0), frame.py(b.0)));
                let pts: Vec<String> = upper.chain(lower).collect();
                let _ = write!(
                    out,
                    r#"<polygon points="{}" fill="{color}" fill-opacity="0.15" stroke="none"/>"#,
                    pts.join(" ")
                );
            }
            let pts: Vec<String> = s
                .points
                .iter()
                .map(|p| format!("{:.1},{:.1}", frame.px(p.0), frame.py(p.1)))
                .collect();
            let dash = if s.dashed {
                r#" stroke-dasharray="5,3""#
            } else {
                ""
            };
            let _ = write!(
                out,
                r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"{dash}/>"#,
                pts.join(" ")
            );
            for p in &s.points {
                let _ = write!(
                    out,
                    r#"<circle cx="{:.1}" cy="{:.1}" r="2.5" fill="{color}"/>"#,
                    frame.px(p.0),
                    frame.py(p.1)
                );
            }
            Frame::legend(&mut out, i, &s.name, Swatch::Line { dashed: s.dashed });
        }
        out.push_str("</svg>\n");
        out
    }
}

impl BarChart {
    /// The chart as an SVG document.
    pub fn to_svg(&self) -> String {
        let values = self
            .groups
            .iter()
            .flat_map(|g| g.1.iter().copied())
            .chain([0.0]);
        let frame = Frame {
            x: (0.0, self.categories.len().max(1) as f64),
            y: self.y_range.unwrap_or_else(|| range(values, 0.05)),
        };
        let mut out = String::new();
        frame.open(&mut out, &self.title, "", &self.y_label, false);
        let slot = (frame.px(1.0) - frame.px(0.0)) * 0.8 / self.groups.len().max(1) as f64;
        for (c, cat) in self.categories.iter().enumerate() {
            let x0 = frame.px(c as f64) + (frame.px(1.0) - frame.px(0.0)) * 0.1;
            for (g, (_, vals)) in self.groups.iter().enumerate() {
                let Some(&v) = vals.get(c) else { continue };
                let (y, y0) = (frame.py(v), frame.py(0.0f64.max(frame.y.0)));
                let _ = write!(
                    out,
                    r#"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{}: {v:.4}</title></rect><text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="10">{v:.3}</text>"#,
                    x0 + slot * g as f64,
                    y.min(y0),
                    slot * 0.92,
                    (y0 - y).abs(),
                    COLORS[g % COLORS.len()],
                    escape(cat),
                    x0 + slot * (g as f64 + 0.46),
                    y.min(y0) - 3.0
                );
            }
            let _ = write!(
                out,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
                frame.px(c as f64 + 0.5),
                H - BOTTOM + 18.0,
                escape(cat)
            );
        }
        for (g, (name, _)) in self.groups.iter().enumerate() {
            Frame::legend(&mut out, g, name, Swatch::Square);
        }
        out.push_str("</svg>\n");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_nice_and_cover_the_range() {
        assert_eq!(
            ticks(0.0, 100.0, 5),
            vec![0.0, 20.0, 40.0, 60.0, 80.0, 100.0]
        );
        let t = ticks(0.0, 0.3, 6);
        assert_eq!(t.len(), 7);
        assert!(
            t.windows(2).all(|w| (w[1] - w[0] - 0.05).abs() < 1e-12),
            "{t:?}"
        );
        assert_eq!(ticks(-3.0, 7.0, 5), vec![-2.0, 0.0, 2.0, 4.0, 6.0]);
    }

    #[test]
    fn charts_are_well_formed_and_escaped() {
        let line = LineChart {
            title: "acc <vs> ε & more".into(),
            x_label: "ε".into(),
            y_label: "%".into(),
            series: vec![Series {
                name: "LPM".into(),
                points: vec![(0.0, 90.0), (0.1, 10.0)],
                band: Some(vec![(88.0, 92.0), (8.0, 12.0)]),
                dashed: false,
            }],
            y_range: Some((0.0, 100.0)),
        }
        .to_svg();
        assert!(line.starts_with("<svg") && line.trim_end().ends_with("</svg>"));
        assert!(line.contains("acc &lt;vs&gt; ε &amp; more") && line.contains("<polygon"));
        assert_eq!(line.matches("<circle").count(), 2);
        let bars = BarChart {
            title: "λ".into(),
            y_label: "λ".into(),
            categories: vec!["fc1".into(), "fc2".into()],
            groups: vec![
                ("before".into(), vec![0.6, 0.6]),
                ("after".into(), vec![0.46, 0.03]),
            ],
            y_range: Some((0.0, 1.0)),
        }
        .to_svg();
        assert_eq!(bars.matches("<rect").count(), 1 + 4 + 2); // background, bars, legend
    }
}
