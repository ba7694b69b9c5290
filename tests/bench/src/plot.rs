//! PNG plots: per system, each link's uplink rate and the application goodput
//! over time; per bond system, each path's rate as its controller ran it
//! against the link's true rate; and every system's goodput in one chart.
//! Link events are marked.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

use crate::run::{true_rate_steps, SystemRun};
use crate::scenario::Scenario;

const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
/// Plotted lines are 500 ms moving averages of the 100 ms buckets.
const SMOOTH: usize = 5;
const AVERAGED: &str = "Mbit/s (500 ms average)";

fn smooth(v: &[f64]) -> Vec<(f64, f64)> {
    (0..v.len())
        .map(|i| {
            let lo = i.saturating_sub(SMOOTH - 1);
            let w = &v[lo..=i];
            ((i + 1) as f64 * 0.1, w.iter().sum::<f64>() / w.len() as f64)
        })
        .collect()
}

fn font() -> Result<()> {
    static ONCE: std::sync::OnceLock<std::result::Result<(), String>> = std::sync::OnceLock::new();
    ONCE.get_or_init(|| {
        let bytes = std::fs::read(FONT)
            .map_err(|e| format!("cannot read {FONT} ({e}); `cargo xtask setup` installs fonts-dejavu-core"))?;
        register_font("sans-serif", FontStyle::Normal, Box::leak(bytes.into_boxed_slice()))
            .map_err(|_| format!("{FONT} is not a usable font"))
    })
    .clone()
    .map_err(|e| anyhow::anyhow!(e))
}

fn file_name(label: &str) -> String {
    label.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect()
}

struct Line {
    name: String,
    points: Vec<(f64, f64)>,
    /// Its colour, a palette index: lines that belong together share one.
    hue: usize,
    /// What another line is measured against: dashed, in a lighter shade.
    reference: bool,
}

impl Line {
    fn new(name: String, points: Vec<(f64, f64)>, hue: usize) -> Line {
        Line { name, points, hue, reference: false }
    }
}

/// A step series (from t, value) as a line to `end`: flat between steps,
/// vertical at each.
fn steps(changes: &[(f64, f64)], end: f64) -> Vec<(f64, f64)> {
    let mut points = Vec::new();
    for (i, &(t, v)) in changes.iter().enumerate() {
        let until = changes.get(i + 1).map_or(end, |s| s.0);
        points.extend([(t, v), (until, v)]);
    }
    points
}

/// Per link, the rate its path's bucket ran at (solid) and the link's true
/// uplink rate (dashed, same hue); no lines for a system without a series.
fn estimate_lines(scn: &Scenario, s: &SystemRun) -> Vec<Line> {
    if s.estimate_series.iter().all(Vec::is_empty) {
        return Vec::new();
    }
    let end = s.estimate_series.iter().filter_map(|x| x.last().map(|p| p.0)).fold(scn.duration_s, f64::max);
    let mut lines = Vec::new();
    for (k, (l, series)) in scn.links.iter().zip(&s.estimate_series).enumerate() {
        lines.push(Line::new(format!("{} rate (hint or estimate)", l.name), series.clone(), k));
        lines.push(Line {
            name: format!("{} true rate", l.name),
            points: steps(&true_rate_steps(scn, k), end),
            hue: k,
            reference: true,
        });
    }
    lines
}

/// Draw the plots of one run into `out`; returns the files written.
pub fn draw(scn: &Scenario, run: &[SystemRun], out: &Path) -> Result<Vec<PathBuf>> {
    font()?;
    let mut files = Vec::new();
    for s in run {
        let mut lines: Vec<Line> = scn
            .links
            .iter()
            .zip(&s.link_series)
            .enumerate()
            .map(|(k, (l, series))| Line::new(format!("link {} (wire)", l.name), smooth(series), k))
            .collect();
        if !s.goodput_series.is_empty() {
            lines.push(Line::new("TCP goodput".into(), smooth(&s.goodput_series), lines.len()));
        }
        let path = out.join(format!("{}.png", file_name(&s.system)));
        chart(&path, &format!("{} — {}: uplink rate per link", scn.name(), s.system), AVERAGED, scn, &lines)?;
        files.push(path);
        let lines = estimate_lines(scn, s);
        if !lines.is_empty() {
            let path = out.join(format!("{}-estimates.png", file_name(&s.system)));
            let title = format!("{} — {}: path rate vs true uplink rate", scn.name(), s.system);
            chart(&path, &title, "Mbit/s on the wire", scn, &lines)?;
            files.push(path);
        }
    }
    let lines: Vec<Line> = run
        .iter()
        .filter(|s| !s.goodput_series.is_empty())
        .enumerate()
        .map(|(i, s)| Line::new(s.system.clone(), smooth(&s.goodput_series), i))
        .collect();
    if !lines.is_empty() {
        let path = out.join("goodput.png");
        chart(&path, &format!("{} — TCP goodput per system", scn.name()), AVERAGED, scn, &lines)?;
        files.push(path);
    }
    Ok(files)
}

fn chart(path: &Path, title: &str, y_desc: &str, scn: &Scenario, lines: &[Line]) -> Result<()> {
    let root = BitMapBackend::new(path, (1000, 520)).into_drawing_area();
    root.fill(&WHITE)?;
    let t_max = lines.iter().filter_map(|l| l.points.last().map(|p| p.0)).fold(scn.duration_s, f64::max);
    let y_max = lines.iter().flat_map(|l| l.points.iter().map(|p| p.1)).fold(1.0, f64::max) * 1.15;
    let mut c = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(55)
        .build_cartesian_2d(0.0..t_max, 0.0..y_max)?;
    c.configure_mesh().x_desc("time (s)").y_desc(y_desc).label_style(("sans-serif", 14)).draw()?;
    for e in &scn.events {
        let label = format!("{} {:?}", e.link.as_deref().unwrap_or(""), e.action).trim().to_lowercase();
        c.draw_series(LineSeries::new([(e.at_s, 0.0), (e.at_s, y_max)], BLACK.stroke_width(1)))?;
        c.draw_series(std::iter::once(Text::new(label, (e.at_s + 0.1, y_max * 0.96), ("sans-serif", 13))))?;
    }
    for l in lines {
        let color = Palette99::pick(l.hue).mix(if l.reference { 0.55 } else { 1.0 });
        let points = l.points.iter().copied();
        let anno = if l.reference {
            c.draw_series(DashedLineSeries::new(points, 8, 5, color.stroke_width(2)))?
        } else {
            c.draw_series(LineSeries::new(points, color.stroke_width(2)))?
        };
        anno.label(l.name.clone()).legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], color.stroke_width(2)));
    }
    c.configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .position(SeriesLabelPosition::LowerRight)
        .draw()?;
    root.present().with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::Metrics;

    fn scenario() -> Scenario {
        toml::from_str(
            r#"
            duration_s = 10
            [[link]]
            name = "fast"
            rate_mbit = 10
            [[link]]
            name = "slow"
            rate_mbit = 3
            [[traffic]]
            kind = "tcp-bulk"
            [[event]]
            at_s = 4
            link = "fast"
            action = "down"
            "#,
        )
        .unwrap()
    }

    fn run(estimate_series: Vec<Vec<(f64, f64)>>) -> SystemRun {
        SystemRun {
            system: "bond:min-rtt".into(),
            metrics: Metrics::default(),
            goodput_series: vec![],
            link_series: vec![],
            estimate_series,
        }
    }

    #[test]
    fn steps_hold_each_value_until_the_next() {
        assert_eq!(steps(&[(0.0, 10.0), (4.0, 0.0)], 10.0), vec![(0.0, 10.0), (4.0, 10.0), (4.0, 0.0), (10.0, 0.0)]);
    }

    /// Per link its rate and, in the same hue, its true rate to the last sample.
    #[test]
    fn estimates_are_drawn_beside_the_true_rate_only_where_sampled() {
        let scn = scenario();
        assert!(estimate_lines(&scn, &run(vec![])).is_empty());
        assert!(estimate_lines(&scn, &run(vec![vec![], vec![]])).is_empty());
        let lines = estimate_lines(&scn, &run(vec![vec![(0.3, 9.0), (11.0, 9.5)], vec![(0.3, 3.0)]]));
        let shape: Vec<(&str, usize, bool)> = lines.iter().map(|l| (l.name.as_str(), l.hue, l.reference)).collect();
        assert_eq!(
            shape,
            [
                ("fast rate (hint or estimate)", 0, false),
                ("fast true rate", 0, true),
                ("slow rate (hint or estimate)", 1, false),
                ("slow true rate", 1, true)
            ]
        );
        assert_eq!(lines[0].points, vec![(0.3, 9.0), (11.0, 9.5)]);
        assert_eq!(lines[1].points, vec![(0.0, 10.0), (4.0, 10.0), (4.0, 0.0), (11.0, 0.0)]);
        assert_eq!(lines[3].points, vec![(0.0, 3.0), (11.0, 3.0)]);
    }
}
