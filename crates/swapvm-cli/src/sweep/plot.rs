//! `swapvm sweep SPEC --plot COUNTER --x AXIS [--series AXIS]`: a counter
//! of a study's finished runs against one axis, one line per value of
//! another, each point the mean over the runs that share its x and series
//! values (the seeds, and any axis not plotted) with an error bar of one
//! standard deviation. `miss_ratio` (major faults per access) against
//! `machine.ram_mib` is a trace's miss-ratio curve.
//!
//! Drawn as the run folder's plots are (swapvm-machine's `plot`): SVG
//! only, text as `<text>` elements, the Tableau colours.

use super::results::{self, Status};
use super::spec::{Run, Spec};
use anyhow::{bail, Context, Result};
use plotters::prelude::*;
use std::path::Path;

const SIZE: (u32, u32) = (1000, 600);
const FONT: &str = "sans-serif";
const COLOURS: [RGBColor; 7] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(127, 127, 127),
];

/// A run's value of `counter`, from its report.
fn counter_value(r: &swapvm_machine::Report, counter: &str) -> Option<f64> {
    let vm = |n: &str| {
        r.vmstat
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| *v as f64)
    };
    match counter {
        "miss_ratio" => Some(vm("pgmajfault")? / (r.accesses.max(1) as f64)),
        "wall_ms" => Some(r.wall_ms as f64),
        "ticks" => Some(r.ticks as f64),
        "accesses" => Some(r.accesses as f64),
        n => vm(n),
    }
}

/// Mean and sample standard deviation.
pub fn mean_sd(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n.max(1.0);
    if v.len() < 2 {
        return (mean, 0.0);
    }
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}

/// One line: its label and its points `(x, mean, sd)`.
pub type Line = (String, Vec<(f64, f64, f64)>);

/// The lines of a plot from the done runs. x values must be numbers (the
/// category's position is used otherwise, in the spec's order).
pub fn lines(
    spec: &Spec,
    runs: &[Run],
    out: &Path,
    counter: &str,
    x: &str,
    series: Option<&str>,
) -> Result<Vec<Line>> {
    let keys = spec.axis_keys();
    let xi = keys.iter().position(|k| k == x).with_context(|| {
        format!(
            "--x {x}: not an axis of {} (axes: {})",
            spec.path.display(),
            keys.join(", ")
        )
    })?;
    let si = series
        .map(|s| {
            keys.iter()
                .position(|k| k == s)
                .with_context(|| format!("--series {s}: not an axis of {}", spec.path.display()))
        })
        .transpose()?;
    // Categories in study order, for x values that are not numbers.
    let mut cats: Vec<String> = Vec::new();
    for r in runs {
        let v = &r.axis_values[xi].1;
        if !cats.contains(v) {
            cats.push(v.clone());
        }
    }
    let xval = |v: &str| {
        v.parse::<f64>()
            .ok()
            .unwrap_or_else(|| cats.iter().position(|c| c == v).unwrap_or(0) as f64)
    };
    // (series label, x) -> values
    let mut groups: Vec<(String, f64, Vec<f64>)> = Vec::new();
    let mut any = false;
    for r in runs {
        let st = results::state(out, r);
        let (Status::Done, Some(rep)) = (st.status, &st.report) else {
            continue;
        };
        let Some(v) = counter_value(rep, counter) else {
            bail!("--plot {counter}: not a counter (a vmstat name, wall_ms, ticks, accesses, miss_ratio)");
        };
        any = true;
        let label = si.map_or_else(
            || counter.to_owned(),
            |i| format!("{}={}", keys[i], r.axis_values[i].1),
        );
        let xv = xval(&r.axis_values[xi].1);
        match groups
            .iter_mut()
            .find(|(l, gx, _)| *l == label && *gx == xv)
        {
            Some((_, _, vals)) => vals.push(v),
            None => groups.push((label, xv, vec![v])),
        }
    }
    if !any {
        bail!("{}: no run of the study is done yet", out.display());
    }
    let mut out_lines: Vec<Line> = Vec::new();
    for (label, xv, vals) in groups {
        let (m, sd) = mean_sd(&vals);
        match out_lines.iter_mut().find(|(l, _)| *l == label) {
            Some((_, pts)) => pts.push((xv, m, sd)),
            None => out_lines.push((label, vec![(xv, m, sd)])),
        }
    }
    for (_, pts) in &mut out_lines {
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    Ok(out_lines)
}

/// Writes the plot's SVG to `path`.
pub fn write(
    spec: &Spec,
    runs: &[Run],
    out: &Path,
    counter: &str,
    x: &str,
    series: Option<&str>,
    path: &Path,
) -> Result<()> {
    let lines = lines(spec, runs, out, counter, x, series)?;
    let svg = draw(&lines, counter, x, &spec.path.display().to_string())?;
    std::fs::write(path, svg).with_context(|| format!("{}: cannot write", path.display()))
}

fn draw(lines: &[Line], counter: &str, x: &str, title: &str) -> Result<String> {
    let pts = lines.iter().flat_map(|(_, p)| p.iter());
    let (mut x0, mut x1, mut y1) = (f64::MAX, f64::MIN, 0.0f64);
    for &(xv, m, sd) in pts {
        x0 = x0.min(xv);
        x1 = x1.max(xv);
        y1 = y1.max(m + sd);
    }
    let pad = ((x1 - x0) * 0.05).max(0.5);
    let y1 = if y1 > 0.0 { y1 * 1.08 } else { 1.0 };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        let e = |e: DrawingAreaErrorKind<_>| anyhow::anyhow!("cannot draw the plot: {e}");
        root.fill(&WHITE).map_err(e)?;
        let ylabel = if counter == "miss_ratio" {
            "miss ratio (major faults per access)".to_owned()
        } else {
            counter.to_owned()
        };
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!("{ylabel} vs {x} ({title}; mean ± 1 sd)"),
                (FONT, 20),
            )
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(90)
            .build_cartesian_2d(x0 - pad..x1 + pad, 0.0..y1)
            .map_err(e)?;
        chart
            .configure_mesh()
            .x_desc(x)
            .y_desc(ylabel)
            .label_style((FONT, 14))
            .draw()
            .map_err(e)?;
        for (i, (label, pts)) in lines.iter().enumerate() {
            let c = COLOURS[i % COLOURS.len()];
            chart
                .draw_series(LineSeries::new(
                    pts.iter().map(|p| (p.0, p.1)),
                    c.stroke_width(2),
                ))
                .map_err(e)?
                .label(label.clone())
                .legend(move |(lx, ly)| {
                    PathElement::new(vec![(lx, ly), (lx + 20, ly)], c.stroke_width(2))
                });
            // Error bars: a vertical stroke with caps a small share of the
            // x range wide (plotters' ErrorBar needs a feature the
            // workspace leaves off).
            let cap = (x1 - x0 + 2.0 * pad) * 0.006;
            chart
                .draw_series(pts.iter().flat_map(|&(xv, m, sd)| {
                    [
                        PathElement::new(vec![(xv, m - sd), (xv, m + sd)], c.stroke_width(1)),
                        PathElement::new(
                            vec![(xv - cap, m - sd), (xv + cap, m - sd)],
                            c.stroke_width(1),
                        ),
                        PathElement::new(
                            vec![(xv - cap, m + sd), (xv + cap, m + sd)],
                            c.stroke_width(1),
                        ),
                    ]
                }))
                .map_err(e)?;
            chart
                .draw_series(
                    pts.iter()
                        .map(|&(xv, m, _)| Circle::new((xv, m), 3, c.filled())),
                )
                .map_err(e)?;
        }
        chart
            .configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE.mix(0.8))
            .label_font((FONT, 14))
            .draw()
            .map_err(e)?;
        root.present().map_err(e)?;
    }
    Ok(svg)
}
