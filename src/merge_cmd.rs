//! `vmemsim merge SHARD.json...`: the shards of a campaign as the report one run prints.

use std::path::PathBuf;
use std::process::ExitCode;

use vmemsim_sim::report::campaign_doc::CampaignDoc;
use vmemsim_sim::report::merge::merge;

use crate::campaign_cmd::{header, print_tables};
use crate::format::{print_doc, Format};

/// Reads one shard's document; the error names the file, and the line and column JSON stopped.
fn read(path: &PathBuf) -> Result<CampaignDoc, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}:{}:{}: not a campaign's --format json document: {e}", path.display(), e.line(), e.column()))
}

pub fn run(files: Vec<PathBuf>, format: Format) -> Result<ExitCode, String> {
    let docs = files.iter().map(|f| Ok((f.clone(), read(f)?))).collect::<Result<Vec<_>, String>>()?;
    let merged = merge(&docs).map_err(|e| e.to_string())?;
    if format.json() {
        print_doc(&merged);
        return Ok(ExitCode::from(merged.exit_code));
    }
    out!("merged {} shard{}", docs.len(), if docs.len() == 1 { "" } else { "s" });
    out!("{}", header(&merged));
    print_tables(&merged);
    if !merged.findings.is_empty() {
        out!("");
        out!("findings: {} seed{} violate a property", merged.seeds_with_findings, if merged.seeds_with_findings == 1 { "" } else { "s" });
        for f in &merged.findings {
            match (&f.file, f.parts_before, f.parts_after) {
                (Some(file), Some(b), Some(a)) => out!("  {}: first at seed {}; shrunk from {b} parts to {a}: {file}; replay: {}", f.property, f.seed, f.replay),
                _ => out!("  {}: first at seed {}; unshrunk: {}", f.property, f.seed, f.replay),
            }
        }
    }
    if !merged.generator_errors.is_empty() {
        eprintln!("error: {} generated scenarios did not build: a bug in the generator", merged.generator_errors.len());
    }
    Ok(ExitCode::from(merged.exit_code))
}
