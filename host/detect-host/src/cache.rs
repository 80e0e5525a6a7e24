//! Compile once: compiled components are kept on disk, keyed by the component's bytes
//! and by everything in the engine that affects code generation.
//!
//! An entry is machine code that the harness runs as its own user
//! (`Component::deserialize` is `unsafe` for that reason), so the cache runs only what this
//! user compiled:
//!
//! * the directory must be a real directory (not a symlink), owned by this user and not
//!   writable by group or others; the harness creates it with mode 0700;
//! * an entry must be a regular file (opened without following symlinks) with the same
//!   owner and mode rules; entries are written 0600, whole, and renamed into place;
//! * every entry starts with the key it was stored under and the SHA-256 of its contents,
//!   checked before anything is deserialized, so a truncated or damaged entry, or one
//!   copied under another component's name, is compiled again, never loaded;
//! * only components that passed every check of the sandbox are stored.
//!
//! A cache that fails these rules is not used: the harness says why and compiles in memory.

use std::fs::{self, File, OpenOptions};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// The start of every entry, before its key and SHA-256.
const MAGIC: &[u8; 8] = b"rhcwasm2";

/// `$XDG_CACHE_HOME/rule-harness`, else `$HOME/.cache/rule-harness`.
pub fn default_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))?;
    Some(base.join("rule-harness"))
}

/// A cache directory that passed the checks.
#[derive(Debug)]
pub struct Cache {
    dir: PathBuf,
}

/// What the cache gave for one component.
pub enum Lookup {
    Hit(Component),
    /// Not there: compile, then [`Cache::store`].
    Miss,
    /// There, but not usable: compile, store, and say why.
    Refused(String),
}

impl Cache {
    /// The cache in `dir`, created if missing; an error, for a warning, if it is unsafe.
    pub fn open(dir: &Path) -> Result<Cache, String> {
        if fs::symlink_metadata(dir).is_err() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| format!("cannot create the cache directory {}: {e}", dir.display()))?;
        }
        let meta = fs::symlink_metadata(dir)
            .map_err(|e| format!("cannot read the cache directory {}: {e}", dir.display()))?;
        if meta.file_type().is_symlink() {
            return Err(format!(
                "the cache directory {} is a symlink",
                dir.display()
            ));
        }
        if !meta.is_dir() {
            return Err(format!(
                "the cache directory {} is not a directory",
                dir.display()
            ));
        }
        trusted(&meta).map_err(|why| format!("the cache directory {} {why}", dir.display()))?;
        Ok(Cache {
            dir: dir.to_owned(),
        })
    }

    /// The compiled `bytes` for `engine`, if this cache holds a sound entry for them.
    pub fn load(&self, engine: &Engine, bytes: &[u8]) -> Lookup {
        let key = key(engine, bytes);
        let path = self.dir.join(format!("{key}.cwasm"));
        // Not following symlinks, and not waiting on a FIFO someone put there.
        let file = match OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&path)
        {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Lookup::Miss,
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                return Lookup::Refused(format!("cache entry {} is a symlink", path.display()));
            }
            Err(e) => {
                return Lookup::Refused(format!("cannot read cache entry {}: {e}", path.display()));
            }
        };
        match read_entry(&file, &key) {
            Ok(payload) => {
                // SAFETY: the entry is a regular file that only this user can have written,
                // and its contents are exactly what `store` wrote (checked by SHA-256), which
                // is `Component::serialize` for an engine with the same settings (the key).
                match unsafe { Component::deserialize(engine, &payload) } {
                    Ok(component) => Lookup::Hit(component),
                    Err(e) => Lookup::Refused(format!(
                        "cache entry {} is unusable: {e:#}",
                        path.display()
                    )),
                }
            }
            Err(why) => Lookup::Refused(format!("cache entry {} {why}", path.display())),
        }
    }

    /// Stores a component that passed every check. A cache that cannot be written costs a
    /// compilation next time, nothing more.
    pub fn store(&self, engine: &Engine, bytes: &[u8], component: &Component) -> io::Result<()> {
        let payload = component.serialize().map_err(io::Error::other)?;
        let key = key(engine, bytes);
        let path = self.dir.join(format!("{key}.cwasm"));
        let partial = path.with_extension(format!("partial-{}", std::process::id()));
        let _ = fs::remove_file(&partial);
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&partial)?;
        let written = file
            .write_all(MAGIC)
            .and_then(|()| file.write_all(key.as_bytes()))
            .and_then(|()| file.write_all(&Sha256::digest(&payload)))
            .and_then(|()| file.write_all(&payload))
            .and_then(|()| file.sync_all())
            .and_then(|()| fs::rename(&partial, &path));
        if written.is_err() {
            let _ = fs::remove_file(&partial);
        }
        written
    }
}

/// An entry's key: the component's bytes and everything in the engine that affects code.
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
    crate::input::hex(&digest)
}

/// The payload of an entry, once its owner, mode, key and checksum are right.
fn read_entry(mut file: &File, key: &str) -> Result<Vec<u8>, String> {
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot be read: {e}"))?;
    if !meta.is_file() {
        return Err("is not a regular file".into());
    }
    trusted(&meta)?;
    let mut entry = Vec::with_capacity(meta.len() as usize);
    file.read_to_end(&mut entry)
        .map_err(|e| format!("cannot be read: {e}"))?;
    let damaged = || "is damaged (its checksum does not match); it is compiled again".to_owned();
    let header = MAGIC.len() + key.len() + 32;
    if entry.len() < header || &entry[..MAGIC.len()] != MAGIC {
        return Err(damaged());
    }
    if &entry[MAGIC.len()..MAGIC.len() + key.len()] != key.as_bytes() {
        return Err("was stored for another component; it is compiled again".into());
    }
    let payload = entry.split_off(header);
    if Sha256::digest(&payload)[..] != entry[MAGIC.len() + key.len()..] {
        return Err(damaged());
    }
    Ok(payload)
}

/// Whether what `meta` describes could only have been written by this user.
fn trusted(meta: &fs::Metadata) -> Result<(), String> {
    // SAFETY: geteuid cannot fail and has no preconditions.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me {
        return Err(format!(
            "is owned by user {}, not by this user ({me})",
            meta.uid()
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(format!(
            "is writable by group or others (mode {:o})",
            meta.mode() & 0o777
        ));
    }
    Ok(())
}
