//! The speed the project holds itself to, each target with this run's figure: every
//! figure and ratio from the runs of the same sitting, so that a noisy machine moves
//! both sides together.

use std::time::Duration;

use super::reference::Comparison;
use super::{Measure, Rows, What};

/// What the targets are read from: each corpus's rows.
pub struct Runs<'a> {
    pub mix: &'a Rows,
    pub ssm: &'a Rows,
    /// Session starts in the SSM-heavy corpus.
    pub ssm_starts: u64,
    /// Whether the Python reference raised the harness's alerts.
    pub reference: Option<&'a Comparison>,
}

/// Prints the targets' table.
pub fn print(runs: &Runs) {
    println!("\nTargets (this run's figures):\n");
    println!("| target | this run | goal | |");
    println!("|---|---|---|---|");
    let starts = |m: Option<&Measure>| m.map(|m| runs.ssm_starts as f64 / secs(m.time));
    let sandboxed = find(runs.ssm, What::SandboxedMemory);
    row(
        "SSM-heavy: session starts/s, sandboxed, state in memory",
        starts(sandboxed).map(|s| (format!("{s:.0}"), s >= 100_000.0)),
        "≥ 100,000",
    );
    row(
        "SSM-heavy: session starts/s, sandboxed, state in redb",
        starts(find(runs.ssm, What::SandboxedRedb)).map(|s| (format!("{s:.0}"), s >= 50_000.0)),
        "≥ 50,000",
    );
    let native = find(runs.ssm, What::Native);
    row(
        "SSM-heavy: compiled-in time / sandboxed time, state in memory",
        ratio(native, sandboxed).map(|r| (format!("{r:.2}"), r >= 0.8)),
        "≥ 0.8",
    );
    let end_to_end = find(runs.ssm, What::EndToEnd);
    let python = find(runs.ssm, What::Python);
    let versus_python = match runs.reference {
        Some(same) if !same.same() => Some((
            format!(
                "not comparable: {} alerts only the harness raised, {} only the reference",
                same.only_harness, same.only_reference
            ),
            false,
        )),
        _ => ratio(python, end_to_end).map(|r| (format!("{r:.1}x faster"), r >= 5.0)),
    };
    row(
        "SSM-heavy: `run`, alerts written to a file, vs the Python reference (same alerts)",
        versus_python,
        "≥ 5x faster",
    );
    row(
        "Mix: `run` (sandboxed, memory) time / `grep -cF '\"StartSession\"'` time",
        ratio(
            find(runs.mix, What::SandboxedMemory),
            find(runs.mix, What::Grep),
        )
        .map(|r| (format!("{r:.2}x"), r <= 2.0)),
        "≤ 2x",
    );
    let peak = |rows: &Rows| find(rows, What::SandboxedMemory).and_then(|m| m.peak_kib);
    if let (Some(mix), Some(ssm)) = (peak(runs.mix), peak(runs.ssm)) {
        let mib = |kib: u64| kib as f64 / 1024.0;
        row(
            "Peak memory, sandboxed: mix vs SSM-heavy (corpora of different sizes)",
            Some((format!("{:.0} MiB vs {:.0} MiB", mib(mix), mib(ssm)), true)),
            "flat (bounded by buffers, not input)",
        );
    }
}

fn row(target: &str, figure: Option<(String, bool)>, goal: &str) {
    let (figure, verdict) = match figure {
        Some((figure, true)) => (figure, "met"),
        Some((figure, false)) => (figure, "**not met**"),
        None => ("not measured (see above)".to_owned(), ""),
    };
    println!("| {target} | {figure} | {goal} | {verdict} |");
}

fn find(rows: &Rows, what: What) -> Option<&Measure> {
    rows.iter().find(|(w, _)| *w == what).map(|(_, m)| m)
}

/// `numerator`'s time over `denominator`'s, round by round ([`Measure::ratio_to`]).
fn ratio(numerator: Option<&Measure>, denominator: Option<&Measure>) -> Option<f64> {
    Some(numerator?.ratio_to(denominator?))
}

fn secs(time: Duration) -> f64 {
    time.as_secs_f64()
}
