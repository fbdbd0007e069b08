//! Plots of memory pressure and of memory cgroups, as SVG text (the
//! conventions of [`crate::plot`]).
//!
//! - [`pressure_svg`]: the machine's memory pressure (some and full avg10)
//!   over ticks.
//! - [`cgroups_svg`]: each memory cgroup's `memory.current` and
//!   `memory.swap.current` over ticks, with its pressure below.

use crate::plot::{
    caption_style, decimate, err, label_style, legend, legend_line, mib, run_name, PlotError,
    MAX_POINTS, SIZE,
};
use crate::report::Report;
use plotters::prelude::*;

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
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!("Memory pressure (PSI): {}", run_name(r)),
                caption_style(),
            )
            .margin(16)
            .x_label_area_size(50)
            .y_label_area_size(80)
            .build_cartesian_2d(0u64..max_tick, 0f64..110f64)
            .map_err(err(PLOT))?;
        chart
            .configure_mesh()
            .x_desc("tick (1 ms of emulated time)")
            .y_desc("avg10, % of time stalled")
            .axis_desc_style(label_style())
            .label_style(label_style())
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(err(PLOT))?;
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
        let mut chart = ChartBuilder::on(&top)
            .caption(format!("Memory cgroups: {}", run_name(r)), caption_style())
            .margin(16)
            .x_label_area_size(30)
            .y_label_area_size(80)
            .build_cartesian_2d(0u64..max_tick, 0f64..peak * 1.5)
            .map_err(err(PLOT))?;
        chart
            .configure_mesh()
            .y_desc("MiB")
            .y_label_formatter(&|v| format!("{v:.0}"))
            .axis_desc_style(label_style())
            .label_style(label_style())
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(err(PLOT))?;
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
        let mut psi = ChartBuilder::on(&bottom)
            .margin(16)
            .x_label_area_size(50)
            .y_label_area_size(80)
            .build_cartesian_2d(0u64..max_tick, 0f64..110f64)
            .map_err(err(PLOT))?;
        psi.configure_mesh()
            .x_desc("tick (1 ms of emulated time)")
            .y_desc("some avg10, %")
            .axis_desc_style(label_style())
            .label_style(label_style())
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(err(PLOT))?;
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
