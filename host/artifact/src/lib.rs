//! A rule's WebAssembly artifacts, one per host family, made ready for their hosts and
//! checked against what each family may be asked for.
//!
//! Cargo builds a rule crate once per family, with the SDK feature of that family's name
//! ([`Family::feature`]) for the family's target ([`Family::target`]). What it builds is
//! not yet what a host loads: [`ready`] encodes the component, and wraps the Fluent Bit
//! filter's exports so that a trap leaves its shadow stack usable (see [`stack`]). Before
//! that, [`check`] refuses a module that imports more than its host family provides, or
//! lacks what the host calls, naming what is wrong: "capability-free" is checked for
//! every artifact, not assumed.
//!
//! With the `build` feature, [`build`] finds the rules of a workspace and builds their
//! artifacts, for build scripts.

#![deny(missing_docs)]

#[cfg(any(test, feature = "build"))]
pub mod build;
pub mod stack;

use wasmparser::{ExternalKind, Parser, Payload, TypeRef};

/// The host families a rule is built for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    /// A component of the `detect:rule` world (wasmtime, wasmCloud, jco, `rule-harness`).
    Component,
    /// A Fluent Bit `filter_wasm` filter: a WASI preview 1 module.
    FluentBit,
    /// A Fluvio SmartModule.
    Fluvio,
}

/// Why an artifact is not ready for its host.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// Not the kind of WebAssembly the family loads.
    #[error("{0}")]
    Shape(String),
    /// It imports what the family's host does not provide, or may not be asked for.
    #[error(
        "it imports `{module}.{name}`{what}, which a {family} artifact may not import; it may import only these functions: {allowed}"
    )]
    Forbidden {
        /// The artifact's family.
        family: &'static str,
        /// The import's module.
        module: String,
        /// The import's name.
        name: String,
        /// For an import that is not a function, what it is.
        what: &'static str,
        /// What the family allows.
        allowed: String,
    },
    /// It lacks an export its host calls.
    #[error("it does not export {missing}: build the rule crate with {how}")]
    Missing {
        /// The exports missing.
        missing: String,
        /// How to build it.
        how: &'static str,
    },
}

/// WASI preview 1 calls a Fluent Bit filter makes, all on the directories the operator
/// grants: finding them (`fd_prestat_*`), and opening, reading, writing, sizing, syncing
/// and renaming the files of its configuration and its `rule-state/` there. Nothing of
/// the clock, randomness, the environment or the process: the SDK makes these calls
/// itself rather than through wasi-libc, whose start-up and path lookups import those.
const FLUENT_BIT_IMPORTS: &[(&str, &str)] = &[
    ("wasi_snapshot_preview1", "fd_close"),
    ("wasi_snapshot_preview1", "fd_filestat_get"),
    ("wasi_snapshot_preview1", "fd_filestat_set_size"),
    ("wasi_snapshot_preview1", "fd_prestat_dir_name"),
    ("wasi_snapshot_preview1", "fd_prestat_get"),
    ("wasi_snapshot_preview1", "fd_read"),
    ("wasi_snapshot_preview1", "fd_sync"),
    ("wasi_snapshot_preview1", "fd_write"),
    ("wasi_snapshot_preview1", "path_filestat_get"),
    ("wasi_snapshot_preview1", "path_open"),
    ("wasi_snapshot_preview1", "path_rename"),
];

/// What the Fluvio engine links: the one function a SmartModule may call.
const FLUVIO_IMPORTS: &[(&str, &str)] = &[("env", "copy_records")];

/// A component imports interfaces, checked by the sandbox that loads it.
const COMPONENT_IMPORTS: &[(&str, &str)] = &[
    ("wasi:keyvalue/store@0.2.0-draft", ""),
    ("wasi:keyvalue/batch@0.2.0-draft", ""),
];

impl Family {
    /// Every family.
    pub const ALL: [Family; 3] = [Family::Component, Family::FluentBit, Family::Fluvio];

    /// The name tools and file names use: `component`, `fluent-bit`, `fluvio`.
    pub fn name(self) -> &'static str {
        match self {
            Family::Component => "component",
            Family::FluentBit => "fluent-bit",
            Family::Fluvio => "fluvio",
        }
    }

    /// The family of `name`.
    pub fn from_name(name: &str) -> Option<Family> {
        Family::ALL.into_iter().find(|f| f.name() == name)
    }

    /// The SDK feature (and rule crate feature) that builds this family's binding.
    pub fn feature(self) -> &'static str {
        self.name()
    }

    /// The target cargo builds it for.
    pub fn target(self) -> &'static str {
        match self {
            Family::FluentBit => "wasm32-wasip1",
            Family::Component | Family::Fluvio => "wasm32-unknown-unknown",
        }
    }

    /// What an artifact of this family may import: (module, function) for core
    /// modules; (interface, "") for a component.
    pub fn allowed_imports(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Family::Component => COMPONENT_IMPORTS,
            Family::FluentBit => FLUENT_BIT_IMPORTS,
            Family::Fluvio => FLUVIO_IMPORTS,
        }
    }

    /// What its host calls.
    fn required_exports(self) -> &'static [&'static str] {
        match self {
            Family::Component => &[],
            Family::FluentBit => &["memory", "malloc", "free"],
            Family::Fluvio => &["memory", "alloc", "init", "array_map", "look_back"],
        }
    }

    fn how_to_build(self) -> &'static str {
        match self {
            Family::Component => "its `component` feature, for wasm32-unknown-unknown",
            Family::FluentBit => {
                "its `fluent-bit` feature, for wasm32-wasip1, in a workspace whose \
                 .cargo/config.toml exports malloc and free (as this one's does; RUSTFLAGS \
                 would override it)"
            }
            Family::Fluvio => "its `fluvio` feature, for wasm32-unknown-unknown",
        }
    }
}

/// An artifact's imports, as (module or interface, function) pairs.
pub fn imports(bytes: &[u8]) -> Result<Vec<(String, String)>, ArtifactError> {
    let imports = Shape::read(bytes)?.imports;
    Ok(imports.into_iter().map(|i| (i.module, i.name)).collect())
}

/// An artifact's exported functions and memories.
pub fn exports(bytes: &[u8]) -> Result<Vec<String>, ArtifactError> {
    Ok(Shape::read(bytes)?.exports)
}

/// Checks that `bytes` import only what `family` allows and export what its host calls.
/// A component is only checked for its imports here; the sandbox checks the rest.
pub fn check(family: Family, bytes: &[u8]) -> Result<(), ArtifactError> {
    let shape = Shape::read(bytes)?;
    if (family == Family::Component) != shape.component {
        return Err(ArtifactError::Shape(match family {
            Family::Component => "it is a core module, not a component".into(),
            _ => "it is a component; pipelines load core modules".into(),
        }));
    }
    let allowed = family.allowed_imports();
    // Only functions are ever allowed: an imported memory, table or global is a channel
    // to the host as much as a function is.
    let permitted = |i: &Import| {
        i.kind == ImportKind::Function
            && allowed.iter().any(|(m, n)| *m == i.module && *n == i.name)
    };
    if let Some(Import { module, name, kind }) = shape.imports.iter().find(|i| !permitted(i)) {
        let list: Vec<String> = allowed
            .iter()
            .map(|(m, n)| {
                if n.is_empty() {
                    m.to_string()
                } else {
                    format!("{m}.{n}")
                }
            })
            .collect();
        return Err(ArtifactError::Forbidden {
            family: family.name(),
            module: module.clone(),
            name: name.clone(),
            what: kind.what(),
            allowed: list.join(", "),
        });
    }
    let missing: Vec<&str> = family
        .required_exports()
        .iter()
        .copied()
        .filter(|n| !shape.exports.iter().any(|e| e == n))
        .collect();
    if !missing.is_empty() {
        return Err(ArtifactError::Missing {
            missing: missing.join(", "),
            how: family.how_to_build(),
        });
    }
    Ok(())
}

/// A module as cargo built it for `family`, checked and made ready for its host.
pub fn ready(family: Family, module: &[u8]) -> Result<Vec<u8>, ArtifactError> {
    if family != Family::Component {
        check(family, module)?;
    }
    let bytes = match family {
        Family::Component => wit_component::ComponentEncoder::default()
            .module(module)
            .and_then(|encoder| encoder.validate(true).encode())
            .map_err(|e| ArtifactError::Shape(format!("it cannot be made a component: {e:#}")))?,
        Family::FluentBit => stack::reset_stack_on_entry(module).map_err(ArtifactError::Shape)?,
        Family::Fluvio => module.to_vec(),
    };
    check(family, &bytes)?;
    Ok(bytes)
}

/// A module's or component's top-level imports and exports.
struct Shape {
    component: bool,
    imports: Vec<Import>,
    exports: Vec<String>,
}

/// One import: a core module's (module, name), or a component's (interface, "").
struct Import {
    module: String,
    name: String,
    kind: ImportKind,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ImportKind {
    /// A function, or a component's interface instance.
    Function,
    Memory,
    Table,
    Global,
    Tag,
}

impl ImportKind {
    /// How an error names an import of this kind, after its name.
    fn what(self) -> &'static str {
        match self {
            ImportKind::Function => "",
            ImportKind::Memory => " (a memory)",
            ImportKind::Table => " (a table)",
            ImportKind::Global => " (a global)",
            ImportKind::Tag => " (a tag)",
        }
    }
}

impl Shape {
    fn read(bytes: &[u8]) -> Result<Shape, ArtifactError> {
        let invalid = |e: wasmparser::BinaryReaderError| {
            ArtifactError::Shape(format!("it is not valid WebAssembly: {e}"))
        };
        if !bytes.starts_with(b"\0asm") {
            return Err(ArtifactError::Shape("it is not WebAssembly".into()));
        }
        let component = !Parser::is_core_wasm(bytes);
        let mut shape = Shape {
            component,
            imports: Vec::new(),
            exports: Vec::new(),
        };
        let mut depth = 0usize;
        for payload in Parser::new(0).parse_all(bytes) {
            match payload.map_err(invalid)? {
                Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
                Payload::End(_) => depth = depth.saturating_sub(1),
                Payload::ImportSection(section) if depth == 0 => {
                    for import in section.into_imports() {
                        let import = import.map_err(invalid)?;
                        let kind = match import.ty {
                            TypeRef::Func(_) | TypeRef::FuncExact(_) => ImportKind::Function,
                            TypeRef::Memory(_) => ImportKind::Memory,
                            TypeRef::Table(_) => ImportKind::Table,
                            TypeRef::Global(_) => ImportKind::Global,
                            TypeRef::Tag(_) => ImportKind::Tag,
                        };
                        let (module, name) = (import.module.into(), import.name.into());
                        shape.imports.push(Import { module, name, kind });
                    }
                }
                Payload::ExportSection(section) if depth == 0 => {
                    for export in section {
                        let export = export.map_err(invalid)?;
                        if matches!(export.kind, ExternalKind::Func | ExternalKind::Memory) {
                            shape.exports.push(export.name.to_owned());
                        }
                    }
                }
                Payload::ComponentImportSection(section) if depth == 0 => {
                    for import in section {
                        let import = import.map_err(invalid)?;
                        let module = import.name.name.to_owned();
                        let kind = ImportKind::Function;
                        shape.imports.push(Import {
                            module,
                            name: String::new(),
                            kind,
                        });
                    }
                }
                _ => {}
            }
        }
        Ok(shape)
    }
}
