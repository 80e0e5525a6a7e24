//! The compile cache runs only what this user compiled, and only rules that passed the
//! sandbox's checks.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::support::*;

/// `inspect --json` with `cache`: the rule's name, and what was said on stderr.
fn inspect(cache: &Path, rule: Option<&Path>) -> (String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_rule-harness"));
    command.arg("--cache-dir").arg(cache);
    if let Some(rule) = rule {
        command.arg("--rule").arg(rule);
    }
    let out = command.args(["inspect", "--json"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    let info: Value = serde_json::from_slice(&out.stdout).unwrap();
    (info["rule"]["name"].as_str().unwrap().to_owned(), stderr)
}

fn only_entry(dir: &Path) -> PathBuf {
    let entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    entries[0].clone()
}

fn private_dir(parent: &Path, name: &str) -> PathBuf {
    let dir = parent.join(name);
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    dir
}

#[test]
fn entries_that_another_user_could_have_written_are_never_loaded() {
    let root = tempfile::tempdir().unwrap();
    // A valid compiled entry of another rule, and the name the built-in rule's entry has.
    let hostile_rule = root.path().join("hostile.wasm");
    std::fs::write(&hostile_rule, hostile("", "(i32.const 128)")).unwrap();
    let hostile_cache = private_dir(root.path(), "hostile-cache");
    assert_eq!(inspect(&hostile_cache, Some(&hostile_rule)).0, "hostile");
    let hostile_entry = only_entry(&hostile_cache);
    let real_cache = private_dir(root.path(), "real-cache");
    assert_eq!(inspect(&real_cache, None).0, "aws-ssm-sessions");
    let real_entry = only_entry(&real_cache);
    let name = real_entry.file_name().unwrap();

    // The other rule's code where the built-in rule's is expected, in a directory that
    // others may write to.
    let open = root.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::copy(&hostile_entry, open.join(name)).unwrap();
    let (rule, said) = inspect(&open, None);
    assert_eq!(rule, "aws-ssm-sessions");
    assert!(
        said.contains("writable by group or others (mode 777)"),
        "{said}"
    );

    // A symlink to it, in a private directory.
    let linked = private_dir(root.path(), "linked");
    std::os::unix::fs::symlink(&hostile_entry, linked.join(name)).unwrap();
    let (rule, said) = inspect(&linked, None);
    assert_eq!(rule, "aws-ssm-sessions");
    assert!(said.contains("is a symlink"), "{said}");

    // A symlinked cache directory.
    let link = root.path().join("link");
    std::os::unix::fs::symlink(&hostile_cache, &link).unwrap();
    let (rule, said) = inspect(&link, None);
    assert_eq!(rule, "aws-ssm-sessions");
    assert!(said.contains("is a symlink"), "{said}");

    // An entry writable by others.
    let loose = private_dir(root.path(), "loose");
    std::fs::copy(&hostile_entry, loose.join(name)).unwrap();
    std::fs::set_permissions(loose.join(name), std::fs::Permissions::from_mode(0o666)).unwrap();
    let (rule, said) = inspect(&loose, None);
    assert_eq!(rule, "aws-ssm-sessions");
    assert!(
        said.contains("writable by group or others (mode 666)"),
        "{said}"
    );

    // The other rule's entry, whole and with its own checksum, under this rule's name.
    let swapped = private_dir(root.path(), "swapped");
    std::fs::copy(&hostile_entry, swapped.join(name)).unwrap();
    let (rule, said) = inspect(&swapped, None);
    assert_eq!(rule, "aws-ssm-sessions");
    assert!(said.contains("was stored for another component"), "{said}");

    // A FIFO where the entry should be: refused at once, not waited on.
    let fifo = private_dir(root.path(), "fifo");
    let path = std::ffi::CString::new(fifo.join(name).to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0);
    let (rule, said) = inspect(&fifo, None);
    assert_eq!(rule, "aws-ssm-sessions");
    assert!(said.contains("not a regular file"), "{said}");

    // Owned by another user: only root can arrange that.
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        let foreign = private_dir(root.path(), "foreign");
        std::fs::copy(&hostile_entry, foreign.join(name)).unwrap();
        std::os::unix::fs::chown(foreign.join(name), Some(65534), Some(65534)).unwrap();
        let (rule, said) = inspect(&foreign, None);
        assert_eq!(rule, "aws-ssm-sessions");
        assert!(said.contains("is owned by user 65534"), "{said}");
        std::os::unix::fs::chown(&foreign, Some(65534), None).unwrap();
        assert!(inspect(&foreign, None).1.contains("cache directory"));
    }
}

#[test]
fn a_damaged_entry_is_compiled_again_never_loaded() {
    let root = tempfile::tempdir().unwrap();
    let cache = private_dir(root.path(), "cache");
    inspect(&cache, None);
    let entry = only_entry(&cache);
    let mut bytes = std::fs::read(&entry).unwrap();
    for at in [bytes.len() / 2, 100, bytes.len() - 1] {
        bytes[at] ^= 0x40;
        std::fs::write(&entry, &bytes).unwrap();
        let (rule, said) = inspect(&cache, None);
        assert_eq!(rule, "aws-ssm-sessions");
        assert!(said.contains("is damaged"), "{said}");
        // It was written again, whole: the next start uses it without a word.
        assert_eq!(inspect(&cache, None).1, "");
        bytes = std::fs::read(&entry).unwrap();
    }
    std::fs::write(&entry, &bytes[..bytes.len() / 3]).unwrap();
    assert!(inspect(&cache, None).1.contains("is damaged"));
}

#[test]
fn a_rule_that_fails_the_checks_is_neither_compiled_nor_cached() {
    let root = tempfile::tempdir().unwrap();
    let cache = private_dir(root.path(), "cache");
    let net = root.path().join("net.wasm");
    let component = r#"(component (import "wasi:sockets/tcp@0.2.0" (instance)))"#;
    std::fs::write(&net, wat::parse_str(component).unwrap()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_rule-harness"))
        .arg("--cache-dir")
        .arg(&cache)
        .arg("--rule")
        .arg(&net)
        .arg("inspect")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("wasi:sockets/tcp@0.2.0"));
    assert_eq!(std::fs::read_dir(&cache).unwrap().count(), 0);
}
