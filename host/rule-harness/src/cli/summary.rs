//! The end-of-run summary printed on stderr.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use detect_host::pipeline::Report;

/// A run's report and how long it took.
pub struct Summary {
    pub report: Report,
    pub elapsed: Duration,
}

fn counts<K: fmt::Display>(total: u64, by: &BTreeMap<K, u64>) -> String {
    if by.is_empty() {
        return total.to_string();
    }
    let parts: Vec<String> = by.iter().map(|(k, n)| format!("{k} {n}")).collect();
    format!("{total} ({})", parts.join(", "))
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (r, secs) = (&self.report, self.elapsed.as_secs_f64().max(1e-9));
        writeln!(
            f,
            "rule-harness: {} records ({} relevant, {} skipped unread by the prefilter) in \
             {:.2} s: {:.0} records/s, {:.1} MB/s",
            r.records,
            r.relevant,
            r.unread,
            secs,
            r.records as f64 / secs,
            r.bytes as f64 / 1e6 / secs
        )?;
        if r.skipped > 0 {
            writeln!(f, "  skipped: {} handled by earlier runs", r.skipped)?;
        }
        writeln!(
            f,
            "  alerts: {}",
            counts(r.alerts.values().sum(), &r.alerts)
        )?;
        write!(
            f,
            "  errors: {}, traps: {}",
            counts(r.errors.values().sum(), &r.errors),
            r.traps
        )?;
        if let Some(kib) = peak_memory_kib() {
            write!(f, "\n  peak memory: {:.1} MiB", kib as f64 / 1024.0)?;
        }
        Ok(())
    }
}

/// This process's peak resident memory, as the kernel counts it (`VmHWM`), where the
/// kernel says.
pub fn peak_memory_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
