//! Fluent Bit's `filter_wasm`, replayed: what `plugins/filter_wasm/filter_wasm.c` and
//! `src/wasm/flb_wasm.c` (v4.1.2 and later) do with a filter module.
//!
//! * One instance for the life of the filter, kept across records and after traps.
//! * WASI preview 1: no arguments, no environment; each `Accessible_Paths` entry
//!   preopened under the name it was given, on the directory it names; each file call
//!   checked against the descriptor's rights as WAMR checks them ([`rights`]). Imports
//!   that cannot be resolved trap when called, as WAMR's do.
//! * At start, `_initialize` if the module imports WASI and exports it, else
//!   `__wasm_call_ctors`; never `_start`.
//! * Per record: the tag and the record's JSON copied into the module's memory,
//!   NUL-terminated, with its exported `malloc` (pointer 0 when the copy fails); the
//!   function called with `(tag, tag_len, sec, nsec, record, record_len)`; the
//!   NUL-terminated string at the returned address read; both copies freed with its
//!   `free`. A trap drops the record, and the next call goes to the same instance.
//! * The result: `""` drops the record, a JSON object replaces it, anything else drops it.
//!
//! Records reach the module as `flb_msgpack_to_json_str` writes them: compact, in key
//! order, with every non-ASCII character escaped (`json.escape_unicode`, on by default).

use std::path::PathBuf;

use serde_json::Value;
use wasmtime::error::Context as _;
use wasmtime::{Instance, Linker, Memory, Module, Store, TypedFunc};
use wasmtime::{Result, bail};
use wasmtime_wasi::p1;
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

use super::{PLENTY_OF_FUEL, compile, engine};
use rights::Host;

mod rights;

/// What the filter made of one record.
#[derive(Clone, Debug, PartialEq)]
pub enum Filtered {
    /// The record is dropped.
    Dropped,
    /// The record is replaced by this JSON object.
    Replaced(Value),
    /// The call trapped (the record is dropped); the reason WAMR would log.
    Trapped(String),
}

/// A filter module, loaded as Fluent Bit loads it.
pub struct FluentBitFilter {
    store: Store<Host>,
    memory: Memory,
    malloc: TypedFunc<i32, i32>,
    free: TypedFunc<i32, ()>,
    function: TypedFunc<(i32, i32, i32, i32, i32, i32), i32>,
    /// The fuel the last call of the filter function burnt.
    last_fuel: u64,
}

type Filter = (i32, i32, i32, i32, i32, i32);

impl FluentBitFilter {
    /// Loads `module` with `function` as `Function_Name`, granting `accessible_paths`.
    pub fn load(module: &[u8], function: &str, accessible_paths: &[PathBuf]) -> Result<Self> {
        let engine = engine()?;
        let module = compile(module).context("the filter module does not compile")?;
        let mut wasi = WasiCtxBuilder::new();
        for path in accessible_paths {
            let guest = path.to_str().context("accessible paths are text")?;
            wasi.preopened_dir(path, guest, FsPerms::ReadWrite)
                .with_context(|| format!("cannot grant {}", path.display()))?;
        }
        let host = Host::new(wasi.build_p1(), accessible_paths.len());
        let mut store = Store::new(&engine, host);
        let mut linker = Linker::new(&engine);
        p1::add_to_linker_sync(&mut linker, |host: &mut Host| &mut host.wasi)?;
        rights::enforce(&mut linker)?;
        linker.define_unknown_imports_as_traps(&module)?;
        store.set_fuel(PLENTY_OF_FUEL)?;
        let instance = linker.instantiate(&mut store, &module)?;
        start(&mut store, &instance, &module)?;
        let memory = instance
            .get_memory(&mut store, "memory")
            .context("the module exports no memory")?;
        let (Ok(malloc), Ok(free)) = (
            instance.get_typed_func::<i32, i32>(&mut store, "malloc"),
            instance.get_typed_func::<i32, ()>(&mut store, "free"),
        ) else {
            bail!(
                "the module does not export malloc and free: Fluent Bit would copy records \
                 through its 8 KiB heap, which this replay does not model"
            );
        };
        let function = instance
            .get_typed_func::<Filter, i32>(&mut store, function)
            .with_context(|| format!("the module exports no filter function `{function}`"))?;
        Ok(FluentBitFilter {
            store,
            memory,
            malloc,
            free,
            function,
            last_fuel: 0,
        })
    }

    /// The work of the last call of the filter function, in wasmtime's fuel: about one
    /// unit a WebAssembly instruction, what an interpreter such as Fluent Bit's pays for.
    pub fn fuel_of_last_call(&self) -> u64 {
        self.last_fuel
    }

    /// Filters `record`, sent as Fluent Bit writes it, at event time `time` (seconds,
    /// nanoseconds).
    pub fn filter(&mut self, tag: &str, time: (u32, u32), record: &Value) -> Filtered {
        self.filter_json(tag, time, fluent_bit_json(record).as_bytes())
    }

    /// Filters a record given as JSON text, as is.
    pub fn filter_json(&mut self, tag: &str, time: (u32, u32), json: &[u8]) -> Filtered {
        self.call(tag, time, Some(json), json.len(), PLENTY_OF_FUEL)
    }

    /// A call for a record of `len` bytes that Fluent Bit could not copy in: pointer 0.
    pub fn filter_uncopied(&mut self, tag: &str, time: (u32, u32), len: usize) -> Filtered {
        self.call(tag, time, None, len, PLENTY_OF_FUEL)
    }

    /// Filters `record` with the call cut short after `fuel` units of work, as a trap
    /// at that point would.
    pub fn filter_cut_short(
        &mut self,
        tag: &str,
        time: (u32, u32),
        record: &Value,
        fuel: u64,
    ) -> Filtered {
        let json = fluent_bit_json(record);
        self.call(tag, time, Some(json.as_bytes()), json.len(), fuel)
    }

    fn call(
        &mut self,
        tag: &str,
        (sec, nsec): (u32, u32),
        record: Option<&[u8]>,
        len: usize,
        fuel: u64,
    ) -> Filtered {
        let tag_ptr = self.copy_in(tag.as_bytes());
        let record_ptr = record.map_or(0, |r| self.copy_in(r));
        let args = (
            tag_ptr,
            tag.len() as i32,
            sec as i32,
            nsec as i32,
            record_ptr,
            len as i32,
        );
        let _ = self.store.set_fuel(fuel);
        let called = self.function.call(&mut self.store, args);
        self.last_fuel = fuel - self.store.get_fuel().unwrap_or(fuel);
        let _ = self.store.set_fuel(PLENTY_OF_FUEL);
        let result = called.map(|address| self.string_at(address));
        for ptr in [tag_ptr, record_ptr] {
            if ptr != 0 {
                let _ = self.free.call(&mut self.store, ptr);
            }
        }
        match result {
            Err(trap) => Filtered::Trapped(format!("{trap:#}")),
            // An address without a NUL before the end of memory: dropped.
            Ok(None) => Filtered::Dropped,
            Ok(Some(text)) if text.is_empty() => Filtered::Dropped,
            Ok(Some(text)) => match serde_json::from_slice(&text) {
                Ok(object @ Value::Object(_)) => Filtered::Replaced(object),
                _ => Filtered::Dropped,
            },
        }
    }

    /// `wasm_runtime_module_dup_data`: `bytes` and a NUL in memory from the module's
    /// `malloc`; 0 when that fails.
    fn copy_in(&mut self, bytes: &[u8]) -> i32 {
        let Ok(ptr) = self.malloc.call(&mut self.store, bytes.len() as i32 + 1) else {
            return 0;
        };
        let mut with_nul = bytes.to_vec();
        with_nul.push(0);
        match self
            .memory
            .write(&mut self.store, ptr as u32 as usize, &with_nul)
        {
            Ok(()) if ptr != 0 => ptr,
            _ => 0,
        }
    }

    /// The NUL-terminated string at `address`, if there is a NUL before memory ends.
    fn string_at(&self, address: i32) -> Option<Vec<u8>> {
        let data = self.memory.data(&self.store);
        let tail = data.get(address as u32 as usize..)?;
        let end = tail.iter().position(|b| *b == 0)?;
        Some(tail[..end].to_vec())
    }
}

/// The start functions WAMR runs: `_initialize` for a WASI module, else
/// `__wasm_call_ctors`.
fn start(store: &mut Store<Host>, instance: &Instance, module: &Module) -> Result<()> {
    let imports_wasi = module
        .imports()
        .any(|i| i.module().starts_with("wasi_snapshot_preview1") || i.module() == "wasi_unstable");
    let name = if imports_wasi {
        "_initialize"
    } else {
        "__wasm_call_ctors"
    };
    if let Ok(start) = instance.get_typed_func::<(), ()>(&mut *store, name) {
        start
            .call(&mut *store, ())
            .with_context(|| format!("`{name}` trapped"))?;
    }
    Ok(())
}

/// A record as `flb_msgpack_to_json_str` writes it with `json.escape_unicode` on:
/// compact, non-ASCII characters as lowercase `\uXXXX` (surrogate pairs past the BMP).
pub fn fluent_bit_json(record: &Value) -> String {
    let mut out = Vec::new();
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, EscapeUnicode);
    serde::Serialize::serialize(record, &mut serializer).expect("JSON serializes");
    String::from_utf8(out).expect("escaped JSON is ASCII")
}

struct EscapeUnicode;

impl serde_json::ser::Formatter for EscapeUnicode {
    fn write_string_fragment<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> std::io::Result<()> {
        for c in fragment.chars() {
            if c.is_ascii() {
                writer.write_all(&[c as u8])?;
            } else {
                let mut units = [0; 2];
                for unit in c.encode_utf16(&mut units) {
                    write!(writer, "\\u{unit:04x}")?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A filter that opens the granted directory's `state/` handing on only `FD_WRITE`,
    /// then in it a file to write in place (which needs `FD_SEEK` handed on) and a file to
    /// append to (which does not), and returns the three errnos as two digits each.
    const OPENS_IN_A_SUBDIRECTORY: &str = r#"(module
        (import "wasi_snapshot_preview1" "path_open"
            (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
        (memory (export "memory") 1)
        (data (i32.const 16) "state")
        (data (i32.const 32) "{\"errnos\":\"dd dd dd\"}")
        (func (export "malloc") (param i32) (result i32) (i32.const 4096))
        (func (export "free") (param i32))
        (func $digits (param $at i32) (param $errno i32)
            (i32.store8 (local.get $at) (i32.add (i32.const 48) (i32.div_u (local.get $errno) (i32.const 10))))
            (i32.store8 (i32.add (local.get $at) (i32.const 1))
                (i32.add (i32.const 48) (i32.rem_u (local.get $errno) (i32.const 10)))))
        (func (export "filter") (param i32 i32 i32 i32 i32 i32) (result i32)
            ;; state/: O_DIRECTORY, PATH_OPEN | PATH_CREATE_FILE, handing on FD_WRITE.
            (call $digits (i32.const 43)
                (call $open (i32.const 3) (i32.const 0) (i32.const 16) (i32.const 5) (i32.const 2)
                    (i64.const 9216) (i64.const 64) (i32.const 0) (i32.const 0)))
            ;; state/state (the name at 16 again), to write in place: O_CREAT, FD_WRITE.
            (call $digits (i32.const 46)
                (call $open (i32.load (i32.const 0)) (i32.const 0) (i32.const 16) (i32.const 5)
                    (i32.const 1) (i64.const 64) (i64.const 0) (i32.const 0) (i32.const 8)))
            ;; The same, to append.
            (call $digits (i32.const 49)
                (call $open (i32.load (i32.const 0)) (i32.const 0) (i32.const 16) (i32.const 5)
                    (i32.const 1) (i64.const 64) (i64.const 0) (i32.const 1) (i32.const 8)))
            (i32.const 32)))"#;

    #[test]
    fn files_are_opened_with_the_rights_wamr_would_give() {
        let granted = tempfile::tempdir().unwrap();
        std::fs::create_dir(granted.path().join("state")).unwrap();
        let module = wat::parse_str(OPENS_IN_A_SUBDIRECTORY).unwrap();
        let mut filter =
            FluentBitFilter::load(&module, "filter", &[granted.path().to_path_buf()]).unwrap();
        // The directory opens; in it, writing in place is refused (ENOTCAPABLE, as in
        // Fluent Bit), appending is not.
        let errnos = serde_json::json!({"errnos": "00 76 00"});
        assert_eq!(
            filter.filter_json("t", (0, 0), b"{}"),
            Filtered::Replaced(errnos)
        );
        assert!(granted.path().join("state/state").is_file());
    }

    #[test]
    fn records_are_written_as_fluent_bit_writes_them() {
        let record = serde_json::json!({"b": "é/😀", "a": [1, null, true]});
        assert_eq!(
            fluent_bit_json(&record),
            r#"{"a":[1,null,true],"b":"\u00e9/\ud83d\ude00"}"#
        );
    }
}
