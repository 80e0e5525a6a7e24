//! WASI preview 1 rights, enforced as Fluent Bit's runtime (WAMR's `libc-wasi`,
//! `sandboxed-system-primitives/src/posix.c`) enforces them. Wasmtime ignores rights; a
//! filter that asks for too few would pass here and fail in Fluent Bit, so the replay
//! checks each file call as WAMR does before wasmtime makes it:
//!
//! * a preopened directory holds every right a directory may have and may hand on;
//! * `path_open` needs `PATH_OPEN` on the directory (and `PATH_CREATE_FILE` to create,
//!   `PATH_FILESTAT_SET_SIZE` to truncate), and the directory must be able to hand on every
//!   right asked for, plus `FD_SEEK` when the file is opened to write neither appending
//!   nor truncating; the file gets what it asked for, within what its type allows (a
//!   directory is known by `O_DIRECTORY`);
//! * reading, writing, syncing, a file's status and size, a path's status and renames
//!   each need their one right on the descriptor they use.
//!
//! A call without the rights it needs fails with `ENOTCAPABLE`, as in WAMR. Descriptors
//! the table does not know (standard streams, bad numbers, and one moved by
//! `fd_renumber`, which no filter here calls) are left to wasmtime.

use std::collections::HashMap;

use wasmtime::{AsContextMut, Caller, Extern, Linker, Memory, Result, bail};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p1::wasi_snapshot_preview1::{self as preview1, WasiSnapshotPreview1 as _};
use wasmtime_wasi::runtime::in_tokio;
use wiggle::GuestMemory;

const FD_DATASYNC: u64 = 1 << 0;
const FD_READ: u64 = 1 << 1;
const FD_SEEK: u64 = 1 << 2;
const FD_FDSTAT_SET_FLAGS: u64 = 1 << 3;
const FD_SYNC: u64 = 1 << 4;
const FD_TELL: u64 = 1 << 5;
const FD_WRITE: u64 = 1 << 6;
const FD_ADVISE: u64 = 1 << 7;
const FD_ALLOCATE: u64 = 1 << 8;
const PATH_CREATE_DIRECTORY: u64 = 1 << 9;
const PATH_CREATE_FILE: u64 = 1 << 10;
const PATH_LINK_SOURCE: u64 = 1 << 11;
const PATH_LINK_TARGET: u64 = 1 << 12;
const PATH_OPEN: u64 = 1 << 13;
const FD_READDIR: u64 = 1 << 14;
const PATH_READLINK: u64 = 1 << 15;
const PATH_RENAME_SOURCE: u64 = 1 << 16;
const PATH_RENAME_TARGET: u64 = 1 << 17;
const PATH_FILESTAT_GET: u64 = 1 << 18;
const PATH_FILESTAT_SET_SIZE: u64 = 1 << 19;
const PATH_FILESTAT_SET_TIMES: u64 = 1 << 20;
const FD_FILESTAT_GET: u64 = 1 << 21;
const FD_FILESTAT_SET_SIZE: u64 = 1 << 22;
const FD_FILESTAT_SET_TIMES: u64 = 1 << 23;
const PATH_SYMLINK: u64 = 1 << 24;
const PATH_REMOVE_DIRECTORY: u64 = 1 << 25;
const PATH_UNLINK_FILE: u64 = 1 << 26;
const POLL_FD_READWRITE: u64 = 1 << 27;

/// WAMR's `RIGHTS_DIRECTORY_BASE`: what a directory may do.
const DIRECTORY_BASE: u64 = FD_FDSTAT_SET_FLAGS
    | FD_SYNC
    | FD_ADVISE
    | PATH_CREATE_DIRECTORY
    | PATH_CREATE_FILE
    | PATH_LINK_SOURCE
    | PATH_LINK_TARGET
    | PATH_OPEN
    | FD_READDIR
    | PATH_READLINK
    | PATH_RENAME_SOURCE
    | PATH_RENAME_TARGET
    | PATH_FILESTAT_GET
    | PATH_FILESTAT_SET_SIZE
    | PATH_FILESTAT_SET_TIMES
    | FD_FILESTAT_GET
    | FD_FILESTAT_SET_TIMES
    | PATH_SYMLINK
    | PATH_UNLINK_FILE
    | PATH_REMOVE_DIRECTORY
    | POLL_FD_READWRITE;
/// WAMR's `RIGHTS_REGULAR_FILE_BASE`: what a regular file may do (it hands on nothing).
const FILE_BASE: u64 = FD_DATASYNC
    | FD_READ
    | FD_SEEK
    | FD_FDSTAT_SET_FLAGS
    | FD_SYNC
    | FD_TELL
    | FD_WRITE
    | FD_ADVISE
    | FD_ALLOCATE
    | FD_FILESTAT_GET
    | FD_FILESTAT_SET_SIZE
    | FD_FILESTAT_SET_TIMES
    | POLL_FD_READWRITE;
/// A directory: its own rights, and what it may hand on (`RIGHTS_DIRECTORY_INHERITING`).
const DIRECTORY: Grant = Grant {
    base: DIRECTORY_BASE,
    inheriting: DIRECTORY_BASE | FILE_BASE,
};
const FILE: Grant = Grant {
    base: FILE_BASE,
    inheriting: 0,
};

const ENOTCAPABLE: i32 = 76;
const O_CREAT: i32 = 1;
const O_DIRECTORY: i32 = 2;
const O_TRUNC: i32 = 8;
const FDFLAG_APPEND: i32 = 1;
const FDFLAG_DSYNC: i32 = 2;
const FDFLAG_RSYNC: i32 = 8;
const FDFLAG_SYNC: i32 = 16;

const WASI: &str = "wasi_snapshot_preview1";

/// What the filter's store holds: WASI, and the rights of each descriptor.
pub struct Host {
    pub wasi: WasiP1Ctx,
    rights: Rights,
}

impl Host {
    /// `wasi`, whose first `preopens` descriptors after the standard streams are the
    /// directories granted (wasmtime numbers them in the order they were given).
    pub fn new(wasi: WasiP1Ctx, preopens: usize) -> Self {
        let fds = (3..).take(preopens).map(|fd| (fd, DIRECTORY)).collect();
        Host {
            wasi,
            rights: Rights(fds),
        }
    }
}

/// A descriptor's rights: what it may do, and what it may hand on to what it opens.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Grant {
    base: u64,
    inheriting: u64,
}

impl Grant {
    fn allows(self, needed: Grant) -> bool {
        self.base & needed.base == needed.base
            && self.inheriting & needed.inheriting == needed.inheriting
    }
}

struct Rights(HashMap<i32, Grant>);

impl Rights {
    /// Whether `fd` may do `needed`; a descriptor the table does not know is wasmtime's.
    fn allow(&self, fd: i32, needed: Grant) -> Result<(), i32> {
        match self.0.get(&fd) {
            Some(grant) if !grant.allows(needed) => Err(ENOTCAPABLE),
            _ => Ok(()),
        }
    }
}

/// What `path_open` needs of the directory, and what the new descriptor gets.
fn path_open_rights(oflags: i32, fdflags: i32, asked: Grant) -> (Grant, Grant) {
    let write = asked.base & (FD_DATASYNC | FD_WRITE | FD_ALLOCATE | FD_FILESTAT_SET_SIZE) != 0;
    let mut needed = Grant {
        base: PATH_OPEN,
        inheriting: asked.base | asked.inheriting,
    };
    if oflags & O_CREAT != 0 {
        needed.base |= PATH_CREATE_FILE;
    }
    if oflags & O_TRUNC != 0 {
        needed.base |= PATH_FILESTAT_SET_SIZE;
    }
    if fdflags & (FDFLAG_SYNC | FDFLAG_RSYNC) != 0 {
        needed.inheriting |= FD_SYNC;
    }
    if fdflags & FDFLAG_DSYNC != 0 {
        needed.inheriting |= FD_DATASYNC;
    }
    if write && fdflags & FDFLAG_APPEND == 0 && oflags & O_TRUNC == 0 {
        needed.inheriting |= FD_SEEK;
    }
    let most = if oflags & O_DIRECTORY != 0 {
        DIRECTORY
    } else {
        FILE
    };
    let granted = Grant {
        base: asked.base & most.base,
        inheriting: asked.inheriting & most.inheriting,
    };
    (needed, granted)
}

fn only(base: u64) -> Grant {
    Grant {
        base,
        inheriting: 0,
    }
}

/// Calls WASI's own `$name` as wasmtime's synchronous linker would: with the calling
/// module's memory, and the bound on what one call may copy. (wasmtime-wasi generates
/// these functions public but does not promise them; a new wasmtime may move them, and
/// this crate then fails to build rather than test less.)
macro_rules! wasi {
    ($caller:ident, $name:ident($($arg:expr),+)) => {{
        let copy_bound = $caller.as_context_mut().hostcall_fuel();
        let memory = memory(&mut $caller)?;
        let (data, host) = memory.data_and_store_mut(&mut $caller);
        host.wasi.set_hostcall_fuel(copy_bound);
        let mut memory = GuestMemory::Unshared(data);
        in_tokio(preview1::$name(&mut host.wasi, &mut memory, $($arg),+))
    }};
}

/// Defines WASI's `$name` in `$linker` behind a check that each descriptor named holds
/// its right, as WAMR checks it.
macro_rules! checked {
    ($linker:ident, $name:ident($($arg:ident: $ty:ty),+) needs $($fd:ident: $right:ident),+) => {
        $linker.func_wrap(
            WASI,
            stringify!($name),
            |mut caller: Caller<'_, Host>, $($arg: $ty),+| -> Result<i32> {
                let rights = &caller.data().rights;
                if let Err(errno) = Ok(())$(.and(rights.allow($fd, only($right))))+ {
                    return Ok(errno);
                }
                wasi!(caller, $name($($arg),+))
            },
        )?
    };
}

/// Puts the checks in front of WASI's file calls in `linker`, which holds WASI already.
pub fn enforce(linker: &mut Linker<Host>) -> Result<()> {
    linker.allow_shadowing(true);
    checked!(linker, fd_read(fd: i32, iovs: i32, len: i32, read: i32) needs fd: FD_READ);
    checked!(linker, fd_write(fd: i32, iovs: i32, len: i32, written: i32) needs fd: FD_WRITE);
    checked!(linker, fd_sync(fd: i32) needs fd: FD_SYNC);
    checked!(linker, fd_filestat_get(fd: i32, stat: i32) needs fd: FD_FILESTAT_GET);
    checked!(linker, fd_filestat_set_size(fd: i32, size: i64) needs fd: FD_FILESTAT_SET_SIZE);
    checked!(linker, path_filestat_get(fd: i32, flags: i32, path: i32, len: i32, stat: i32)
        needs fd: PATH_FILESTAT_GET);
    checked!(linker, path_rename(old: i32, old_path: i32, old_len: i32, new: i32, new_path: i32, new_len: i32)
        needs old: PATH_RENAME_SOURCE, new: PATH_RENAME_TARGET);
    linker.func_wrap(WASI, "path_open", path_open)?;
    linker.func_wrap(WASI, "fd_close", fd_close)?;
    linker.allow_shadowing(false);
    Ok(())
}

#[allow(clippy::too_many_arguments)] // WASI's own
fn path_open(
    mut caller: Caller<'_, Host>,
    fd: i32,
    dirflags: i32,
    path: i32,
    len: i32,
    oflags: i32,
    base: i64,
    inheriting: i64,
    fdflags: i32,
    opened: i32,
) -> Result<i32> {
    let asked = Grant {
        base: base as u64,
        inheriting: inheriting as u64,
    };
    let (needed, granted) = path_open_rights(oflags, fdflags, asked);
    if let Err(errno) = caller.data().rights.allow(fd, needed) {
        return Ok(errno);
    }
    let errno = wasi!(
        caller,
        path_open(
            fd, dirflags, path, len, oflags, base, inheriting, fdflags, opened
        )
    )?;
    if errno == 0 {
        let mut new_fd = [0; 4];
        memory(&mut caller)?.read(&caller, opened as u32 as usize, &mut new_fd)?;
        let new_fd = i32::from_le_bytes(new_fd);
        caller.data_mut().rights.0.insert(new_fd, granted);
    }
    Ok(errno)
}

fn fd_close(mut caller: Caller<'_, Host>, fd: i32) -> Result<i32> {
    let errno = wasi!(caller, fd_close(fd))?;
    if errno == 0 {
        caller.data_mut().rights.0.remove(&fd);
    }
    Ok(errno)
}

/// The calling module's memory, which WASI's calls read and write.
fn memory(caller: &mut Caller<'_, Host>) -> Result<Memory> {
    match caller.get_export("memory") {
        Some(Extern::Memory(memory)) => Ok(memory),
        _ => bail!("the module exports no memory"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATE_FILE: u64 = FD_READ | FD_WRITE | FD_SYNC | FD_FILESTAT_GET;

    fn directory_handing_on(inheriting: u64) -> Grant {
        Grant {
            base: DIRECTORY_BASE,
            inheriting,
        }
    }

    #[test]
    fn writing_in_place_needs_a_directory_that_hands_on_seek() {
        let asked = only(STATE_FILE);
        let (needed, _) = path_open_rights(0, 0, asked);
        assert!(!directory_handing_on(STATE_FILE).allows(needed));
        assert!(directory_handing_on(STATE_FILE | FD_SEEK).allows(needed));
        // Appending or truncating does not seek.
        for (oflags, fdflags) in [(0, FDFLAG_APPEND), (O_TRUNC | O_CREAT, 0)] {
            let (needed, _) = path_open_rights(oflags, fdflags, asked);
            assert!(directory_handing_on(STATE_FILE).allows(needed));
        }
        // Reading alone does not either.
        let (needed, _) = path_open_rights(0, 0, only(FD_READ));
        assert!(directory_handing_on(FD_READ).allows(needed));
    }

    #[test]
    fn a_new_descriptor_gets_what_it_asked_within_its_type() {
        let (_, file) = path_open_rights(
            0,
            0,
            Grant {
                base: STATE_FILE | PATH_OPEN,
                inheriting: STATE_FILE,
            },
        );
        assert_eq!(file, only(STATE_FILE));
        let asked = Grant {
            base: PATH_OPEN | FD_FILESTAT_GET | FD_READ,
            inheriting: STATE_FILE,
        };
        let (needed, directory) = path_open_rights(O_DIRECTORY, 0, asked);
        assert_eq!(
            directory,
            Grant {
                base: PATH_OPEN | FD_FILESTAT_GET,
                inheriting: STATE_FILE,
            }
        );
        assert_eq!(
            needed,
            Grant {
                base: PATH_OPEN,
                inheriting: STATE_FILE | PATH_OPEN | FD_FILESTAT_GET,
            }
        );
    }

    #[test]
    fn unknown_descriptors_are_left_to_wasi() {
        let rights = Rights(HashMap::from([(3, FILE)]));
        assert_eq!(rights.allow(3, only(PATH_OPEN)), Err(ENOTCAPABLE));
        assert_eq!(rights.allow(3, only(FD_READ)), Ok(()));
        assert_eq!(rights.allow(1, only(PATH_OPEN)), Ok(()));
    }
}
