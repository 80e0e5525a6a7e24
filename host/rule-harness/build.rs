//! Builds the built-in rule (`guest/rules/ssm`) into its three artifacts and embeds them,
//! so that the harness has a default rule, `rule-harness export` can write each artifact,
//! and `cargo build` is the only step a user runs. Only the built-in rule: the tests build
//! every rule of the workspace themselves (`host/testing`).

use std::env;
use std::path::PathBuf;

use detect_artifact::build;

/// The directory under `guest/rules/` of the rule the harness runs by default.
const BUILT_IN: &str = "ssm";

fn main() {
    let dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = dir
        .ancestors()
        .nth(2)
        .expect("the harness is host/rule-harness");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo"));
    let rules = build::discover(root).unwrap_or_else(|e| panic!("{e}"));
    let built_in: Vec<_> = rules
        .into_iter()
        .filter(|r| r.dir_name == BUILT_IN)
        .collect();
    assert!(
        !built_in.is_empty(),
        "no guest/rules/{BUILT_IN} in the workspace"
    );
    let target_dir = build::guest_target_dir(&out_dir);
    build::build_all(root, &target_dir, &out_dir, &built_in)
        .unwrap_or_else(|e| panic!("{e}"))
        .print_for_cargo();
}
