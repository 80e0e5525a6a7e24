//! The end-of-run summary printed on stderr.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

#[derive(Default)]
pub struct Summary {
    pub records: u64,
    /// Items of resumed files that earlier runs had handled.
    pub skipped: u64,
    pub relevant: u64,
    /// Records the rule's prefilter ruled out, not handed to the rule.
    pub unread: u64,
    pub bytes: u64,
    pub alerts: BTreeMap<String, u64>,
    pub errors: BTreeMap<&'static str, u64>,
    pub traps: u64,
    pub elapsed: Duration,
}

impl Summary {
    pub fn error(&mut self, kind: &'static str) {
        *self.errors.entry(kind).or_default() += 1;
    }
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
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        writeln!(
            f,
            "rule-harness: {} records ({} relevant, {} skipped unread by the prefilter) in \
             {:.2} s: {:.0} records/s, {:.1} MB/s",
            self.records,
            self.relevant,
            self.unread,
            secs,
            self.records as f64 / secs,
            self.bytes as f64 / 1e6 / secs
        )?;
        if self.skipped > 0 {
            writeln!(f, "  skipped: {} handled by earlier runs", self.skipped)?;
        }
        writeln!(
            f,
            "  alerts: {}",
            counts(self.alerts.values().sum(), &self.alerts)
        )?;
        write!(
            f,
            "  errors: {}, traps: {}",
            counts(self.errors.values().sum(), &self.errors),
            self.traps
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
