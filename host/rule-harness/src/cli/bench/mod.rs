//! `rule-harness bench`: how fast the harness runs the built-in rule, next to what reading
//! the same bytes costs, in one run, on one core.
//!
//! Two corpora are generated, deterministically, and kept for the next run: a CloudTrail
//! mix (many services, about 1 % SSM session starts) of a given size, and an SSM-heavy
//! stream (many identities starting sessions), both NDJSON; and the mix again as
//! CloudTrail writes it to S3, gzip'd `{"Records": [...]}` files. For each, the table gives
//! the median of several rounds of runs of: a plain read of the file and a substring scan of it
//! (what a `grep -F` for the rule's string costs), or inflating the files;
//! `rule-harness run` with the rule compiled in, outside the sandbox; and `rule-harness
//! run` itself, with state in memory and in a redb file, or on every core (files read
//! ahead). Every run of the harness is a process of its own, pinned with the bench to one
//! core unless said, whose peak memory the kernel reports, and whose summary must show
//! every session start judged and no error. A round runs each measurement of a corpus
//! once, in turn, and a ratio is the median of the rounds' ratios: on a shared machine
//! whose speed drifts, what is compared was measured in the same minute.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use flate2::Compression;
use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;

use cloudtrail_corpus::{Corpus, CorpusSpec, Tally, Until};

mod reference;
mod targets;
use detect_host::state::{RedbStore, StateStore};

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
    /// One NDJSON file, or gzip'd CloudTrail log files.
    files: Vec<PathBuf>,
    gzip: bool,
    tally: Tally,
}

impl Stream {
    fn ndjson(name: &'static str, path: PathBuf, tally: Tally) -> Self {
        Stream {
            name,
            files: vec![path],
            gzip: false,
            tally,
        }
    }
}

/// Records per generated CloudTrail log file.
const RECORDS_PER_FILE: usize = 1000;

/// One measurement's runs, one a round: their median, and the largest peak memory.
#[derive(Clone)]
struct Measure {
    time: Duration,
    /// Each round's time, in the order of the rounds.
    times: Vec<Duration>,
    peak_kib: Option<u64>,
    state_bytes: Option<StateSize>,
}

impl Measure {
    fn of(runs: Vec<Taken>) -> Measure {
        let times: Vec<Duration> = runs.iter().map(|run| run.0).collect();
        let mut sorted = times.clone();
        sorted.sort();
        Measure {
            time: sorted[sorted.len() / 2],
            times,
            peak_kib: runs.iter().filter_map(|run| run.1).max(),
            state_bytes: runs.iter().rev().find_map(|run| run.2),
        }
    }

    /// This measurement's time over `other`'s: the median of the rounds' ratios.
    fn ratio_to(&self, other: &Measure) -> f64 {
        let mut ratios: Vec<f64> = (self.times.iter().zip(&other.times))
            .map(|(a, b)| a.as_secs_f64() / b.as_secs_f64())
            .collect();
        ratios.sort_by(f64::total_cmp);
        ratios[ratios.len() / 2]
    }
}

#[derive(Clone, Copy)]
struct StateSize {
    file: u64,
    live: u64,
}

pub fn bench(args: &BenchArgs) -> anyhow::Result<ExitCode> {
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join("rule-harness-bench"));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let machine = machine();
    // The cores the bench may use, for the runs on every core.
    CORES
        .set(affinity().context("cannot read the cores the bench may use")?)
        .expect("set once");
    pin(args.core).context("cannot pin the bench to its core (--core)")?;
    let mix = corpus(
        &dir,
        "mix",
        CorpusSpec {
            seed: args.seed,
            ssm_share: args.mix_ssm_share,
            ..CorpusSpec::default()
        },
        Until::Bytes(args.mix_mb * 1_000_000),
    )?;
    let files = cloudtrail_files(&mix)?;
    let ssm = corpus(
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
    )?;
    warm_up().context("the harness cannot run the built-in rule")?;
    println!("{machine}");
    println!(
        "one core (#{}) unless said; medians of {} rounds, each running every measurement \
         of a corpus once, in turn (a ratio is the median of the rounds' ratios); throughput \
         in MB/s of the records (uncompressed), and records/s\n",
        args.core, args.runs
    );
    println!(
        "| corpus | what | time | MB/s | records/s | session starts/s | peak memory | vs. scan (or inflate) | native / sandboxed time |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let measured = |corpus: &Stream, heavy| -> anyhow::Result<_> {
        let (rows, comparison) = measure(corpus, heavy, args, &dir)?;
        print_rows(corpus, &rows);
        Ok((rows, comparison))
    };
    let (mix_rows, _) = measured(&mix, false)?;
    measured(&files, false)?;
    let (ssm_rows, comparison) = measured(&ssm, true)?;
    if let Some(comparison) = &comparison {
        print_comparison(comparison);
    }
    targets::print(&targets::Runs {
        mix: &mix_rows,
        ssm: &ssm_rows,
        ssm_starts: ssm.tally.sessions,
        reference: comparison.as_ref(),
    });
    Ok(ExitCode::SUCCESS)
}

/// Whether the Python reference raised the harness's alerts.
fn print_comparison(comparison: &reference::Comparison) {
    let alerts: u64 = comparison.by_rule.values().sum();
    let by_rule: Vec<String> = (comparison.by_rule.iter())
        .map(|(rule, n)| format!("{rule} {n}"))
        .collect();
    match comparison.same() {
        true => println!(
            "\nThe Python reference raised the harness's {alerts} alerts exactly ({}).",
            by_rule.join(", ")
        ),
        false => println!(
            "\nThe Python reference's alerts differ from the harness's {alerts}: {} only the \
             harness raised, {} only the reference.",
            comparison.only_harness, comparison.only_reference
        ),
    }
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
        "{name}-{size}-{}id-{}ssm-seed{}-v{}",
        spec.identities,
        spec.ssm_share,
        spec.seed,
        cloudtrail_corpus::VERSION
    );
    let path = dir.join(format!("{stem}.ndjson"));
    let tally_path = dir.join(format!("{stem}.tally"));
    if let Some(tally) = std::fs::read_to_string(&tally_path)
        .ok()
        .and_then(|t| parse_tally(&t))
        && path.metadata().is_ok_and(|m| m.len() == tally.bytes)
    {
        return Ok(Stream::ndjson(name, path, tally));
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
    Ok(Stream::ndjson(name, path, tally))
}

/// The records of `mix` as CloudTrail writes them to S3: gzip'd `{"Records": [...]}` log
/// files, generated unless an earlier run left them.
fn cloudtrail_files(mix: &Stream) -> anyhow::Result<Stream> {
    let ndjson = &mix.files[0];
    let dir = ndjson.with_extension("cloudtrail");
    let complete = dir.join("complete");
    if !complete.exists() {
        eprintln!("rule-harness: generating {}", dir.display());
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let mut lines = BufReader::new(File::open(ndjson)?).lines();
        for n in 0.. {
            let records = lines
                .by_ref()
                .take(RECORDS_PER_FILE)
                .collect::<std::io::Result<Vec<_>>>()?;
            if records.is_empty() {
                break;
            }
            let file = BufWriter::new(File::create(dir.join(format!("{n:06}.json.gz")))?);
            let mut out = GzEncoder::new(file, Compression::default());
            writeln!(out, "{{\"Records\":[{}]}}", records.join(","))?;
            out.finish()?.into_inner().map_err(|e| e.into_error())?;
        }
        File::create(&complete)?;
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)?
        .map(|entry| entry.map(|e| e.path()))
        .filter(|path| {
            path.as_ref()
                .map_or(true, |p| p.extension() == Some("gz".as_ref()))
        })
        .collect::<std::io::Result<_>>()?;
    files.sort();
    Ok(Stream {
        name: "mix as CloudTrail files (.json.gz)",
        files,
        gzip: true,
        tally: mix.tally,
    })
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

/// One way of going through a corpus.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum What {
    PlainRead,
    SubstringScan,
    Grep,
    Inflate,
    Native,
    SandboxedMemory,
    SandboxedRedb,
    EveryCore,
    EndToEnd,
    Python,
}

impl What {
    fn label(self) -> &'static str {
        match self {
            What::PlainRead => "plain read",
            What::SubstringScan => "substring scan",
            What::Grep => "`grep -cF`, a process",
            What::Inflate => "inflate",
            What::Native => "native rule, memory",
            What::SandboxedMemory => "sandboxed, memory",
            What::SandboxedRedb => "sandboxed, redb",
            What::EveryCore => "sandboxed, memory, every core",
            What::EndToEnd => "sandboxed, memory, alerts written to a file",
            What::Python => "Python reference, alerts written to a file",
        }
    }

    /// A reading of the input, not the rule: the base the rule's rows are compared with.
    fn is_base(self) -> bool {
        matches!(
            self,
            What::PlainRead | What::SubstringScan | What::Grep | What::Inflate
        )
    }
}

/// A corpus's measurements.
type Rows = Vec<(What, Measure)>;

/// Where a run of the harness writes its alerts.
enum Alerts {
    Discarded,
    To(PathBuf),
}

/// What each way of going through `corpus` costs; for the SSM-heavy one (`heavy`), also
/// end to end and against the Python reference, and how the reference's alerts compare
/// with the harness's.
fn measure(
    corpus: &Stream,
    heavy: bool,
    args: &BenchArgs,
    dir: &Path,
) -> anyhow::Result<(Rows, Option<reference::Comparison>)> {
    let state = dir.join("bench-state.redb");
    let harness = |extra: &'static [&'static str], state: Option<&Path>, alerts: Alerts, core| {
        let state = state.map(Path::to_owned);
        move || {
            let mut command = Command::new(std::env::current_exe()?);
            command.args(["run", "--no-progress", "--dead-letter", "/dev/null"]);
            command.args(extra);
            match &state {
                Some(path) => {
                    let _ = std::fs::remove_file(path);
                    command.arg("--state").arg(path);
                }
                None => {
                    command.args(["--state", "memory"]);
                }
            }
            command.args(&corpus.files);
            match &alerts {
                Alerts::Discarded => command.arg("--discard-alerts").stdout(Stdio::null()),
                Alerts::To(path) => command.stdout(File::create(path)?),
            };
            let (time, peak, summary) = run_pinned(&mut command, core)?;
            check_summary(&summary, &corpus.tally)?;
            let state_bytes = match &state {
                Some(path) => Some(state_size(path)?),
                None => None,
            };
            Ok((time, Some(peak), state_bytes))
        }
    };
    let one = Some(args.core);
    let mut plan: Vec<(What, Box<dyn FnMut() -> Run + '_>)> = Vec::new();
    if corpus.gzip {
        plan.push((What::Inflate, Box::new(|| timed(|| inflate(&corpus.files)))));
    } else {
        let file = &corpus.files[0];
        plan.push((
            What::PlainRead,
            Box::new(|| timed(|| read(file, |_, _| ()))),
        ));
        let scan = || std::hint::black_box(count(file, b"\"StartSession\"")).map(drop);
        plan.push((What::SubstringScan, Box::new(move || timed(scan))));
        if let Some(grep) = reference::grep(file) {
            // GNU grep stops at the first match when its output is /dev/null.
            let count = dir.join("grep-count.txt");
            plan.push((What::Grep, Box::new(process(grep, count, one))));
        }
    }
    let discard = || Alerts::Discarded;
    let native = harness(&["--unsandboxed"], None, discard(), one);
    plan.push((What::Native, Box::new(native)));
    plan.push((
        What::SandboxedMemory,
        Box::new(harness(&[], None, discard(), one)),
    ));
    if corpus.gzip {
        plan.push((
            What::EveryCore,
            Box::new(harness(&[], None, discard(), None)),
        ));
    } else {
        let redb = harness(&[], Some(&state), discard(), one);
        plan.push((What::SandboxedRedb, Box::new(redb)));
    }
    let (ours, theirs) = (
        dir.join("alerts.ndjson"),
        dir.join("reference-alerts.ndjson"),
    );
    let python = match heavy {
        true => reference::python(dir, &corpus.files[0])?,
        false => None,
    };
    if heavy {
        let end_to_end = harness(&[], None, Alerts::To(ours.clone()), one);
        plan.push((What::EndToEnd, Box::new(end_to_end)));
    }
    if let Some(python) = python {
        plan.push((What::Python, Box::new(process(python, theirs.clone(), one))));
    }
    let rows = in_rounds(args.runs, plan)?;
    let _ = std::fs::remove_file(&state);
    let comparison = match rows.iter().any(|(what, _)| *what == What::Python) {
        true => Some(reference::compare(&ours, &theirs)?),
        false => None,
    };
    Ok((rows, comparison))
}

/// Runs every measurement once a round, in turn, for `rounds` rounds.
fn in_rounds(
    rounds: u64,
    mut plan: Vec<(What, Box<dyn FnMut() -> Run + '_>)>,
) -> anyhow::Result<Rows> {
    let mut taken: Vec<Vec<Taken>> = plan.iter().map(|_| Vec::new()).collect();
    for _ in 0..rounds {
        for ((_, run), taken) in plan.iter_mut().zip(&mut taken) {
            taken.push(run()?);
        }
    }
    Ok((plan.iter().zip(taken))
        .map(|((what, _), runs)| (*what, Measure::of(runs)))
        .collect())
}

/// A run of `command` (which must succeed) as a whole process on `core`, its output to
/// `out`, written anew each run.
fn process(mut command: Command, out: PathBuf, core: Option<usize>) -> impl FnMut() -> Run {
    move || {
        command.stdout(File::create(&out)?);
        let (time, peak, _) = run_pinned(&mut command, core)?;
        Ok((time, Some(peak), None))
    }
}

/// Runs the harness once on nothing, so that the rule is compiled and cached before any
/// run is measured.
fn warm_up() -> anyhow::Result<()> {
    let mut command = Command::new(std::env::current_exe()?);
    command
        .args(["run", "--no-progress", "--state", "memory"])
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    run_pinned(&mut command, None).map(drop)
}

/// A bench that judged less than it should measures nothing: the summary must count
/// every record and session start, and no error.
fn check_summary(summary: &str, tally: &Tally) -> anyhow::Result<()> {
    let expected = format!(
        "rule-harness: {} records ({} relevant,",
        tally.records, tally.sessions
    );
    if !summary.contains(&expected) || !summary.contains("errors: 0,") {
        bail!("the harness did not judge the whole corpus (expected \"{expected}\"):\n{summary}");
    }
    Ok(())
}

/// The state file's size, and the bytes of the keys and values it holds (the rest is
/// the store's free pages and structure).
fn state_size(path: &Path) -> anyhow::Result<StateSize> {
    let file = path.metadata()?.len();
    let entries = RedbStore::open(path)?.entries()?;
    let live = entries
        .iter()
        .map(|(table, key, value)| (table.len() + key.len() + value.len()) as u64)
        .sum();
    Ok(StateSize { file, live })
}

/// Inflates `files` into nothing.
fn inflate(files: &[PathBuf]) -> anyhow::Result<()> {
    for path in files {
        let mut gz = MultiGzDecoder::new(BufReader::with_capacity(1 << 20, File::open(path)?));
        std::io::copy(&mut gz, &mut std::io::sink())?;
    }
    Ok(())
}

/// One run: its time, the peak memory of its process, and the size of its state file.
type Taken = (Duration, Option<u64>, Option<StateSize>);
type Run = anyhow::Result<Taken>;

fn timed(work: impl FnOnce() -> anyhow::Result<()>) -> Run {
    let started = Instant::now();
    work()?;
    Ok((started.elapsed(), None, None))
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

/// Runs `command` on `core`, or on every core; its wall time, peak memory and summary,
/// or why it failed.
fn run_pinned(
    command: &mut Command,
    core: Option<usize>,
) -> anyhow::Result<(Duration, u64, String)> {
    command.stderr(Stdio::piped());
    // SAFETY: sched_setaffinity is async-signal-safe.
    unsafe {
        command.pre_exec(move || match core {
            Some(core) => pin(core),
            None => unpin(),
        });
    }
    let started = Instant::now();
    let program = command.get_program().to_string_lossy().into_owned();
    let mut child = command
        .spawn()
        .with_context(|| format!("cannot start {program}"))?;
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
        bail!("{program} failed:\n{stderr}");
    }
    Ok((elapsed, usage.ru_maxrss as u64, stderr))
}

/// The cores the bench was allowed when it started.
static CORES: std::sync::OnceLock<libc::cpu_set_t> = std::sync::OnceLock::new();

/// The cores the calling thread may run on.
fn affinity() -> std::io::Result<libc::cpu_set_t> {
    // SAFETY: an all-zero cpu_set_t is an empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: the set is valid and sized as given.
    match unsafe { libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set) } {
        0 => Ok(set),
        _ => Err(std::io::Error::last_os_error()),
    }
}

/// Pins the calling thread (and what it starts) to `core`.
fn pin(core: usize) -> std::io::Result<()> {
    // SAFETY: an all-zero cpu_set_t is an empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    if core >= libc::CPU_SETSIZE as usize {
        return Err(std::io::Error::from(std::io::ErrorKind::InvalidInput));
    }
    // SAFETY: CPU_SET writes within the set, the core being below its size.
    unsafe { libc::CPU_SET(core, &mut set) };
    set_affinity(&set)
}

/// Lets the calling thread (and what it starts) run on every core the bench may use.
fn unpin() -> std::io::Result<()> {
    set_affinity(CORES.get().expect("read when the bench started"))
}

fn set_affinity(set: &libc::cpu_set_t) -> std::io::Result<()> {
    // SAFETY: the set is valid and sized as given.
    match unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(set), set) } {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

fn print_rows(corpus: &Stream, rows: &Rows) {
    let find = |what| rows.iter().find(|(w, _)| *w == what).map(|(_, m)| m);
    let scan = find(What::SubstringScan).or(find(What::Inflate));
    let native = find(What::Native);
    let tally = corpus.tally;
    for (what, measure) in rows {
        let secs = measure.time.as_secs_f64();
        // Like for like: the native rule runs on one core and discards its alerts.
        let vs_native = match (native, what) {
            (Some(native), What::SandboxedMemory | What::SandboxedRedb) => {
                format!("{:.2}x", native.ratio_to(measure))
            }
            _ => String::new(),
        };
        let vs_scan = match scan {
            Some(scan) if !what.is_base() => format!("{:.1}x the time", measure.ratio_to(scan)),
            _ => String::new(),
        };
        let mut memory = measure.peak_kib.map_or(String::new(), |kib| {
            format!("{:.0} MiB", kib as f64 / 1024.0)
        });
        if let Some(StateSize { file, live }) = measure.state_bytes {
            memory += &format!(
                " (state file {:.1} MB; keys and values {:.0} B per identity)",
                file as f64 / 1e6,
                live as f64 / tally.identities.max(1) as f64
            );
        }
        println!(
            "| {} ({:.0} MB, {} records, {} session starts) | {} | {:.3} s | {:.0} | {:.0} | {:.0} | {memory} | {vs_scan} | {vs_native} |",
            corpus.name,
            tally.bytes as f64 / 1e6,
            tally.records,
            tally.sessions,
            what.label(),
            secs,
            tally.bytes as f64 / 1e6 / secs,
            tally.records as f64 / secs,
            tally.sessions as f64 / secs,
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
    fn ratios_pair_the_runs_of_one_round() {
        let runs = |millis: [u64; 3]| {
            let runs = millis.map(|ms| (Duration::from_millis(ms), Some(ms), None));
            Measure::of(runs.to_vec())
        };
        // The second round ran on a machine ten times slower; the third, B alone was fast.
        let (a, b) = (runs([10, 100, 40]), runs([20, 200, 20]));
        assert_eq!(
            (a.time, b.time),
            (Duration::from_millis(40), Duration::from_millis(20))
        );
        assert_eq!(a.peak_kib, Some(100));
        // Medians alone would say 2.0: each of two rounds out of three says 0.5.
        assert_eq!(a.ratio_to(&b), 0.5);
        assert_eq!(b.ratio_to(&a), 2.0);
    }

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
