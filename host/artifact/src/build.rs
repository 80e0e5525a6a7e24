//! For build scripts: the rules of a workspace, found by `cargo metadata` (every package
//! under `guest/rules/`), built into their artifacts by nested `cargo build`s.
//!
//! The nested builds share one target directory (`target/rule-guest`, beside the
//! profiles), so that every build script and profile reuses what another built. Cargo
//! says where each module is (`--message-format=json`), and the dep-info file beside it
//! lists every source that went into it: the build script is rerun when one changes.

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::{Family, ready};

/// Where the rules live in a workspace: one directory each.
pub const RULES_DIR: &str = "guest/rules";

/// A rule crate of the workspace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleCrate {
    /// Its package name, as cargo knows it.
    pub package: String,
    /// Its directory's name: what its artifacts are named after.
    pub dir_name: String,
    /// Its `Cargo.toml`.
    pub manifest: PathBuf,
}

/// The rules among a workspace's packages, from `cargo metadata --no-deps` output: every
/// package whose manifest is in a directory of [`RULES_DIR`], in name order.
pub fn rules_in(metadata: &Value) -> Vec<RuleCrate> {
    let root = Path::new(metadata["workspace_root"].as_str().unwrap_or_default());
    let rules_dir = root.join(RULES_DIR);
    let mut rules: Vec<RuleCrate> = metadata["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|package| {
            let manifest = Path::new(package["manifest_path"].as_str()?);
            let dir = manifest.parent()?;
            if dir.parent()? != rules_dir {
                return None;
            }
            Some(RuleCrate {
                package: package["name"].as_str()?.to_owned(),
                dir_name: dir.file_name()?.to_str()?.to_owned(),
                manifest: manifest.to_owned(),
            })
        })
        .collect();
    rules.sort_by(|a, b| a.dir_name.cmp(&b.dir_name));
    rules
}

/// The rules of the workspace at `root`, as cargo lists its members.
pub fn discover(root: &Path) -> Result<Vec<RuleCrate>, String> {
    let output = cargo()
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--manifest-path",
        ])
        .arg(root.join("Cargo.toml"))
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot start cargo: {e}"))?;
    if !output.status.success() {
        return Err("`cargo metadata` failed (see above)".into());
    }
    let metadata: Value = serde_json::from_slice(&output.stdout).map_err(|e| e.to_string())?;
    Ok(rules_in(&metadata))
}

/// What a build read, for a build script's `cargo:rerun-if-changed`: the workspace's
/// manifests, the rules' directory, and every source file of every module built.
#[derive(Debug, Default)]
pub struct Inputs(pub Vec<PathBuf>);

impl Inputs {
    /// Tells cargo to rerun the build script when any of them changes.
    pub fn print_for_cargo(&self) {
        for path in &self.0 {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
}

/// Builds `rules` of the workspace at `root` for every family, in `target_dir`, and
/// writes each artifact, ready for its host, into `out_dir` as `<dir name>.<family>.wasm`
/// (and the module cargo built as `<dir name>.<family>.core.wasm`, for the tests of what
/// a rule author does with it). An artifact that imports more than its family allows is
/// an error naming the import.
pub fn build_all(
    root: &Path,
    target_dir: &Path,
    out_dir: &Path,
    rules: &[RuleCrate],
) -> Result<Inputs, String> {
    let manifests = ["Cargo.toml", "Cargo.lock", ".cargo/config.toml", RULES_DIR];
    let mut inputs = Inputs(manifests.iter().map(|m| root.join(m)).collect());
    for family in Family::ALL {
        ensure_target(family.target())?;
        let modules = build(root, target_dir, family, rules, &mut inputs)?;
        for (rule, module) in rules.iter().zip(modules) {
            let name = format!("{}.{}", rule.dir_name, family.name());
            write(&out_dir.join(format!("{name}.core.wasm")), &module)?;
            let bytes = ready(family, &module)
                .map_err(|e| format!("{} is not ready for {}: {e}", rule.package, family.name()))?;
            write(&out_dir.join(format!("{name}.wasm")), &bytes)?;
        }
    }
    Ok(inputs)
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), String> {
    std::fs::write(path, bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn cargo() -> Command {
    Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// For a build script whose `OUT_DIR` is `out_dir`: `target/rule-guest`, beside the
/// host's own profile directories, shared by every build script and profile.
pub fn guest_target_dir(out_dir: &Path) -> PathBuf {
    // OUT_DIR is <target>/[<triple>/]<profile>/build/<package>-<hash>/out.
    let target = out_dir
        .ancestors()
        .find(|dir| dir.join("CACHEDIR.TAG").exists())
        .unwrap_or_else(|| out_dir.ancestors().nth(4).expect("OUT_DIR is deep enough"));
    target.join("rule-guest")
}

/// Installs a wasm target with rustup when the toolchain lacks it. rustup installs the
/// targets of `rust-toolchain.toml` only with the toolchain itself, so a machine whose
/// toolchain was installed earlier may have none of them.
fn ensure_target(target: &str) -> Result<(), String> {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let libdir = Command::new(&rustc)
        .args(["--print", "target-libdir", "--target", target])
        .output()
        .ok()
        .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
    if libdir.is_some_and(|dir| dir.exists()) {
        return Ok(());
    }
    eprintln!("installing the {target} target with rustup (rust-toolchain.toml names it)");
    // RUSTUP_TOOLCHAIN, set by rustup's cargo proxy, makes this the toolchain of this build.
    let installed = Command::new("rustup")
        .args(["target", "add", target])
        .status()
        .is_ok_and(|status| status.success());
    match installed {
        true => Ok(()),
        false => Err(format!(
            "the {target} target is missing and `rustup target add {target}` failed; \
             install it by hand, or use a toolchain that has it"
        )),
    }
}

/// Builds `rules` for `family` in one cargo run; their modules' bytes, in order.
fn build(
    root: &Path,
    target_dir: &Path,
    family: Family,
    rules: &[RuleCrate],
    inputs: &mut Inputs,
) -> Result<Vec<Vec<u8>>, String> {
    let mut command = cargo();
    command.arg("build");
    for name in outer_build_env() {
        command.env_remove(name);
    }
    for rule in rules {
        command.args(["--package", &rule.package]);
    }
    let output = command
        .args(["--target", family.target(), "--features", family.feature()])
        .args([
            "--profile",
            "guest",
            "--message-format",
            "json-render-diagnostics",
        ])
        .arg("--manifest-path")
        .arg(root.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir)
        .current_dir(root)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot start cargo: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "building the rules for {} failed (see above)",
            family.name()
        ));
    }
    let mut modules = Vec::new();
    for rule in rules {
        let module = artifact(&output.stdout, &rule.manifest).ok_or_else(|| {
            format!(
                "cargo reported no {} module for {}",
                rule.package,
                family.target()
            )
        })?;
        inputs.0.extend(sources(&module));
        modules.push(std::fs::read(&module).map_err(|e| format!("{}: {e}", module.display()))?);
    }
    Ok(modules)
}

/// What the cargo running a build script tells it and the nested build must not see:
/// flags meant for the host (say `-C target-cpu=native`: the wasm targets' own flags come
/// from the workspace's .cargo/config.toml), another target directory, and the build
/// script's own `CARGO_*`, `TARGET`, `PROFILE`... which would give the crates other
/// hashes, and so other bytes, than a build from the command line.
fn outer_build_env() -> Vec<std::ffi::OsString> {
    const OUTER: [&str; 10] = [
        "RUSTFLAGS",
        "OUT_DIR",
        "TARGET",
        "HOST",
        "PROFILE",
        "OPT_LEVEL",
        "DEBUG",
        "NUM_JOBS",
        "RUSTC_LINKER",
        "RUSTDOC",
    ];
    env::vars_os()
        .map(|(name, _)| name)
        .filter(|name| {
            let text = name.to_string_lossy();
            (text.starts_with("CARGO_") && text != "CARGO_HOME") || OUTER.contains(&&*text)
        })
        .collect()
}

/// The `.wasm` file of the crate whose manifest is `manifest`, among cargo's messages.
fn artifact(messages: &[u8], manifest: &Path) -> Option<PathBuf> {
    String::from_utf8_lossy(messages)
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact")
        .filter(|m| m["manifest_path"].as_str().map(Path::new) == Some(manifest))
        .flat_map(|m| m["filenames"].as_array().cloned().unwrap_or_default())
        .filter_map(|f| f.as_str().map(PathBuf::from))
        .find(|f| f.extension().is_some_and(|e| e == "wasm"))
}

/// Every source file the module was built from, as the dep-info file beside it lists
/// them.
fn sources(module: &Path) -> Vec<PathBuf> {
    let Ok(deps) = std::fs::read_to_string(module.with_extension("d")) else {
        return Vec::new();
    };
    // `<output>: <input> <input> ...`, spaces in paths escaped with `\`.
    let Some((_, inputs)) = deps.lines().next().and_then(|line| line.split_once(": ")) else {
        return Vec::new();
    };
    dep_info_paths(inputs)
        .into_iter()
        .map(PathBuf::from)
        .collect()
}

/// The paths of a dep-info line's inputs.
fn dep_info_paths(inputs: &str) -> Vec<String> {
    let mut paths = Vec::new();
    let mut path = String::new();
    let mut chars = inputs.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&' ') => path.push(chars.next().expect("peeked")),
            ' ' => paths.extend((!path.is_empty()).then(|| std::mem::take(&mut path))),
            c => path.push(c),
        }
    }
    paths.extend((!path.is_empty()).then_some(path));
    paths
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A workspace as `cargo metadata --no-deps` describes it: the SDK, two rules and a
    /// host crate; a rule directory copied under a new name is found with no other change.
    #[test]
    fn every_directory_under_guest_rules_is_a_rule() {
        let package = |name: &str, dir: &str| serde_json::json!({"name": name, "manifest_path": format!("/ws/{dir}/Cargo.toml")});
        let mut metadata = serde_json::json!({
            "workspace_root": "/ws",
            "packages": [
                package("detect-sdk", "guest/sdk"),
                package("ssm-rule", "guest/rules/ssm"),
                package("console-login-rule", "guest/rules/console-login"),
                package("detect-host", "host/detect-host"),
            ],
        });
        let names = |m: &Value| -> Vec<(String, String)> {
            rules_in(m)
                .into_iter()
                .map(|r| (r.package, r.dir_name))
                .collect()
        };
        assert_eq!(
            names(&metadata),
            [
                ("console-login-rule".into(), "console-login".into()),
                ("ssm-rule".into(), "ssm".into())
            ]
        );
        metadata["packages"]
            .as_array_mut()
            .unwrap()
            .push(package("copy-rule", "guest/rules/copy"));
        assert_eq!(names(&metadata).len(), 3);
        assert!(names(&metadata).contains(&("copy-rule".into(), "copy".into())));
    }

    /// This workspace, as cargo lists it: both of its rules.
    #[test]
    fn this_workspaces_rules_are_found() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .ancestors()
            .nth(2)
            .unwrap();
        let dirs: Vec<String> = discover(root)
            .unwrap()
            .into_iter()
            .map(|r| r.dir_name)
            .collect();
        assert!(
            dirs.contains(&"ssm".into()) && dirs.contains(&"console-login".into()),
            "{dirs:?}"
        );
    }

    #[test]
    fn dep_info_paths_keep_escaped_spaces() {
        assert_eq!(
            dep_info_paths("/a/b.rs /c\\ d/e.rs  /f.rs"),
            ["/a/b.rs", "/c d/e.rs", "/f.rs"]
        );
    }
}
