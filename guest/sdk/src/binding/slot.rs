//! The one value a module-wide binding keeps between calls.

use std::any::Any;
use std::cell::UnsafeCell;

/// The one value a module-wide binding keeps between calls.
///
/// It holds no Rust borrow across calls: a host that traps a call leaves no borrow flag
/// set behind, as a `RefCell` would. Sound because a WebAssembly module runs one call at a
/// time on one thread, and the host never re-enters it.
pub(crate) struct Slot(UnsafeCell<Option<Box<dyn Any>>>);

// SAFETY: see the type's documentation: there is one thread and no re-entry.
unsafe impl Sync for Slot {}

impl Slot {
    pub const fn new() -> Self {
        Slot(UnsafeCell::new(None))
    }

    /// The value, made by `init` on first use.
    ///
    /// # Safety
    /// No other reference from `get` may be alive: call it once per exported call.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn get<T: 'static>(&self, init: impl FnOnce() -> T) -> &mut T {
        // SAFETY: the caller guarantees exclusive access.
        let slot = unsafe { &mut *self.0.get() };
        let value = slot.get_or_insert_with(|| Box::new(init()));
        value
            .downcast_mut()
            .expect("one module exports one rule of one binding")
    }

    /// Forgets the value without dropping it: a trap may have left it inconsistent.
    ///
    /// # Safety
    /// No reference from `get` may be alive.
    #[cfg(any(test, feature = "fluent-bit"))]
    pub unsafe fn forget(&self) {
        // SAFETY: the caller guarantees exclusive access.
        std::mem::forget(unsafe { (*self.0.get()).take() });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_keeps_one_value_across_calls() {
        static SLOT: Slot = Slot::new();
        // SAFETY: one reference at a time.
        unsafe { *SLOT.get(|| 1u32) += 1 };
        assert_eq!(unsafe { *SLOT.get(|| 1u32) }, 2);
    }
}
