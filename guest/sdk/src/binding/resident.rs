//! A rule resident in a pipeline module: its state in the module's memory, each record
//! whole or absent.

use crate::kv::{Changes, MemoryKv, Overlay};
use crate::{Configured, Context, Outcome, Rule, RuleError};

/// A rule, its configuration and its state, resident in the module.
pub(crate) struct Resident<R: Rule> {
    pub config: Configured<R>,
    pub kv: MemoryKv,
    /// The writes of the records judged since the last commit.
    pending: Changes,
}

impl<R: Rule> Resident<R> {
    pub fn new(config: Configured<R>, kv: MemoryKv) -> Self {
        Resident {
            config,
            kv,
            pending: Changes::new(),
        }
    }

    /// Judges one record against the state and the pending writes of the records judged
    /// before it; its own writes join them only if it succeeds.
    pub fn judge(&mut self, record: &str, context: &Context) -> Result<Outcome, RuleError> {
        let mut state = Overlay {
            base: &mut self.kv,
            pending: &mut self.pending,
        };
        R::process(record, &self.config, &mut state, context)
    }

    /// Applies the pending writes, after `record` has kept them (in a journal, say). If
    /// it cannot, they are applied all the same, and its error returned.
    pub fn commit(
        &mut self,
        record: impl FnOnce(&Changes) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        let changes = std::mem::take(&mut self.pending);
        let kept = if changes.is_empty() {
            Ok(())
        } else {
            record(&changes)
        };
        self.kv.apply(changes);
        kept
    }

    /// Judges and commits one record, in memory only.
    #[cfg(any(test, feature = "fluvio", feature = "testkit"))]
    pub fn process(&mut self, record: &str, context: &Context) -> Result<Outcome, RuleError> {
        let outcome = self.judge(record, context)?;
        self.commit(|_| Ok(())).expect("nothing to keep");
        Ok(outcome)
    }

    /// Forgets the pending writes of a call that a trap cut short, without reading them
    /// (the trap may have left them half-built).
    #[cfg(any(test, feature = "fluent-bit"))]
    pub fn abandon_pending(&mut self) {
        std::mem::forget(std::mem::take(&mut self.pending));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RuleInfo;
    use crate::kv::KeyValue;

    /// Counts records in the store; rejects `bad`.
    struct Counter;

    use crate::test_rules::NoConfig;

    impl Rule for Counter {
        type Config = NoConfig;
        fn info() -> RuleInfo {
            crate::test_rules::info("counter", &[])
        }
        fn detect(
            record: &str,
            _: &NoConfig,
            kv: &mut impl KeyValue,
            _: &Context,
        ) -> Result<Outcome, RuleError> {
            let n = kv.get_many(&["n"]).unwrap()[0]
                .as_ref()
                .map_or(0, |v| v.len());
            kv.set_many(vec![("n".into(), vec![0; n + 1])]).unwrap();
            if record == "bad" {
                return Err(RuleError::InvalidJson("bad".into()));
            }
            Ok(Outcome::default())
        }
    }

    const CONTEXT: Context = Context { not_after: 0 };

    #[test]
    fn a_rejected_record_leaves_nothing_and_writes_wait_for_the_commit() {
        let mut resident = Resident::<Counter>::new(Configured::defaults(), MemoryKv::new());
        resident.process("ok", &CONTEXT).unwrap();
        assert!(resident.process("bad", &CONTEXT).is_err());
        assert_eq!(resident.kv.entries["n"].len(), 1);
        // Judged records see each other's writes before they are committed.
        resident.judge("ok", &CONTEXT).unwrap();
        resident.judge("ok", &CONTEXT).unwrap();
        assert_eq!(resident.kv.entries["n"].len(), 1);
        let mut kept = 0;
        resident
            .commit(|changes| {
                kept = changes.len();
                Ok(())
            })
            .unwrap();
        assert_eq!((kept, resident.kv.entries["n"].len()), (1, 3));
        // A call cut short: its writes are forgotten.
        resident.judge("ok", &CONTEXT).unwrap();
        resident.abandon_pending();
        resident
            .commit(|_| unreachable!("nothing pending"))
            .unwrap();
        assert_eq!(resident.kv.entries["n"].len(), 3);
    }
}
