//! The platform others build on: the library an embedder links holds none of the command
//! line, its example runs any rule through the pipeline with resume, and every artifact
//! imports only what its host family provides.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

use crate::support::*;

/// The packages `detect-host` depends on to build as a library on this platform (no
/// dev-dependencies, no build scripts), as `cargo tree` lists them.
fn library_dependencies(depth: &str) -> Vec<String> {
    let out = Command::new(env!("CARGO"))
        .args([
            "tree",
            "-p",
            "detect-host",
            "-e",
            "normal",
            "--prefix",
            "none",
            "--offline",
        ])
        .args(["--depth", depth])
        .arg("--manifest-path")
        .arg(root().join("Cargo.toml"))
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next().map(str::to_owned))
        .collect();
    names.sort();
    names.dedup();
    names
}

#[test]
fn the_library_holds_none_of_the_command_line() {
    let cli_only = [
        "clap",
        "indicatif",
        "signal-hook",
        "humantime",
        "similar",
        "ssm-rule",
        "console-login-rule",
        "detect-testing",
        "cloudtrail-corpus",
        "wasmtime-wasi",
        "proptest",
    ];
    let all = library_dependencies("1000");
    assert!(
        all.iter().any(|d| d == "wasmtime") && all.iter().any(|d| d == "redb"),
        "{all:?}"
    );
    for crate_name in cli_only {
        assert!(
            !all.iter().any(|d| d == crate_name),
            "detect-host depends on {crate_name}: {all:?}"
        );
    }
    // Errors are the library's own type (thiserror); wasmtime and wit-component use
    // anyhow inside, the library does not.
    let direct = library_dependencies("1");
    assert!(!direct.iter().any(|d| d == "anyhow"), "{direct:?}");
    // No build script that builds wasm: the library has no build script at all.
    let manifest = std::fs::read_to_string(root().join("host/detect-host/Cargo.toml")).unwrap();
    let declares_one = manifest
        .lines()
        .any(|l| l.trim_start().starts_with("build"));
    assert!(!declares_one && !root().join("host/detect-host/build.rs").exists());
}

/// `examples/embed.rs`, as cargo built it for the tests.
fn embed_example() -> PathBuf {
    let deps = std::env::current_exe().unwrap();
    let example = deps
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples/embed");
    assert!(
        example.exists(),
        "cargo builds the examples with the tests: {}",
        example.display()
    );
    example
}

#[test]
fn the_embedding_example_runs_a_rule_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let (rule, state) = (dir.path().join("ssm.wasm"), dir.path().join("state.redb"));
    std::fs::write(&rule, default_rule()).unwrap();
    let log = fixture("logs/ssm_sessions.json");
    let run = || {
        let out = Command::new(embed_example())
            .arg(&rule)
            .arg(&state)
            .arg(&log)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        lines(&out.stdout)
    };
    let first = run();
    assert_eq!(first.len(), 16);
    assert!(first.iter().all(|a| {
        a["rule_id"]
            .as_str()
            .is_some_and(|id| id.starts_with("AWS.SSM."))
    }));
    assert_eq!(run().len(), 0, "the second run resumes after the first");
    let usage = Command::new(embed_example()).output().unwrap();
    assert!(!usage.status.success());
    assert!(
        String::from_utf8_lossy(&usage.stderr).contains("usage: embed RULE.wasm STATE.redb FILE")
    );
}

/// A module that exports what its host calls but imports one thing more: `import` is
/// the import's (module, name, type), say `("env", "now", "(func)")`.
fn module_importing(family: &str, import: (&str, &str, &str)) -> Vec<u8> {
    let exports = match family {
        "fluvio" => ["alloc", "init", "array_map", "look_back"].as_slice(),
        _ => ["malloc", "free"].as_slice(),
    };
    let funcs: String = exports
        .iter()
        .map(|name| format!(r#"(func (export "{name}") (param i32) (result i32) (local.get 0))"#))
        .collect();
    wat::parse_str(format!(
        r#"(module (import "{}" "{}" {})
            (memory (export "memory") 1)
            (global $__stack_pointer (mut i32) (i32.const 1024))
            {funcs})"#,
        import.0, import.1, import.2
    ))
    .unwrap()
}

/// `export --from` refuses an artifact that imports more than its host family provides,
/// naming the import, so that a rule author learns it before deploying.
#[test]
fn an_artifact_that_imports_more_than_its_host_provides_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let func = "(func (param i32) (result i32))";
    for (family, import) in [
        ("fluvio", ("wasi_snapshot_preview1", "random_get", func)),
        ("fluvio", ("env", "now", func)),
        (
            "fluent-bit",
            ("wasi_snapshot_preview1", "clock_time_get", func),
        ),
        (
            "fluent-bit",
            ("wasi_snapshot_preview1", "environ_get", func),
        ),
        (
            "fluent-bit",
            ("wasi_snapshot_preview1", "sock_accept", func),
        ),
        // Not functions, and as much a channel to the host.
        ("fluvio", ("env", "memory", "(memory 1)")),
        ("fluvio", ("host", "fns", "(table 1 funcref)")),
        (
            "fluent-bit",
            ("wasi_snapshot_preview1", "clock", "(global i64)"),
        ),
        // An allowed function's name, as another kind of import.
        ("fluvio", ("env", "copy_records", "(global i32)")),
    ] {
        let module = dir.path().join("module.wasm");
        std::fs::write(&module, module_importing(family, import)).unwrap();
        let args = [
            "export",
            "--for",
            family,
            "--from",
            module.to_str().unwrap(),
            "/dev/null",
        ];
        let out = harness(&args, b"");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{family} {import:?}: {stderr}");
        let named = format!("imports `{}.{}`", import.0, import.1);
        assert!(stderr.contains(&named), "{family}: {stderr}");
    }
}

/// Every artifact of every rule imports only what its family allows, checked by the same
/// lists `export` and `inspect` use.
#[test]
fn every_artifact_imports_only_what_its_host_provides() {
    for rule in detect_testing::rules() {
        for family in detect_artifact::Family::ALL {
            let bytes = artifact(rule, family.name());
            detect_artifact::check(family, bytes)
                .unwrap_or_else(|e| panic!("{rule} {}: {e}", family.name()));
        }
        let fluvio = detect_artifact::imports(artifact(rule, "fluvio")).unwrap();
        assert_eq!(
            fluvio,
            [("env".to_owned(), "copy_records".to_owned())],
            "{rule}"
        );
    }
    let out = harness(&["inspect", "--json"], b"");
    let info: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        info["artifacts"]["fluvio"],
        serde_json::json!(["env.copy_records"])
    );
}

/// One command builds a rule's three artifacts, from its directory, to distinct paths:
/// each what the workspace's own build makes of the rule (the same imports and exports,
/// the same rule in the sandbox; not the same bytes, since a build from a build script
/// gives the crates other hashes).
#[test]
fn build_makes_a_rules_three_artifacts() {
    let dir = tempfile::tempdir().unwrap();
    let out = harness(
        &[
            "build",
            "guest/rules/console-login",
            "--out",
            dir.path().to_str().unwrap(),
        ],
        b"",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(listed.len(), 3, "{listed:?}");
    for family in detect_artifact::Family::ALL {
        let path = dir
            .path()
            .join(format!("console-login.{}.wasm", family.name()));
        assert!(listed.contains(&path.display().to_string()), "{listed:?}");
        let (built, expected) = (
            std::fs::read(&path).unwrap(),
            artifact("console-login", family.name()),
        );
        detect_artifact::check(family, &built).unwrap();
        let shape = |bytes: &[u8]| {
            (
                detect_artifact::imports(bytes).unwrap(),
                detect_artifact::exports(bytes).unwrap(),
            )
        };
        assert_eq!(shape(&built), shape(expected), "{}", family.name());
    }
    let component = std::fs::read(dir.path().join("console-login.component.wasm")).unwrap();
    let rule = detect_host::Sandbox::new(Default::default())
        .unwrap()
        .load(&component)
        .unwrap();
    let runner = rule
        .start(Box::new(detect_host::state::MemoryStore::new()), None)
        .unwrap();
    assert_eq!(runner.info().name, "aws-console-login-without-mfa");
    let refused = harness(
        &["build", "fixtures", "--out", dir.path().to_str().unwrap()],
        b"",
    );
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && stderr.contains("is not a rule of this workspace"),
        "{stderr}"
    );
}
