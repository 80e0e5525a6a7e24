//! What the pipeline bindings share: a rule hosted in its own module's memory and the
//! event-time bound they give it, and the macros that export bindings (empty for the
//! families the SDK is built without).
//!
//! In a pipeline module the host keeps nothing for the rule: its state lives in the
//! module's memory. [`Resident`] keeps each record whole or absent: a record's writes
//! collect apart from the committed state, which they reach only once the record has
//! succeeded and the binding has made what it answers.

#[cfg(any(test, feature = "fluvio", feature = "fluent-bit"))]
mod bound;
#[cfg(any(
    test,
    all(
        target_family = "wasm",
        feature = "component",
        not(any(feature = "fluvio", feature = "fluent-bit"))
    )
))]
mod call_heap;
#[cfg(any(test, feature = "fluvio", feature = "fluent-bit", feature = "testkit"))]
mod resident;
#[cfg(any(
    test,
    feature = "component",
    feature = "fluvio",
    feature = "fluent-bit"
))]
mod slot;

/// The heap of a SmartModule: the dlmalloc that std's own allocator is on wasm32, without
/// the two calls std puts in front of it (`__rdl_alloc` and its system allocator), which
/// compiled to WebAssembly were 3 % of a rule's instructions. A component bumps its small
/// blocks out of pages in front of it ([`call_heap`]); the Fluent Bit filter has a heap of
/// its own (`fluent_bit::heap`).
#[cfg(all(
    target_family = "wasm",
    feature = "fluvio",
    not(feature = "fluent-bit")
))]
#[global_allocator]
static HEAP: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;

/// The heap of a component.
#[cfg(all(
    target_family = "wasm",
    feature = "component",
    not(any(feature = "fluvio", feature = "fluent-bit"))
))]
#[global_allocator]
static HEAP: call_heap::CallHeap<dlmalloc::GlobalDlmalloc> =
    call_heap::CallHeap::new(dlmalloc::GlobalDlmalloc);

#[cfg(any(test, feature = "fluvio", feature = "fluent-bit", feature = "testkit"))]
pub(crate) use resident::Resident;
#[cfg(any(
    test,
    feature = "component",
    feature = "fluvio",
    feature = "fluent-bit"
))]
pub(crate) use slot::Slot;

#[cfg(any(test, feature = "fluvio", feature = "fluent-bit"))]
pub(crate) use bound::Stamps;

#[cfg(all(feature = "component", target_arch = "wasm32"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __export_component {
    ($rule:ty) => {
        const _: () = {
            type DetectRuleComponent = $crate::component::Component<$rule>;
            $crate::component::bindings::__export_rule_world!(
                DetectRuleComponent with_types_in $crate::component::bindings
            );
        };
    };
}

#[cfg(not(all(feature = "component", target_arch = "wasm32")))]
#[doc(hidden)]
#[macro_export]
macro_rules! __export_component {
    ($rule:ty) => {};
}

#[cfg(all(feature = "fluent-bit", target_arch = "wasm32"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __export_fluent_bit {
    ($rule:ty, $alerts:expr, $enrich:expr) => {
        $crate::__fluent_bit_function!($rule, $alerts, Alerts);
        $crate::__fluent_bit_function!($rule, $enrich, Enrich);
    };
}

#[cfg(all(feature = "fluent-bit", target_arch = "wasm32"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __fluent_bit_function {
    ($rule:ty, $name:expr, $mode:ident) => {
        // In a block of its own: the function's name is its export name, the crate's
        // namespace stays free.
        const _: () = {
            /// A Fluent Bit filter function, of the mode named (see `fluent_bit::Mode`).
            ///
            /// # Safety
            /// Called by Fluent Bit, with a record it copied into this module, or null.
            #[unsafe(export_name = $name)]
            unsafe extern "C" fn filter(
                tag: *const u8,
                tag_len: u32,
                sec: u32,
                nsec: u32,
                record: *const u8,
                record_len: u32,
            ) -> *const u8 {
                let _ = (tag, tag_len);
                // SAFETY: Fluent Bit passes a record it copied into this module, or null.
                unsafe {
                    $crate::fluent_bit::filter::<$rule>(
                        $crate::fluent_bit::Mode::$mode,
                        (sec, nsec),
                        record,
                        record_len,
                    )
                }
            }
        };
    };
}

#[cfg(not(all(feature = "fluent-bit", target_arch = "wasm32")))]
#[doc(hidden)]
#[macro_export]
macro_rules! __export_fluent_bit {
    ($rule:ty, $alerts:expr, $enrich:expr) => {};
}

#[cfg(all(feature = "fluvio", target_arch = "wasm32"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __export_fluvio {
    ($rule:ty) => {
        /// The SmartModule's `init`: the configuration.
        ///
        /// # Safety
        /// Called by the Fluvio engine, with a buffer from `alloc`.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn init(ptr: *mut u8, len: usize, version: i16) -> i32 {
            unsafe { $crate::fluvio::init::<$rule>(ptr, len, version) }
        }

        /// The SmartModule's `array_map`: records in, alerts out.
        ///
        /// # Safety
        /// Called by the Fluvio engine, with a buffer from `alloc`.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn array_map(ptr: *mut u8, len: usize, version: i16) -> i32 {
            unsafe { $crate::fluvio::array_map::<$rule>(ptr, len, version) }
        }

        /// The SmartModule's `look_back`: the state learns again after a restart.
        ///
        /// # Safety
        /// Called by the Fluvio engine, with a buffer from `alloc`.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn look_back(ptr: *mut u8, len: usize, version: i16) -> i32 {
            unsafe { $crate::fluvio::look_back::<$rule>(ptr, len, version) }
        }
    };
}

#[cfg(not(all(feature = "fluvio", target_arch = "wasm32")))]
#[doc(hidden)]
#[macro_export]
macro_rules! __export_fluvio {
    ($rule:ty) => {};
}
