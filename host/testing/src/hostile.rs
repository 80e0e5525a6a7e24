//! Hostile rules: components of the `detect:rule` world written in WAT, for the tests of
//! what the sandbox refuses them.

use std::path::Path;

/// What a hostile component is made of. Every one shares a skeleton: a bump allocator, a
/// `describe` naming it `hostile` (after running `describe`), a `configure` that runs
/// `configure` and accepts anything, and `process_event` for each record, which receives
/// the record as (`$ptr`, `$len`, `$not_after`), has locals `$bucket` and `$i`, and
/// returns a pointer to its result; `process-batch` runs it on each record of the batch.
/// Address 128 holds zeros: the canonical encoding of `ok(outcome { relevant: false,
/// alerts: [] })`. Addresses 16 and 32 hold `default` and `1`.
#[derive(Default)]
pub struct Hostile<'a> {
    /// Module-level items before the skeleton: imports, helper functions.
    pub items: &'a str,
    /// Instructions run at the start of `describe`.
    pub describe: &'a str,
    /// Instructions run at the start of `configure`.
    pub configure: &'a str,
    /// The body of the per-record function.
    pub process_event: &'a str,
}

impl Hostile<'_> {
    /// The component.
    pub fn component(&self) -> Vec<u8> {
        let mut module = wat::parse_str(self.wat()).expect("the hostile guest is valid WAT");
        let mut bindgen = wit_component::metadata::Bindgen::default();
        let wit = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../wit");
        let (package, _) = bindgen.resolve.push_dir(&wit).expect("the WIT parses");
        let world = bindgen
            .resolve
            .select_world(&[package], Some("rule"))
            .expect("the world exists");
        let utf8 = wit_component::StringEncoding::UTF8;
        wit_component::embed_component_metadata(&mut module, &bindgen.resolve, world, utf8, false)
            .expect("metadata embeds");
        wit_component::ComponentEncoder::default()
            .module(&module)
            .and_then(|e| e.validate(true).encode())
            .expect("the hostile guest encodes as a component")
    }

    fn wat(&self) -> String {
        let Hostile {
            items,
            describe,
            configure,
            process_event,
        } = self;
        format!(
            r#"(module
            {items}
            (memory (export "memory") 64)
            (global $heap (mut i32) (i32.const 65536))
            (data (i32.const 16) "default")
            (data (i32.const 32) "1")
            (data (i32.const 400) "hostile")
            (data (i32.const 410) "0")
            (data (i32.const 420) "{{}}")
            (func $alloc (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
                (local $at i32)
                (local.set $at (i32.and (i32.add (global.get $heap) (i32.sub (local.get 2) (i32.const 1)))
                                        (i32.sub (i32.const 0) (local.get 2))))
                (global.set $heap (i32.add (local.get $at) (local.get 3)))
                (local.get $at))
            (func (export "detect:rule/detector@0.3.0#describe") (result i32)
                {describe}
                (i32.store (i32.const 256) (i32.const 400)) (i32.store (i32.const 260) (i32.const 7))
                (i32.store (i32.const 264) (i32.const 410)) (i32.store (i32.const 268) (i32.const 1))
                (i32.store (i32.const 288) (i32.const 420)) (i32.store (i32.const 292) (i32.const 2))
                (i32.const 256))
            (func (export "detect:rule/detector@0.3.0#configure") (param i32 i32) (result i32)
                {configure}
                (i32.const 128))
            (func $one (param $ptr i32) (param $len i32) (param $not_after i64) (result i32)
                (local $bucket i32) (local $i i32)
                {process_event})
            (func (export "detect:rule/detector@0.3.0#process-event") (param i32 i32 i64) (result i32)
                (call $one (local.get 0) (local.get 1) (local.get 2)))
            ;; Each result is 24 bytes; each record in the list a (ptr, len) pair.
            (func (export "detect:rule/detector@0.3.0#process-batch") (param $list i32) (param $n i32) (param $not_after i64) (result i32)
                (local $i i32) (local $out i32) (local $record i32)
                (local.set $out (call $alloc (i32.const 0) (i32.const 0) (i32.const 4) (i32.mul (local.get $n) (i32.const 24))))
                (block $done (loop $next
                    (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
                    (local.set $record (i32.add (local.get $list) (i32.mul (local.get $i) (i32.const 8))))
                    (memory.copy
                        (i32.add (local.get $out) (i32.mul (local.get $i) (i32.const 24)))
                        (call $one (i32.load (local.get $record)) (i32.load offset=4 (local.get $record)) (local.get $not_after))
                        (i32.const 24))
                    (local.set $i (i32.add (local.get $i) (i32.const 1)))
                    (br $next)))
                (i32.store (i32.const 160) (local.get $out))
                (i32.store (i32.const 164) (local.get $n))
                (i32.const 160))
        )"#
        )
    }
}
