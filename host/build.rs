//! Builds the project's SSM rule into its three artifacts and embeds them, so that the
//! harness has a default rule, `rule-harness export` can write each artifact, and
//! `cargo build` is the only step a user runs; and the worked example of a second rule
//! (`rules/console-login`) into its three, for the tests to run in every host:
//!
//! * `component`: wasm32-unknown-unknown, encoded as a component with `wit-component`
//!   (from the WIT world that `wit-bindgen` embedded in the module);
//! * `fluent-bit`: a wasm32-wasip1 module, a Fluent Bit `filter_wasm` filter, its exports
//!   wrapped to reset the shadow stack a trap leaves lowered (`src/hosts/stack.rs`);
//! * `fluvio`: a wasm32-wasip1 module, a Fluvio SmartModule.
//!
//! Each is a nested `cargo build` of the rule crate with one feature, into a target
//! directory of its own (`target/rule-guest`), shared by every profile of the host. Cargo
//! says where each artifact is (`--message-format=json`), and the dep-info file beside it
//! lists every source that went into it, which is what reruns this script.

#[path = "src/hosts/stack.rs"]
mod stack;

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The rules built, and the prefix of their artifacts' names: the built-in one first.
const RULES: [(&str, &str); 2] = [("ssm-rule", ""), ("console-login-rule", "console-login.")];

/// Each artifact: its name, target and feature.
const ARTIFACTS: [(&str, &str, &str); 3] = [
    ("component", "wasm32-unknown-unknown", "component"),
    ("fluent-bit", "wasm32-wasip1", "fluent-bit"),
    ("fluvio", "wasm32-wasip1", "fluvio"),
];

fn main() {
    let host_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = host_dir.parent().expect("the host is a workspace member");
    for input in ["Cargo.toml", "Cargo.lock", ".cargo/config.toml"] {
        println!("cargo:rerun-if-changed={}", root.join(input).display());
    }
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo"));
    let target_dir = guest_target_dir(&out_dir);
    for (name, target, feature) in ARTIFACTS {
        ensure_target(target);
        let modules = build_modules(root, &target_dir, target, feature);
        for ((_, prefix), module) in RULES.iter().zip(modules) {
            // The module as cargo builds it, for the tests of what a rule author does
            // with it.
            let core = out_dir.join(format!("{prefix}{name}.core.wasm"));
            std::fs::write(core, &module).expect("OUT_DIR is writable");
            let bytes = ready(name, module);
            std::fs::write(out_dir.join(format!("{prefix}{name}.wasm")), bytes)
                .expect("OUT_DIR is writable");
        }
    }
}

/// An artifact as its host loads it.
fn ready(name: &str, module: Vec<u8>) -> Vec<u8> {
    if name == "fluent-bit" {
        stack::reset_stack_on_entry(&module)
            .unwrap_or_else(|e| panic!("making the filter survive traps failed: {e}"))
    } else if name == "component" {
        wit_component::ComponentEncoder::default()
            .module(&module)
            .and_then(|encoder| encoder.validate(true).encode())
            .unwrap_or_else(|e| panic!("turning the rule into a component failed: {e:?}"))
    } else {
        module
    }
}

/// `target/rule-guest`, beside the host's own profile directories.
fn guest_target_dir(out_dir: &Path) -> PathBuf {
    // OUT_DIR is <target>/[<triple>/]<profile>/build/<package>-<hash>/out.
    let target = out_dir
        .ancestors()
        .find(|dir| dir.join("CACHEDIR.TAG").exists())
        .unwrap_or_else(|| out_dir.ancestors().nth(4).expect("OUT_DIR is deep enough"));
    target.join("rule-guest")
}

/// Installs a wasm target with rustup when the toolchain lacks it. rustup installs the
/// targets of `rust-toolchain.toml` only with the toolchain itself, so a machine whose
/// `stable` was installed earlier has none of them.
fn ensure_target(target: &str) {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let libdir = Command::new(&rustc)
        .args(["--print", "target-libdir", "--target", target])
        .output()
        .ok()
        .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
    if libdir.is_some_and(|dir| dir.exists()) {
        return;
    }
    println!(
        "cargo:warning=installing the {target} target with rustup (rust-toolchain.toml names it)"
    );
    // RUSTUP_TOOLCHAIN, set by rustup's cargo proxy, makes this the toolchain of this build.
    let installed = Command::new("rustup")
        .args(["target", "add", target])
        .status()
        .is_ok_and(|status| status.success());
    assert!(
        installed,
        "the {target} target is missing and `rustup target add {target}` failed; \
         install it by hand, or use a toolchain that has it"
    );
}

/// Builds the rules for `target` with `feature`, in one cargo run; returns their modules'
/// bytes, in the order of [`RULES`].
fn build_modules(root: &Path, target_dir: &Path, target: &str, feature: &str) -> Vec<Vec<u8>> {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command.arg("build");
    for (package, _) in RULES {
        command.args(["--package", package]);
    }
    let output = command
        .args(["--target", target])
        .args(["--features", feature, "--profile", "guest"])
        .args([
            "--message-format",
            "json-render-diagnostics",
            "--manifest-path",
        ])
        .arg(root.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir)
        // Flags meant for the host (say `-C target-cpu=native`) are not for wasm32; the
        // wasm targets' own flags come from the workspace's .cargo/config.toml.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .current_dir(root)
        .stderr(Stdio::inherit())
        .output()
        .expect("cargo can be started");
    assert!(
        output.status.success(),
        "building the rules for {target} with `{feature}` failed (see above)"
    );
    RULES
        .iter()
        .map(|(package, _)| {
            let module = artifact(&output.stdout, package)
                .unwrap_or_else(|| panic!("cargo reported no {package} module for {target}"));
            rerun_if_sources_change(&module);
            std::fs::read(&module).unwrap_or_else(|e| panic!("reading {}: {e}", module.display()))
        })
        .collect()
}

/// The `.wasm` file of a rule crate among cargo's JSON messages.
fn artifact(messages: &[u8], package: &str) -> Option<PathBuf> {
    let crate_name = package.replace('-', "_");
    String::from_utf8_lossy(messages)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == crate_name)
        .flat_map(|m| m["filenames"].as_array().cloned().unwrap_or_default())
        .filter_map(|f| f.as_str().map(PathBuf::from))
        .find(|f| f.extension().is_some_and(|e| e == "wasm"))
}

/// Reruns this script when any source file the module was built from changes, as the
/// dep-info file beside it lists them.
fn rerun_if_sources_change(module: &Path) {
    let Ok(deps) = std::fs::read_to_string(module.with_extension("d")) else {
        return;
    };
    // `<output>: <input> <input> ...`, spaces in paths escaped with `\`.
    let Some((_, inputs)) = deps.lines().next().and_then(|line| line.split_once(": ")) else {
        return;
    };
    let mut path = String::new();
    let mut chars = inputs.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&' ') => path.push(chars.next().expect("peeked")),
            ' ' => {
                if !path.is_empty() {
                    println!("cargo:rerun-if-changed={path}");
                }
                path.clear();
            }
            c => path.push(c),
        }
    }
    if !path.is_empty() {
        println!("cargo:rerun-if-changed={path}");
    }
}
