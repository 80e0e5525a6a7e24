//! The sandbox: a wasmtime engine and linker that give a rule its key-value state and
//! nothing else, with hard limits on the time, memory and output of every call.
//!
//! Loading a rule is where untrusted bytes meet the host, so the checks come first, in
//! the order that exposes the least: the bytes are read (not compiled) to check that they
//! are a component, import only [`ALLOWED_IMPORTS`] and export [`DETECTOR_EXPORT`]; only
//! then are they compiled (or taken from the [`cache`]), and their types checked against
//! this harness's WIT. Only a component that passed all of it is cached. What passes is
//! pre-instantiated ([`LoadedRule`]), so replacing an instance after a trap costs an
//! instantiation, not a compilation.

use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread;

use wasmparser::{Encoding, Parser, Payload};
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine};

use crate::bindings::{self, ALLOWED_IMPORTS, DETECTOR_EXPORT, RulePre};
use crate::cache::{self, Cache};
use crate::error::Error;
use crate::kv::KvHost;
use crate::limits::{EPOCH_TICK, Limits, StoreData};
use crate::runner::RuleRunner;
use crate::state::StateStore;

/// An engine and linker configured for rules. Cheap to share: load many rules from one.
pub struct Sandbox {
    engine: Engine,
    linker: Arc<Linker<StoreData>>,
    limits: Limits,
    cache_dir: Option<PathBuf>,
}

impl Sandbox {
    /// A sandbox with these limits and no compilation cache.
    pub fn new(limits: Limits) -> Result<Sandbox, Error> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        config.consume_fuel(limits.fuel.is_some());
        // For `perf`: names for the rule's compiled code (with --no-cache, so that it is
        // compiled in this process).
        if std::env::var_os("RULE_HARNESS_PERFMAP").is_some() {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let engine = Engine::new(&config).map_err(Error::Engine)?;
        spawn_epoch_ticker(&engine);

        let mut linker = Linker::new(&engine);
        bindings::Rule::add_to_linker::<_, HasSelf<KvHost>>(&mut linker, |data: &mut StoreData| {
            &mut data.kv
        })
        .map_err(Error::Engine)?;
        Ok(Sandbox {
            engine,
            linker: Arc::new(linker),
            limits,
            cache_dir: None,
        })
    }

    /// Keeps compiled components in `dir` (see [`cache`]).
    pub fn with_cache_dir(mut self, dir: Option<PathBuf>) -> Self {
        self.cache_dir = dir;
        self
    }

    /// The limits every rule loaded from this sandbox runs under.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Checks and compiles a rule: a binary or text component, or the core module that
    /// cargo builds from a rule crate with the SDK's `component` feature (encoded here,
    /// from the component type that wit-bindgen embeds in it).
    pub fn load(&self, bytes: &[u8]) -> Result<LoadedRule, Error> {
        let bytes = component_bytes(bytes)?;
        let bytes = &bytes[..];
        check_interface(bytes)?;
        let mut warnings = Vec::new();
        let cache = self.cache_dir.as_deref().and_then(|dir| {
            Cache::open(dir)
                .map_err(|why| warnings.push(format!("{why}; compiling without the cache")))
                .ok()
        });
        let lookup = cache.as_ref().map(|c| c.load(&self.engine, bytes));
        let (component, cached) = match lookup {
            Some(cache::Lookup::Hit(component)) => (component, true),
            other => {
                if let Some(cache::Lookup::Refused(why)) = other {
                    warnings.push(why);
                }
                let component = Component::new(&self.engine, bytes).map_err(Error::Compile)?;
                (component, false)
            }
        };
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(Error::Link)?;
        let pre = RulePre::new(pre).map_err(|e| Error::WrongWorld(format!("{e:#}")))?;
        if let (Some(cache), false) = (&cache, cached) {
            // A cache that cannot be written costs a compilation next time, nothing more.
            let _ = cache.store(&self.engine, bytes, &component);
        }
        Ok(LoadedRule {
            engine: self.engine.clone(),
            component,
            pre,
            limits: self.limits.clone(),
            warnings,
        })
    }
}

/// Reads a component's top-level imports and exports without compiling it, and refuses
/// what the sandbox cannot run.
fn check_interface(bytes: &[u8]) -> Result<(), Error> {
    let (mut imports, mut exports) = (Vec::new(), Vec::new());
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.map_err(|e| Error::Invalid(e.to_string()))? {
            Payload::Version {
                encoding: Encoding::Module,
                ..
            } if depth == 0 => return Err(Error::NotAComponent),
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(section) if depth == 0 => {
                for import in section {
                    let import = import.map_err(|e| Error::Invalid(e.to_string()))?;
                    imports.push(import.name.name.to_owned());
                }
            }
            Payload::ComponentExportSection(section) if depth == 0 => {
                for export in section {
                    let export = export.map_err(|e| Error::Invalid(e.to_string()))?;
                    exports.push(export.name.name.to_owned());
                }
            }
            _ => {}
        }
    }
    let forbidden: Vec<String> = imports
        .into_iter()
        .filter(|name| !ALLOWED_IMPORTS.contains(&name.as_str()))
        .collect();
    if !forbidden.is_empty() {
        return Err(Error::ForbiddenImports(forbidden));
    }
    if exports.iter().any(|e| e == DETECTOR_EXPORT) {
        return Ok(());
    }
    let (interface, _) = DETECTOR_EXPORT.split_once('@').expect("versioned");
    match exports
        .iter()
        .find_map(|e| e.strip_prefix(interface)?.strip_prefix('@'))
    {
        Some(version) => Err(Error::OtherVersion(version.to_owned())),
        None => Err(Error::WrongWorld(format!(
            "it does not export {DETECTOR_EXPORT} (its exports: {})",
            if exports.is_empty() {
                "none".to_owned()
            } else {
                exports.join(", ")
            }
        ))),
    }
}

/// A rule as a binary component: WAT text compiled, the core module of a rule crate
/// encoded as a component (from the component type that wit-bindgen embeds in it).
pub fn component_bytes(bytes: &[u8]) -> Result<Cow<'_, [u8]>, Error> {
    if looks_like_wat(bytes) {
        wat::parse_bytes(bytes).map_err(|e| Error::Invalid(e.to_string()))
    } else if Parser::is_core_wasm(bytes) && has_component_type(bytes) {
        wit_component::ComponentEncoder::default()
            .module(bytes)
            .and_then(|encoder| encoder.validate(true).encode())
            .map(Cow::Owned)
            .map_err(|e| Error::Invalid(format!("{e:#}")))
    } else if bytes.starts_with(b"\0asm") {
        Ok(Cow::Borrowed(bytes))
    } else {
        Err(Error::NotWasm)
    }
}

/// Whether a core module carries the component type wit-bindgen embeds.
fn has_component_type(bytes: &[u8]) -> bool {
    Parser::new(0).parse_all(bytes).any(|payload| {
        matches!(payload, Ok(Payload::CustomSection(section))
            if section.name().starts_with("component-type"))
    })
}

fn looks_like_wat(bytes: &[u8]) -> bool {
    std::str::from_utf8(bytes).is_ok_and(|text| text.trim_start().starts_with('('))
}

/// Advances the engine's epoch until the engine is dropped.
fn spawn_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    thread::Builder::new()
        .name("rule-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                thread::sleep(EPOCH_TICK);
            }
        })
        .expect("a thread can be spawned");
}

enum Direction {
    Imports,
    Exports,
}

/// An import or export of a component, as `inspect` shows it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Item {
    /// Its name, e.g. `wasi:keyvalue/store@0.2.0-draft`.
    pub name: String,
    /// `instance`, `func`, `type`, ...
    pub kind: &'static str,
    /// The functions of an instance.
    pub functions: Vec<String>,
}

/// A rule that passed every check, ready to be instantiated.
pub struct LoadedRule {
    engine: Engine,
    component: Component,
    pre: RulePre<StoreData>,
    limits: Limits,
    warnings: Vec<String>,
}

impl LoadedRule {
    /// Starts an instance over `store`, configured with `config` (JSON; `None` keeps the
    /// rule's defaults).
    pub fn start(
        &self,
        store: Box<dyn StateStore>,
        config: Option<String>,
    ) -> Result<RuleRunner, Error> {
        RuleRunner::start(
            self.engine.clone(),
            self.pre.clone(),
            self.limits.clone(),
            store,
            config,
        )
    }

    /// What went wrong on the way that did not stop the load (an unusable cache).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// What the component imports (a subset of [`ALLOWED_IMPORTS`]).
    pub fn imports(&self) -> Vec<Item> {
        items(&self.engine, &self.component, Direction::Imports)
    }

    /// What the component exports.
    pub fn exports(&self) -> Vec<Item> {
        items(&self.engine, &self.component, Direction::Exports)
    }
}

fn items(engine: &Engine, component: &Component, direction: Direction) -> Vec<Item> {
    let ty = component.component_type();
    let items: Vec<(String, ComponentItem)> = match direction {
        Direction::Imports => ty
            .imports(engine)
            .map(|(n, i)| (n.to_owned(), i.ty))
            .collect(),
        Direction::Exports => ty
            .exports(engine)
            .map(|(n, i)| (n.to_owned(), i.ty))
            .collect(),
    };
    items
        .into_iter()
        .map(|(name, item)| {
            let (kind, functions) = match item {
                ComponentItem::ComponentInstance(instance) => (
                    "instance",
                    instance
                        .exports(engine)
                        .filter(|(_, export)| matches!(export.ty, ComponentItem::ComponentFunc(_)))
                        .map(|(n, _)| n.to_owned())
                        .collect(),
                ),
                ComponentItem::ComponentFunc(_) => ("func", vec![]),
                ComponentItem::CoreFunc(_) => ("core func", vec![]),
                ComponentItem::Module(_) => ("module", vec![]),
                ComponentItem::Component(_) => ("component", vec![]),
                ComponentItem::Type(_) => ("type", vec![]),
                ComponentItem::Resource(_) => ("resource", vec![]),
            };
            Item {
                name,
                kind,
                functions,
            }
        })
        .collect()
}
