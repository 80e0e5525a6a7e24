//! Fluvio's SmartModule engine, replayed: what `fluvio-smartengine` (the engine the SPU
//! embeds) does with a SmartModule that exports `init`, `array_map` and `look_back`.
//!
//! * The module is linked with one function, `env.copy_records(ptr, len)`, which records
//!   where the module left its output: nothing else, no WASI, so a module that imports
//!   anything more does not instantiate, as in the engine.
//! * `init` is called right after instantiation with the `-e key=value` parameters.
//! * `look_back`, when a look-back is configured, gets the looked-back records in one
//!   input, with base offset and timestamp 0, before any other call.
//! * `array_map` gets each record batch: the input is encoded, copied into memory with
//!   the module's `alloc`, and the function called with `(ptr, len, version)`; a negative
//!   return is an error status, otherwise the output is read where `copy_records` said.
//!
//! Inputs and outputs use Fluvio's binary encoding (`fluvio-protocol`): big-endian
//! integers, zigzag varints in records. The tests below check this codec against byte
//! sequences from Fluvio's own sources.

use std::collections::BTreeMap;

use wasmtime::error::Context as _;
use wasmtime::{Caller, Extern, Linker, Memory, Store, StoreLimits, StoreLimitsBuilder, TypedFunc};
use wasmtime::{Result, bail};

use super::{PLENTY_OF_FUEL, compile, engine};

/// The protocol version the SPU passes today (its negotiated API version).
pub const SPU_VERSION: i16 = 25;

/// The engine's default version (`smdk test`, connectors).
pub const ENGINE_VERSION: i16 = 22;

/// The memory a SmartModule may use by default (the engine's limiter).
const MAX_MEMORY: usize = 1 << 30;

/// One record of a batch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Record {
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    /// From the batch's base offset and timestamp.
    pub offset_delta: i64,
    pub timestamp_delta: i64,
}

/// What `array_map` returned.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Output {
    /// Key and value of each record out.
    pub records: Vec<(Option<Vec<u8>>, Vec<u8>)>,
    /// The error that stopped the batch, if one did.
    pub error: Option<String>,
}

struct Host {
    limits: StoreLimits,
    /// Where the module last said its output is.
    copied: Option<(i32, i32)>,
}

type Transform = TypedFunc<(i32, i32, i32), i32>;

/// A SmartModule, loaded and initialized as the engine does.
pub struct FluvioSmartModule {
    store: Store<Host>,
    memory: Memory,
    alloc: TypedFunc<i32, i32>,
    array_map: Transform,
    look_back: Option<Transform>,
    version: i16,
}

impl FluvioSmartModule {
    /// The size of the module's linear memory, in bytes.
    pub fn memory_bytes(&self) -> usize {
        self.memory.data_size(&self.store)
    }

    /// Loads `module`, then calls its `init` with `params`, speaking `version`.
    pub fn load(module: &[u8], params: &BTreeMap<String, String>, version: i16) -> Result<Self> {
        let engine = engine()?;
        let module = compile(module).context("the SmartModule does not compile")?;
        let host = Host {
            limits: StoreLimitsBuilder::new().memory_size(MAX_MEMORY).build(),
            copied: None,
        };
        let mut store = Store::new(&engine, host);
        store.limiter(|host| &mut host.limits);
        let mut linker = Linker::new(&engine);
        linker.func_wrap(
            "env",
            "copy_records",
            |mut caller: Caller<'_, Host>, ptr: i32, len: i32| {
                caller.data_mut().copied = Some((ptr, len));
            },
        )?;
        store.set_fuel(PLENTY_OF_FUEL)?;
        let instance = linker
            .instantiate(&mut store, &module)
            .context("the SmartModule does not link against what the engine provides")?;
        let memory = match instance.get_export(&mut store, "memory") {
            Some(Extern::Memory(memory)) => memory,
            _ => bail!("the module exports no memory"),
        };
        let alloc = instance.get_typed_func(&mut store, "alloc")?;
        let array_map = instance
            .get_typed_func(&mut store, "array_map")
            .context("the module exports no `array_map`")?;
        let look_back = instance.get_typed_func(&mut store, "look_back").ok();
        let init: Option<Transform> = instance.get_typed_func(&mut store, "init").ok();
        let mut smartmodule = FluvioSmartModule {
            store,
            memory,
            alloc,
            array_map,
            look_back,
            version,
        };
        if let Some(init) = init {
            let input = encode_params(params, version);
            match smartmodule.call(&init, &input, PLENTY_OF_FUEL)? {
                code if code >= 0 => {}
                -2 => bail!(
                    "init failed: {}",
                    decode_string(&mut &smartmodule.output()?[..])?
                ),
                code => bail!("init failed with status {code}"),
            }
        }
        Ok(smartmodule)
    }

    /// Replays `records` through `look_back`, in one input, as after a restart.
    pub fn look_back(&mut self, records: &[Record]) -> Result<()> {
        let look_back = self
            .look_back
            .clone()
            .context("the module exports no `look_back`")?;
        let input = encode_input(0, 0, records, self.version);
        match self.call(&look_back, &input, PLENTY_OF_FUEL)? {
            0.. => Ok(()),
            -99 => bail!(
                "look_back failed: {}",
                decode_string(&mut &self.output()?[..])?
            ),
            code => bail!("look_back failed with status {code}"),
        }
    }

    /// Runs `array_map` over one batch.
    pub fn array_map(
        &mut self,
        base_offset: i64,
        base_timestamp: i64,
        records: &[Record],
    ) -> Result<Output> {
        self.array_map_with_fuel(base_offset, base_timestamp, records, PLENTY_OF_FUEL)
    }

    /// Runs `array_map` with the call cut short after `fuel` units of work.
    pub fn array_map_with_fuel(
        &mut self,
        base_offset: i64,
        base_timestamp: i64,
        records: &[Record],
        fuel: u64,
    ) -> Result<Output> {
        let input = encode_input(base_offset, base_timestamp, records, self.version);
        let array_map = self.array_map.clone();
        match self.call(&array_map, &input, fuel)? {
            0.. => decode_output(&self.output()?),
            code => bail!("array_map failed with status {code}"),
        }
    }

    /// Copies `input` in with `alloc` and calls `function`; a trap is an error.
    fn call(&mut self, function: &Transform, input: &[u8], fuel: u64) -> Result<i32> {
        self.store.data_mut().copied = None;
        self.store.set_fuel(PLENTY_OF_FUEL)?;
        let ptr = self.alloc.call(&mut self.store, input.len() as i32)?;
        self.memory
            .write(&mut self.store, ptr as u32 as usize, input)?;
        self.store.set_fuel(fuel)?;
        let result = function.call(
            &mut self.store,
            (ptr, input.len() as i32, i32::from(self.version)),
        );
        self.store.set_fuel(PLENTY_OF_FUEL)?;
        result.context("the SmartModule trapped")
    }

    /// What the module handed to `copy_records` during the last call.
    fn output(&self) -> Result<Vec<u8>> {
        let (ptr, len) = self.store.data().copied.unwrap_or((0, 0));
        let data = self.memory.data(&self.store);
        let range = ptr as u32 as usize..(ptr as u32 as usize).saturating_add(len as u32 as usize);
        data.get(range)
            .map(<[u8]>::to_vec)
            .context("copy_records named bytes outside memory")
    }
}

/// `SmartModuleInput`: base offset, the records as a batch's records region, and (from
/// version 22) the base timestamp; up to version 22 also empty parameters and join record.
pub fn encode_input(
    base_offset: i64,
    base_timestamp: i64,
    records: &[Record],
    version: i16,
) -> Vec<u8> {
    let mut raw = Vec::new();
    raw.extend_from_slice(&(records.len() as u32).to_be_bytes());
    for record in records {
        encode_record(record, &mut raw);
    }
    let mut out = Vec::new();
    out.extend_from_slice(&base_offset.to_be_bytes());
    out.extend_from_slice(&(raw.len() as u32).to_be_bytes());
    out.extend_from_slice(&raw);
    if version <= 22 {
        out.extend_from_slice(&[0, 0, 0]); // no parameters, no look-back
        out.extend_from_slice(&[0, 0, 0, 0]); // no join record
    }
    if version >= 22 {
        out.extend_from_slice(&base_timestamp.to_be_bytes());
    }
    out
}

/// `SmartModuleInitInput`: the parameters (u16 count, then u16-length strings) and no
/// look-back. The SPU sends the transform's look-back setting here too; the SDK's `init`
/// ignores it (the engine, not the module, decides what to replay), so the replay leaves
/// it out.
pub fn encode_params(params: &BTreeMap<String, String>, version: i16) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(params.len() as u16).to_be_bytes());
    for (key, value) in params {
        for text in [key, value] {
            out.extend_from_slice(&(text.len() as u16).to_be_bytes());
            out.extend_from_slice(text.as_bytes());
        }
    }
    if version >= 20 {
        out.push(0);
    }
    out
}

/// A record: its length, then attributes, timestamp and offset deltas, key, value and no
/// headers.
pub fn encode_record(record: &Record, out: &mut Vec<u8>) {
    let mut body = vec![0]; // attributes
    put_varint(record.timestamp_delta, &mut body);
    put_varint(record.offset_delta, &mut body);
    match &record.key {
        None => body.push(0),
        Some(key) => {
            body.push(1);
            put_bytes(key, &mut body);
        }
    }
    put_bytes(&record.value, &mut body);
    put_varint(0, &mut body); // headers
    put_varint(body.len() as i64, out);
    out.extend_from_slice(&body);
}

/// `SmartModuleOutput`: the records out, then the error, if any.
pub fn decode_output(bytes: &[u8]) -> Result<Output> {
    let mut input = bytes;
    let count = take_u32(&mut input)?;
    let mut records = Vec::new();
    for _ in 0..count {
        let len = take_varint(&mut input)? as usize;
        let mut body = take(&mut input, len)?;
        let _attributes = take(&mut body, 1)?;
        let _timestamp_delta = take_varint(&mut body)?;
        let _offset_delta = take_varint(&mut body)?;
        let key = match take(&mut body, 1)?[0] {
            0 => None,
            _ => Some(take_bytes(&mut body)?),
        };
        records.push((key, take_bytes(&mut body)?));
    }
    let error = match take(&mut input, 1)?[0] {
        0 => None,
        _ => Some(decode_string(&mut input)?),
    };
    Ok(Output { records, error })
}

fn decode_string(input: &mut &[u8]) -> Result<String> {
    let len = u16::from_be_bytes(take(input, 2)?.try_into().expect("two bytes"));
    Ok(String::from_utf8_lossy(take(input, len as usize)?).into_owned())
}

fn put_varint(n: i64, out: &mut Vec<u8>) {
    let mut zigzag = ((n << 1) ^ (n >> 63)) as u64;
    loop {
        let byte = (zigzag & 0x7f) as u8;
        zigzag >>= 7;
        if zigzag == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn put_bytes(bytes: &[u8], out: &mut Vec<u8>) {
    put_varint(bytes.len() as i64, out);
    out.extend_from_slice(bytes);
}

fn take<'a>(input: &mut &'a [u8], n: usize) -> Result<&'a [u8]> {
    if input.len() < n {
        bail!("the output is cut short");
    }
    let (head, rest) = input.split_at(n);
    *input = rest;
    Ok(head)
}

fn take_u32(input: &mut &[u8]) -> Result<u32> {
    Ok(u32::from_be_bytes(
        take(input, 4)?.try_into().expect("four bytes"),
    ))
}

fn take_varint(input: &mut &[u8]) -> Result<i64> {
    let (mut value, mut shift) = (0u64, 0);
    loop {
        let byte = take(input, 1)?[0];
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(((value >> 1) as i64) ^ -((value & 1) as i64));
        }
        shift += 7;
        if shift > 63 {
            bail!("a varint is too long");
        }
    }
}

fn take_bytes(input: &mut &[u8]) -> Result<Vec<u8>> {
    let len = take_varint(input)? as usize;
    Ok(take(input, len)?.to_vec())
}

#[cfg(test)]
mod tests {
    //! Byte sequences from Fluvio's sources (fluvio-protocol's and the SPU's tests) and
    //! worked from its encoders.

    use super::*;

    fn hex(text: &str) -> Vec<u8> {
        text.split_whitespace()
            .map(|b| u8::from_str_radix(b, 16).unwrap())
            .collect()
    }

    #[test]
    fn varints_are_zigzag() {
        for (n, bytes) in [
            (0, "00"),
            (1, "02"),
            (-1, "01"),
            (3, "06"),
            (63, "7e"),
            (8191, "fe 7f"),
        ] {
            let mut out = Vec::new();
            put_varint(n, &mut out);
            assert_eq!(out, hex(bytes), "{n}");
            assert_eq!(take_varint(&mut &out[..]).unwrap(), n);
        }
    }

    #[test]
    fn records_encode_as_fluvio_does() {
        // fluvio-protocol record/data.rs: Record::new("dog") with offset delta 1.
        let dog = Record {
            value: b"dog".to_vec(),
            offset_delta: 1,
            ..Record::default()
        };
        let mut out = Vec::new();
        encode_record(&dog, &mut out);
        assert_eq!(out, hex("12 00 00 02 00 06 64 6f 67 00"));
        let keyed = Record {
            key: Some(b"k".to_vec()),
            value: b"dog".to_vec(),
            offset_delta: 1,
            timestamp_delta: 5,
        };
        let mut out = Vec::new();
        encode_record(&keyed, &mut out);
        assert_eq!(out, hex("16 00 0a 02 01 02 6b 06 64 6f 67 00"));
    }

    #[test]
    fn inputs_encode_for_each_version() {
        let soup = [Record {
            value: b"soup".to_vec(),
            ..Record::default()
        }];
        // fluvio-spu produce_batch.rs: the records region of one record "soup".
        let region = "00 00 00 01 14 00 00 00 00 08 73 6f 75 70 00";
        let v25 = encode_input(100, 1_700_000_000_000, &soup, 25);
        let expected =
            format!("00 00 00 00 00 00 00 64 00 00 00 0f {region} 00 00 01 8b cf e5 68 00");
        assert_eq!(v25, hex(&expected));
        let v22 = encode_input(100, 1_700_000_000_000, &soup, 22);
        let expected = format!(
            "00 00 00 00 00 00 00 64 00 00 00 0f {region} 00 00 00 00 00 00 00 00 00 01 8b cf e5 68 00"
        );
        assert_eq!(v22, hex(&expected));
        let params = BTreeMap::from([("key".to_owned(), "apple".to_owned())]);
        assert_eq!(
            encode_params(&params, 25),
            hex("00 01 00 03 6b 65 79 00 05 61 70 70 6c 65 00")
        );
    }

    /// A module of one function type, `(i32, i32) -> ()`, that imports `imports` and
    /// defines nothing.
    fn module_importing(imports: &[(&str, &str)]) -> Vec<u8> {
        let name = |text: &str, out: &mut Vec<u8>| {
            out.push(text.len() as u8);
            out.extend_from_slice(text.as_bytes());
        };
        let mut section = vec![imports.len() as u8];
        for (module, function) in imports {
            name(module, &mut section);
            name(function, &mut section);
            section.extend_from_slice(&[0, 0]); // a function of type 0
        }
        let mut bytes = b"\0asm\x01\0\0\0".to_vec();
        bytes.extend_from_slice(&[1, 6, 1, 0x60, 2, 0x7f, 0x7f, 0]);
        bytes.extend_from_slice(&[2, section.len() as u8]);
        bytes.extend_from_slice(&section);
        bytes
    }

    #[test]
    fn nothing_but_copy_records_is_linked() {
        let load = |imports: &[(&str, &str)]| {
            let module = module_importing(imports);
            let loaded = FluvioSmartModule::load(&module, &BTreeMap::new(), SPU_VERSION);
            format!("{:#}", loaded.err().expect("the module cannot run"))
        };
        let clock = load(&[
            ("env", "copy_records"),
            ("wasi_snapshot_preview1", "clock_time_get"),
        ]);
        assert!(
            clock.contains("does not link") && clock.contains("clock_time_get"),
            "{clock}"
        );
        // `copy_records` alone links; the module then lacks what the engine calls.
        let bare = load(&[("env", "copy_records")]);
        assert!(bare.contains("exports no memory"), "{bare}");
    }

    #[test]
    fn outputs_decode() {
        let two = decode_output(&hex(
            "00 00 00 02 0e 00 00 00 00 02 61 00 0e 00 00 00 00 02 62 00 00",
        ))
        .unwrap();
        assert_eq!(two.records, [(None, b"a".to_vec()), (None, b"b".to_vec())]);
        assert_eq!(two.error, None);
        let failed = decode_output(&hex(
            "00 00 00 00 01 00 03 62 61 64 00 00 00 00 00 00 00 64 02 00 02 78",
        ))
        .unwrap();
        assert_eq!(failed.error.as_deref(), Some("bad"));
    }
}
