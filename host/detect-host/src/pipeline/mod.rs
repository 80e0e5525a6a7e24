//! The pipeline: records in from files or a stream, through a rule, alerts and dead
//! letters out to [`Sink`]s, with the state committed only behind what was delivered.
//!
//! What reaches the SIEM and what the state remembers never disagree:
//!
//! * **Alerts before state.** A commit first delivers the alerts and dead letters (synced
//!   to disk for a file, read by the other end for a pipe), then commits the state that
//!   records them, with how far each input file was read. If an output fails, nothing
//!   more is committed: a rerun raises its lines again.
//! * **Resume, not replay.** A rerun over the same files starts after what the last commit
//!   recorded ([`marks`]), so a crash at any point and a rerun give the alerts of one
//!   uninterrupted run, with at most the uncommitted tail alerted twice. A stream cannot
//!   be resumed.
//! * **Commits on time.** Every [`Options::commit_every`] records, every
//!   [`Options::commit_interval`] even on a quiet stream, at the end, and when the caller
//!   asks the run to stop ([`Stop`]).
//!
//! ```no_run
//! use detect_host::pipeline::{Options, Pipeline, Sink, Stop};
//! use detect_host::{Limits, Sandbox, state::RedbStore};
//!
//! let rule = Sandbox::new(Limits::default())?.load(&std::fs::read("rule.wasm")?)?;
//! let runner = rule.start(Box::new(RedbStore::open("state.redb".as_ref())?), None)?;
//! let stop = Stop::new();
//! let report = Pipeline::new(&["cloudtrail.json".into()], Options::default())?
//!     .alerts(Sink::stdout(&stop)?)
//!     .run(Box::new(runner), &stop)?;
//! eprintln!("{} records, {} alerts", report.records, report.alert_count());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod drive;
pub mod marks;
mod reader;
mod sink;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

pub use sink::Sink;

use crate::error::Error;
use crate::input::{FileIdentity, FrameLimits, Source};
use crate::judge::Judge;
use crate::output::AlertFormat;

/// How a run reads and commits.
#[derive(Clone, Debug)]
pub struct Options {
    /// Records between commits of alerts and state.
    pub commit_every: u64,
    /// Longest time between commits, however slowly records come.
    pub commit_interval: Duration,
    /// Read every file from its start, even what earlier runs handled.
    pub reprocess: bool,
    /// Hand every record to the rule, even those its prefilter rules out.
    pub validate_all: bool,
    /// Let the alerts go to /dev/null while a state file records them as raised.
    pub discard_alerts: bool,
    /// How alerts are written: the project's JSON lines, or OCSF Detection Findings.
    pub format: AlertFormat,
    /// Bounds on the records framed.
    pub frame: FrameLimits,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            commit_every: 1000,
            commit_interval: Duration::from_secs(2),
            reprocess: false,
            validate_all: false,
            discard_alerts: false,
            format: AlertFormat::Json,
            frame: FrameLimits::default(),
        }
    }
}

/// A request to stop, shared between the caller (a signal handler, say) and the run.
/// The run commits what it has delivered and returns; waits on an output give up.
#[derive(Clone, Debug, Default)]
pub struct Stop(Arc<AtomicBool>);

impl Stop {
    /// A flag nobody has raised.
    pub fn new() -> Stop {
        Stop::default()
    }

    /// Asks the run to stop.
    pub fn request(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Whether a stop was asked for.
    pub fn requested(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// The flag itself, for `signal_hook::flag::register` and the like.
    pub fn flag(&self) -> &Arc<AtomicBool> {
        &self.0
    }
}

/// What a run did.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Records read this run.
    pub records: u64,
    /// Items of resumed files that earlier runs had handled.
    pub skipped: u64,
    /// Records the rule found relevant.
    pub relevant: u64,
    /// Records the rule's prefilter ruled out, not handed to the rule.
    pub unread: u64,
    /// Bytes of the records read.
    pub bytes: u64,
    /// Alerts by detection.
    pub alerts: BTreeMap<String, u64>,
    /// Dead letters by kind.
    pub errors: BTreeMap<&'static str, u64>,
    /// Calls into the rule that trapped.
    pub traps: u64,
    /// The run stopped because [`Stop::request`] was called, after committing.
    pub stopped: bool,
    /// The stop came while this output had not taken everything written to it: the
    /// state is committed up to the last delivery, and a rerun raises the rest again.
    pub undelivered: Option<String>,
}

impl Report {
    /// Alerts of every detection.
    pub fn alert_count(&self) -> u64 {
        self.alerts.values().sum()
    }

    fn error(&mut self, kind: &'static str) {
        *self.errors.entry(kind).or_default() += 1;
    }

    /// Counts an alert of `rule_id`, allocating its name only the first time.
    fn alert(&mut self, rule_id: &str) {
        match self.alerts.get_mut(rule_id) {
            Some(count) => *count += 1,
            None => {
                self.alerts.insert(rule_id.to_owned(), 1);
            }
        }
    }
}

/// Something worth telling the person running it, that is not an error (a file resumed,
/// a record held back until it is written whole).
pub type Notices = Box<dyn FnMut(&str) + Send>;

/// Bytes read, as they are read: for a progress bar.
pub type Progress = Arc<dyn Fn(u64) + Send + Sync>;

/// One run of a rule over its inputs.
pub struct Pipeline {
    inputs: Vec<Input>,
    options: Options,
    alerts: Option<Sink>,
    dead_letters: Option<Sink>,
    notices: Notices,
    progress: Option<Progress>,
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

impl Pipeline {
    /// A run over `files` (`-` is standard input), checked without opening them (a FIFO
    /// is opened once, by the reader): before the state is opened, so that a mistyped
    /// path costs nothing.
    pub fn new(files: &[PathBuf], options: Options) -> Result<Self, Error> {
        let mut inputs: Vec<Input> = Vec::new();
        let mut seen = Vec::new();
        for arg in files {
            let source = Source::from_arg(arg);
            source.check().map_err(Error::Input)?;
            let (key, id) = match &source {
                Source::Stdin => (None, None),
                Source::File(path) => {
                    let cannot = |e| Error::Input(format!("cannot open {}: {e}", path.display()));
                    let meta = fs::metadata(path).map_err(cannot)?;
                    let canonical = fs::canonicalize(path).map_err(cannot)?;
                    (
                        Some(marks::input_key(&canonical)),
                        Some((meta.dev(), meta.ino())),
                    )
                }
            };
            if seen.contains(&id) {
                let name = source.name();
                return Err(Error::Input(format!(
                    "{name} is named twice; each input is read once"
                )));
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
        Ok(Pipeline {
            inputs,
            options,
            alerts: None,
            dead_letters: None,
            notices: Box::new(|_| {}),
            progress: None,
        })
    }

    /// Where the alerts go, one JSON line each (by default nowhere: they are only counted).
    pub fn alerts(mut self, sink: Sink) -> Self {
        self.alerts = Some(sink);
        self
    }

    /// Where failed records go, one JSON line each (by default nowhere).
    pub fn dead_letters(mut self, sink: Sink) -> Self {
        self.dead_letters = Some(sink);
        self
    }

    /// Who hears the run's notices.
    pub fn notices(mut self, notices: Notices) -> Self {
        self.notices = notices;
        self
    }

    /// Who hears how many bytes were read.
    pub fn progress(mut self, progress: Progress) -> Self {
        self.progress = Some(progress);
        self
    }

    /// Runs `judge` (a rule in the sandbox, say) until every input is read, or `stop` is
    /// requested; commits either way. An error says what stopped the run; what was
    /// delivered before it is committed.
    pub fn run(mut self, mut judge: Box<dyn Judge>, stop: &Stop) -> Result<Report, Error> {
        self.check_outputs(judge.state_path().as_deref())?;
        let alerts = self.alerts.take().unwrap_or_else(|| Sink::discard(stop));
        let dead_letters = self
            .dead_letters
            .take()
            .unwrap_or_else(|| Sink::discard(stop));
        drive::run(self, judge, alerts, dead_letters, stop)
    }

    /// Refuses outputs that would overwrite what the run reads (an input, or the state
    /// file `state`), and alerts thrown away (no alerts sink, or /dev/null) while a state
    /// file records them as raised, unless [`Options::discard_alerts`]. [`Pipeline::run`]
    /// checks it; call it yourself before opening the state, so that a refused run
    /// creates no state file.
    pub fn check_outputs(&self, state: Option<&Path>) -> Result<(), Error> {
        let input_ids: Vec<_> = self
            .inputs
            .iter()
            .filter_map(|i| match &i.source {
                Source::File(path) => file_id(path),
                Source::Stdin => None,
            })
            .collect();
        let state_id = state.and_then(file_id);
        if self.alerts.as_ref().is_none_or(Sink::is_null)
            && !self.options.discard_alerts
            && state.is_some()
        {
            let name = self
                .alerts
                .as_ref()
                .map_or("nowhere (no alerts sink)", Sink::name);
            return Err(Error::Output(format!(
                "the alerts go to {name}: this run's alerts would be discarded, and the state \
                 file would record them as raised, so that no later run raises them again; \
                 send the alerts somewhere, or allow discarding them"
            )));
        }
        let sinks = [&self.alerts, &self.dead_letters];
        let outputs: Vec<(String, (u64, u64))> = sinks
            .into_iter()
            .flatten()
            .filter_map(|s| Some((s.name().to_owned(), s.file_id()?)))
            .collect();
        if let Some(state) = state {
            check_state_path(state, self.inputs.iter().map(|i| &i.source))?;
        }
        for (name, output) in outputs {
            if input_ids.contains(&output) {
                return Err(Error::Output(format!(
                    "{name} is also an input: writing it would destroy what is being read"
                )));
            }
            if Some(output) == state_id {
                return Err(Error::Output(format!(
                    "{name} is the state file: writing it would destroy the state"
                )));
            }
        }
        Ok(())
    }
}

/// Device and inode of the file at `path`, if there is one.
fn file_id(path: &Path) -> Option<(u64, u64)> {
    fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// Refuses a state file that is also one of the inputs: committing would destroy what
/// is read. For callers that open the state themselves, before they open it.
pub fn check_state_path<'a>(
    state: &Path,
    inputs: impl IntoIterator<Item = &'a Source>,
) -> Result<(), Error> {
    let Some(state_id) = file_id(state) else {
        return Ok(());
    };
    let aliased = inputs.into_iter().any(|input| match input {
        Source::File(path) => file_id(path) == Some(state_id),
        Source::Stdin => false,
    });
    match aliased {
        true => Err(Error::Output(format!(
            "the state file {} is also an input: committing would destroy what is being read",
            state.display()
        ))),
        false => Ok(()),
    }
}
