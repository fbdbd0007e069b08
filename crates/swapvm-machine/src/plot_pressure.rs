//! Plots of memory pressure and of memory cgroups, as SVG text (the
//! conventions of [`crate::plot`]).
//!
//! - [`pressure_svg`]: the machine's memory pressure (some and full avg10)
//!   over ticks.
//! - [`cgroups_svg`]: each memory cgroup's `memory.current` and
//!   `memory.swap.current` over ticks, with its pressure below.

use crate::plot::{
    decimate, err, legend, legend_line, mib, run_name, time_chart, PlotError, MAX_POINTS, SIZE,
};
use crate::report::Report;
use plotters::prelude::*;

/// The x axis of these plots.
const TICK_AXIS: &str = "tick (1 ms of emulated time)";

/// Line colours, cycled over cgroups.
const PALETTE: [RGBColor; 6] = [BLUE, RED, GREEN, MAGENTA, CYAN, BLACK];

/// The machine's memory pressure, some and full avg10 (%), over ticks.
pub fn pressure_svg(r: &Report) -> Result<String, PlotError> {
    const PLOT: &str = "pressure.svg";
    let rows = decimate(&r.series.rows, MAX_POINTS);
    let max_tick = rows.last().map_or(1, |x| x.tick).max(1);
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(err(PLOT))?;
        let caption = format!("Memory pressure (PSI): {}", run_name(r));
        let mut chart = time_chart(
            &root,
            PLOT,
            Some(caption),
            max_tick,
            0f64..110f64,
            (Some(TICK_AXIS), "avg10, % of time stalled"),
        )?;
        for (k, name, color) in [(0, "some avg10", BLUE), (1, "full avg10 (dashed)", RED)] {
            let pts = rows
                .iter()
                .map(|x| (x.tick, f64::from(x.psi_avg10_centi[k]) / 100.0));
            let style = color.stroke_width(2);
            if k == 0 {
                chart.draw_series(LineSeries::new(pts, style))
            } else {
                chart.draw_series(DashedLineSeries::new(pts, 8, 5, style))
            }
            .map_err(err(PLOT))?
            .label(name)
            .legend(legend_line(color));
        }
        legend(&mut chart, PLOT)?;
        root.present().map_err(err(PLOT))?;
    }
    Ok(out)
}

/// Per cgroup: memory.current (solid) and memory.swap.current (dashed) in
/// MiB on top, some avg10 pressure below.
pub fn cgroups_svg(r: &Report) -> Result<String, PlotError> {
    const PLOT: &str = "cgroups.svg";
    let cg = &r.series.cgroups;
    let step = cg.rows.len().div_ceil(MAX_POINTS).max(1);
    let rows: Vec<_> = cg.rows.iter().step_by(step).collect();
    let max_tick = rows.last().map_or(1, |x| x.tick).max(1);
    let peak = rows
        .iter()
        .flat_map(|x| x.levels.iter())
        .map(|l| mib(l.current_pages.max(l.swap_pages)))
        .fold(1.0, f64::max);
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(err(PLOT))?;
        let (top, bottom) = root.split_vertically(SIZE.1 * 3 / 5);
        let caption = format!("Memory cgroups: {}", run_name(r));
        let mut chart = time_chart(
            &top,
            PLOT,
            Some(caption),
            max_tick,
            0f64..peak * 1.5,
            (None, "MiB"),
        )?;
        for (k, path) in cg.paths.iter().enumerate() {
            let color = PALETTE[k % PALETTE.len()];
            let cur = rows
                .iter()
                .map(|x| (x.tick, mib(x.levels[k].current_pages)));
            chart
                .draw_series(LineSeries::new(cur, color.stroke_width(2)))
                .map_err(err(PLOT))?
                .label(format!("{path} memory.current (swap dashed)"))
                .legend(legend_line(color));
            let swap = rows.iter().map(|x| (x.tick, mib(x.levels[k].swap_pages)));
            chart
                .draw_series(DashedLineSeries::new(swap, 8, 5, color.stroke_width(1)))
                .map_err(err(PLOT))?;
        }
        legend(&mut chart, PLOT)?;
        let mut psi = time_chart(
            &bottom,
            PLOT,
            None,
            max_tick,
            0f64..110f64,
            (Some(TICK_AXIS), "some avg10, %"),
        )?;
        for k in 0..cg.paths.len() {
            let color = PALETTE[k % PALETTE.len()];
            let pts = rows
                .iter()
                .map(|x| (x.tick, f64::from(x.levels[k].psi_avg10_centi[0]) / 100.0));
            psi.draw_series(LineSeries::new(pts, color.stroke_width(2)))
                .map_err(err(PLOT))?;
        }
        root.present().map_err(err(PLOT))?;
    }
    Ok(out)
}
