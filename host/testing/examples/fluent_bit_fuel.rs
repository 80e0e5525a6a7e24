//! The work a Fluent Bit filter does per record, counted rather than timed, so that two
//! versions compare on a noisy machine: each record of an NDJSON corpus replayed through
//! Fluent Bit's calls, and the fuel of each call (about one unit a WebAssembly
//! instruction, which is what an interpreter such as Fluent Bit's pays for).
//!
//!     cargo run --release -p detect-testing --example fluent_bit_fuel -- \
//!         [--as-written] CORPUS.ndjson [RECORDS [MODULE]]
//!
//! It replays `ssm_alerts` of MODULE (by default the built-in rule's filter) on the first
//! RECORDS records, each written as Fluent Bit writes it for the filter (but with its keys
//! sorted: Fluent Bit keeps a record's own order; with `--as-written` each line is handed
//! over as it is, and must then be written as Fluent Bit writes a record, compact, with
//! its non-ASCII characters escaped), stamped with the current time, state in memory, and
//! prints the fuel of the filter function's calls per record, per byte and per session
//! start (a record holding `"StartSession"`: on the SSM-heavy corpus, nearly all of the
//! filter's work). The module's `malloc` and `free`,
//! which Fluent Bit calls around each call to copy the record in, are not counted.

use std::io::BufRead;
use std::time::{SystemTime, UNIX_EPOCH};

use detect_testing::fluent_bit::{Filtered, FluentBitFilter, fluent_bit_json};
use serde_json::Value;

const TAG: &str = "cloudtrail";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: fluent_bit_fuel [--as-written] CORPUS.ndjson [RECORDS [MODULE]]";
    let mut corpus = args.next().ok_or(usage)?;
    let as_written = corpus == "--as-written";
    if as_written {
        corpus = args.next().ok_or(usage)?;
    }
    let limit: usize = args
        .next()
        .map_or(Ok(usize::MAX), |n| n.parse().map_err(|_| usage))?;
    let module = match args.next() {
        Some(path) => std::fs::read(path)?,
        None => detect_testing::artifact("ssm", "fluent-bit"),
    };
    let mut filter = FluentBitFilter::load(&module, "ssm_alerts", &[])?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() as u32;
    let (mut records, mut bytes, mut starts, mut fuel, mut failed) = (0u64, 0u64, 0u64, 0u64, 0);
    let lines = std::io::BufReader::new(std::fs::File::open(&corpus)?).lines();
    let records_of = lines.filter(|line| line.as_ref().map_or(true, |l| !l.trim().is_empty()));
    for line in records_of.take(limit) {
        let line = line?;
        let record: Value = serde_json::from_str(&line)?;
        let written = fluent_bit_json(&record);
        let json = match as_written {
            // Only the order of the keys may differ.
            true if line.len() == written.len() => line,
            true => {
                let why = "is not written as Fluent Bit writes a record (compact, non-ASCII \
                           characters escaped): rewrite it so, or leave out --as-written";
                return Err(format!("record {} {why}", records + 1).into());
            }
            false => written,
        };
        if let Filtered::Trapped(why) = filter.filter_json(TAG, (now, 0), json.as_bytes()) {
            failed += 1;
            eprintln!("record {}: the filter trapped: {why}", records + 1);
        }
        records += 1;
        bytes += json.len() as u64;
        starts += u64::from(json.contains("\"StartSession\""));
        fuel += filter.fuel_of_last_call();
    }
    let per = |n: u64| fuel as f64 / n.max(1) as f64;
    println!(
        "{records} records, {bytes} bytes, {starts} with \"StartSession\": {:.0} fuel a record, \
         {:.2} a byte, {:.0} a session start (all the fuel over the starts)",
        per(records),
        per(bytes),
        per(starts)
    );
    if failed > 0 {
        return Err(format!("{failed} calls trapped").into());
    }
    Ok(())
}
