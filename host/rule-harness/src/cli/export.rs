//! `rule-harness export`: the built-in rule's artifacts, or one a rule author built,
//! checked against what its host family may import and made ready for its host.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, ensure};
use clap::Args;
use detect_artifact::Family;

use super::RuleArgs;
use crate::built_in;

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
pub enum Artifact {
    /// A component of the detect:rule world (wasmtime, wasmCloud, jco, this harness)
    Component,
    /// A Fluent Bit filter_wasm filter (the built-in rule's: functions ssm_alerts and ssm_enrich)
    FluentBit,
    /// A Fluvio SmartModule
    Fluvio,
}

impl Artifact {
    pub fn family(self) -> Family {
        match self {
            Artifact::Component => Family::Component,
            Artifact::FluentBit => Family::FluentBit,
            Artifact::Fluvio => Family::Fluvio,
        }
    }

    /// The built-in rule's artifact of this family.
    pub fn built_in(self) -> &'static [u8] {
        match self {
            Artifact::Component => built_in::COMPONENT,
            Artifact::FluentBit => built_in::FLUENT_BIT_FILTER,
            Artifact::Fluvio => built_in::FLUVIO_SMARTMODULE,
        }
    }
}

pub fn export(rule_args: &RuleArgs, args: &ExportArgs) -> anyhow::Result<ExitCode> {
    ensure!(
        rule_args.rule.is_none(),
        "`export` takes a module built from a rule crate with --from; --rule names the \
         component that run, test and inspect load"
    );
    let bytes = match &args.from {
        None => args.artifact.built_in().to_vec(),
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
        detect_host::Sandbox::new(rule_args.limits()?)?.load(&module)?;
        let component = detect_host::component_bytes(&module)?.into_owned();
        detect_artifact::check(Family::Component, &component)?;
        return Ok(component);
    }
    Ok(detect_artifact::ready(artifact.family(), &module)?)
}
