//! Builds the project's SSM rule for wasm32 and encodes it as a component, so the harness
//! embeds a default rule and `cargo build` is the only step a user runs.
//!
//! The rule is built by a nested `cargo build` into its own target directory, shared by
//! every profile of the host, so it is compiled once however the host is built. The
//! core module is then turned into a component with `wit-component`, which reads the
//! WIT world that `wit-bindgen` embedded in the module.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const GUEST_PACKAGE: &str = "ssm-rule";
const WASM_TARGET: &str = "wasm32-unknown-unknown";

fn main() {
    let host_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = host_dir.parent().expect("the host is a workspace member");
    for input in [
        "guest/src",
        "guest/Cargo.toml",
        "wit",
        "Cargo.toml",
        "Cargo.lock",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(input).display());
    }
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo"));
    ensure_target(WASM_TARGET);
    let module = build_module(root, &guest_target_dir(&out_dir));
    let component = wit_component::ComponentEncoder::default()
        .module(&module)
        .and_then(|encoder| encoder.validate(true).encode())
        .unwrap_or_else(|e| panic!("turning the rule into a component failed: {e:?}"));
    std::fs::write(out_dir.join("ssm_rule.wasm"), component).expect("OUT_DIR is writable");
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

/// Installs the wasm target with rustup when the toolchain lacks it. rustup installs the
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

fn build_module(root: &Path, target_dir: &Path) -> Vec<u8> {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--package", GUEST_PACKAGE, "--target", WASM_TARGET])
        .args(["--profile", "guest", "--manifest-path"])
        .arg(root.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir)
        // Flags meant for the host (say `-C target-cpu=native`) are not for wasm32.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .status()
        .expect("cargo can be started");
    assert!(
        status.success(),
        "building the rule for {WASM_TARGET} failed (see above). If the target is missing, \
         `rustup target add {WASM_TARGET}` installs it; rust-toolchain.toml normally does."
    );
    let module = target_dir
        .join(WASM_TARGET)
        .join("guest")
        .join("ssm_rule.wasm");
    std::fs::read(&module).unwrap_or_else(|e| panic!("reading {}: {e}", module.display()))
}
