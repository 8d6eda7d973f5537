//! SARIF 2.1.0 output for code-scanning dashboards.
//!
//! One run; every rule of [`crate::rules::ALL`] in the driver's rule table; one result per
//! finding, located at the scanned file, with the archive entry and byte offset in the
//! message, a logical location and the result's properties.

use crate::finding::ScanReport;
use crate::rules::ALL;
use serde_json::{Value, json};

const SARIF_SCHEMA: &str = "https://json.schemastore.org/sarif-2.1.0.json";

fn uri(path: &str) -> String {
    let p = path.replace('\\', "/");
    p.strip_prefix("./").unwrap_or(&p).to_owned()
}

/// Renders the report as a SARIF 2.1.0 log.
pub fn to_sarif(report: &ScanReport) -> Value {
    let rules: Vec<Value> = ALL
        .iter()
        .map(|r| {
            json!({
                "id": r.code,
                "name": r.name,
                "shortDescription": { "text": r.summary },
                "fullDescription": { "text": r.summary },
                "help": { "text": r.help },
                "defaultConfiguration": { "level": r.severity.sarif_level() },
                "properties": {
                    "security-severity": r.severity.security_score(),
                    "tags": ["security", "model-file"],
                },
            })
        })
        .collect();
    let mut results = Vec::new();
    let mut notifications = Vec::new();
    for f in &report.files {
        if let Some(err) = &f.error {
            notifications.push(json!({
                "level": "error",
                "message": { "text": format!("{}: {err}", f.path) },
                "locations": [{ "physicalLocation": { "artifactLocation": { "uri": uri(&f.path) } } }],
            }));
        }
        for x in &f.findings {
            let index = ALL.iter().position(|r| *r == x.rule);
            let mut text = x.message.clone();
            if let Some(e) = x.location.entry_path() {
                text = format!("{text} (in archive entry {e})");
            }
            let mut physical = json!({ "artifactLocation": { "uri": uri(&f.path) } });
            if x.location.entry.is_empty()
                && let Some(o) = x.location.offset
            {
                physical["region"] = json!({ "byteOffset": o, "byteLength": 1 });
            }
            let mut location = json!({ "physicalLocation": physical });
            if let Some(e) = x.location.entry_path() {
                location["logicalLocations"] =
                    json!([{ "fullyQualifiedName": e, "kind": "member" }]);
            }
            let mut result = json!({
                "ruleId": x.rule.code,
                "level": x.severity.sarif_level(),
                "message": { "text": text },
                "locations": [location],
                "properties": {
                    "severity": x.severity.as_str(),
                    "rule": x.rule.name,
                    "security-severity": x.severity.security_score(),
                },
            });
            if let Some(i) = index {
                result["ruleIndex"] = json!(i);
            }
            if let Some(o) = x.location.offset {
                result["properties"]["offset"] = json!(o);
            }
            results.push(result);
        }
    }
    json!({
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {
                "driver": {
                    "name": "nnguard",
                    "informationUri": "https://github.com/nnguard/nnguard",
                    "semanticVersion": env!("CARGO_PKG_VERSION"),
                    "rules": rules,
                }
            },
            "invocations": [{
                "executionSuccessful": !report.files.iter().any(|f| f.error.is_some()),
                "toolExecutionNotifications": notifications,
            }],
            "results": results,
        }]
    })
}
