//! The directories the host granted: WASI preopens, which Fluent Bit makes of
//! `Accessible_Paths`.

use std::path::PathBuf;

/// The granted directories, by the names the host gave them, in order.
#[cfg(target_os = "wasi")]
pub fn granted_dirs() -> Vec<PathBuf> {
    use std::os::wasi::ffi::OsStrExt;

    #[repr(C)]
    struct Prestat {
        tag: u8,
        name_len: usize,
    }
    #[link(wasm_import_module = "wasi_snapshot_preview1")]
    unsafe extern "C" {
        fn fd_prestat_get(fd: u32, prestat: *mut Prestat) -> u16;
        fn fd_prestat_dir_name(fd: u32, name: *mut u8, len: usize) -> u16;
    }
    const SUCCESS: u16 = 0;
    const DIR: u8 = 0;

    let mut dirs = Vec::new();
    // Preopens are numbered from 3, after stdio, with no gaps: the first error ends them.
    for fd in 3..u32::MAX {
        let mut prestat = Prestat {
            tag: 0,
            name_len: 0,
        };
        // SAFETY: WASI writes a prestat into the buffer given.
        match unsafe { fd_prestat_get(fd, &mut prestat) } {
            SUCCESS if prestat.tag == DIR => {
                let mut name = vec![0; prestat.name_len];
                // SAFETY: the buffer holds `name_len` bytes, as WASI asked.
                if unsafe { fd_prestat_dir_name(fd, name.as_mut_ptr(), name.len()) } == SUCCESS {
                    dirs.push(PathBuf::from(std::ffi::OsStr::from_bytes(&name)));
                }
            }
            SUCCESS => {}
            _ => break,
        }
    }
    dirs
}

/// Outside WASI nothing is granted.
#[cfg(not(target_os = "wasi"))]
pub fn granted_dirs() -> Vec<PathBuf> {
    Vec::new()
}
