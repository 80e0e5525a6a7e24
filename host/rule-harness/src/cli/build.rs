//! `rule-harness build`: a rule's three artifacts, built by cargo from its directory under
//! `guest/rules/`, checked against what each host family may import and made ready, to
//! distinct paths: `<out>/<rule>.component.wasm`, `.fluent-bit.wasm`, `.fluvio.wasm`.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, bail};
use clap::Args;
use detect_artifact::Family;
use detect_artifact::build::{self, RuleCrate};

#[derive(Args)]
pub struct BuildArgs {
    /// Rule directories (`guest/rules/<rule>`) [default: every rule of the workspace]
    #[arg(value_name = "DIR")]
    rules: Vec<PathBuf>,
    /// Where the artifacts go
    #[arg(long, value_name = "DIR", default_value = "target/rules")]
    out: PathBuf,
}

pub fn build(args: &BuildArgs) -> anyhow::Result<ExitCode> {
    let root = workspace_root()?;
    let all = build::discover(&root).map_err(anyhow::Error::msg)?;
    let rules = chosen(&all, &args.rules)?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let target_dir = root.join("target/rule-guest");
    build::build_all(&root, &target_dir, &args.out, &rules).map_err(anyhow::Error::msg)?;
    for rule in &rules {
        for family in Family::ALL {
            // The module cargo built is kept beside it only for the build scripts' tests.
            let core = args
                .out
                .join(format!("{}.{}.core.wasm", rule.dir_name, family.name()));
            std::fs::remove_file(core)?;
            let ready = args
                .out
                .join(format!("{}.{}.wasm", rule.dir_name, family.name()));
            println!("{}", ready.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The workspace the current directory is in, as cargo finds it.
fn workspace_root() -> anyhow::Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args(["locate-project", "--workspace", "--message-format", "plain"])
        .output()
        .context("`build` runs cargo, which could not be started")?;
    if !out.status.success() {
        bail!(
            "`build` runs in a rule workspace: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let manifest = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    Ok(manifest
        .parent()
        .context("a manifest has a directory")?
        .to_owned())
}

/// The rules named by their directories, or all of them.
fn chosen(all: &[RuleCrate], dirs: &[PathBuf]) -> anyhow::Result<Vec<RuleCrate>> {
    if dirs.is_empty() {
        return Ok(all.to_vec());
    }
    dirs.iter()
        .map(|dir| {
            let manifest = std::fs::canonicalize(dir.join("Cargo.toml")).ok();
            all.iter()
                .find(|rule| Some(rule.manifest.as_path()) == manifest.as_deref().map(Path::new))
                .cloned()
                .with_context(|| {
                    format!(
                        "{} is not a rule of this workspace (a directory under guest/rules/)",
                        dir.display()
                    )
                })
        })
        .collect()
}
