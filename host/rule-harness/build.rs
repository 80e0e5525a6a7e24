//! Builds the built-in rule (`guest/rules/ssm`) into its three artifacts and embeds them,
//! so that the harness has a default rule, `rule-harness export` can write each artifact,
//! and `cargo build` is the only step a user runs. Only the built-in rule: the tests build
//! every rule of the workspace themselves (`host/testing`).

use std::env;
use std::path::PathBuf;

use detect_artifact::build::{self, RuleCrate};

fn main() {
    let dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = dir.ancestors().nth(2).expect("the harness is host/rule-harness");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo"));
    let built_in = RuleCrate { package: "ssm-rule".into(), dir_name: "ssm".into() };
    build::build_all(root, &build::guest_target_dir(&out_dir), &out_dir, &[built_in]);
}
