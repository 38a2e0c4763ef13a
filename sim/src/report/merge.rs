//! `vmemsim merge`: the `--format json` documents of a campaign's shards combined into the
//! document one unsharded run of the same campaign prints (same tables, same examples, same
//! findings). Shards run disjoint seeds (`campaign::seeds`), so counts add up, a row's lowest
//! seeds are the lowest of the shards' lowest, and a property's finding is the shard's with the
//! lowest seed (that shard shrank the same seed one run would).

use std::path::{Path, PathBuf};

use super::campaign_doc::{CampaignDoc, ExampleDoc, OptionsDoc, RowDoc, ShardDoc};
use super::SCHEMA;
use crate::campaign::{Shard, Tally};
use crate::error::SimError;

fn bad(path: &Path, field: &str, message: impl Into<String>) -> SimError {
    SimError::Merge { path: path.to_path_buf(), field: field.to_string(), message: message.into() }
}

/// Checks that every document is a shard of one campaign, each shard once, all there.
fn check(docs: &[(PathBuf, CampaignDoc)]) -> Result<(), SimError> {
    let Some((first_path, first)) = docs.first() else {
        return Err(bad(Path::new("merge"), "files", "give the shards' documents (vmemsim --format json campaign --shard i/n ... > shard-i.json)"));
    };
    for (path, d) in docs {
        if d.schema != SCHEMA {
            return Err(bad(path, "schema", format!("'{}' is not {SCHEMA}", d.schema)));
        }
        if d.command != "campaign" {
            return Err(bad(path, "command", format!("a '{}' document, not a campaign's", d.command)));
        }
        if d.options.runs.is_none() {
            return Err(bad(path, "options.runs", "the shard ran until --time: shards that stop on time cover different seeds, give every shard the same --runs"));
        }
        if d.options.shard.index >= d.options.shard.count {
            return Err(bad(path, "options.shard", format!("shard {}/{} is not a shard: the index must be below the count", d.options.shard.index, d.options.shard.count)));
        }
        if let Some(total) = d.options.runs {
            let (i, n) = (d.options.shard.index, d.options.shard.count);
            let share = Shard { index: i, count: n }.share(total);
            if d.runs != share {
                return Err(bad(path, "runs", format!("shard {i}/{n} ran {} of its {share} runs (--time stopped it?): merge shards that ran all their runs", d.runs)));
            }
        }
        if d.options.guided {
            return Err(bad(path, "options.guided", "a guided campaign steers by what its whole run reached; it does not run as shards"));
        }
        if d.options.stop_on_finding {
            return Err(bad(path, "options.stop_on_finding", "a shard that stops at its first finding skips seeds one run would have run: merge campaigns without --stop-on-finding"));
        }
        let same = |field: &str, a: String, b: String| if a == b { Ok(()) } else { Err(bad(path, field, format!("{a} here, {b} in {}: not shards of one campaign", first_path.display()))) };
        same("options.seed", d.options.seed.to_string(), first.options.seed.to_string())?;
        same("options.runs", format!("{:?}", d.options.runs), format!("{:?}", first.options.runs))?;
        same("options.variant", d.options.variant.clone(), first.options.variant.clone())?;
        same("options.qemu", d.options.qemu.clone(), first.options.qemu.clone())?;
        same("options.shard.count", d.options.shard.count.to_string(), first.options.shard.count.to_string())?;
    }
    let n = first.options.shard.count;
    for i in 0..n {
        let with: Vec<&PathBuf> = docs.iter().filter(|(_, d)| d.options.shard.index == i).map(|(p, _)| p).collect();
        match with.as_slice() {
            [_] => {}
            [] => return Err(bad(first_path, "options.shard", format!("shard {i}/{n} is missing: give all {n} shards"))),
            [a, b, ..] => return Err(bad(b, "options.shard", format!("shard {i}/{n} is given twice (also {})", a.display()))),
        }
    }
    Ok(())
}

/// One table's rows merged by name, in the first shard's order.
fn rows(tables: Vec<&Vec<RowDoc>>, path: &Path, table: &str) -> Result<Vec<RowDoc>, SimError> {
    let first = tables[0];
    let mut out = Vec::with_capacity(first.len());
    for (i, row) in first.iter().enumerate() {
        let mut count = 0u64;
        let mut examples: Vec<ExampleDoc> = Vec::new();
        for t in &tables {
            let other = t.get(i).filter(|r| r.name == row.name).ok_or_else(|| bad(path, table, format!("the shards' rows differ at '{}': documents of different vmemsim versions?", row.name)))?;
            count = count.checked_add(other.count).ok_or_else(|| bad(path, table, "counts overflow"))?;
            examples.extend(other.examples.iter().cloned());
        }
        examples.sort_by_key(|e| e.seed);
        examples.truncate(Tally::EXAMPLES);
        out.push(RowDoc { name: row.name.clone(), count, examples });
    }
    if tables.iter().any(|t| t.len() != first.len()) {
        return Err(bad(path, table, "the shards' tables have different rows: documents of different vmemsim versions?"));
    }
    Ok(out)
}

/// The one-run document of a campaign from all of its shards' documents. Timing: `elapsed_s`
/// is the longest shard's (the wall time when they run side by side), `threads` the sum.
pub fn merge(docs: &[(PathBuf, CampaignDoc)]) -> Result<CampaignDoc, SimError> {
    check(docs)?;
    let (path, first) = &docs[0];
    let table = |f: fn(&CampaignDoc) -> &Vec<RowDoc>| docs.iter().map(|(_, d)| f(d)).collect::<Vec<_>>();
    let runs = docs.iter().try_fold(0u64, |a, (_, d)| a.checked_add(d.runs)).ok_or_else(|| bad(path, "runs", "overflow"))?;
    let elapsed_s = docs.iter().map(|(_, d)| d.elapsed_s).fold(0.0, f64::max);
    let mut findings: Vec<_> = Vec::new();
    for (_, d) in docs {
        for f in &d.findings {
            match findings.iter_mut().find(|g: &&mut super::campaign_doc::FindingDoc| g.property == f.property) {
                Some(g) if f.seed < g.seed => *g = f.clone(),
                Some(_) => {}
                None => findings.push(f.clone()),
            }
        }
    }
    // In the order the properties' table lists them, as one run reports them.
    let order: Vec<&str> = first.properties.iter().map(|r| r.name.as_str()).collect();
    findings.sort_by_key(|f| order.iter().position(|p| *p == f.property));
    let mut generator_errors: Vec<_> = docs.iter().flat_map(|(_, d)| d.generator_errors.iter().cloned()).collect();
    generator_errors.sort_by_key(|e| e.seed);
    let seeds_with_findings = docs.iter().try_fold(0u64, |a, (_, d)| a.checked_add(d.seeds_with_findings)).ok_or_else(|| bad(path, "seeds_with_findings", "overflow"))?;
    let mut merged = CampaignDoc {
        schema: SCHEMA.to_string(),
        command: "campaign".to_string(),
        options: OptionsDoc { shard: ShardDoc { index: 0, count: 1 }, threads: docs.iter().map(|(_, d)| d.options.threads).sum(), ..first.options.clone() },
        runs,
        elapsed_s,
        runs_per_s: if elapsed_s > 0.0 { runs as f64 / elapsed_s } else { 0.0 },
        outcomes: rows(table(|d| &d.outcomes), path, "outcomes")?,
        verdicts: rows(table(|d| &d.verdicts), path, "verdicts")?,
        hazards: rows(table(|d| &d.hazards), path, "hazards")?,
        properties: rows(table(|d| &d.properties), path, "properties")?,
        coverage: rows(table(|d| &d.coverage), path, "coverage")?,
        sometimes: Vec::new(),
        weights: Vec::new(),
        seeds_with_findings,
        findings,
        generator_errors,
        shown: Vec::new(),
        exit_code: 0,
    }
    .with_sometimes();
    let unreached = merged.unreached().next().is_some();
    merged.exit_code = if !merged.generator_errors.is_empty() { 2 } else { u8::from(seeds_with_findings > 0 || unreached) };
    Ok(merged)
}
