//! `rule-harness bench`: how fast the harness runs the built-in rule, next to what reading
//! the same bytes costs, in one run, on one core.
//!
//! Two corpora are generated, deterministically, and kept for the next run: a CloudTrail
//! mix (many services, about 1 % SSM session starts) of a given size, and an SSM-heavy
//! stream (many identities starting sessions). For each, the table gives the median of
//! several runs of: a plain read of the file; a substring scan of it (what a `grep -F`
//! for the rule's string costs); `rule-harness run` with the rule compiled in, outside the
//! sandbox; and `rule-harness run` itself, with state in memory and in a redb file. Every
//! run of the harness is a process of its own, pinned with the bench to one core, whose
//! peak memory the kernel reports.

use std::fs::File;
use std::io::{BufWriter, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;

use crate::corpus::{Corpus, CorpusSpec, Tally, Until};

#[derive(Args)]
pub struct BenchArgs {
    /// Size of the CloudTrail mix, in MB
    #[arg(long, value_name = "MB", default_value_t = 256)]
    mix_mb: u64,
    /// Share of the mix that is SSM session starts
    #[arg(long, value_name = "SHARE", default_value_t = 0.012)]
    mix_ssm_share: f64,
    /// Records of the SSM-heavy stream
    #[arg(long, value_name = "N", default_value_t = 42_000)]
    ssm_records: u64,
    /// Identities starting sessions in the SSM-heavy stream
    #[arg(long, value_name = "N", default_value_t = 5000)]
    identities: usize,
    /// Seed of both corpora
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Runs of each measurement; the table gives medians
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=100))]
    runs: u64,
    /// Where the corpora are kept [default: the system's temporary directory]
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// The core to run on
    #[arg(long, default_value_t = 0)]
    core: usize,
}

/// A corpus on disk, and what it holds.
struct Stream {
    name: &'static str,
    path: PathBuf,
    tally: Tally,
}

/// One measurement's median, and the largest peak memory of its runs.
#[derive(Clone, Copy)]
struct Measure {
    time: Duration,
    peak_kib: Option<u64>,
    state_bytes: Option<u64>,
}

pub fn bench(args: &BenchArgs) -> anyhow::Result<ExitCode> {
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join("rule-harness-bench"));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let machine = machine();
    pin(args.core).context("cannot pin the bench to its core (--core)")?;
    let corpora = [
        corpus(
            &dir,
            "mix",
            CorpusSpec {
                seed: args.seed,
                ssm_share: args.mix_ssm_share,
                ..CorpusSpec::default()
            },
            Until::Bytes(args.mix_mb * 1_000_000),
        )?,
        corpus(
            &dir,
            "ssm-heavy",
            CorpusSpec {
                seed: args.seed,
                ssm_share: 0.72,
                identities: args.identities,
                step_millis: 60_000,
                ..CorpusSpec::default()
            },
            Until::Records(args.ssm_records),
        )?,
    ];
    println!("{machine}");
    println!(
        "one core (#{}), median of {} runs; throughput in MB/s of the file, and records/s\n",
        args.core, args.runs
    );
    println!(
        "| corpus | what | time | MB/s | records/s | session starts/s | peak memory | vs. scan | sandboxed / native |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for corpus in &corpora {
        let rows = measure(corpus, args, &dir)?;
        print_rows(corpus, &rows);
    }
    Ok(ExitCode::SUCCESS)
}

/// The corpus `name` with `spec`, generated unless an earlier run left it.
fn corpus(
    dir: &Path,
    name: &'static str,
    spec: CorpusSpec,
    until: Until,
) -> anyhow::Result<Stream> {
    let size = match until {
        Until::Bytes(n) => format!("{n}B"),
        Until::Records(n) => format!("{n}r"),
    };
    let stem = format!(
        "{name}-{size}-{}id-{}ssm-seed{}",
        spec.identities, spec.ssm_share, spec.seed
    );
    let path = dir.join(format!("{stem}.ndjson"));
    let tally_path = dir.join(format!("{stem}.tally"));
    if let Some(tally) = std::fs::read_to_string(&tally_path)
        .ok()
        .and_then(|t| parse_tally(&t))
        && path.metadata().is_ok_and(|m| m.len() == tally.bytes)
    {
        return Ok(Stream { name, path, tally });
    }
    eprintln!("rule-harness: generating {}", path.display());
    let mut out = BufWriter::new(File::create(&path)?);
    let tally = Corpus::new(spec).write(until, &mut out)?;
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    let Tally {
        records,
        bytes,
        sessions,
        identities,
    } = tally;
    std::fs::write(
        &tally_path,
        format!("{records} {bytes} {sessions} {identities}"),
    )?;
    Ok(Stream { name, path, tally })
}

fn parse_tally(text: &str) -> Option<Tally> {
    let mut numbers = text.split_whitespace().map(|n| n.parse().ok());
    Some(Tally {
        records: numbers.next()??,
        bytes: numbers.next()??,
        sessions: numbers.next()??,
        identities: numbers.next()??,
    })
}

/// What each way of going through a corpus costs.
fn measure(
    corpus: &Stream,
    args: &BenchArgs,
    dir: &Path,
) -> anyhow::Result<Vec<(&'static str, Measure)>> {
    let file = corpus
        .path
        .to_str()
        .context("the corpus path is not text")?;
    let state = dir.join("bench-state.redb");
    let state_arg = state
        .to_str()
        .context("the state path is not text")?
        .to_owned();
    let harness = |extra: &'static [&'static str], state: Option<&Path>| {
        let file = file.to_owned();
        let state_arg = state_arg.clone();
        let state = state.map(Path::to_owned);
        move || {
            let mut command = Command::new(std::env::current_exe()?);
            command.args(["run", "--no-progress", "--dead-letter", "/dev/null"]);
            command.args(extra);
            match &state {
                Some(path) => {
                    let _ = std::fs::remove_file(path);
                    command.args(["--state", &state_arg]);
                }
                None => {
                    command.args(["--state", "memory"]);
                }
            }
            command.arg(&file);
            run_pinned(command, args.core).map(|(time, peak)| {
                let state_bytes = state
                    .as_ref()
                    .and_then(|p| p.metadata().ok())
                    .map(|m| m.len());
                (time, Some(peak), state_bytes)
            })
        }
    };
    let mut rows = Vec::new();
    rows.push((
        "plain read",
        median(args.runs, || timed(|| read(&corpus.path, |_, _| ())))?,
    ));
    rows.push((
        "substring scan",
        median(args.runs, || {
            timed(|| {
                std::hint::black_box(count(&corpus.path, b"\"StartSession\"")?);
                Ok(())
            })
        })?,
    ));
    rows.push((
        "native rule, memory",
        median(args.runs, harness(&["--unsandboxed"], None))?,
    ));
    rows.push(("sandboxed, memory", median(args.runs, harness(&[], None))?));
    rows.push((
        "sandboxed, redb",
        median(args.runs, harness(&[], Some(&state)))?,
    ));
    let _ = std::fs::remove_file(&state);
    Ok(rows)
}

type Run = anyhow::Result<(Duration, Option<u64>, Option<u64>)>;

fn timed(work: impl FnOnce() -> anyhow::Result<()>) -> Run {
    let started = Instant::now();
    work()?;
    Ok((started.elapsed(), None, None))
}

/// The median time of `runs` runs, the largest peak memory, the last state size.
fn median(runs: u64, mut run: impl FnMut() -> Run) -> anyhow::Result<Measure> {
    let mut times = Vec::new();
    let (mut peak_kib, mut state_bytes) = (None, None);
    for _ in 0..runs {
        let (time, peak, state) = run()?;
        times.push(time);
        peak_kib = peak_kib.max(peak);
        state_bytes = state.or(state_bytes);
    }
    times.sort();
    Ok(Measure {
        time: times[times.len() / 2],
        peak_kib,
        state_bytes,
    })
}

/// Reads `path` in large chunks, handing each to `each` with where its new bytes start:
/// each chunk begins with the last bytes of the one before, so that a needle across two
/// chunks is seen whole.
fn read(path: &Path, mut each: impl FnMut(&[u8], usize)) -> anyhow::Result<()> {
    const CHUNK: usize = 1 << 20;
    const OVERLAP: usize = 64;
    let mut file = File::open(path)?;
    let mut buffer = vec![0; CHUNK + OVERLAP];
    let mut kept = 0;
    loop {
        let n = file.read(&mut buffer[kept..])?;
        if n == 0 {
            return Ok(());
        }
        let end = kept + n;
        each(&buffer[..end], kept);
        kept = OVERLAP.min(end);
        buffer.copy_within(end - kept..end, 0);
    }
}

/// How often `needle` occurs in the file at `path`.
fn count(path: &Path, needle: &[u8]) -> anyhow::Result<usize> {
    let finder = memchr::memmem::Finder::new(needle);
    let mut found = 0;
    read(path, |chunk, fresh| {
        found += finder
            .find_iter(chunk)
            .filter(|at| at + needle.len() > fresh)
            .count();
    })?;
    Ok(found)
}

/// Runs `command` on `core`; its wall time and peak memory, or why it failed.
fn run_pinned(mut command: Command, core: usize) -> anyhow::Result<(Duration, u64)> {
    command.stdout(Stdio::null()).stderr(Stdio::piped());
    // SAFETY: sched_setaffinity is async-signal-safe.
    unsafe {
        command.pre_exec(move || pin(core));
    }
    let started = Instant::now();
    let mut child = command.spawn().context("cannot start the harness")?;
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("piped")
        .read_to_string(&mut stderr)?;
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid; wait4 fills it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: the child is ours and not yet waited for.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    let elapsed = started.elapsed();
    if pid < 0 || !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        bail!("the harness failed:\n{stderr}");
    }
    Ok((elapsed, usage.ru_maxrss as u64))
}

/// Pins the calling thread (and what it starts) to `core`.
fn pin(core: usize) -> std::io::Result<()> {
    // SAFETY: an all-zero cpu_set_t is an empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: CPU_SET writes within the set.
    unsafe { libc::CPU_SET(core, &mut set) };
    // SAFETY: the set is valid and sized as given.
    match unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) } {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

fn print_rows(corpus: &Stream, rows: &[(&str, Measure)]) {
    let find = |what: &str| rows.iter().find(|(w, _)| *w == what).map(|(_, m)| m.time);
    let scan = find("substring scan");
    let native = find("native rule, memory");
    let tally = corpus.tally;
    for (what, measure) in rows {
        let secs = measure.time.as_secs_f64();
        let ratio = |base: Option<Duration>, label: &str| match base {
            Some(base) if what.starts_with(label) => {
                format!("{:.2}x", base.as_secs_f64() / secs)
            }
            _ => String::new(),
        };
        let vs_scan = match scan {
            Some(scan) if *what != "plain read" && *what != "substring scan" => {
                format!("{:.1}x the time", secs / scan.as_secs_f64())
            }
            _ => String::new(),
        };
        let mut memory = measure.peak_kib.map_or(String::new(), |kib| {
            format!("{:.0} MiB", kib as f64 / 1024.0)
        });
        if let Some(bytes) = measure.state_bytes {
            memory += &format!(
                " (state {:.1} MB, {:.0} B per identity)",
                bytes as f64 / 1e6,
                bytes as f64 / tally.identities.max(1) as f64
            );
        }
        println!(
            "| {} ({:.0} MB, {} records, {} session starts) | {what} | {:.3} s | {:.0} | {:.0} | {:.0} | {memory} | {vs_scan} | {} |",
            corpus.name,
            tally.bytes as f64 / 1e6,
            tally.records,
            tally.sessions,
            secs,
            tally.bytes as f64 / 1e6 / secs,
            tally.records as f64 / secs,
            tally.sessions as f64 / secs,
            ratio(native, "sandboxed"),
        );
    }
}

/// The machine, for the reader of the table.
fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "an unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!(
        "rule-harness {} on {cpu}, {cores} cores available",
        env!("CARGO_PKG_VERSION")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_in_chunks_sees_every_needle_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut data = vec![b'x'; (1 << 20) - 5];
        data.extend(b"\"StartSession\"");
        data.extend(vec![b'y'; 3 << 20]);
        data.extend(b"\"StartSession\"");
        data.extend(b"\"StartSession\"");
        std::fs::write(&path, &data).unwrap();
        assert_eq!(count(&path, b"\"StartSession\"").unwrap(), 3);
    }
}
