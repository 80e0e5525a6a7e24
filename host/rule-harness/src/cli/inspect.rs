//! `rule-harness inspect`: what a rule component is, for a person or (`--json`) a tool.

use std::process::ExitCode;

use clap::Args;
use serde_json::{Value, json};

use super::RuleArgs;
use super::export::Artifact;
use detect_host::bindings::Detection;
use detect_host::output::{mitre_line, severity_name};
use detect_host::state::MemoryStore;
use detect_host::{Item, RuleInfo};

#[derive(Args)]
pub struct InspectArgs {
    /// Print JSON instead of text
    #[arg(long)]
    json: bool,
}

pub fn inspect(rule_args: &RuleArgs, args: &InspectArgs) -> anyhow::Result<ExitCode> {
    let rule = rule_args.load()?;
    let runner = rule.start(Box::new(MemoryStore::new()), None)?;
    let shown = Shown {
        info: runner.info(),
        imports: rule.imports(),
        exports: rule.exports(),
        artifacts: artifacts(rule_args)?,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&shown.json())?);
    } else {
        shown.print();
    }
    Ok(ExitCode::SUCCESS)
}

/// What `inspect` shows of a rule.
struct Shown<'a> {
    info: &'a RuleInfo,
    imports: Vec<Item>,
    exports: Vec<Item>,
    artifacts: Value,
}

impl Shown<'_> {
    fn json(&self) -> Value {
        let info = self.info;
        let detections: Vec<_> = info
            .detections
            .iter()
            .map(|d| {
                json!({
                    "id": d.id, "name": d.name, "severity": severity_name(d.severity),
                    "mitre": d.mitre.iter().map(mitre_line).collect::<Vec<_>>(),
                    "description": d.description, "runbook": d.runbook, "reference": d.reference,
                    "dedup_period_seconds": d.dedup_period_seconds, "tags": d.tags,
                })
            })
            .collect();
        let config: Value = serde_json::from_str(&info.config).unwrap_or(json!(info.config));
        json!({
            "imports": self.imports, "exports": self.exports, "artifacts": self.artifacts,
            "rule": {"name": info.name, "version": info.version, "description": info.description,
                     "detections": detections, "config": config},
        })
    }

    fn print(&self) {
        let info = self.info;
        println!("{} {}: {}\n", info.name, info.version, info.description);
        for (title, items) in [("imports", &self.imports), ("exports", &self.exports)] {
            println!("{title}:");
            for item in items.iter() {
                println!(
                    "  {} ({}): {}",
                    item.name,
                    item.kind,
                    item.functions.join(", ")
                );
            }
        }
        println!("\ndetections:");
        for d in &info.detections {
            print_detection(d);
        }
        println!("\nconfiguration: {}", info.config);
        if let Value::Object(artifacts) = &self.artifacts {
            println!("\nartifacts (each import checked against its host family's list):");
            for (family, imports) in artifacts {
                let imports: Vec<&str> = imports
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                println!("  {family}: {}", imports.join(", "));
            }
        }
    }
}

fn print_detection(d: &Detection) {
    println!("  {} [{}] {}", d.id, severity_name(d.severity), d.name);
    for m in &d.mitre {
        println!(
            "    ATT&CK {} {} / {} {}",
            m.tactic_id, m.tactic, m.technique_id, m.technique
        );
    }
    println!("    dedup period: {} s", d.dedup_period_seconds);
    println!("    {}", d.description);
    println!(
        "    runbook: {}",
        d.runbook.replace('\n', "\n             ")
    );
    println!("    reference: {}", d.reference);
}

/// The built-in rule's artifacts, each with its imports, checked against its family's
/// list; nothing for a rule given with `--rule` (only its component is known).
fn artifacts(rule_args: &RuleArgs) -> anyhow::Result<Value> {
    if rule_args.rule.is_some() {
        return Ok(Value::Null);
    }
    let mut all = serde_json::Map::new();
    for artifact in [Artifact::Component, Artifact::FluentBit, Artifact::Fluvio] {
        let (family, bytes) = (artifact.family(), artifact.built_in());
        detect_artifact::check(family, bytes)
            .map_err(|e| anyhow::anyhow!("the built-in {} artifact: {e}", family.name()))?;
        let imports: Vec<String> = detect_artifact::imports(bytes)?
            .into_iter()
            .map(|(m, n)| if n.is_empty() { m } else { format!("{m}.{n}") })
            .collect();
        all.insert(family.name().into(), json!(imports));
    }
    Ok(Value::Object(all))
}
