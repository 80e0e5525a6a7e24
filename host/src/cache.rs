//! Compile once: compiled components are kept on disk, keyed by the component's bytes
//! and by everything in the engine that affects code generation.
//!
//! Loading native code from disk is trusted by wasmtime (`Component::deserialize_file`
//! is `unsafe`), so the cache directory must be writable only by the user running the
//! harness; it is created with mode 0700. A missing, stale or unreadable entry is simply
//! compiled again.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// `$XDG_CACHE_HOME/rule-harness`, else `$HOME/.cache/rule-harness`.
pub fn default_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))?;
    Some(base.join("rule-harness"))
}

/// Compiles `bytes`, or loads the result of an earlier compilation from `dir`.
pub fn compile(engine: &Engine, bytes: &[u8], dir: Option<&Path>) -> wasmtime::Result<Component> {
    let Some(dir) = dir else {
        return Component::new(engine, bytes);
    };
    let path = dir.join(format!("{}.cwasm", key(engine, bytes)));
    // SAFETY: the file was written by `Component::serialize` below, for an engine with the
    // same compatibility hash, into a directory only this user can write.
    if let Ok(component) = unsafe { Component::deserialize_file(engine, &path) } {
        return Ok(component);
    }
    let component = Component::new(engine, bytes)?;
    // A cache that cannot be written costs a compilation next time, nothing more.
    let _ = store(&component, dir, &path);
    Ok(component)
}

fn key(engine: &Engine, bytes: &[u8]) -> String {
    let mut engine_hash = DefaultHasher::new();
    engine
        .precompile_compatibility_hash()
        .hash(&mut engine_hash);
    let digest = Sha256::new()
        .chain_update(env!("CARGO_PKG_VERSION"))
        .chain_update(engine_hash.finish().to_le_bytes())
        .chain_update(bytes)
        .finalize();
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn store(component: &Component, dir: &Path, path: &Path) -> std::io::Result<()> {
    create_private_dir(dir)?;
    let bytes = component.serialize().map_err(std::io::Error::other)?;
    // Write then rename, so a concurrent reader never sees half a file.
    let partial = path.with_extension(format!("{}.partial", std::process::id()));
    std::fs::write(&partial, bytes)?;
    std::fs::rename(&partial, path)
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}
