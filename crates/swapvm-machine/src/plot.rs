//! The run folder's plots, as SVG text drawn with plotters.
//!
//! - [`memory_svg`]: resident anonymous memory, free RAM and swap in use
//!   over ticks, with RAM and swap capacity for scale.
//! - [`latency_svg`]: the swap-in and swap-out latency distributions (share
//!   of requests per power-of-two bucket, logarithmic µs axis), all devices
//!   and, with more than one, each device.
//! - [`faults_svg`]: fault and swap I/O rates per tick, per interval.
//!
//! Only plotters' SVG backend is used, without a font feature: text is
//! written as `<text font-family="sans-serif">` and laid out by whatever
//! renders the SVG, so neither building nor plotting needs font files or
//! fontconfig. The price is that plotters estimates text widths, so label
//! areas are sized generously.
//!
//! A long run is drawn from at most [`MAX_POINTS`] points: consecutive rows
//! are merged (levels from the merge's last row, events summed), which
//! keeps rates exact and files small.

use crate::report::{Latency, Report};
use crate::series::{Sample, Series, NR_DELTAS};
use plotters::coord::Shift;
use plotters::prelude::*;
use swapvm_core::VmEvent;

/// Most points per line in a plot.
pub const MAX_POINTS: usize = 1000;
/// Plot size in pixels.
pub(crate) const SIZE: (u32, u32) = (1000, 600);
const FONT: &str = "sans-serif";

/// A plot that could not be drawn.
#[derive(Debug, thiserror::Error)]
#[error("cannot draw {plot}: {message}")]
pub struct PlotError {
    /// Which plot.
    pub plot: &'static str,
    /// plotters' error, as text (its type is generic over the backend).
    pub message: String,
}

/// Converts any plotters error into a [`PlotError`] for `plot`.
pub(crate) fn err<E: std::fmt::Display>(plot: &'static str) -> impl Fn(E) -> PlotError {
    move |e| PlotError {
        plot,
        message: e.to_string(),
    }
}

// Tableau 10, readable on white and distinct in print.
const BLUE: RGBColor = RGBColor(31, 119, 180);
const ORANGE: RGBColor = RGBColor(255, 127, 14);
const GREEN: RGBColor = RGBColor(44, 160, 44);
const RED: RGBColor = RGBColor(214, 39, 40);
const PURPLE: RGBColor = RGBColor(148, 103, 189);
const BROWN: RGBColor = RGBColor(140, 86, 75);
const GREY: RGBColor = RGBColor(127, 127, 127);

/// Pages to MiB.
pub(crate) fn mib(pages: u64) -> f64 {
    pages as f64 * 4096.0 / (1 << 20) as f64
}

/// At most `max` rows (for `max` >= 2): the first row alone, the rest in
/// groups of consecutive rows, each group merged into one row with the
/// levels of its last row and the deltas and interval lengths summed.
pub fn decimate(rows: &[Sample], max: usize) -> Vec<Sample> {
    if rows.len() <= max || max < 2 {
        return rows.to_vec();
    }
    // Keep the first row (the state before the first tick) on its own.
    let (first, rest) = rows.split_at(1);
    let per = rest.len().div_ceil(max - 1);
    let mut out = first.to_vec();
    for group in rest.chunks(per) {
        let Some(last) = group.last() else { continue };
        let mut s = *last;
        s.interval_ticks = group.iter().map(|r| r.interval_ticks).sum();
        s.deltas = [0; NR_DELTAS];
        for r in group {
            for (d, x) in s.deltas.iter_mut().zip(r.deltas) {
                *d += x;
            }
        }
        out.push(s);
    }
    out
}

/// "workload W, seed S" for captions.
pub(crate) fn run_name(r: &Report) -> String {
    format!("{} (seed {})", r.workload, r.seed)
}

pub(crate) fn caption_style() -> TextStyle<'static> {
    (FONT, 24).into_font().into()
}

pub(crate) fn label_style() -> TextStyle<'static> {
    (FONT, 16).into_font().into()
}

/// Draws the chart's legend in its upper right corner.
pub(crate) fn legend<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
    plot: &'static str,
) -> Result<(), PlotError>
where
    DB::ErrorType: 'static,
{
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(label_style())
        .draw()
        .map_err(err(plot))
}

/// A line of `color` in a legend.
pub(crate) fn legend_line(color: RGBColor) -> impl Fn((i32, i32)) -> PathElement<(i32, i32)> {
    move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(3))
}

/// A chart over ticks, as every time plot draws one.
pub(crate) type TimeChart<'a, 'b> = ChartContext<
    'a,
    SVGBackend<'b>,
    Cartesian2d<plotters::coord::types::RangedCoordu64, plotters::coord::types::RangedCoordf64>,
>;

/// A chart of `y` over ticks `0..max_tick` on `area`, with `caption`
/// and the axis descriptions `(x, y)` (no x description: a chart with
/// another below it), its mesh drawn in the house style.
pub(crate) fn time_chart<'a, 'b>(
    area: &'a DrawingArea<SVGBackend<'b>, Shift>,
    plot: &'static str,
    caption: Option<String>,
    max_tick: u64,
    y: std::ops::Range<f64>,
    (x_desc, y_desc): (Option<&str>, &str),
) -> Result<TimeChart<'a, 'b>, PlotError> {
    let mut b = ChartBuilder::on(area);
    if let Some(c) = caption {
        b.caption(c, caption_style());
    }
    let mut chart = b
        .margin(16)
        .x_label_area_size(if x_desc.is_some() { 50 } else { 30 })
        .y_label_area_size(80)
        .build_cartesian_2d(0u64..max_tick, y)
        .map_err(err(plot))?;
    chart
        .configure_mesh()
        .x_desc(x_desc.unwrap_or(""))
        .y_desc(y_desc)
        .y_label_formatter(&|v| format!("{v:.0}"))
        .axis_desc_style(label_style())
        .label_style(label_style())
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(err(plot))?;
    Ok(chart)
}

/// Picks one level column out of a row.
type Level = fn(&Sample) -> u64;

/// RSS, free RAM and swap used over ticks, in MiB.
pub fn memory_svg(r: &Report) -> Result<String, PlotError> {
    const PLOT: &str = "memory.svg";
    let s = &r.series;
    let rows = decimate(&s.rows, MAX_POINTS);
    let max_tick = rows.last().map_or(1, |x| x.tick).max(1);
    let ram = mib(s.ram_pages);
    let swap = mib(s.swap_total_pages);
    let peak = rows
        .iter()
        .map(|x| mib(x.rss_pages.max(x.swap_used_pages).max(x.free_ram_pages)))
        .fold(ram.max(swap), f64::max);
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(err(PLOT))?;
        let caption = format!("Memory and swap over time: {}", run_name(r));
        let mut chart = time_chart(
            &root,
            PLOT,
            Some(caption),
            max_tick,
            0f64..(peak * 1.4).max(10.0),
            (Some("tick"), "MiB"),
        )?;
        let lines: [(&str, RGBColor, Level); 3] = [
            ("RSS (resident anon, all processes)", BLUE, |x| x.rss_pages),
            ("free RAM", GREEN, |x| x.free_ram_pages),
            ("swap used", RED, |x| x.swap_used_pages),
        ];
        for (name, color, f) in lines {
            chart
                .draw_series(LineSeries::new(
                    rows.iter().map(|x| (x.tick, mib(f(x)))),
                    color.stroke_width(2),
                ))
                .map_err(err(PLOT))?
                .label(name)
                .legend(legend_line(color));
        }
        let caps = [
            (format!("RAM size ({ram:.0} MiB)"), GREY, ram),
            (format!("swap size ({swap:.0} MiB)"), BROWN, swap),
        ];
        for (name, color, y) in caps.into_iter().filter(|c| c.2 > 0.0) {
            chart
                .draw_series(LineSeries::new(
                    [(0, y), (max_tick, y)],
                    color.mix(0.6).stroke_width(1),
                ))
                .map_err(err(PLOT))?
                .label(name)
                .legend(legend_line(color));
        }
        legend(&mut chart, PLOT)?;
        root.present().map_err(err(PLOT))?;
    }
    Ok(out)
}

/// Draws one latency histogram's bars (share of requests, %).
fn latency_bars(l: &Latency) -> impl Iterator<Item = (f64, f64, f64)> + '_ {
    let n = l.count.max(1) as f64;
    l.buckets
        .iter()
        .map(move |b| (b.lo_us as f64, b.hi_us as f64, b.count as f64 * 100.0 / n))
}

/// The legend text of a latency series.
fn latency_label(name: &str, l: &Latency) -> String {
    if l.count == 0 {
        return format!("{name}: no requests");
    }
    format!(
        "{name}: {} requests, p50 {} µs, p99 {} µs, p99.9 {} µs, max {} µs",
        l.count, l.p50_us, l.p99_us, l.p999_us, l.max_us
    )
}

/// One latency panel: the read and write histograms over `x` (µs).
fn latency_panel(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    caption: String,
    read: &Latency,
    write: &Latency,
    x: (u64, u64),
) -> Result<(), PlotError> {
    const PLOT: &str = "latency.svg";
    let series = [
        ("swap-in read", BLUE, read),
        ("swap-out write", ORANGE, write),
    ];
    let top = series
        .iter()
        .flat_map(|s| latency_bars(s.2).map(|b| b.2))
        .fold(0.0, f64::max);
    let mut chart = ChartBuilder::on(area)
        .caption(caption, caption_style())
        .margin(16)
        .x_label_area_size(50)
        .y_label_area_size(80)
        .build_cartesian_2d(
            (x.0 as f64..x.1 as f64).log_scale(),
            // At least 0..10 %, so whole-number labels stay distinct.
            0f64..(top * 1.25).clamp(10.0, 100.0),
        )
        .map_err(err(PLOT))?;
    chart
        .configure_mesh()
        .x_desc("latency, µs (log scale; bars are power-of-two buckets)")
        .y_desc("share of requests, %")
        .y_label_formatter(&|v| format!("{v:.0}"))
        .x_label_formatter(&|v| format!("{v:.0}"))
        .axis_desc_style(label_style())
        .label_style(label_style())
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(err(PLOT))?;
    for (name, color, l) in series {
        chart
            .draw_series(
                latency_bars(l).map(|(x0, x1, y)| {
                    Rectangle::new([(x0, 0.0), (x1, y)], color.mix(0.45).filled())
                }),
            )
            .map_err(err(PLOT))?
            .label(latency_label(name, l))
            .legend(move |(x, y)| {
                Rectangle::new([(x, y - 6), (x + 24, y + 6)], color.mix(0.45).filled())
            });
        chart
            .draw_series(
                latency_bars(l)
                    .map(|(x0, x1, y)| Rectangle::new([(x0, 0.0), (x1, y)], color.stroke_width(1))),
            )
            .map_err(err(PLOT))?;
    }
    if read.count + write.count == 0 {
        let (w, h) = area.dim_in_pixel();
        area.draw(&Text::new(
            "no swap I/O",
            (w as i32 / 2 - 60, h as i32 / 2),
            caption_style(),
        ))
        .map_err(err(PLOT))?;
    }
    legend(&mut chart, PLOT)
}

/// Swap-in and swap-out latency distributions: all devices, then (when
/// there is more than one) each device, on one latency axis.
pub fn latency_svg(r: &Report) -> Result<String, PlotError> {
    const PLOT: &str = "latency.svg";
    let buckets = || {
        [&r.read_latency, &r.write_latency]
            .into_iter()
            .flat_map(|l| l.buckets.iter())
    };
    let lo = buckets().map(|b| b.lo_us).min().unwrap_or(1).max(1);
    let hi = buckets()
        .map(|b| b.hi_us)
        .max()
        .unwrap_or(1024)
        .max(lo.saturating_mul(2));
    let per_device = if r.devices.len() > 1 {
        &r.devices[..]
    } else {
        &[]
    };
    let panel_h = SIZE.1 * 3 / 4;
    let height = SIZE.1 + panel_h * per_device.len() as u32;
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (SIZE.0, height)).into_drawing_area();
        root.fill(&WHITE).map_err(err(PLOT))?;
        let (top, mut rest) = root.split_vertically(SIZE.1);
        latency_panel(
            &top,
            format!("Swap I/O latency distribution: {}", run_name(r)),
            &r.read_latency,
            &r.write_latency,
            (lo, hi),
        )?;
        for d in per_device {
            let (panel, below) = rest.split_vertically(panel_h);
            latency_panel(
                &panel,
                format!(
                    "device {}{} (priority {})",
                    d.path,
                    if d.zram.is_some() { ", zram" } else { "" },
                    d.priority
                ),
                &d.read_latency,
                &d.write_latency,
                (lo, hi),
            )?;
            rest = below;
        }
        root.present().map_err(err(PLOT))?;
    }
    Ok(out)
}

/// The rate of `ev` per tick in each row with an interval.
fn rate(rows: &[Sample], ev: VmEvent) -> Vec<(u64, f64)> {
    rows.iter()
        .filter(|x| x.interval_ticks > 0)
        .map(|x| {
            let d = x.delta(ev).unwrap_or(0);
            (x.tick, d as f64 / x.interval_ticks as f64)
        })
        .collect()
}

/// Sum of rates of several events.
fn rate_sum(rows: &[Sample], evs: &[VmEvent]) -> Vec<(u64, f64)> {
    rows.iter()
        .filter(|x| x.interval_ticks > 0)
        .map(|x| {
            let d: u64 = evs.iter().map(|&e| x.delta(e).unwrap_or(0)).sum();
            (x.tick, d as f64 / x.interval_ticks as f64)
        })
        .collect()
}

type Line = (String, RGBColor, Vec<(u64, f64)>);

/// One panel of [`faults_svg`]: lines over ticks, y in events per tick on
/// a log scale (rates span orders of magnitude: a first touch faults on
/// every access, a swap-bound steady state once a tick). A zero rate is
/// drawn at the axis floor, half the smallest rate seen.
fn rate_panel(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    title: String,
    y_desc: &str,
    max_tick: u64,
    lines: Vec<Line>,
) -> Result<(), PlotError> {
    const PLOT: &str = "faults.svg";
    let rates = || lines.iter().flat_map(|l| l.2.iter().map(|p| p.1));
    let top = rates().fold(0.0, f64::max).max(1.0);
    let floor = rates()
        .filter(|&r| r > 0.0)
        .fold(f64::INFINITY, f64::min)
        .min(top)
        / 2.0;
    let floor = if floor.is_finite() { floor } else { 0.1 };
    let mut chart = ChartBuilder::on(area)
        .caption(title, (FONT, 20).into_font())
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(80)
        .build_cartesian_2d(0u64..max_tick, (floor..top * 3.0).log_scale())
        .map_err(err(PLOT))?;
    chart
        .configure_mesh()
        .x_desc("tick")
        .y_desc(format!("{y_desc} (log scale; 0 at the floor)"))
        .y_label_formatter(&|v| {
            if *v >= 1.0 {
                format!("{v:.0}")
            } else {
                format!("{v:.2}")
            }
        })
        .axis_desc_style(label_style())
        .label_style(label_style())
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(err(PLOT))?;
    for (name, color, points) in lines {
        let points = points.into_iter().map(|(x, y)| (x, y.max(floor)));
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(err(PLOT))?
            .label(name)
            .legend(legend_line(color));
    }
    legend(&mut chart, PLOT)
}

/// Fault rates (top) and swap I/O and reclaim rates (bottom), per tick,
/// averaged over each sampling interval.
pub fn faults_svg(r: &Report) -> Result<String, PlotError> {
    const PLOT: &str = "faults.svg";
    let s: &Series = &r.series;
    let rows = decimate(&s.rows, MAX_POINTS);
    let max_tick = rows.last().map_or(1, |x| x.tick).max(1);
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (SIZE.0, SIZE.1 * 3 / 2)).into_drawing_area();
        root.fill(&WHITE).map_err(err(PLOT))?;
        let (upper, lower) = root.split_vertically(SIZE.1 * 3 / 4);
        rate_panel(
            &upper,
            format!("Faults per tick: {}", run_name(r)),
            "faults per tick",
            max_tick,
            vec![
                ("pgfault".into(), BLUE, rate(&rows, VmEvent::PgFault)),
                ("pgmajfault".into(), RED, rate(&rows, VmEvent::PgMajFault)),
                (
                    "workingset_refault_anon".into(),
                    PURPLE,
                    rate(&rows, VmEvent::WorkingsetRefaultAnon),
                ),
            ],
        )?;
        rate_panel(
            &lower,
            "Swap I/O and reclaim per tick".into(),
            "pages per tick",
            max_tick,
            vec![
                ("pswpin".into(), BLUE, rate(&rows, VmEvent::PswpIn)),
                ("pswpout".into(), ORANGE, rate(&rows, VmEvent::PswpOut)),
                (
                    "pgscan (kswapd + direct)".into(),
                    GREY,
                    rate_sum(&rows, &[VmEvent::PgScanKswapd, VmEvent::PgScanDirect]),
                ),
                (
                    "pgsteal (kswapd + direct)".into(),
                    GREEN,
                    rate_sum(&rows, &[VmEvent::PgStealKswapd, VmEvent::PgStealDirect]),
                ),
            ],
        )?;
        root.present().map_err(err(PLOT))?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(tick: u64, interval_ticks: u64, d: u64) -> Sample {
        Sample {
            tick,
            interval_ticks,
            rss_pages: tick,
            deltas: [d; NR_DELTAS],
            ..Sample::default()
        }
    }

    #[test]
    fn decimate_keeps_sums_and_the_last_row() {
        let mut rows = vec![row(0, 0, 0)];
        rows.extend((1..=2500).map(|t| row(t, 1, t % 3)));
        let d = decimate(&rows, 100);
        assert!(d.len() <= 100, "{}", d.len());
        assert_eq!(d[0], rows[0]);
        assert_eq!(d.last().map(|x| x.tick), Some(2500));
        assert_eq!(d.last().map(|x| x.rss_pages), Some(2500));
        let sum = |v: &[Sample]| v.iter().map(|x| x.deltas[0]).sum::<u64>();
        assert_eq!(sum(&d), sum(&rows));
        let ticks: u64 = d.iter().map(|x| x.interval_ticks).sum();
        assert_eq!(ticks, 2500);
    }

    #[test]
    fn decimate_to_fewer_than_two_points_keeps_every_row() {
        let rows: Vec<_> = (0..5).map(|t| row(t, 1, 1)).collect();
        assert_eq!(decimate(&rows, 1), rows);
        assert_eq!(decimate(&rows, 0), rows);
        assert_eq!(decimate(&rows, 2).len(), 2);
    }

    #[test]
    fn short_series_is_not_decimated() {
        let rows = vec![row(0, 0, 0), row(1, 1, 4)];
        assert_eq!(decimate(&rows, MAX_POINTS), rows);
    }
}
