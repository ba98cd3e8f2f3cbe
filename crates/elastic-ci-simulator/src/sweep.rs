//! Grids of settings (`--sweep NAME=v1,v2,…`), run in parallel, and the cost/wait
//! Pareto front of the results.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::Serialize;

use crate::settings::{Settings, SettingsError, split_assignment};
use crate::summary::Summary;
use crate::trace::Trace;
use crate::{SimulateError, run};

/// The largest grid a sweep may expand to.
pub const MAX_GRID_POINTS: usize = 10_000;

/// One swept setting and its values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Axis {
    pub name: String,
    pub values: Vec<String>,
}

/// A sweep that cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SweepError {
    #[error("invalid --sweep {text:?}: expected NAME=VALUE1,VALUE2,… with at least one value")]
    Malformed { text: String },
    #[error("--sweep {name} is given twice")]
    Repeated { name: String },
    #[error("the sweep has {points} combinations, more than {MAX_GRID_POINTS}")]
    TooLarge { points: usize },
    #[error("--sweep {name}={value}: {source}")]
    Setting { name: String, value: String, source: SettingsError },
}

/// Which wait figure the Pareto front trades against cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WaitObjective {
    P50,
    P95,
    Max,
    Mean,
}

impl WaitObjective {
    pub fn of(self, summary: &Summary) -> Option<f64> {
        match self {
            WaitObjective::P50 => summary.wait_p50_s,
            WaitObjective::P95 => summary.wait_p95_s,
            WaitObjective::Max => summary.wait_max_s,
            WaitObjective::Mean => summary.wait_mean_s,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            WaitObjective::P50 => "p50",
            WaitObjective::P95 => "p95",
            WaitObjective::Max => "max",
            WaitObjective::Mean => "mean",
        }
    }
}

/// One grid point's result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Point {
    /// The swept settings, in `--sweep` order.
    pub settings: Vec<(String, String)>,
    pub summary: Summary,
    /// No other point is at least as good on cost, wait and unstarted jobs, and better
    /// on one of them.
    pub pareto: bool,
}

/// Parses `NAME=v1,v2,…`.
pub fn parse_axis(text: &str) -> Result<Axis, SweepError> {
    let malformed = || SweepError::Malformed { text: text.to_owned() };
    let (name, values) = split_assignment(text).map_err(|_| malformed())?;
    let values: Vec<String> = values.split(',').map(|value| value.trim().to_owned()).collect();
    if values.iter().any(String::is_empty) {
        return Err(malformed());
    }
    Ok(Axis { name: name.trim().to_owned(), values })
}

/// Every combination of the axes' values, checked against `base` before anything runs.
pub fn grid(base: &Settings, axes: &[Axis]) -> Result<Vec<Vec<(String, String)>>, SweepError> {
    for (index, axis) in axes.iter().enumerate() {
        if axes[..index].iter().any(|other| other.name == axis.name) {
            return Err(SweepError::Repeated { name: axis.name.clone() });
        }
        for value in &axis.values {
            let mut settings = base.clone();
            let checked = settings.set(&axis.name, value).and_then(|()| settings.scaler_config());
            if let Err(source) = checked {
                return Err(SweepError::Setting {
                    name: axis.name.clone(),
                    value: value.clone(),
                    source,
                });
            }
        }
    }
    let points =
        axes.iter().try_fold(1_usize, |product, axis| product.checked_mul(axis.values.len()));
    match points {
        Some(points) if points <= MAX_GRID_POINTS => {}
        points => return Err(SweepError::TooLarge { points: points.unwrap_or(usize::MAX) }),
    }
    let mut combinations = vec![Vec::new()];
    for axis in axes {
        combinations = combinations
            .into_iter()
            .flat_map(|prefix: Vec<(String, String)>| {
                axis.values.iter().map(move |value| {
                    let mut next = prefix.clone();
                    next.push((axis.name.clone(), value.clone()));
                    next
                })
            })
            .collect();
    }
    Ok(combinations)
}

/// Runs every combination on up to `threads` threads and marks the Pareto front.
pub fn run_grid(
    trace: &Trace,
    base: &Settings,
    combinations: Vec<Vec<(String, String)>>,
    horizon_us: Option<u64>,
    threads: usize,
    objective: WaitObjective,
) -> Result<Vec<Point>, SimulateError> {
    let next = AtomicUsize::new(0);
    let results: Vec<Mutex<Option<Result<Summary, SimulateError>>>> =
        combinations.iter().map(|_| Mutex::new(None)).collect();
    std::thread::scope(|scope| {
        for _ in 0..threads.clamp(1, combinations.len().max(1)) {
            scope.spawn(|| {
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(combination) = combinations.get(index) else { break };
                    let mut settings = base.clone();
                    let result = combination
                        .iter()
                        .try_for_each(|(name, value)| settings.set(name, value))
                        .map_err(SimulateError::from)
                        .and_then(|()| run(trace, &settings, horizon_us))
                        .map(|run| run.summary);
                    *results[index].lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
                        Some(result);
                }
            });
        }
    });
    let mut points = Vec::with_capacity(combinations.len());
    for (settings, slot) in combinations.into_iter().zip(results) {
        let result = slot.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
        // Every slot is filled: each index below the length was taken by a thread.
        let summary = result.expect("every grid point ran")?;
        points.push(Point { settings, summary, pareto: false });
    }
    mark_pareto(&mut points, objective);
    Ok(points)
}

/// Marks the points no other point dominates on (instance-minutes, wait objective,
/// unstarted jobs), all to be minimised. A run without any started job has an infinite
/// wait.
pub fn mark_pareto(points: &mut [Point], objective: WaitObjective) {
    let key = |point: &Point| {
        (
            point.summary.instance_minutes,
            objective.of(&point.summary).unwrap_or(f64::INFINITY),
            point.summary.unstarted_jobs,
        )
    };
    let keys: Vec<(f64, f64, u64)> = points.iter().map(key).collect();
    for (index, point) in points.iter_mut().enumerate() {
        let mine = keys[index];
        point.pareto = !keys.iter().any(|other| {
            other.0 <= mine.0
                && other.1 <= mine.1
                && other.2 <= mine.2
                && (other.0 < mine.0 || other.1 < mine.1 || other.2 < mine.2)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::reference;

    #[test]
    fn parses_axes() {
        assert_eq!(
            parse_axis("SCALE_OUT_COOLDOWN_PERIOD=0s, 60s,300s").unwrap(),
            Axis {
                name: "SCALE_OUT_COOLDOWN_PERIOD".to_owned(),
                values: vec!["0s".to_owned(), "60s".to_owned(), "300s".to_owned()]
            }
        );
        for bad in ["X", "X=", "X=1,,2", "=1"] {
            assert_eq!(
                parse_axis(bad).unwrap_err(),
                SweepError::Malformed { text: bad.to_owned() },
                "{bad}"
            );
        }
    }

    #[test]
    fn grids_are_checked_before_running() {
        let base = Settings::stack_defaults();
        let axes = [
            parse_axis("idle-period=300,600").unwrap(),
            parse_axis("INSTANCE_BUFFER=0,1,2").unwrap(),
        ];
        let combinations = grid(&base, &axes).unwrap();
        assert_eq!(combinations.len(), 6);
        assert_eq!(
            combinations[4],
            [
                ("idle-period".to_owned(), "600".to_owned()),
                ("INSTANCE_BUFFER".to_owned(), "1".to_owned())
            ]
        );
        let bad = [parse_axis("INSTANCE_BUFFER=0,lots").unwrap()];
        assert_eq!(
            grid(&base, &bad).unwrap_err().to_string(),
            r#"--sweep INSTANCE_BUFFER=lots: invalid scaler settings: invalid INSTANCE_BUFFER "lots": expected an integer of at most 4294967295"#
        );
        let twice = [parse_axis("boot=1").unwrap(), parse_axis("boot=2").unwrap()];
        assert_eq!(grid(&base, &twice).unwrap_err().to_string(), "--sweep boot is given twice");
        let big: Vec<Axis> = ["boot", "drain", "run-cost", "agent-connect", "billing-tail"]
            .iter()
            .map(|name| Axis {
                name: (*name).to_owned(),
                values: (0..7).map(|v| v.to_string()).collect(),
            })
            .collect();
        assert_eq!(grid(&base, &big).unwrap_err(), SweepError::TooLarge { points: 16_807 });
    }

    #[test]
    fn parallel_runs_match_single_runs_and_mark_the_front() {
        let trace = reference("t2").unwrap();
        let base = Settings::stack_defaults();
        let axes = [parse_axis("SCALE_OUT_COOLDOWN_PERIOD=0s,300s,600s").unwrap()];
        let points =
            run_grid(&trace, &base, grid(&base, &axes).unwrap(), None, 3, WaitObjective::P95)
                .unwrap();
        for point in &points {
            let mut settings = base.clone();
            settings.set(&point.settings[0].0, &point.settings[0].1).unwrap();
            assert_eq!(point.summary, run(&trace, &settings, None).unwrap().summary);
        }
        // A longer cooldown never waits less here, so 600 s cannot be on the front
        // unless it is also cheaper.
        let cheaper_than_300 =
            points[2].summary.instance_minutes < points[1].summary.instance_minutes;
        assert!(points[0].pareto);
        assert_eq!(points[2].pareto, cheaper_than_300 || points[2].summary == points[1].summary);
    }

    #[test]
    fn the_front_keeps_only_undominated_points() {
        let summary = |cost: f64, wait: f64| {
            let mut summary =
                run(&reference("t1").unwrap(), &Settings::stack_defaults(), None).unwrap().summary;
            summary.instance_minutes = cost;
            summary.wait_p95_s = Some(wait);
            summary
        };
        let mut points: Vec<Point> =
            [(10.0, 5.0), (8.0, 9.0), (12.0, 5.0), (8.0, 9.0), (20.0, 1.0)]
                .iter()
                .map(|(cost, wait)| Point {
                    settings: Vec::new(),
                    summary: summary(*cost, *wait),
                    pareto: false,
                })
                .collect();
        mark_pareto(&mut points, WaitObjective::P95);
        let front: Vec<bool> = points.iter().map(|point| point.pareto).collect();
        assert_eq!(front, [true, true, false, true, true]);
    }
}
