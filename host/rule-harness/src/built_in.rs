//! The built-in rule, the project's SSM session rule (`guest/rules/ssm/`), in its three
//! artifacts, built by this crate's build script.

/// A component of the `detect:rule` world: the harness's default rule.
pub const COMPONENT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/ssm.component.wasm"));

/// A Fluent Bit `filter_wasm` filter: functions `ssm_alerts` and `ssm_enrich`.
pub const FLUENT_BIT_FILTER: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/ssm.fluent-bit.wasm"));

/// A Fluvio SmartModule (`init`, `array_map`, `look_back`).
pub const FLUVIO_SMARTMODULE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/ssm.fluvio.wasm"));
