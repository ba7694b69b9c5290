//! PNG plots: per system, each link's uplink rate and the application goodput
//! over time; and every system's goodput in one chart. Link events are marked.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

use crate::run::SystemRun;
use crate::scenario::Scenario;

const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
/// Plotted lines are 500 ms moving averages of the 100 ms buckets.
const SMOOTH: usize = 5;

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
            .map(|(l, series)| Line { name: format!("link {} (wire)", l.name), points: smooth(series) })
            .collect();
        if !s.goodput_series.is_empty() {
            lines.push(Line { name: "TCP goodput".into(), points: smooth(&s.goodput_series) });
        }
        let path = out.join(format!("{}.png", file_name(&s.system)));
        chart(&path, &format!("{} — {}: uplink rate per link", scn.name(), s.system), scn, &lines)?;
        files.push(path);
    }
    let lines: Vec<Line> = run
        .iter()
        .filter(|s| !s.goodput_series.is_empty())
        .map(|s| Line { name: s.system.clone(), points: smooth(&s.goodput_series) })
        .collect();
    if !lines.is_empty() {
        let path = out.join("goodput.png");
        chart(&path, &format!("{} — TCP goodput per system", scn.name()), scn, &lines)?;
        files.push(path);
    }
    Ok(files)
}

fn chart(path: &Path, title: &str, scn: &Scenario, lines: &[Line]) -> Result<()> {
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
    c.configure_mesh().x_desc("time (s)").y_desc("Mbit/s (500 ms average)").label_style(("sans-serif", 14)).draw()?;
    for e in &scn.events {
        let label = format!("{} {:?}", e.link.as_deref().unwrap_or(""), e.action).trim().to_lowercase();
        c.draw_series(LineSeries::new([(e.at_s, 0.0), (e.at_s, y_max)], BLACK.stroke_width(1)))?;
        c.draw_series(std::iter::once(Text::new(label, (e.at_s + 0.1, y_max * 0.96), ("sans-serif", 13))))?;
    }
    for (i, l) in lines.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        c.draw_series(LineSeries::new(l.points.iter().copied(), color.stroke_width(2)))?
            .label(l.name.clone())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], color.stroke_width(2)));
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
