//! Builds every rule of the workspace (each directory under `guest/rules/`, as
//! `cargo metadata` lists them) into its three artifacts, for the tests: a new rule is
//! put through every host's replay without a line changed here.

use std::env;
use std::path::PathBuf;

use detect_artifact::build;

fn main() {
    let dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = dir.ancestors().nth(2).expect("this crate is host/testing");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo"));
    let rules = build::discover(root).unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<&str> = rules.iter().map(|r| r.dir_name.as_str()).collect();
    std::fs::write(out_dir.join("rules.txt"), names.join("\n")).expect("OUT_DIR is writable");
    let target_dir = build::guest_target_dir(&out_dir);
    build::build_all(root, &target_dir, &out_dir, &rules)
        .unwrap_or_else(|e| panic!("{e}"))
        .print_for_cargo();
}
