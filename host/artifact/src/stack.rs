//! Makes a module's exports reset its shadow stack on entry.
//!
//! Code compiled from Rust or C keeps its stack frames in linear memory, below a global
//! (`__stack_pointer`) that each function lowers on entry and restores on exit. A trap
//! skips the restores. A host that keeps calling the same instance after a trap (as
//! Fluent Bit does) then finds the stack lower by the depth of the trap, every time, until
//! it runs out. Since such a host never re-enters a module (no import calls back into
//! it), every call from the host starts with an empty stack: each exported function is
//! wrapped by one that sets the stack pointer to its initial value, then calls it.
//!
//! Used by the build scripts (for the filters they build) and `rule-harness export`.

use wasm_encoder::reencode::{self, Reencode};
use wasm_encoder::{
    CodeSection, ExportKind, ExportSection, Function, FunctionSection, Instruction,
};
use wasmparser::{ExternalKind, Name, Operator, Parser, Payload, TypeRef};

/// The module with each exported function wrapped; an error for a module whose stack
/// pointer cannot be found.
pub fn reset_stack_on_entry(module: &[u8]) -> Result<Vec<u8>, String> {
    let layout = Layout::read(module).map_err(|e| format!("reading the module: {e}"))?;
    let (global, initial) = layout
        .stack_pointer
        .ok_or("the module has no `__stack_pointer` global with a constant initial value")?;
    let mut wrapping = Wrapping {
        layout,
        global,
        initial,
    };
    let mut out = wasm_encoder::Module::new();
    wrapping
        .parse_core_module(&mut out, Parser::new(0), module)
        .map_err(|e| format!("rewriting the module: {e}"))?;
    Ok(out.finish())
}

/// What the rewrite needs to know of a module.
#[derive(Default)]
struct Layout {
    imported_functions: u32,
    /// How many parameters each type has (0 for types that are not functions).
    params: Vec<u32>,
    /// The type of each function the module defines.
    defined: Vec<u32>,
    /// Each exported function: its index.
    exported: Vec<u32>,
    /// The stack pointer global and its initial value.
    stack_pointer: Option<(u32, i32)>,
}

impl Layout {
    fn read(module: &[u8]) -> wasmparser::Result<Layout> {
        let mut layout = Layout::default();
        let mut globals: Vec<Option<i32>> = Vec::new();
        let mut named = None;
        for payload in Parser::new(0).parse_all(module) {
            match payload? {
                Payload::TypeSection(section) => {
                    for ty in section.into_iter_err_on_gc_types() {
                        layout.params.push(ty?.params().len() as u32);
                    }
                }
                Payload::ImportSection(section) => {
                    for import in section.into_imports() {
                        match import?.ty {
                            TypeRef::Func(_) => layout.imported_functions += 1,
                            TypeRef::Global(_) => globals.push(None),
                            _ => {}
                        }
                    }
                }
                Payload::FunctionSection(section) => {
                    for ty in section {
                        layout.defined.push(ty?);
                    }
                }
                Payload::GlobalSection(section) => {
                    for global in section {
                        let global = global?;
                        let mut ops = global.init_expr.get_operators_reader();
                        let value = match (global.ty.mutable, ops.read()?) {
                            (true, Operator::I32Const { value }) => Some(value),
                            _ => None,
                        };
                        globals.push(value);
                    }
                }
                Payload::ExportSection(section) => {
                    for export in section {
                        let export = export?;
                        if export.kind == ExternalKind::Func {
                            layout.exported.push(export.index);
                        }
                    }
                }
                Payload::CustomSection(section) => {
                    if let wasmparser::KnownCustom::Name(names) = section.as_known() {
                        named = named.or(stack_pointer_name(names)?);
                    }
                }
                _ => {}
            }
        }
        // wasm-ld makes the stack pointer the first global, where names are stripped.
        let index = named.unwrap_or(0);
        layout.stack_pointer = globals
            .get(index as usize)
            .copied()
            .flatten()
            .map(|value| (index, value));
        Ok(layout)
    }

    /// The index the wrapper of exported function `function` gets.
    fn wrapper(&self, function: u32) -> Option<u32> {
        let at = self.exported.iter().position(|&f| f == function)?;
        Some(self.imported_functions + self.defined.len() as u32 + at as u32)
    }

    /// The type of function `index`, if the module defines it.
    fn type_of(&self, index: u32) -> Option<u32> {
        let defined = index.checked_sub(self.imported_functions)?;
        self.defined.get(defined as usize).copied()
    }

    fn params_of(&self, function: u32) -> u32 {
        self.type_of(function)
            .and_then(|ty| self.params.get(ty as usize).copied())
            .unwrap_or(0)
    }
}

/// The index of the global named `__stack_pointer`, if the name section names it.
fn stack_pointer_name(names: wasmparser::NameSectionReader) -> wasmparser::Result<Option<u32>> {
    for name in names {
        if let Name::Global(map) = name? {
            for naming in map {
                let naming = naming?;
                if naming.name == "__stack_pointer" {
                    return Ok(Some(naming.index));
                }
            }
        }
    }
    Ok(None)
}

/// The rewrite: the module as it is, plus a wrapper per exported function, which the
/// exports then name.
struct Wrapping {
    layout: Layout,
    global: u32,
    initial: i32,
}

impl Reencode for Wrapping {
    type Error = String;

    fn parse_function_section(
        &mut self,
        functions: &mut FunctionSection,
        section: wasmparser::FunctionSectionReader<'_>,
    ) -> Result<(), reencode::Error<String>> {
        reencode::utils::parse_function_section(self, functions, section)?;
        for &function in &self.layout.exported {
            let ty = self.layout.type_of(function).ok_or_else(|| {
                reencode::Error::UserError(format!("export of imported function {function}"))
            })?;
            functions.function(ty);
        }
        Ok(())
    }

    fn parse_code_section(
        &mut self,
        code: &mut CodeSection,
        section: wasmparser::CodeSectionReader<'_>,
    ) -> Result<(), reencode::Error<String>> {
        reencode::utils::parse_code_section(self, code, section)?;
        for &function in &self.layout.exported {
            let mut body = Function::new([]);
            body.instruction(&Instruction::I32Const(self.initial));
            body.instruction(&Instruction::GlobalSet(self.global));
            for param in 0..self.layout.params_of(function) {
                body.instruction(&Instruction::LocalGet(param));
            }
            body.instruction(&Instruction::Call(function));
            body.instruction(&Instruction::End);
            code.function(&body);
        }
        Ok(())
    }

    fn parse_export(
        &mut self,
        exports: &mut ExportSection,
        export: wasmparser::Export<'_>,
    ) -> Result<(), reencode::Error<String>> {
        match (export.kind, self.layout.wrapper(export.index)) {
            (ExternalKind::Func, Some(wrapper)) => {
                exports.export(export.name, ExportKind::Func, wrapper);
                Ok(())
            }
            _ => reencode::utils::parse_export(self, exports, export),
        }
    }
}
