//! The few file operations the filter needs in the directories the host granted: reading
//! its configuration, and keeping its state in `rule-state/`.
//!
//! In the module they are WASI preview 1 calls, made directly. `std::fs` would go through
//! wasi-libc, whose path resolution looks the preopens up once at first use and links the
//! process's exit (`proc_exit`) for when that fails; the filter instead holds each
//! directory by its descriptor. Natively (the SDK's own tests) they are `std::fs`'s.
//!
//! A file is opened in one of four [`Access`] modes; reading and writing go through
//! [`std::io::Read`] and [`std::io::Write`].
//!
//! A trap can make the filter forget what it held without dropping it (see the module
//! above), so nothing it holds closes its descriptors then. So that traps do not use
//! them up, the descriptors are also noted outside the heap: a subdirectory is opened
//! once and kept for the instance's life, and the files still open when the filter
//! starts again are closed by [`close_forgotten`].

pub use imp::{Dir, File, close_forgotten};

/// How a file is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// An existing file, to read.
    Read,
    /// An existing file, to read and write in place.
    Update,
    /// An existing file, to write at its end.
    Append,
    /// A file made empty, created if need be.
    Create,
}

#[cfg(target_os = "wasi")]
mod imp {
    use std::io;
    use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};

    use super::Access;

    /// WASI preview 1, with the wasm types of its ABI (as std's own `wasi` crate declares
    /// them, so that both declarations agree).
    mod raw {
        #[link(wasm_import_module = "wasi_snapshot_preview1")]
        unsafe extern "C" {
            pub fn fd_prestat_get(fd: i32, prestat: i32) -> i32;
            pub fn fd_prestat_dir_name(fd: i32, path: i32, path_len: i32) -> i32;
            pub fn path_open(
                fd: i32,
                dirflags: i32,
                path: i32,
                path_len: i32,
                oflags: i32,
                rights_base: i64,
                rights_inheriting: i64,
                fdflags: i32,
                opened: i32,
            ) -> i32;
            pub fn path_filestat_get(
                fd: i32,
                flags: i32,
                path: i32,
                path_len: i32,
                stat: i32,
            ) -> i32;
            pub fn path_rename(
                fd: i32,
                old: i32,
                old_len: i32,
                new_fd: i32,
                new: i32,
                new_len: i32,
            ) -> i32;
            pub fn fd_read(fd: i32, iovs: i32, iovs_len: i32, read: i32) -> i32;
            pub fn fd_write(fd: i32, iovs: i32, iovs_len: i32, written: i32) -> i32;
            pub fn fd_filestat_get(fd: i32, stat: i32) -> i32;
            pub fn fd_filestat_set_size(fd: i32, size: i64) -> i32;
            pub fn fd_sync(fd: i32) -> i32;
            pub fn fd_close(fd: i32) -> i32;
        }
    }

    // Rights. Runtimes that enforce them (WAMR, Fluent Bit's) give a file opened in a
    // directory only rights the directory may hand on, so each open asks for exactly
    // what it uses.
    const FD_READ: u64 = 1 << 1;
    const FD_SEEK: u64 = 1 << 2;
    const FD_SYNC: u64 = 1 << 4;
    const FD_WRITE: u64 = 1 << 6;
    const PATH_CREATE_FILE: u64 = 1 << 10;
    const PATH_OPEN: u64 = 1 << 13;
    const PATH_RENAME_SOURCE: u64 = 1 << 16;
    const PATH_RENAME_TARGET: u64 = 1 << 17;
    const PATH_FILESTAT_GET: u64 = 1 << 18;
    const PATH_FILESTAT_SET_SIZE: u64 = 1 << 19;
    const FD_FILESTAT_GET: u64 = 1 << 21;
    const FD_FILESTAT_SET_SIZE: u64 = 1 << 22;
    /// What the state's files are used for. WAMR opens a file to write in place (neither
    /// appending nor truncating: the journal, to cut a torn frame off) only if its
    /// directory may hand on `FD_SEEK`; without it, a restarted filter could not reopen
    /// its journal.
    const FILE_RIGHTS: u64 =
        FD_READ | FD_SEEK | FD_WRITE | FD_SYNC | FD_FILESTAT_GET | FD_FILESTAT_SET_SIZE;
    /// What the state directory is used for (its own filestat: to know it again).
    const DIR_RIGHTS: u64 = PATH_OPEN
        | PATH_CREATE_FILE
        | PATH_RENAME_SOURCE
        | PATH_RENAME_TARGET
        | PATH_FILESTAT_GET
        | PATH_FILESTAT_SET_SIZE
        | FD_FILESTAT_GET
        | FD_SYNC;

    const SYMLINK_FOLLOW: i32 = 1;
    const O_CREAT: i32 = 1;
    const O_DIRECTORY: i32 = 2;
    const O_TRUNC: i32 = 8;
    const FDFLAG_APPEND: i32 = 1;
    const REGULAR_FILE: u64 = 4;

    /// A `filestat`: device, inode, file type (a byte), links, size, then three times.
    #[derive(Default)]
    struct Filestat([u64; 8]);

    impl Filestat {
        fn is_file(&self) -> bool {
            self.0[2] & 0xff == REGULAR_FILE
        }

        fn size(&self) -> u64 {
            self.0[4]
        }
    }

    /// The descriptors of the files open now, outside the heap. The filter holds at most
    /// four at once (the journal; while compacting, the two files it writes and the
    /// journal it opens again); a file beyond the table is not noted.
    static OPEN_FILES: [AtomicI32; 8] = [const { AtomicI32::new(-1) }; 8];

    fn note_open(fd: i32) {
        let free = OPEN_FILES
            .iter()
            .find(|slot| slot.load(Ordering::Relaxed) < 0);
        if let Some(slot) = free {
            slot.store(fd, Ordering::Relaxed);
        }
    }

    fn note_closed(fd: i32) {
        let noted = OPEN_FILES
            .iter()
            .find(|slot| slot.load(Ordering::Relaxed) == fd);
        if let Some(slot) = noted {
            slot.store(-1, Ordering::Relaxed);
        }
    }

    /// Closes every file still open: those of a filter that a trap made forget them.
    ///
    /// # Safety
    /// No [`File`] is in use again: their owners were forgotten, never to be dropped.
    pub unsafe fn close_forgotten() {
        for slot in &OPEN_FILES {
            let fd = slot.swap(-1, Ordering::Relaxed);
            if fd >= 0 {
                // SAFETY: a descriptor no one uses again, as the caller guarantees.
                let _ = unsafe { raw::fd_close(fd) };
            }
        }
    }

    /// The subdirectory kept open for the instance's life, outside the heap: by its
    /// parent's descriptor, a hash of its name, and its own descriptor (-1: none yet).
    /// A filter that starts again after a trap finds it here: opened anew each time, the
    /// descriptor held by what the trap made it forget would never be closed.
    static KEPT_DIR: (AtomicI32, AtomicU64, AtomicI32) =
        (AtomicI32::new(-1), AtomicU64::new(0), AtomicI32::new(-1));

    /// FNV-1a: a name's hash, without allocating.
    fn name_hash(name: &str) -> u64 {
        name.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        })
    }

    fn check(errno: i32) -> io::Result<()> {
        match errno {
            0 => Ok(()),
            // wasi-libc numbers errno as WASI does: std reads it as the OS error it is.
            errno => Err(io::Error::from_raw_os_error(errno)),
        }
    }

    /// A directory, held by its descriptor.
    pub struct Dir {
        fd: i32,
        name: String,
        /// Opened by the filter, which closes it. A preopened one is the host's, and the
        /// kept subdirectory the instance's: closed, either would be lost to the filter,
        /// which finds its directories again after a trap.
        owned: bool,
    }

    impl Dir {
        /// The directories the host granted (preopened), by the names it gave them.
        pub fn granted() -> Vec<Dir> {
            #[repr(C)]
            struct Prestat {
                tag: u8,
                name_len: usize,
            }
            let mut dirs = Vec::new();
            // Preopens are numbered from 3, after stdio, with no gaps: the first error ends them.
            for fd in 3.. {
                let mut prestat = Prestat {
                    tag: u8::MAX,
                    name_len: 0,
                };
                // SAFETY: WASI writes a prestat into the buffer given.
                if unsafe { raw::fd_prestat_get(fd, &raw mut prestat as i32) } != 0 {
                    break;
                }
                let mut name = vec![0; prestat.name_len];
                // SAFETY: the buffer holds `name_len` bytes, as WASI asked.
                let named = unsafe {
                    raw::fd_prestat_dir_name(fd, name.as_mut_ptr() as i32, name.len() as i32)
                };
                if prestat.tag == 0 && named == 0 {
                    let name = String::from_utf8_lossy(&name).into_owned();
                    dirs.push(Dir {
                        fd,
                        name,
                        owned: false,
                    });
                }
            }
            dirs
        }

        /// The directory's path, for messages.
        pub fn name(&self) -> &str {
            &self.name
        }

        fn open_at(
            &self,
            name: &str,
            oflags: i32,
            rights: (u64, u64),
            fdflags: i32,
        ) -> io::Result<i32> {
            let mut fd = -1;
            // SAFETY: WASI reads the path given and writes a descriptor into `fd`.
            let errno = unsafe {
                raw::path_open(
                    self.fd,
                    SYMLINK_FOLLOW,
                    name.as_ptr() as i32,
                    name.len() as i32,
                    oflags,
                    rights.0 as i64,
                    rights.1 as i64,
                    fdflags,
                    &raw mut fd as i32,
                )
            };
            check(errno).map(|()| fd)
        }

        /// The directory `name` in this one, if there is one. The first one found is
        /// kept open for the instance's life, and found again there while it is still
        /// the directory of that name.
        pub fn subdir(&self, name: &str) -> Option<Dir> {
            let (owned, fd) = match self.kept_subdir(name) {
                Some(fd) => (false, fd),
                None => self.open_subdir(name)?,
            };
            let name = format!("{}/{name}", self.name.trim_end_matches('/'));
            Some(Dir { fd, name, owned })
        }

        /// The kept subdirectory, if it is `name` in this one and still there. One that
        /// was replaced, or removed, stays open, unused: the operator moved it.
        fn kept_subdir(&self, name: &str) -> Option<i32> {
            let fd = KEPT_DIR.2.load(Ordering::Relaxed);
            if fd < 0 || !self.keeps(name) {
                return None;
            }
            let (at_path, held) = (self.stat(name).ok()?, fd_stat(fd).ok()?);
            // The same device and inode: still the directory of that name.
            (at_path.0[..2] == held.0[..2]).then_some(fd)
        }

        /// Whether the kept subdirectory is (or was) `name` in this one.
        fn keeps(&self, name: &str) -> bool {
            KEPT_DIR.0.load(Ordering::Relaxed) == self.fd
                && KEPT_DIR.1.load(Ordering::Relaxed) == name_hash(name)
        }

        /// Opens the subdirectory `name`, kept if it is the first, or replaces a kept one
        /// that is no longer there; whether it is owned, and its descriptor.
        fn open_subdir(&self, name: &str) -> Option<(bool, i32)> {
            let fd = self
                .open_at(name, O_DIRECTORY, (DIR_RIGHTS, FILE_RIGHTS), 0)
                .ok()?;
            let (parent, hash, kept) = &KEPT_DIR;
            if kept.load(Ordering::Relaxed) >= 0 && !self.keeps(name) {
                return Some((true, fd));
            }
            parent.store(self.fd, Ordering::Relaxed);
            hash.store(name_hash(name), Ordering::Relaxed);
            kept.store(fd, Ordering::Relaxed);
            Some((false, fd))
        }

        /// Opens the file `name` in this directory.
        pub fn open(&self, name: &str, access: Access) -> io::Result<File> {
            let (oflags, rights, fdflags) = match access {
                Access::Read => (0, FD_READ, 0),
                Access::Update => (0, FILE_RIGHTS, 0),
                Access::Append => (0, FILE_RIGHTS, FDFLAG_APPEND),
                Access::Create => (O_CREAT | O_TRUNC, FILE_RIGHTS, 0),
            };
            let fd = self.open_at(name, oflags, (rights, 0), fdflags)?;
            note_open(fd);
            Ok(File(fd))
        }

        fn stat(&self, name: &str) -> io::Result<Filestat> {
            let mut stat = Filestat::default();
            // SAFETY: WASI reads the path given and writes a filestat into `stat`.
            let errno = unsafe {
                raw::path_filestat_get(
                    self.fd,
                    SYMLINK_FOLLOW,
                    name.as_ptr() as i32,
                    name.len() as i32,
                    &raw mut stat as i32,
                )
            };
            check(errno).map(|()| stat)
        }

        /// Whether `name` is a file in this directory.
        pub fn is_file(&self, name: &str) -> bool {
            self.stat(name).is_ok_and(|s| s.is_file())
        }

        /// The length of the file `name`.
        pub fn size_of(&self, name: &str) -> io::Result<u64> {
            self.stat(name).map(|s| s.size())
        }

        /// Renames `from` to `to`, replacing it.
        pub fn rename(&self, from: &str, to: &str) -> io::Result<()> {
            // SAFETY: WASI reads the two paths given.
            check(unsafe {
                raw::path_rename(
                    self.fd,
                    from.as_ptr() as i32,
                    from.len() as i32,
                    self.fd,
                    to.as_ptr() as i32,
                    to.len() as i32,
                )
            })
        }

        /// Makes renames in the directory durable, where the host allows it.
        pub fn sync(&self) {
            // SAFETY: a call on a descriptor this directory holds.
            let _ = unsafe { raw::fd_sync(self.fd) };
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            if self.owned {
                // SAFETY: a descriptor this directory opened, closed once.
                let _ = unsafe { raw::fd_close(self.fd) };
            }
        }
    }

    /// The filestat of the descriptor `fd`.
    fn fd_stat(fd: i32) -> io::Result<Filestat> {
        let mut stat = Filestat::default();
        // SAFETY: WASI writes a filestat into `stat`.
        check(unsafe { raw::fd_filestat_get(fd, &raw mut stat as i32) }).map(|()| stat)
    }

    /// An open file.
    pub struct File(i32);

    impl File {
        /// Its length.
        pub fn size(&self) -> io::Result<u64> {
            fd_stat(self.0).map(|stat| stat.size())
        }

        /// Cuts it, or extends it with zeros, to `len` bytes.
        pub fn set_len(&self, len: u64) -> io::Result<()> {
            // SAFETY: a call on this file's descriptor.
            check(unsafe { raw::fd_filestat_set_size(self.0, len as i64) })
        }

        /// Makes what was written durable.
        pub fn sync(&self) -> io::Result<()> {
            // SAFETY: a call on this file's descriptor.
            check(unsafe { raw::fd_sync(self.0) })
        }
    }

    /// One buffer, as `fd_read` and `fd_write` take a list of them: its address and length.
    fn iovec(buf: *const u8, len: usize) -> [usize; 2] {
        [buf as usize, len]
    }

    impl io::Read for File {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let (iovec, mut read) = (iovec(buf.as_ptr(), buf.len()), 0usize);
            // SAFETY: WASI writes at most `buf.len()` bytes into `buf`, and the count.
            let errno =
                unsafe { raw::fd_read(self.0, &raw const iovec as i32, 1, &raw mut read as i32) };
            check(errno).map(|()| read)
        }
    }

    impl io::Write for File {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let (iovec, mut written) = (iovec(buf.as_ptr(), buf.len()), 0usize);
            // SAFETY: WASI reads `buf`, and writes the count.
            let errno = unsafe {
                raw::fd_write(self.0, &raw const iovec as i32, 1, &raw mut written as i32)
            };
            check(errno).map(|()| written)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Drop for File {
        fn drop(&mut self) {
            note_closed(self.0);
            // SAFETY: the file's own descriptor, closed once.
            let _ = unsafe { raw::fd_close(self.0) };
        }
    }
}

#[cfg(not(target_os = "wasi"))]
mod imp {
    use std::fs::{self, OpenOptions};
    use std::io;
    use std::path::PathBuf;

    use super::Access;

    /// Natively nothing traps: no file is left open by a forgotten filter.
    ///
    /// # Safety
    /// As on WASI: no [`File`] it would close is used again (natively it closes none).
    pub unsafe fn close_forgotten() {}

    /// A directory, by its path.
    pub struct Dir(PathBuf);

    impl Dir {
        /// The directory at `path`.
        #[cfg(test)]
        pub fn at(path: &std::path::Path) -> Dir {
            Dir(path.to_owned())
        }

        /// Outside WASI nothing is granted.
        pub fn granted() -> Vec<Dir> {
            Vec::new()
        }

        /// The directory's path, for messages.
        pub fn name(&self) -> &str {
            self.0.to_str().unwrap_or("a granted directory")
        }

        /// The directory `name` in this one, if there is one.
        pub fn subdir(&self, name: &str) -> Option<Dir> {
            let path = self.0.join(name);
            path.is_dir().then_some(Dir(path))
        }

        /// Opens the file `name` in this directory.
        pub fn open(&self, name: &str, access: Access) -> io::Result<File> {
            let mut options = OpenOptions::new();
            match access {
                Access::Read => options.read(true),
                Access::Update => options.read(true).write(true),
                Access::Append => options.append(true),
                Access::Create => options.write(true).create(true).truncate(true),
            };
            options.open(self.0.join(name)).map(File)
        }

        /// Whether `name` is a file in this directory.
        pub fn is_file(&self, name: &str) -> bool {
            self.0.join(name).is_file()
        }

        /// The length of the file `name`.
        pub fn size_of(&self, name: &str) -> io::Result<u64> {
            fs::metadata(self.0.join(name)).map(|m| m.len())
        }

        /// Renames `from` to `to`, replacing it.
        pub fn rename(&self, from: &str, to: &str) -> io::Result<()> {
            fs::rename(self.0.join(from), self.0.join(to))
        }

        /// Makes renames in the directory durable, where the platform allows it.
        pub fn sync(&self) {
            if let Ok(dir) = fs::File::open(&self.0) {
                let _ = dir.sync_all();
            }
        }
    }

    /// An open file.
    pub struct File(fs::File);

    impl File {
        /// Its length.
        pub fn size(&self) -> io::Result<u64> {
            self.0.metadata().map(|m| m.len())
        }

        /// Cuts it, or extends it with zeros, to `len` bytes.
        pub fn set_len(&self, len: u64) -> io::Result<()> {
            self.0.set_len(len)
        }

        /// Makes what was written durable.
        pub fn sync(&self) -> io::Result<()> {
            self.0.sync_all()
        }
    }

    impl io::Read for File {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.0.read(buf)
        }
    }

    impl io::Write for File {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.write(buf)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
}
