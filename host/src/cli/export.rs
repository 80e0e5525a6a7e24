//! `rule-harness export`: the built-in rule's artifacts, or one a rule author built,
//! checked and made ready for its host.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail, ensure};
use clap::Args;
use wasmparser::{ExternalKind, Parser, Payload, TypeRef};

use super::RuleArgs;
use rule_harness::hosts::stack::reset_stack_on_entry;

#[derive(Args)]
pub struct ExportArgs {
    /// Which artifact
    #[arg(long = "for", value_enum, default_value_t = Artifact::Component)]
    artifact: Artifact,
    /// A module built from a rule crate (`cargo build --features component|fluent-bit|fluvio`)
    /// to check and prepare, instead of the built-in rule's
    #[arg(long, value_name = "MODULE")]
    from: Option<PathBuf>,
    /// Where to write it
    #[arg(value_name = "FILE")]
    output: PathBuf,
}

/// A rule's artifacts.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Artifact {
    /// A component of the detect:rule world (wasmtime, wasmCloud, jco, this harness)
    Component,
    /// A Fluent Bit filter_wasm filter (the built-in rule's: functions ssm_alerts and ssm_enrich)
    FluentBit,
    /// A Fluvio SmartModule
    Fluvio,
}

pub fn export(rule_args: &RuleArgs, args: &ExportArgs) -> anyhow::Result<ExitCode> {
    ensure!(
        rule_args.rule.is_none(),
        "`export` takes a module built from a rule crate with --from; --rule names the \
         component that run, test and inspect load"
    );
    let bytes = match &args.from {
        None => match args.artifact {
            Artifact::Component => rule_harness::DEFAULT_RULE.to_vec(),
            Artifact::FluentBit => rule_harness::FLUENT_BIT_FILTER.to_vec(),
            Artifact::Fluvio => rule_harness::FLUVIO_SMARTMODULE.to_vec(),
        },
        Some(path) => prepare(rule_args, args.artifact, path)
            .with_context(|| format!("{} is not ready for its host", path.display()))?,
    };
    std::fs::write(&args.output, bytes)
        .with_context(|| format!("cannot write {}", args.output.display()))?;
    Ok(ExitCode::SUCCESS)
}

/// Checks a rule crate's module for its host, and makes it ready.
fn prepare(rule_args: &RuleArgs, artifact: Artifact, path: &Path) -> anyhow::Result<Vec<u8>> {
    let module = std::fs::read(path).context("cannot read it")?;
    if artifact == Artifact::Component {
        // Loading checks it all: its world, its imports, that it compiles.
        rule_harness::Sandbox::new(rule_args.limits()?)?.load(&module)?;
        return Ok(rule_harness::component_bytes(&module)?.into_owned());
    }
    let shape = Shape::read(&module)?;
    let (allowed, needed): (&[&str], &[&str]) = match artifact {
        Artifact::FluentBit => (
            &["wasi_snapshot_preview1", "wasi_unstable"],
            &["malloc", "free"],
        ),
        Artifact::Fluvio => (
            &["wasi_snapshot_preview1", "env"],
            &["memory", "alloc", "init", "array_map", "look_back"],
        ),
        Artifact::Component => unreachable!("handled above"),
    };
    if let Some(import) = shape
        .imports
        .iter()
        .find(|i| !allowed.contains(&i.as_str()))
    {
        bail!(
            "it imports from `{import}`; the host provides only {}",
            allowed.join(" and ")
        );
    }
    let missing: Vec<&str> = needed
        .iter()
        .copied()
        .filter(|n| !shape.exports.iter().any(|e| e == n))
        .collect();
    if !missing.is_empty() {
        let how = match artifact {
            Artifact::FluentBit => {
                "its `fluent-bit` feature, for wasm32-wasip1, in a workspace whose \
                 .cargo/config.toml exports malloc and free (as this one's does; RUSTFLAGS \
                 would override it)"
            }
            _ => "its `fluvio` feature, for wasm32-wasip1",
        };
        bail!(
            "it does not export {}: build the rule crate with {how}",
            missing.join(", ")
        );
    }
    Ok(match artifact {
        Artifact::FluentBit => reset_stack_on_entry(&module).map_err(anyhow::Error::msg)?,
        _ => module,
    })
}

/// A core module's import modules and export names.
struct Shape {
    imports: Vec<String>,
    exports: Vec<String>,
}

impl Shape {
    fn read(module: &[u8]) -> anyhow::Result<Shape> {
        ensure!(
            Parser::is_core_wasm(module),
            "it is not a core WebAssembly module (pipelines load modules, not components)"
        );
        let mut shape = Shape {
            imports: Vec::new(),
            exports: Vec::new(),
        };
        for payload in Parser::new(0).parse_all(module) {
            match payload.context("it is not valid WebAssembly")? {
                Payload::ImportSection(section) => {
                    for import in section.into_imports() {
                        let import = import?;
                        if matches!(import.ty, TypeRef::Func(_)) {
                            shape.imports.push(import.module.to_owned());
                        }
                    }
                }
                Payload::ExportSection(section) => {
                    for export in section {
                        let export = export?;
                        if matches!(export.kind, ExternalKind::Func | ExternalKind::Memory) {
                            shape.exports.push(export.name.to_owned());
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(shape)
    }
}
