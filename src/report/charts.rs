//! SVG charts of a sweep, drawn with plotters: throughput, latency percentiles, server queue,
//! GPU and KV cache, scaling efficiency. Each function returns `None` when the run has no
//! data for that chart.

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::api::{LoadPoint, StepStatus};

const W: u32 = 880;
const H: u32 = 420;
const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// One line on a chart.
struct Series {
    label: String,
    points: Vec<(f64, f64)>,
    dashed: bool,
}

/// "Concurrency (requests in flight)" or "Offered rate (req/s)".
pub fn load_axis(steps: &[StepStatus]) -> &'static str {
    if steps.iter().any(|s| s.load.concurrency().is_some()) {
        "Concurrency (requests in flight)"
    } else {
        "Offered load (req/s)"
    }
}

/// Steps grouped by replica count, each with a legend suffix.
fn groups(steps: &[StepStatus]) -> Vec<(String, Vec<&StepStatus>)> {
    let mut keys: Vec<Option<i32>> = steps.iter().map(|s| s.replicas).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .map(|k| {
            let label = match k {
                Some(1) => " (1 replica)".to_string(),
                Some(n) => format!(" ({n} replicas)"),
                None => String::new(),
            };
            (label, steps.iter().filter(|s| s.replicas == k).collect())
        })
        .collect()
}

fn series_of(
    steps: &[StepStatus],
    label: &str,
    dashed: bool,
    f: impl Fn(&StepStatus) -> Option<f64>,
) -> Vec<Series> {
    groups(steps)
        .into_iter()
        .map(|(suffix, group)| Series {
            label: format!("{label}{suffix}"),
            points: group
                .iter()
                .filter_map(|s| f(s).map(|y| (s.load.value(), y)))
                .collect(),
            dashed,
        })
        .filter(|s| !s.points.is_empty())
        .collect()
}

fn draw_err(e: impl std::fmt::Display) -> String {
    format!("chart drawing failed: {e}")
}

/// Axis titles and layout of one chart.
struct Axes<'a> {
    title: &'a str,
    x: &'a str,
    y: &'a str,
    /// Only whole numbers on the x axis (replica counts).
    integer_x: bool,
    /// Where the legend goes (away from the data).
    legend: SeriesLabelPosition,
}

impl<'a> Axes<'a> {
    fn new(title: &'a str, x: &'a str, y: &'a str) -> Self {
        Axes {
            title,
            x,
            y,
            integer_x: false,
            legend: SeriesLabelPosition::UpperLeft,
        }
    }
}

/// Draw line series into `area`, x on a log scale when the loads span a wide range.
fn line_chart(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    axes: Axes<'_>,
    series: &[Series],
    marker: Option<(f64, f64, String)>,
) -> Result<(), String> {
    let Axes {
        title,
        x: x_label,
        y: y_label,
        integer_x,
        legend,
    } = axes;
    let xs = series.iter().flat_map(|s| s.points.iter().map(|p| p.0));
    let (x_min, x_max) = xs.fold((f64::MAX, f64::MIN), |(a, b), x| (a.min(x), b.max(x)));
    let y_max = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .fold(0.0f64, f64::max);
    let y_top = if y_max > 0.0 { y_max * 1.15 } else { 1.0 };
    let (x_lo, x_hi) = if x_max > x_min {
        (x_min, x_max)
    } else {
        (x_min * 0.5, x_max * 1.5 + 1.0)
    };
    let mut builder = ChartBuilder::on(area);
    builder
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(64);
    // Loads usually double from step to step: plot log2(load) on a linear axis and label
    // the ticks with the load itself, so only round values (1, 2, 4, ...) are printed.
    let log_x = x_lo > 0.0 && x_hi / x_lo >= 8.0;
    let fx = |x: f64| if log_x { x.log2() } else { x };
    let (a, b) = (fx(x_lo), fx(x_hi));
    let pad = ((b - a) * 0.05).max(0.25);
    let mut chart = builder
        .build_cartesian_2d(a - pad..b + pad, 0.0..y_top)
        .map_err(draw_err)?;
    let ticks = if log_x {
        ((b - a).ceil() as usize + 1).max(2)
    } else {
        10
    };
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .x_labels(ticks)
        .x_label_formatter(&|v| {
            let v = if log_x { v.exp2() } else { *v };
            if integer_x && (v - v.round()).abs() > 1e-6 {
                String::new()
            } else {
                trim(v)
            }
        })
        .y_label_formatter(&|v| trim(*v))
        .light_line_style(WHITE.mix(0.0))
        .bold_line_style(BLACK.mix(0.08))
        .draw()
        .map_err(draw_err)?;
    for (i, s) in series.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let style = ShapeStyle::from(&color).stroke_width(2);
        let points: Vec<(f64, f64)> = s.points.iter().map(|&(x, y)| (fx(x), y)).collect();
        let anno = if s.dashed {
            chart
                .draw_series(DashedLineSeries::new(points.clone(), 6, 4, style))
                .map_err(draw_err)?
        } else {
            chart
                .draw_series(LineSeries::new(points.clone(), style))
                .map_err(draw_err)?
        };
        anno.label(s.label.clone()).legend(move |(x, y)| {
            PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
        });
        chart
            .draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled())))
            .map_err(draw_err)?;
    }
    if let Some((x, y, text)) = &marker {
        chart
            .draw_series(std::iter::once(Circle::new(
                (fx(*x), *y),
                8,
                RED.stroke_width(2),
            )))
            .map_err(draw_err)?
            .label(text.clone())
            .legend(|(x, y)| Circle::new((x + 9, y), 5, RED.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(legend)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .label_font(("sans-serif", 13))
        .draw()
        .map_err(draw_err)?;
    Ok(())
}

fn trim(v: f64) -> String {
    if v.abs() >= 100.0 || (v - v.round()).abs() < 1e-6 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn render(
    width: u32,
    height: u32,
    draw: impl FnOnce(&DrawingArea<SVGBackend<'_>, Shift>) -> Result<(), String>,
) -> Result<String, String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        draw(&root)?;
        root.present().map_err(draw_err)?;
    }
    Ok(svg)
}

/// Output tokens/s against load, the saturation point circled.
pub fn throughput(
    steps: &[StepStatus],
    knee: Option<&LoadPoint>,
) -> Result<Option<String>, String> {
    let series = series_of(steps, "output tok/s", false, |s| {
        Some(s.output_tokens_per_second)
    });
    if series.is_empty() {
        return Ok(None);
    }
    let marker = knee.and_then(|k| {
        steps.iter().find(|s| &s.load == k).map(|s| {
            (
                k.value(),
                s.output_tokens_per_second,
                "saturation point".to_string(),
            )
        })
    });
    render(W, H, |area| {
        line_chart(
            area,
            Axes::new(
                "Output throughput vs load",
                load_axis(steps),
                "Output tokens / s",
            ),
            &series,
            marker,
        )
    })
    .map(Some)
}

/// TTFT, ITL and E2E p50 (solid) and p95 (dashed) against load, three panels.
pub fn latency(steps: &[StepStatus]) -> Result<Option<String>, String> {
    type Pick = fn(&StepStatus) -> Option<&crate::api::LatencyMs>;
    let panels: [(&str, Pick); 3] = [
        ("Time to first token", |s| s.ttft_ms.as_ref()),
        ("Inter-token latency", |s| s.itl_ms.as_ref()),
        ("End-to-end latency", |s| s.e2e_ms.as_ref()),
    ];
    if !steps.iter().any(|s| s.e2e_ms.is_some()) {
        return Ok(None);
    }
    render(W * 3 / 2, H, |root| {
        let areas = root.split_evenly((1, 3));
        for (area, (title, pick)) in areas.iter().zip(panels) {
            let mut series = series_of(steps, "p50", false, |s| pick(s).map(|l| l.p50));
            series.extend(series_of(steps, "p95", true, |s| pick(s).map(|l| l.p95)));
            if series.is_empty() {
                continue;
            }
            line_chart(
                area,
                Axes::new(title, load_axis(steps), "Milliseconds"),
                &series,
                None,
            )?;
        }
        Ok(())
    })
    .map(Some)
}

/// Peak running vs waiting requests reported by vLLM per step.
pub fn queue(steps: &[StepStatus]) -> Result<Option<String>, String> {
    let mut series = series_of(steps, "running (max)", false, |s| {
        s.server.as_ref()?.running_max
    });
    series.extend(series_of(steps, "waiting (max)", true, |s| {
        s.server.as_ref()?.waiting_max
    }));
    if series.is_empty() {
        return Ok(None);
    }
    render(W, H, |area| {
        line_chart(
            area,
            Axes::new(
                "Requests running vs waiting in vLLM",
                load_axis(steps),
                "Requests",
            ),
            &series,
            None,
        )
    })
    .map(Some)
}

/// GPU utilisation and KV cache usage per step, both in percent.
pub fn gpu(steps: &[StepStatus]) -> Result<Option<String>, String> {
    let mut series = series_of(steps, "GPU util (max)", false, |s| s.gpu.as_ref()?.util_max);
    series.extend(series_of(steps, "GPU util (mean)", true, |s| {
        s.gpu.as_ref()?.util_mean
    }));
    series.extend(series_of(steps, "KV cache (max)", false, |s| {
        s.server.as_ref()?.kv_cache_usage_max.map(|v| v * 100.0)
    }));
    if series.is_empty() {
        return Ok(None);
    }
    render(W, H, |area| {
        line_chart(
            area,
            Axes::new(
                "GPU utilisation and KV cache usage",
                load_axis(steps),
                "Percent",
            ),
            &series,
            None,
        )
    })
    .map(Some)
}

/// Scaling efficiency per replica count, with the ideal (100%) as reference.
pub fn scaling(efficiency: &[(i32, f64)]) -> Result<Option<String>, String> {
    if efficiency.len() < 2 {
        return Ok(None);
    }
    let measured = Series {
        label: "measured efficiency".to_string(),
        points: efficiency
            .iter()
            .map(|&(n, e)| (f64::from(n), e * 100.0))
            .collect(),
        dashed: false,
    };
    let ideal = Series {
        label: "ideal (linear scaling)".to_string(),
        points: efficiency
            .iter()
            .map(|&(n, _)| (f64::from(n), 100.0))
            .collect(),
        dashed: true,
    };
    render(W, H, |area| {
        line_chart(
            area,
            Axes {
                integer_x: true,
                legend: SeriesLabelPosition::LowerLeft,
                ..Axes::new(
                    "Scaling efficiency: throughput at N / (N x throughput at 1)",
                    "Replicas",
                    "Percent of linear",
                )
            },
            &[measured, ideal],
            None,
        )
    })
    .map(Some)
}

/// TTFT and inter-token latency p50 (solid) and p99 (dashed) in time slices of each step,
/// two panels, against seconds since the run start (steps follow each other in time).
pub fn latency_over_time(slices: &[super::timeline::Slice]) -> Result<Option<String>, String> {
    use super::timeline::Slice;
    if slices.is_empty() {
        return Ok(None);
    }
    let line = |label: &str, dashed: bool, f: fn(&Slice) -> Option<f64>| -> Vec<Series> {
        let points: Vec<(f64, f64)> = slices
            .iter()
            .filter_map(|s| Some((s.mid_s, f(s)?)))
            .collect();
        let s = Series {
            label: label.to_string(),
            points,
            dashed,
        };
        if s.points.is_empty() { vec![] } else { vec![s] }
    };
    type Pick = fn(&Slice) -> Option<f64>;
    let panels: [(&str, Pick, Pick); 2] = [
        (
            "Time to first token over time",
            |s| Some(s.ttft_p50),
            |s| Some(s.ttft_p99),
        ),
        (
            "Inter-token latency over time",
            |s| s.itl_p50,
            |s| s.itl_p99,
        ),
    ];
    render(W * 3 / 2, H, |root| {
        let areas = root.split_evenly((1, 2));
        for (area, (title, p50, p99)) in areas.iter().zip(panels) {
            let mut series = line("p50", false, p50);
            series.extend(line("p99", true, p99));
            if series.is_empty() {
                continue;
            }
            line_chart(
                area,
                Axes::new(title, "Seconds since the run start", "Milliseconds"),
                &series,
                None,
            )?;
        }
        Ok(())
    })
    .map(Some)
}

/// TTFT of every completed request (thinned) against its prompt length.
pub fn ttft_vs_prompt(points: &[(f64, f64)]) -> Result<Option<String>, String> {
    if points.is_empty() {
        return Ok(None);
    }
    let (x_max, y_max) = points
        .iter()
        .fold((0.0f64, 0.0f64), |(a, b), p| (a.max(p.0), b.max(p.1)));
    render(W, H, |area| {
        let mut chart = ChartBuilder::on(area)
            .caption("TTFT vs prompt length", ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(44)
            .y_label_area_size(64)
            .build_cartesian_2d(0.0..(x_max * 1.05).max(1.0), 0.0..(y_max * 1.1).max(1.0))
            .map_err(draw_err)?;
        chart
            .configure_mesh()
            .x_desc("Prompt tokens")
            .y_desc("TTFT (ms)")
            .x_label_formatter(&|v| trim(*v))
            .y_label_formatter(&|v| trim(*v))
            .light_line_style(WHITE.mix(0.0))
            .bold_line_style(BLACK.mix(0.08))
            .draw()
            .map_err(draw_err)?;
        let color = PALETTE[0].mix(0.5);
        chart
            .draw_series(points.iter().map(|&p| Circle::new(p, 2, color.filled())))
            .map_err(draw_err)?;
        Ok(())
    })
    .map(Some)
}
