//! Test-only: every rule of the workspace built into its three artifacts ([`artifact`]),
//! and replays of the other hosts this project's rules run in: what Fluent Bit's `filter_wasm`
//! and Fluvio's SmartModule engine do with a module, call for call, on this crate's
//! wasmtime. They test the pipeline artifacts of a rule without those hosts (whose own
//! runtimes, WAMR and a second wasmtime, would need cmake and libclang, or double the
//! build).
//!
//! Both engines count fuel, so that a test can cut a call short at a chosen point, as a
//! host that traps mid-call would.

pub mod fluent_bit;
pub mod fluvio;
pub mod hostile;

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use sha2::{Digest, Sha256};
use wasmtime::{Config, Engine, Module};

/// Fuel for a call not meant to be cut short (what Fluvio's engine gives each call).
const PLENTY_OF_FUEL: u64 = i64::MAX as u64 / 2;

/// The module `bytes` compiled, once per process: replays start many instances.
fn compile(bytes: &[u8]) -> wasmtime::Result<Module> {
    static MODULES: OnceLock<Mutex<HashMap<[u8; 32], Module>>> = OnceLock::new();
    let key: [u8; 32] = Sha256::digest(bytes).into();
    let modules = MODULES.get_or_init(Default::default);
    if let Some(module) = modules.lock().expect("not poisoned").get(&key) {
        return Ok(module.clone());
    }
    let module = Module::new(&engine()?, bytes)?;
    modules
        .lock()
        .expect("not poisoned")
        .insert(key, module.clone());
    Ok(module)
}

/// An engine with only the WebAssembly features the replayed runtimes support (WAMR, as
/// Fluent Bit builds it, has no SIMD, tail calls, GC, exceptions or extended constant
/// expressions), and fuel. One per
/// process.
fn engine() -> wasmtime::Result<Engine> {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    if let Some(engine) = ENGINE.get() {
        return Ok(engine.clone());
    }
    let mut config = Config::new();
    config
        .consume_fuel(true)
        .wasm_simd(false)
        .wasm_relaxed_simd(false)
        .wasm_tail_call(false)
        .wasm_gc(false)
        .wasm_multi_memory(false)
        .wasm_memory64(false)
        .wasm_extended_const(false);
    Ok(ENGINE
        .get_or_init(|| Engine::new(&config).expect("the configuration is valid"))
        .clone())
}

/// The names of the rules the build script found (their directories under
/// `guest/rules/`), in order.
pub fn rules() -> Vec<&'static str> {
    include_str!(concat!(env!("OUT_DIR"), "/rules.txt"))
        .lines()
        .collect()
}

/// One artifact of one rule, as its host loads it: `family` is `component`,
/// `fluent-bit` or `fluvio`.
pub fn artifact(rule: &str, family: &str) -> Vec<u8> {
    read(&format!("{rule}.{family}.wasm"))
}

/// The module cargo built for one rule and family, before it was made ready.
pub fn core_module(rule: &str, family: &str) -> Vec<u8> {
    read(&format!("{rule}.{family}.core.wasm"))
}

/// The path of a built module, for tests that hand it to the command line.
pub fn path(rule: &str, family: &str, core: bool) -> std::path::PathBuf {
    let core = if core { ".core" } else { "" };
    std::path::Path::new(env!("OUT_DIR")).join(format!("{rule}.{family}{core}.wasm"))
}

fn read(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("OUT_DIR")).join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}
