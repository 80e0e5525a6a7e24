//! The running stage: the reader's messages through the rule, into the sinks, with
//! commits on schedule.

use std::ops::ControlFlow;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use super::reader::{self, Message, Owned};
use super::{Input, Notices, Pipeline, Report, Sink, Stop, marks};
use crate::error::Error;
use crate::input::{InputMark, Position, Source};
use crate::judge::Judge;
use crate::output::{AlertFormat, DeadLetter};
use crate::state::Changes;

/// Records handed to the rule in one call, at most.
const BATCH_RECORDS: usize = 64;

/// How often the run looks at the stop flag while it waits for input.
const IDLE: Duration = Duration::from_millis(200);

/// The rule, its outputs, and when it last committed.
struct Run<'a> {
    judge: Box<dyn Judge>,
    inputs: Vec<Input>,
    alerts: Sink,
    dead_letters: Sink,
    report: Report,
    notices: Notices,
    since_commit: u64,
    last_commit: Instant,
    commit_every: u64,
    commit_interval: Duration,
    /// How alerts are written.
    format: AlertFormat,
    /// Marks of inputs to forget at the next commit.
    forget: Changes,
    stop: &'a Stop,
}

pub(super) fn run(
    pipeline: Pipeline,
    mut judge: Box<dyn Judge>,
    alerts: Sink,
    dead_letters: Sink,
    stop: &Stop,
) -> Result<Report, Error> {
    let Pipeline {
        inputs,
        options,
        notices,
        progress,
        ..
    } = pipeline;
    let keyed: Vec<_> = inputs
        .iter()
        .map(|i| (i.key.as_deref(), &i.source))
        .collect();
    let (mut resume, forget) = marks::load(judge.store(), &keyed)?;
    if options.reprocess {
        resume = vec![None; inputs.len()];
    }
    let prefilter = judge.prefilter();
    let prefilter =
        (!options.validate_all && !prefilter.is_everything()).then(|| prefilter.clone());
    let sources = inputs.iter().map(|i| i.source.clone()).collect();
    let messages = reader::spawn(sources, resume, options.frame.clone(), prefilter, progress);
    let mut run = Run {
        judge,
        inputs,
        alerts,
        dead_letters,
        report: Report::default(),
        notices,
        since_commit: 0,
        last_commit: Instant::now(),
        commit_every: options.commit_every,
        commit_interval: options.commit_interval,
        format: options.format,
        forget,
        stop,
    };
    match run.drive(&messages) {
        Err(Error::Interrupted(output)) => run.report.undelivered = Some(output),
        other => other?,
    }
    run.report.traps = run.judge.traps();
    run.report.stopped = stop.requested();
    Ok(run.report)
}

impl Run<'_> {
    /// Processes what the reader sends until it is done or a stop is asked for,
    /// committing on schedule and at the end.
    fn drive(&mut self, messages: &Receiver<Message>) -> Result<(), Error> {
        while !self.stop.requested() {
            // Wake up for the next commit when there is something to commit, and in any
            // case often enough to see a stop.
            let wait = match self.since_commit {
                0 => IDLE,
                _ => self
                    .commit_interval
                    .saturating_sub(self.last_commit.elapsed()),
            };
            match messages.recv_timeout(wait.clamp(Duration::from_millis(1), IDLE)) {
                Ok(message) => {
                    if self.handle(message)?.is_break() {
                        break;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return self.reader_gone(),
            }
            if self.commit_due() {
                self.commit()?;
            }
        }
        self.commit()
    }

    /// The reader ends every source before it goes; if not, it failed.
    fn reader_gone(&mut self) -> Result<(), Error> {
        self.commit()?;
        match self.inputs.iter().find(|input| !input.ended) {
            Some(input) => Err(Error::Input(format!(
                "reading stopped unexpectedly before the end of {}; what was read is \
                 committed, and running again resumes there",
                input.source.name()
            ))),
            None => Ok(()),
        }
    }

    /// Handles one message of the reader. `Break` when a stop came in between items.
    fn handle(&mut self, message: Message) -> Result<ControlFlow<()>, Error> {
        match message {
            Message::Start {
                source,
                identity,
                skipped,
                notice,
            } => {
                let input = &mut self.inputs[source];
                input.identity = identity;
                input.done = skipped;
                self.report.skipped += skipped;
                if let Some(notice) = notice {
                    (self.notices)(&notice);
                }
            }
            Message::Items {
                source,
                text,
                items,
                unread,
                through,
            } => {
                self.report.records += unread.records;
                self.report.unread += unread.records;
                self.report.bytes += unread.bytes;
                self.items(source, &text, items)?;
                if self.stop.requested() {
                    return Ok(ControlFlow::Break(()));
                }
                self.advance(source, through);
            }
            Message::End { source, end } => {
                self.advance(source, end.items);
                self.inputs[source].ended = true;
                let name = self.inputs[source].source.name();
                if let Some(held) = end.held_back {
                    (self.notices)(&format!("{name}: {held}"));
                }
                if let Some(error) = end.error {
                    self.report.error("input");
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
                self.commit()?;
                return Err(Error::Input(error));
            }
        }
        Ok(ControlFlow::Continue(()))
    }

    /// Input `source` is handled through item `through`.
    fn advance(&mut self, source: usize, through: u64) {
        let input = &mut self.inputs[source];
        input.done = input.done.max(through);
        input.moved = true;
    }

    /// Hands a source's items to the rule, records in batches, in order; commits on
    /// schedule between batches, and stops early when asked to.
    fn items(
        &mut self,
        source: usize,
        text: &str,
        items: Vec<(Position, Owned)>,
    ) -> Result<(), Error> {
        let mut items = items.into_iter().peekable();
        while !self.stop.requested() {
            // A batch never runs past the next commit: a crash costs one commit's worth.
            let until_commit = self.commit_every.saturating_sub(self.since_commit);
            let size = (until_commit as usize).clamp(1, BATCH_RECORDS);
            let mut batch: Vec<(Position, String)> = Vec::new();
            while batch.len() < size
                && let Some((at, Owned::Record(_))) = items.peek()
            {
                let at = *at;
                let Some((_, Owned::Record(record))) = items.next() else {
                    unreachable!("peeked")
                };
                batch.push((at, text[record].to_owned()));
            }
            let last = match batch.last().map(|(at, _)| *at) {
                Some(at) => {
                    self.records(source, batch)?;
                    at
                }
                None => match items.next() {
                    Some((at, unusable)) => {
                        self.unusable(source, at, &unusable)?;
                        at
                    }
                    None => break,
                },
            };
            let input = &mut self.inputs[source];
            input.done = last.index;
            input.moved = true;
            if self.commit_due() {
                self.commit()?;
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

    fn unusable(&mut self, source: usize, at: Position, item: &Owned) -> Result<(), Error> {
        self.report.records += 1;
        self.since_commit += 1;
        let unusable = item.unusable().expect("records go in batches");
        self.report.error(unusable.kind);
        let source = &self.inputs[source].source;
        let line = Self::dead_letter(source, at, unusable.kind, unusable.reason.clone())
            .with_unusable(&unusable);
        self.dead_letters.write_line(&line)
    }

    /// Records through the rule: their alerts and dead letters, in order.
    fn records(&mut self, source: usize, batch: Vec<(Position, String)>) -> Result<(), Error> {
        let (positions, records): (Vec<Position>, Vec<String>) = batch.into_iter().unzip();
        let results = self.judge.process_batch(&records)?;
        for ((at, record), result) in positions.into_iter().zip(&records).zip(results) {
            self.report.records += 1;
            self.report.bytes += record.len() as u64;
            self.since_commit += 1;
            match result {
                Ok(outcome) => {
                    self.report.relevant += u64::from(outcome.relevant);
                    for alert in &outcome.alerts {
                        self.report.alert(alert.rule_id());
                        self.alerts.write_alert(alert, self.format)?;
                    }
                }
                Err(failure) => {
                    self.report.error(failure.kind());
                    let source = &self.inputs[source].source;
                    let line = Self::dead_letter(source, at, failure.kind(), failure.message())
                        .with_bytes(record.as_bytes());
                    self.dead_letters.write_line(&line)?;
                }
            }
        }
        Ok(())
    }

    fn commit_due(&self) -> bool {
        // Records the prefilter ruled out move the inputs on too: their marks are worth
        // keeping on time.
        let pending = self.since_commit > 0
            || self
                .inputs
                .iter()
                .any(|input| input.moved && input.key.is_some());
        self.since_commit >= self.commit_every
            || (pending && self.last_commit.elapsed() >= self.commit_interval)
    }

    /// Alerts and dead letters out, then the state that records them, with how far each
    /// file has been read. They must have arrived before a state that outlives the process
    /// records them; one that does not records nothing, and they need only be written (a
    /// sync of the alerts file at every commit would buy nothing for its time).
    fn commit(&mut self) -> Result<(), Error> {
        let durable = self.judge.store().path().is_some();
        for sink in [&mut self.alerts, &mut self.dead_letters] {
            match durable {
                true => sink.deliver()?,
                false => sink.written()?,
            }
        }
        let mut changes = std::mem::take(&mut self.forget);
        let read_at = marks::now_seconds();
        for input in self.inputs.iter_mut().filter(|i| i.moved) {
            input.moved = false;
            if let (Some(key), Some(identity)) = (&input.key, &input.identity) {
                let mark = InputMark {
                    identity: identity.clone(),
                    items: input.done,
                    read_at,
                };
                marks::record(&mut changes, key, &mark);
            }
        }
        let store = self.judge.store();
        store.apply(changes)?;
        store.commit()?;
        self.since_commit = 0;
        self.last_commit = Instant::now();
        Ok(())
    }
}
