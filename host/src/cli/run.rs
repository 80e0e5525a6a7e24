//! `rule-harness run`: the pipeline stage. Records in (files or stdin), alerts out (JSON
//! lines on stdout), failed records to the dead-letter stream, a summary on stderr.
//!
//! What reaches the SIEM and what the state remembers never disagree:
//!
//! * **Alerts before state.** A commit first writes out the alerts and dead letters (and
//!   syncs them when they go to a file), then commits the state that records them, with
//!   how far each input file was read. If the alerts cannot be written, nothing more is
//!   committed: a rerun raises them again.
//! * **Resume, not replay.** A rerun over the same files starts after what the last commit
//!   recorded, so a crash at any point and a rerun give the alerts of one uninterrupted run,
//!   with at most the uncommitted tail alerted twice. Standard input cannot be resumed.
//! * **Commits on time.** Every `--commit-every` records, every `--commit-interval` even
//!   on a quiet stream, at the end, and on SIGINT or SIGTERM.

use std::fs;
use std::io::{self, IsTerminal};
use std::os::fd::AsFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use super::RuleArgs;
use super::reader::{self, Message, Owned};
use super::sink::{Interrupted, Sink};
use super::summary::Summary;
use rule_harness::HarnessError;
use rule_harness::input::{FileIdentity, FrameLimits, InputMark, Position, Source};
use rule_harness::judge::{Judge, Native};
use rule_harness::output::DeadLetter;
use rule_harness::state::{self, Changes, INPUTS_TABLE, MemoryStore, RedbStore, StateStore};

#[derive(Args)]
pub struct RunArgs {
    /// CloudTrail logs: NDJSON, JSON arrays or {"Records": [...]} files, optionally gzipped; `-` is stdin
    #[arg(value_name = "FILE", default_value = "-")]
    files: Vec<PathBuf>,
    /// The rule's configuration (JSON)
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// State file, or `memory` for state that ends with the run
    #[arg(long, value_name = "PATH", default_value = "rule-state.redb")]
    state: String,
    /// Where failed records go, appended one JSON line each [default: stderr]
    #[arg(long, value_name = "FILE")]
    dead_letter: Option<PathBuf>,
    /// Records between commits of alerts and state
    #[arg(long, value_name = "N", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    commit_every: u64,
    /// Longest time between commits, however slowly records come
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_interval)]
    commit_interval: Duration,
    /// Read every file from its start, even the records earlier runs have handled
    #[arg(long)]
    reprocess: bool,
    /// Hand every record to the rule, which then parses and checks each. By default the
    /// records that the rule's prefilter rules out are skipped unread, and only those not
    /// framed as a JSON object are dead-lettered
    #[arg(long)]
    validate_all: bool,
    /// Let the alerts go to a standard output that is /dev/null (or was closed) while a
    /// state file records them as raised; refused otherwise, as they would be lost
    #[arg(long)]
    discard_alerts: bool,
    /// Never show a progress bar
    #[arg(long)]
    no_progress: bool,
    /// Run the built-in rule compiled into the harness, outside the sandbox, with no
    /// limits: the same pipeline, to measure what the sandbox costs
    #[arg(long)]
    unsandboxed: bool,
}

fn parse_interval(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if d.is_zero() || d > Duration::from_secs(3600) {
        return Err("must be more than 0 and at most 1h".into());
    }
    Ok(d)
}

/// One input of the run.
struct Input {
    source: Source,
    /// The file's canonical path: its key in the state's table of inputs.
    key: Option<String>,
    /// Identity of the file when it was opened; set for files that can be resumed.
    identity: Option<FileIdentity>,
    /// Items handled so far, counting from the start of the file.
    done: u64,
    /// Whether `done` moved since the last commit.
    moved: bool,
    /// Whether the reader reached its end.
    ended: bool,
}

pub fn run(rule_args: &RuleArgs, args: &RunArgs) -> anyhow::Result<ExitCode> {
    let mut inputs = check_inputs(&args.files)?;
    check_outputs(args, &inputs)?;
    let config = match &args.config {
        Some(path) => Some(
            fs::read_to_string(path)
                .with_context(|| format!("cannot read the config {}", path.display()))?,
        ),
        None => None,
    };
    let store: Box<dyn StateStore> = if args.state == "memory" {
        Box::new(MemoryStore::new())
    } else {
        Box::new(RedbStore::open(Path::new(&args.state))?)
    };
    let mut runner: Box<dyn Judge> = if args.unsandboxed {
        anyhow::ensure!(
            rule_args.rule.is_none(),
            "--unsandboxed runs the built-in rule; it takes no --rule"
        );
        let limits = rule_args.limits()?;
        Box::new(Native::<ssm_rule::SsmSessions>::new(
            store,
            config.as_deref(),
            limits.max_clock_skew,
        )?)
    } else {
        Box::new(rule_args.load()?.start(store, config)?)
    };
    let (mut marks, forget) = load_marks(runner.as_mut(), &inputs)?;
    if args.reprocess {
        marks = vec![None; inputs.len()];
    }
    let signals = Signals::register()?;
    let dead_letters = match &args.dead_letter {
        Some(path) => Sink::append(path, &signals.any)?,
        None => Sink::stderr(&signals.any)?,
    };
    let progress = progress_bar(args, &inputs);
    let limits = FrameLimits {
        max_record_bytes: rule_args.max_record_bytes,
        ..FrameLimits::default()
    };
    let sources = inputs.iter().map(|i| i.source.clone()).collect();
    let prefilter = runner.prefilter();
    let prefilter = (!args.validate_all && !prefilter.is_everything()).then(|| prefilter.clone());
    let messages = reader::spawn(sources, marks, limits, prefilter, progress.clone());

    let mut run = Run {
        runner,
        alerts: Sink::stdout(&signals.any)?,
        dead_letters,
        summary: Summary::default(),
        since_commit: 0,
        last_commit: Instant::now(),
        args,
        forget,
    };
    let started = Instant::now();
    let drove = run.drive(&messages, &mut inputs, &signals);
    progress.finish_and_clear();
    let stopped_undelivered = match drove {
        Err(e) if e.is::<Interrupted>() => Some(e.to_string()),
        Err(e) => return Err(e),
        Ok(()) => None,
    };
    run.summary.traps = run.runner.traps();
    run.summary.elapsed = started.elapsed();
    eprintln!("{}", run.summary);
    Ok(match (signals.received(), stopped_undelivered) {
        (None, _) => ExitCode::SUCCESS,
        (Some(signal), None) => {
            eprintln!(
                "rule-harness: stopped by {}; everything read so far is committed: the same \
                 command resumes after it (streams such as standard input cannot resume)",
                signal.name
            );
            ExitCode::from(128 + signal.number as u8)
        }
        (Some(signal), Some(why)) => {
            eprintln!(
                "rule-harness: {why}, by {}; the state is committed up to the last output \
                 delivered: the same command raises the rest again",
                signal.name
            );
            ExitCode::from(128 + signal.number as u8)
        }
    })
}

/// The inputs, checked without opening them: a FIFO is opened once, by the reader.
fn check_inputs(files: &[PathBuf]) -> anyhow::Result<Vec<Input>> {
    let mut inputs: Vec<Input> = Vec::new();
    let mut seen = Vec::new();
    for arg in files {
        let source = Source::from_arg(arg);
        source.check().map_err(anyhow::Error::msg)?;
        let (key, id) = match &source {
            Source::Stdin => (None, None),
            Source::File(path) => {
                let meta = fs::metadata(path)?;
                let canonical = fs::canonicalize(path)
                    .with_context(|| format!("cannot open {}", path.display()))?;
                (Some(input_key(&canonical)), Some((meta.dev(), meta.ino())))
            }
        };
        if seen.contains(&id) {
            bail!("{} is named twice; each input is read once", source.name());
        }
        seen.push(id);
        inputs.push(Input {
            source,
            key,
            identity: None,
            done: 0,
            moved: false,
            ended: false,
        });
    }
    Ok(inputs)
}

/// Outputs must not overwrite what the run reads: an input, or the state.
fn check_outputs(args: &RunArgs, inputs: &[Input]) -> anyhow::Result<()> {
    let id = |path: &Path| fs::metadata(path).ok().map(|m| (m.dev(), m.ino()));
    let input_ids: Vec<_> = inputs
        .iter()
        .filter_map(|i| match &i.source {
            Source::File(path) => id(path),
            Source::Stdin => None,
        })
        .collect();
    let state = (args.state != "memory").then(|| PathBuf::from(&args.state));
    let state_id = state.as_deref().and_then(id);
    let mut outputs = vec![("--state", state_id)];
    if let Some(path) = &args.dead_letter {
        outputs.push(("--dead-letter", id(path)));
    }
    let stdout = fs::File::from(io::stdout().as_fd().try_clone_to_owned()?).metadata()?;
    // A closed standard output is /dev/null by the time the harness runs (the runtime
    // puts it there so that no file takes its place): the alerts are then thrown away
    // while the state records them as raised. It may be meant; it is said.
    let null = fs::metadata("/dev/null").ok().map(|m| m.rdev());
    if stdout.file_type().is_char_device() && Some(stdout.rdev()) == null {
        let what = "standard output is /dev/null (or was closed): this run's alerts would be \
                    discarded";
        if state.is_some() && !args.discard_alerts {
            bail!(
                "{what}, and the state file would record them as raised, so that no later run \
                 raises them again; send the alerts somewhere, or pass --discard-alerts"
            );
        }
        eprintln!("rule-harness: {what}");
    }
    let stdout_id = stdout.is_file().then(|| (stdout.dev(), stdout.ino()));
    outputs.push(("standard output", stdout_id));
    for (name, output) in outputs.into_iter().filter_map(|(n, o)| Some((n, o?))) {
        if input_ids.contains(&output) {
            bail!("{name} is also an input: writing it would destroy what is being read");
        }
        if name != "--state" && Some(output) == state_id {
            bail!("{name} is the state file: writing it would destroy the state");
        }
    }
    Ok(())
}

/// Records handed to the rule in one call, at most.
const BATCH_RECORDS: usize = 64;

/// Marks of files that no run has read for this long are forgotten.
const FORGET_INPUTS_AFTER: Duration = Duration::from_secs(90 * 86_400);

/// The key of a file in the state's table of inputs: its canonical path, byte for byte.
fn input_key(canonical: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    match canonical.to_str() {
        Some(text) => text.to_owned(),
        None => format!(
            "bytes:{}",
            rule_harness::input::hex(canonical.as_os_str().as_bytes())
        ),
    }
}

fn now_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Where earlier runs left each file input: the mark under its path, or else one of a file
/// it continues (a log renamed by rotation, or copied). Also the marks to forget.
fn load_marks(
    runner: &mut dyn Judge,
    inputs: &[Input],
) -> anyhow::Result<(Vec<Option<InputMark>>, Changes)> {
    let mut all = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let store = runner.store();
        let keys = store.keys_after(INPUTS_TABLE, after.as_deref(), 1000)?;
        let Some(last) = keys.last().cloned() else {
            break;
        };
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        for (key, value) in keys.iter().zip(store.get_many(INPUTS_TABLE, &refs)?) {
            let mark: InputMark = serde_json::from_slice(&value.unwrap_or_default())
                .with_context(|| format!("the state's record of input {key} is unreadable"))?;
            all.push((key.clone(), mark));
        }
        after = Some(last);
    }
    let horizon = now_seconds().saturating_sub(FORGET_INPUTS_AFTER.as_secs());
    let mut forget = Changes::new();
    for (key, _) in all.iter().filter(|(_, mark)| mark.read_at < horizon) {
        state::change(&mut forget, INPUTS_TABLE, key.clone(), None);
    }
    let marks = inputs
        .iter()
        .map(|input| {
            let (Some(key), Source::File(path)) = (&input.key, &input.source) else {
                return None;
            };
            if let Some((_, mark)) = all.iter().find(|(k, _)| k == key) {
                return Some(mark.clone());
            }
            // Only a regular file can be recognised: opening a FIFO would take its data.
            if !fs::metadata(path).is_ok_and(|m| m.is_file()) {
                return None;
            }
            let file = fs::File::open(path).ok()?;
            let now = FileIdentity::of(&file).ok()??;
            all.iter()
                .map(|(_, mark)| mark)
                .find(|mark| mark.identity.continued_by(&now, &file).unwrap_or(false))
                .cloned()
        })
        .collect();
    Ok((marks, forget))
}

/// The running stage: the rule, its outputs, and when it last committed.
struct Run<'a> {
    runner: Box<dyn Judge>,
    alerts: Sink,
    dead_letters: Sink,
    summary: Summary,
    since_commit: u64,
    last_commit: Instant,
    args: &'a RunArgs,
    /// Marks of inputs to forget at the next commit.
    forget: Changes,
}

impl Run<'_> {
    /// Processes what the reader sends until it is done or a signal comes, committing on
    /// schedule and at the end.
    fn drive(
        &mut self,
        messages: &Receiver<Message>,
        inputs: &mut [Input],
        signals: &Signals,
    ) -> anyhow::Result<()> {
        while signals.received().is_none() {
            // Wake up for the next commit when there is something to commit, and in any
            // case often enough to see a signal.
            let idle = Duration::from_millis(200);
            let wait = match self.since_commit {
                0 => idle,
                _ => self
                    .args
                    .commit_interval
                    .saturating_sub(self.last_commit.elapsed()),
            };
            let wait = wait.clamp(Duration::from_millis(1), idle);
            match messages.recv_timeout(wait) {
                Ok(message) => {
                    if self.handle(message, inputs, signals)?.is_break() {
                        break;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    // The reader ends every source before it goes; if not, it failed.
                    if let Some(input) = inputs.iter().find(|input| !input.ended) {
                        let name = input.source.name();
                        self.commit(inputs)?;
                        bail!(
                            "reading stopped unexpectedly before the end of {name}; what was \
                             read is committed, and running again resumes there"
                        );
                    }
                    break;
                }
            }
            if self.commit_due(inputs) {
                self.commit(inputs)?;
            }
        }
        self.commit(inputs)
    }

    /// Handles one message of the reader. `Break` when a signal came in between items.
    fn handle(
        &mut self,
        message: Message,
        inputs: &mut [Input],
        signals: &Signals,
    ) -> anyhow::Result<std::ops::ControlFlow<()>> {
        match message {
            Message::Start {
                source,
                identity,
                skipped,
                notice,
            } => {
                let input = &mut inputs[source];
                input.identity = identity;
                input.done = skipped;
                self.summary.skipped += skipped;
                if let Some(notice) = notice {
                    eprintln!("rule-harness: {notice}");
                }
            }
            Message::Items {
                source,
                items,
                unread,
                through,
            } => {
                self.summary.records += unread.records;
                self.summary.unread += unread.records;
                self.summary.bytes += unread.bytes;
                self.items(source, items, inputs, signals)?;
                if signals.received().is_some() {
                    return Ok(std::ops::ControlFlow::Break(()));
                }
                let input = &mut inputs[source];
                input.done = input.done.max(through);
                input.moved = true;
            }
            Message::End { source, end } => {
                let input = &mut inputs[source];
                input.done = input.done.max(end.items);
                input.moved = true;
                input.ended = true;
                let name = input.source.name();
                if let Some(held) = end.held_back {
                    eprintln!("rule-harness: {name}: {held}");
                }
                if let Some(error) = end.error {
                    self.summary.error("input");
                    let line = DeadLetter {
                        source: name,
                        index: end.items + 1,
                        kind: "input".into(),
                        error,
                        ..DeadLetter::default()
                    };
                    self.dead_letters.write_line(&line)?;
                }
            }
            Message::Failed(error) => {
                // What was read before is kept: a run again resumes at the failure.
                self.commit(inputs)?;
                bail!(error)
            }
        }
        Ok(std::ops::ControlFlow::Continue(()))
    }

    /// Hands a source's items to the rule, records in batches, in order; commits on
    /// schedule between batches, and stops early for a signal.
    fn items(
        &mut self,
        source: usize,
        items: Vec<(Position, Owned)>,
        inputs: &mut [Input],
        signals: &Signals,
    ) -> anyhow::Result<()> {
        let mut items = items.into_iter().peekable();
        while signals.received().is_none() {
            // A batch never runs past the next commit: a crash costs one commit's worth.
            let until_commit = self.args.commit_every.saturating_sub(self.since_commit);
            let size = (until_commit as usize).clamp(1, BATCH_RECORDS);
            let mut batch: Vec<(Position, String)> = Vec::new();
            while batch.len() < size
                && let Some((at, Owned::Record(_))) = items.peek()
            {
                let at = *at;
                let Some((_, Owned::Record(record))) = items.next() else {
                    unreachable!("peeked")
                };
                batch.push((at, record));
            }
            let last = match batch.last() {
                Some((at, _)) => {
                    let at = *at;
                    self.records(&inputs[source].source, batch)?;
                    at
                }
                None => match items.next() {
                    Some((at, unusable)) => {
                        self.unusable(&inputs[source].source, at, &unusable)?;
                        at
                    }
                    None => break,
                },
            };
            let input = &mut inputs[source];
            input.done = last.index;
            input.moved = true;
            if self.commit_due(inputs) {
                self.commit(inputs)?;
            }
        }
        Ok(())
    }

    fn dead_letter(source: &Source, at: Position, kind: &str, error: String) -> DeadLetter {
        DeadLetter {
            source: source.name(),
            line: Some(at.line),
            index: at.index,
            kind: kind.to_owned(),
            error,
            ..DeadLetter::default()
        }
    }

    fn unusable(&mut self, source: &Source, at: Position, item: &Owned) -> anyhow::Result<()> {
        self.summary.records += 1;
        self.since_commit += 1;
        let unusable = item.unusable().expect("records go in batches");
        self.summary.error(unusable.kind);
        let line = Self::dead_letter(source, at, unusable.kind, unusable.reason.clone())
            .with_unusable(&unusable);
        self.dead_letters.write_line(&line)
    }

    /// Records through the rule: their alerts and dead letters, in order.
    fn records(&mut self, source: &Source, batch: Vec<(Position, String)>) -> anyhow::Result<()> {
        let (positions, records): (Vec<Position>, Vec<String>) = batch.into_iter().unzip();
        let results = self.runner.process_batch(&records)?;
        for ((at, record), result) in positions.into_iter().zip(&records).zip(results) {
            self.summary.records += 1;
            self.summary.bytes += record.len() as u64;
            self.since_commit += 1;
            match result {
                Ok(outcome) => {
                    self.summary.relevant += u64::from(outcome.relevant);
                    for alert in &outcome.alerts {
                        *self
                            .summary
                            .alerts
                            .entry(alert.rule_id.clone())
                            .or_default() += 1;
                        self.alerts.write_line(alert)?;
                    }
                }
                Err(failure) => {
                    self.summary.error(failure.kind());
                    let line = Self::dead_letter(source, at, failure.kind(), failure.message())
                        .with_bytes(record.as_bytes());
                    self.dead_letters.write_line(&line)?;
                }
            }
        }
        Ok(())
    }

    fn commit_due(&self, inputs: &[Input]) -> bool {
        // Records the prefilter ruled out move the inputs on too: their marks are worth
        // keeping on time.
        let pending = self.since_commit > 0
            || inputs
                .iter()
                .any(|input| input.moved && input.key.is_some());
        self.since_commit >= self.args.commit_every
            || (pending && self.last_commit.elapsed() >= self.args.commit_interval)
    }

    /// Alerts and dead letters out, then the state that records them, with how far each
    /// file has been read.
    fn commit(&mut self, inputs: &mut [Input]) -> anyhow::Result<()> {
        self.alerts.deliver()?;
        self.dead_letters.deliver()?;
        let mut marks = std::mem::take(&mut self.forget);
        let read_at = now_seconds();
        for input in inputs.iter_mut().filter(|i| i.moved) {
            input.moved = false;
            if let (Some(key), Some(identity)) = (&input.key, &input.identity) {
                let mark = InputMark {
                    identity: identity.clone(),
                    items: input.done,
                    read_at,
                };
                let value = serde_json::to_vec(&mark).expect("a mark serializes");
                state::change(&mut marks, INPUTS_TABLE, key.clone(), Some(value));
            }
        }
        let store = self.runner.store();
        store.apply(marks).map_err(HarnessError::from)?;
        store.commit().map_err(HarnessError::from)?;
        self.since_commit = 0;
        self.last_commit = Instant::now();
        Ok(())
    }
}

/// SIGINT and SIGTERM: the first one makes the run commit and stop; a second one ends it
/// at once.
struct Signals {
    interrupt: Arc<AtomicBool>,
    terminate: Arc<AtomicBool>,
    /// Either: what outputs watch while they wait for their reader.
    any: Arc<AtomicBool>,
}

struct Signal {
    name: &'static str,
    number: i32,
}

impl Signals {
    fn register() -> anyhow::Result<Signals> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        use signal_hook::flag;
        let interrupt = Arc::new(AtomicBool::new(false));
        let terminate = Arc::new(AtomicBool::new(false));
        let any = Arc::new(AtomicBool::new(false));
        for (signal, seen) in [(SIGINT, &interrupt), (SIGTERM, &terminate)] {
            flag::register_conditional_shutdown(signal, 128 + signal, Arc::clone(&any))?;
            flag::register(signal, Arc::clone(seen))?;
            flag::register(signal, Arc::clone(&any))?;
        }
        Ok(Signals {
            interrupt,
            terminate,
            any,
        })
    }

    fn received(&self) -> Option<Signal> {
        if self.interrupt.load(Ordering::Relaxed) {
            Some(Signal {
                name: "SIGINT",
                number: signal_hook::consts::SIGINT,
            })
        } else if self.terminate.load(Ordering::Relaxed) {
            Some(Signal {
                name: "SIGTERM",
                number: signal_hook::consts::SIGTERM,
            })
        } else {
            None
        }
    }
}

/// A bar over the input files' bytes on a terminal; hidden otherwise.
fn progress_bar(args: &RunArgs, inputs: &[Input]) -> ProgressBar {
    if args.no_progress || !io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let files: Option<u64> = inputs
        .iter()
        .map(|i| match &i.source {
            Source::File(path) => fs::metadata(path)
                .ok()
                .filter(|m| m.is_file())
                .map(|m| m.len()),
            Source::Stdin => None,
        })
        .sum();
    match files {
        Some(total) => ProgressBar::new(total).with_style(
            ProgressStyle::with_template(
                "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .expect("the template is valid"),
        ),
        None => ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{spinner} {bytes} read, {bytes_per_sec}")
                .expect("the template is valid"),
        ),
    }
}
