//! Memory stays bounded whatever the input: the harness's own peak resident memory is
//! the same for an input and one twice its size, and well under the ceiling.

use std::io::Write;

use serde_json::json;

use crate::support::*;

/// The peak resident memory (KiB) of a `run` over `input`, fed on stdin: the kernel's
/// `VmHWM` of that process alone, which it reports on exit. (`ru_maxrss` would not do: it
/// counts the memory of the test process the child was spawned from.)
fn peak_rss_of_run(input: Vec<u8>) -> u64 {
    let out = harness(
        &[
            "run",
            "--state",
            "memory",
            "--dead-letter",
            "/dev/null",
            "-",
        ],
        &input,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let mib: f64 = stderr
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("peak memory: ")?
                .strip_suffix(" MiB")?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no peak memory in {stderr}"));
    (mib * 1024.0) as u64
}

fn gzip_of_zeros(mib: usize) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..mib {
        encoder.write_all(&zeros).unwrap();
    }
    encoder.finish().unwrap()
}

fn huge_line(mib: usize) -> Vec<u8> {
    let mut line = b"{\"pad\": \"".to_vec();
    line.resize(line.len() + (mib << 20), b'x');
    line.extend_from_slice(b"\"}\n{\"eventSource\": \"ec2.amazonaws.com\"}\n");
    line
}

/// A pretty-printed log file of records of other services, about `mib` MiB.
fn pretty_log(mib: usize) -> Vec<u8> {
    let record = json!({
        "eventSource": "ec2.amazonaws.com", "eventName": "DescribeInstances",
        "eventTime": "2025-02-01T00:00:00Z", "requestParameters": {"filter": "x".repeat(1000)},
    });
    let one = serde_json::to_vec_pretty(&record).unwrap().len() + 4;
    let records = vec![record; (mib << 20) / one];
    serde_json::to_vec_pretty(&json!({"Records": records})).unwrap()
}

/// About `mib` MiB of CloudTrail with many session starts, which the rule reads.
fn session_starts(mib: usize) -> Vec<u8> {
    // Generated records average about 1.4 KB.
    generated_log((mib << 20) / 1400, 1)
}

#[test]
fn peak_memory_does_not_grow_with_the_input() {
    const CEILING_KIB: u64 = 200 * 1024;
    const SLACK_KIB: u64 = 12 * 1024;
    type Input = fn(usize) -> Vec<u8>;
    let cases: [(&str, Input); 5] = [
        ("gzip bomb", gzip_of_zeros),
        ("records the rule reads", session_starts),
        ("endless stream of zeros", |mib| vec![0; mib << 20]),
        ("huge line", huge_line),
        ("huge pretty-printed log", pretty_log),
    ];
    for (name, input) in cases {
        let small = peak_rss_of_run(input(12));
        let large = peak_rss_of_run(input(48));
        eprintln!(
            "{name}: peak {} MiB at 12 MiB, {} MiB at 48 MiB",
            small >> 10,
            large >> 10
        );
        assert!(large < CEILING_KIB, "{name}: {large} KiB");
        assert!(
            large <= small + SLACK_KIB,
            "{name}: {small} KiB for 12 MiB of input, {large} KiB for 48 MiB"
        );
    }
}
