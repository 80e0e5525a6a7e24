//! SIGINT and SIGTERM: the first one asks the run to stop (it commits and returns); a
//! second one ends the process at once.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use detect_host::pipeline::Stop;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::flag;

pub struct Signals {
    interrupt: Arc<AtomicBool>,
    terminate: Arc<AtomicBool>,
}

impl Signals {
    /// Registers both signals to raise `stop`.
    pub fn register(stop: &Stop) -> anyhow::Result<Signals> {
        let interrupt = Arc::new(AtomicBool::new(false));
        let terminate = Arc::new(AtomicBool::new(false));
        for (signal, seen) in [(SIGINT, &interrupt), (SIGTERM, &terminate)] {
            flag::register_conditional_shutdown(signal, 128 + signal, Arc::clone(stop.flag()))?;
            flag::register(signal, Arc::clone(seen))?;
            flag::register(signal, Arc::clone(stop.flag()))?;
        }
        Ok(Signals {
            interrupt,
            terminate,
        })
    }

    /// The signal received, by name and number.
    fn received(&self) -> Option<(&'static str, i32)> {
        if self.interrupt.load(Ordering::Relaxed) {
            Some(("SIGINT", SIGINT))
        } else if self.terminate.load(Ordering::Relaxed) {
            Some(("SIGTERM", SIGTERM))
        } else {
            None
        }
    }

    /// How the run ends: 0, or 128 + the signal that stopped it, said on stderr with
    /// what a rerun does. `undelivered` names an output the stop left undelivered.
    pub fn exit_code(&self, undelivered: Option<String>) -> ExitCode {
        let Some((name, number)) = self.received() else {
            return ExitCode::SUCCESS;
        };
        match undelivered {
            None => eprintln!(
                "rule-harness: stopped by {name}; everything read so far is committed: the same \
                 command resumes after it (streams such as standard input cannot resume)"
            ),
            Some(what) => eprintln!(
                "rule-harness: stopped while {what} had not taken everything written to it, by \
                 {name}; the state is committed up to the last output delivered: the same \
                 command raises the rest again"
            ),
        }
        ExitCode::from(128 + number as u8)
    }
}
