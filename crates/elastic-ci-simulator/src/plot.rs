//! The timeline of a run as a standalone SVG image: jobs waiting and running, and the
//! desired, in-service and connected capacity (in agents), as step lines over time.
//!
//! [`timeline_svg`] draws a simulated run; [`points_svg`] draws any series of
//! [`TimelinePoint`]s, such as the ones `cargo xtask demo` samples from a live stack.

use std::fmt::Write as _;

use crate::model::Tick;
use crate::trace::secs_f64;

const WIDTH: f64 = 960.0;
const HEIGHT: f64 = 500.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 24.0;
const TOP: f64 = 64.0;
const BOTTOM: f64 = 110.0;

/// One instant of a timeline, in jobs and agents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimelinePoint {
    pub time_us: u64,
    /// Jobs that exist but cannot run yet.
    pub waiting_jobs: u32,
    /// Ready jobs waiting for an agent.
    pub scheduled_jobs: u32,
    pub running_jobs: u32,
    /// Capacity in agents: instances × agents per instance.
    pub desired_agents: u32,
    pub in_service_agents: u32,
    pub connected_agents: u32,
}

impl TimelinePoint {
    /// A simulated poll, capacity converted to agents.
    pub fn of_tick(tick: &Tick, agents_per_instance: u32) -> TimelinePoint {
        TimelinePoint {
            time_us: tick.time_us,
            waiting_jobs: tick.world.waiting_jobs,
            scheduled_jobs: tick.world.scheduled_jobs,
            running_jobs: tick.world.running_jobs,
            desired_agents: tick.desired_after.saturating_mul(agents_per_instance),
            in_service_agents: tick.decision.group.in_service.saturating_mul(agents_per_instance),
            connected_agents: tick.world.total_agents,
        }
    }
}

struct Series {
    label: &'static str,
    colour: &'static str,
    dash: Option<&'static str>,
    width: f64,
    value: fn(&TimelinePoint) -> u32,
}

const SERIES: [Series; 6] = [
    Series {
        label: "jobs not yet ready",
        colour: "#9e9e9e",
        dash: Some("2 3"),
        width: 1.5,
        value: |point| point.waiting_jobs,
    },
    Series {
        label: "ready jobs waiting for an agent",
        colour: "#d62728",
        dash: None,
        width: 2.0,
        value: |point| point.scheduled_jobs,
    },
    Series {
        label: "running jobs",
        colour: "#1f77b4",
        dash: None,
        width: 2.0,
        value: |point| point.running_jobs,
    },
    Series {
        label: "desired capacity",
        colour: "#000000",
        dash: Some("6 4"),
        width: 1.5,
        value: |point| point.desired_agents,
    },
    Series {
        label: "in service",
        colour: "#2ca02c",
        dash: None,
        width: 1.5,
        value: |point| point.in_service_agents,
    },
    Series {
        label: "connected agents",
        colour: "#ff7f0e",
        dash: None,
        width: 1.5,
        value: |point| point.connected_agents,
    },
];

/// Renders the timeline. Capacity is drawn in agents (instances × `agents_per_instance`)
/// so that it shares the axis with jobs. `title` and `subtitle` are plain text.
pub fn timeline_svg(
    timeline: &[Tick],
    agents_per_instance: u32,
    horizon_us: u64,
    title: &str,
    subtitle: &str,
) -> String {
    let points: Vec<TimelinePoint> =
        timeline.iter().map(|tick| TimelinePoint::of_tick(tick, agents_per_instance)).collect();
    points_svg(&points, agents_per_instance > 1, horizon_us, title, subtitle)
}

/// Renders a timeline of points. With `capacity_in_agents` the capacity series are
/// labelled as counted in agents.
pub fn points_svg(
    timeline: &[TimelinePoint],
    capacity_in_agents: bool,
    horizon_us: u64,
    title: &str,
    subtitle: &str,
) -> String {
    let frame = Frame::new(timeline, horizon_us);
    let mut svg = String::new();
    write_header(&mut svg, title, subtitle);
    write_value_grid(&mut svg, &frame);
    let unit = write_time_grid(&mut svg, &frame);
    write_axes(&mut svg, &frame, unit);
    for series in &SERIES {
        write_series(&mut svg, &frame, timeline, series);
    }
    write_legend(&mut svg, &frame, capacity_in_agents);
    svg.push_str("</svg>\n");
    svg
}

/// The plot area and its scales: seconds along x, values (jobs or agents) up y.
struct Frame {
    plot_width: f64,
    plot_height: f64,
    horizon_s: f64,
    /// The value at the top of the plot, a whole number of `y_step`s.
    y_top: f64,
    y_step: f64,
}

impl Frame {
    fn new(timeline: &[TimelinePoint], horizon_us: u64) -> Frame {
        let y_max = timeline
            .iter()
            .flat_map(|point| SERIES.iter().map(move |series| (series.value)(point)))
            .max()
            .unwrap_or(0)
            .max(1);
        let y_step = nice_step(f64::from(y_max) / 5.0);
        Frame {
            plot_width: WIDTH - LEFT - RIGHT,
            plot_height: HEIGHT - TOP - BOTTOM,
            horizon_s: secs_f64(horizon_us).max(1.0),
            // At least one step above the largest value, so no line runs along the frame.
            y_top: ((f64::from(y_max) / y_step).floor() + 1.0) * y_step,
            y_step,
        }
    }

    fn x_of(&self, secs: f64) -> f64 {
        LEFT + secs / self.horizon_s * self.plot_width
    }

    fn y_of(&self, value: f64) -> f64 {
        TOP + self.plot_height - value / self.y_top * self.plot_height
    }

    /// The bottom edge of the plot area.
    fn bottom(&self) -> f64 {
        TOP + self.plot_height
    }
}

/// The document's opening tag, its background, the title and the subtitle.
fn write_header(svg: &mut String, title: &str, subtitle: &str) {
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r##"<rect width="{WIDTH}" height="{HEIGHT}" fill="#ffffff"/>"##);
    let _ = writeln!(
        svg,
        r#"<text x="{LEFT}" y="24" font-size="15" font-weight="bold">{}</text>"#,
        escape(title)
    );
    let _ =
        writeln!(svg, r##"<text x="{LEFT}" y="44" fill="#444444">{}</text>"##, escape(subtitle));
}

/// Horizontal grid lines with their values, from 0 to the top.
fn write_value_grid(svg: &mut String, frame: &Frame) {
    let mut value = 0.0;
    while value <= frame.y_top + frame.y_step / 2.0 {
        let y = frame.y_of(value);
        let _ = writeln!(
            svg,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#e0e0e0"/><text x="{:.1}" y="{:.1}" text-anchor="end">{value}</text>"##,
            LEFT + frame.plot_width,
            LEFT - 6.0,
            y + 4.0
        );
        value += frame.y_step;
    }
}

/// Vertical grid lines with their times, in seconds, minutes or hours as the horizon
/// suits; returns the unit's name.
fn write_time_grid(svg: &mut String, frame: &Frame) -> &'static str {
    let horizon_s = frame.horizon_s;
    let (unit_secs, unit) = if horizon_s > 4.0 * 3600.0 {
        (3600.0, "h")
    } else if horizon_s < 180.0 {
        (1.0, "s")
    } else {
        (60.0, "min")
    };
    let x_step = nice_step(horizon_s / unit_secs / 8.0) * unit_secs;
    let mut secs = 0.0;
    while secs <= horizon_s + 1e-9 {
        let x = frame.x_of(secs);
        let _ = writeln!(
            svg,
            r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}" stroke="#f0f0f0"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            frame.bottom(),
            frame.bottom() + 16.0,
            trim_number(secs / unit_secs)
        );
        secs += x_step;
    }
    unit
}

/// The plot's border and the axis titles.
fn write_axes(svg: &mut String, frame: &Frame, unit: &str) {
    let (plot_width, plot_height) = (frame.plot_width, frame.plot_height);
    let _ = writeln!(
        svg,
        r##"<rect x="{LEFT}" y="{TOP}" width="{plot_width}" height="{plot_height}" fill="none" stroke="#333333"/>"##
    );
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">time ({unit})</text>"#,
        LEFT + plot_width / 2.0,
        frame.bottom() + 34.0
    );
    let _ = writeln!(
        svg,
        r#"<text transform="translate(16 {:.1}) rotate(-90)" text-anchor="middle">jobs / agents</text>"#,
        TOP + plot_height / 2.0
    );
}

/// One series as a step line, at most one point per horizontal pixel (the largest
/// value of the points that fall in it).
fn write_series(svg: &mut String, frame: &Frame, timeline: &[TimelinePoint], series: &Series) {
    let mut path = String::new();
    let mut last_column = None;
    let mut last_y = None;
    for point in timeline {
        let value = (series.value)(point);
        let x = frame.x_of(secs_f64(point.time_us).min(frame.horizon_s));
        let column = x.floor();
        let y = frame.y_of(f64::from(value));
        if last_column == Some(column) {
            if let Some(previous) = last_y
                && y < previous
            {
                let _ = write!(path, " V{y:.1}");
                last_y = Some(y);
            }
            continue;
        }
        match last_y {
            None => {
                let _ = write!(path, "M{x:.1} {y:.1}");
            }
            Some(_) => {
                let _ = write!(path, " H{x:.1} V{y:.1}");
            }
        }
        last_column = Some(column);
        last_y = Some(y);
    }
    if last_y.is_some() {
        let _ = write!(path, " H{:.1}", LEFT + frame.plot_width);
    }
    let _ = writeln!(
        svg,
        r#"<path d="{path}" fill="none" stroke="{}" stroke-width="{}"{}/>"#,
        series.colour,
        series.width,
        dash_attribute(series)
    );
}

/// The legend below the plot, two rows of three.
fn write_legend(svg: &mut String, frame: &Frame, capacity_in_agents: bool) {
    for (index, series) in SERIES.iter().enumerate() {
        let column = f64::from(u32::try_from(index % 3).unwrap_or(0));
        let row = f64::from(u32::try_from(index / 3).unwrap_or(0));
        let x = LEFT + column * 290.0;
        let y = frame.bottom() + 60.0 + row * 20.0;
        let label = if index >= 3 && capacity_in_agents {
            format!("{} (agents)", series.label)
        } else {
            series.label.to_owned()
        };
        let _ = writeln!(
            svg,
            r#"<line x1="{x:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{}" stroke-width="{}"{}/><text x="{:.1}" y="{y:.1}">{}</text>"#,
            y - 4.0,
            x + 28.0,
            y - 4.0,
            series.colour,
            series.width + 0.5,
            dash_attribute(series),
            x + 34.0,
            escape(&label)
        );
    }
}

fn dash_attribute(series: &Series) -> String {
    series.dash.map(|dash| format!(r#" stroke-dasharray="{dash}""#)).unwrap_or_default()
}

/// 1, 2 or 5 times a power of ten, at least `raw`.
fn nice_step(raw: f64) -> f64 {
    if raw <= 1.0 {
        return 1.0;
    }
    let magnitude = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|factor| factor * magnitude)
        .find(|step| *step >= raw)
        .unwrap_or(10.0 * magnitude)
}

fn trim_number(value: f64) -> String {
    let text = format!("{value:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_round_numbers() {
        assert_eq!(nice_step(0.3), 1.0);
        assert_eq!(nice_step(3.0), 5.0);
        assert_eq!(nice_step(12.0), 20.0);
        assert_eq!(nice_step(51.0), 100.0);
        assert_eq!(trim_number(1.5), "1.5");
        assert_eq!(trim_number(2.0), "2");
    }

    #[test]
    fn draws_every_series_with_its_legend() {
        let point = |secs: u64, scheduled: u32, running: u32| TimelinePoint {
            time_us: secs * 1_000_000,
            waiting_jobs: 0,
            scheduled_jobs: scheduled,
            running_jobs: running,
            desired_agents: 8,
            in_service_agents: 4,
            connected_agents: running,
        };
        let svg = points_svg(
            &[point(0, 0, 0), point(30, 6, 2), point(60, 0, 8)],
            true,
            120_000_000,
            "a <title>",
            "sub",
        );
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.ends_with("</svg>\n"));
        assert_eq!(svg.matches("<path ").count(), SERIES.len());
        assert!(svg.contains("a &lt;title&gt;"));
        assert!(svg.contains("desired capacity (agents)"));
        // The y axis goes one step (2) above the largest value, 8.
        assert!(svg.contains(">10</text>"));
        assert!(!svg.contains(">12</text>"));
        // Running jobs step up at 30 s, a quarter of the way across.
        let x30 = LEFT + (WIDTH - LEFT - RIGHT) / 4.0;
        assert!(svg.contains(&format!("H{x30:.1} V")), "{svg}");
    }

    #[test]
    fn escapes_text() {
        assert_eq!(escape("a<b & \"c\">"), "a&lt;b &amp; &quot;c&quot;&gt;");
    }
}
