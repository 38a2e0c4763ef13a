//! The document of `campaign`: its options, every table with example seeds and the command
//! that reproduces each, and the findings.

use serde::{Deserialize, Serialize};
use vmemsim_model::migration::verdict::Verdict;
use vmemsim_model::OutcomeClass;

use super::SCHEMA;
use crate::campaign::{Options, Summary, Tally};
use crate::hazards::Hazard;
use crate::properties::Property;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CampaignDoc {
    pub schema: String,
    pub command: String,
    pub options: OptionsDoc,
    pub runs: u64,
    pub elapsed_s: f64,
    pub runs_per_s: f64,
    /// Every outcome class, every verdict, hazard and property, in a fixed order, zero rows
    /// included.
    pub outcomes: Vec<RowDoc>,
    pub verdicts: Vec<RowDoc>,
    pub hazards: Vec<RowDoc>,
    pub properties: Vec<RowDoc>,
    /// How many seeds violate at least one property.
    pub seeds_with_findings: u64,
    pub findings: Vec<FindingDoc>,
    pub generator_errors: Vec<GeneratorErrorDoc>,
    /// With `--show`: each seed's scenario.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shown: Vec<ShownDoc>,
    pub exit_code: u8,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShownDoc {
    pub seed: u64,
    /// The generated scenario, as TOML.
    pub scenario: String,
    /// Its result, as the human form prints it.
    pub result: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OptionsDoc {
    /// `null`: until `time_s` ran out.
    pub runs: Option<u64>,
    pub seed: u64,
    pub shard: ShardDoc,
    pub variant: String,
    pub qemu: String,
    pub threads: usize,
    pub time_s: Option<f64>,
    pub stop_on_finding: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShardDoc {
    pub index: u64,
    pub count: u64,
}

/// One row: a name, how many runs it counts, and the lowest seeds with their commands.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RowDoc {
    pub name: String,
    pub count: u64,
    pub examples: Vec<ExampleDoc>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExampleDoc {
    pub seed: u64,
    /// Prints the seed's scenario as TOML and its result.
    pub command: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FindingDoc {
    pub property: String,
    /// The lowest seed that violates it.
    pub seed: u64,
    /// The shrunk scenario's file; `null` with `--no-shrink`.
    pub file: Option<String>,
    /// The command that replays it.
    pub replay: String,
    pub parts_before: Option<usize>,
    pub parts_after: Option<usize>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GeneratorErrorDoc {
    pub seed: u64,
    pub error: String,
}

/// The one-line command that shows a campaign's seed: its scenario and its result.
pub fn seed_command(o: &Options, seed: u64) -> String {
    format!("vmemsim campaign --variant {} --qemu {} --seed {seed} --runs 1 --show", o.variant, o.qemu)
}

fn row(o: &Options, name: &str, t: Option<&Tally>) -> RowDoc {
    let examples = t.map(|t| t.examples.iter().map(|&seed| ExampleDoc { seed, command: seed_command(o, seed) }).collect()).unwrap_or_default();
    RowDoc { name: name.to_string(), count: t.map_or(0, |t| t.count), examples }
}

impl CampaignDoc {
    pub fn new(o: &Options, s: &Summary, findings: Vec<FindingDoc>, exit_code: u8) -> CampaignDoc {
        let secs = s.elapsed.as_secs_f64();
        CampaignDoc {
            schema: SCHEMA.to_string(),
            command: "campaign".to_string(),
            options: OptionsDoc {
                runs: o.runs,
                seed: o.seed,
                shard: ShardDoc { index: o.shard.index, count: o.shard.count },
                variant: o.variant.name().to_string(),
                qemu: o.qemu.to_string(),
                threads: o.threads,
                time_s: o.time.map(|t| t.as_secs_f64()),
                stop_on_finding: o.stop_on_finding,
            },
            runs: s.runs,
            elapsed_s: secs,
            runs_per_s: if secs > 0.0 { s.runs as f64 / secs } else { 0.0 },
            outcomes: OutcomeClass::ALL.iter().map(|c| row(o, c.name(), s.by_class.get(c.name()))).collect(),
            verdicts: Verdict::ALL.iter().map(|v| row(o, v.name(), s.by_verdict.get(v))).collect(),
            hazards: Hazard::ALL.iter().map(|h| row(o, h.name(), s.by_hazard.get(h))).collect(),
            properties: Property::ALL.iter().map(|p| row(o, p.name(), s.by_property.get(p))).collect(),
            seeds_with_findings: s.findings.len() as u64,
            findings,
            generator_errors: s.generator_errors.iter().map(|(seed, e)| GeneratorErrorDoc { seed: *seed, error: e.clone() }).collect(),
            shown: Vec::new(),
            exit_code,
        }
    }
}
