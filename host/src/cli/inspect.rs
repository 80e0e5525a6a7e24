//! `rule-harness inspect`: what a rule component is, for a person or (`--json`) a tool.

use std::process::ExitCode;

use clap::Args;
use serde_json::json;

use super::RuleArgs;
use rule_harness::output::{mitre_line, severity_name};
use rule_harness::state::MemoryStore;

#[derive(Args)]
pub struct InspectArgs {
    /// Print JSON instead of text
    #[arg(long)]
    json: bool,
}

pub fn inspect(rule_args: &RuleArgs, args: &InspectArgs) -> anyhow::Result<ExitCode> {
    let rule = rule_args.load()?;
    let runner = rule.start(Box::new(MemoryStore::new()), None)?;
    let info = runner.info();
    let (imports, exports) = (rule.imports(), rule.exports());
    if args.json {
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
        let config: serde_json::Value =
            serde_json::from_str(&info.config).unwrap_or(json!(info.config));
        let out = json!({
            "imports": imports, "exports": exports,
            "rule": {"name": info.name, "version": info.version, "description": info.description,
                     "detections": detections, "config": config},
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("{} {}: {}\n", info.name, info.version, info.description);
    for (title, items) in [("imports", &imports), ("exports", &exports)] {
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
    println!("\nconfiguration: {}", info.config);
    Ok(ExitCode::SUCCESS)
}
