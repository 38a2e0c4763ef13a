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
    /// Every coverage point (`group: name`), in `coverage::points` order, zero rows included.
    pub coverage: Vec<RowDoc>,
    /// The states every campaign must reach (`coverage::SOMETIMES`).
    pub sometimes: Vec<SometimesDoc>,
    /// With `--guided`: each fault kind's chance in the last epoch.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub weights: Vec<WeightDoc>,
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
    #[serde(default)]
    pub guided: bool,
}

/// A sometimes assertion: a state the campaign must reach at least once.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SometimesDoc {
    /// The coverage point's name.
    pub point: String,
    pub why: String,
    pub count: u64,
    /// False only when a campaign of the faithful model ran at least `enforced_from` runs and
    /// never reached it.
    pub holds: bool,
    pub enforced_from: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WeightDoc {
    pub fault: String,
    pub weight: f64,
}


/// The sometimes assertions over a campaign's coverage rows (a run's or merged shards'); they
/// bind a faithful campaign of at least `SOMETIMES_FROM` runs.
pub fn sometimes(coverage: &[RowDoc], runs: u64, faithful: bool) -> Vec<SometimesDoc> {
    use crate::coverage::{points, sometimes_points, SOMETIMES_FROM};
    sometimes_points()
        .into_iter()
        .map(|(p, name, why)| {
            let count = coverage.iter().find(|r| r.name == points()[p].key()).map_or(0, |r| r.count);
            SometimesDoc { point: name.to_string(), why: why.to_string(), count, holds: count > 0 || runs < SOMETIMES_FROM || !faithful, enforced_from: SOMETIMES_FROM }
        })
        .collect()
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
                guided: o.guided,
            },
            runs: s.runs,
            elapsed_s: secs,
            runs_per_s: if secs > 0.0 { s.runs as f64 / secs } else { 0.0 },
            outcomes: OutcomeClass::ALL.iter().map(|c| row(o, c.name(), s.by_class.get(c.name()))).collect(),
            verdicts: Verdict::ALL.iter().map(|v| row(o, v.name(), s.by_verdict.get(v))).collect(),
            hazards: Hazard::ALL.iter().map(|h| row(o, h.name(), s.by_hazard.get(h))).collect(),
            properties: Property::ALL.iter().map(|p| row(o, p.name(), s.by_property.get(p))).collect(),
            coverage: crate::coverage::points().iter().enumerate().map(|(i, p)| row(o, &p.key(), s.by_point.get(i))).collect(),
            sometimes: Vec::new(),
            weights: s.weights.map(|w| crate::gen::FaultKind::ALL.iter().zip(w.0).map(|(k, weight)| WeightDoc { fault: k.name().to_string(), weight }).collect()).unwrap_or_default(),
            seeds_with_findings: s.findings.len() as u64,
            findings,
            generator_errors: s.generator_errors.iter().map(|(seed, e)| GeneratorErrorDoc { seed: *seed, error: e.clone() }).collect(),
            shown: Vec::new(),
            exit_code,
        }
        .with_sometimes()
    }

    /// Fills [`CampaignDoc::sometimes`] from its coverage rows.
    pub fn with_sometimes(mut self) -> CampaignDoc {
        self.sometimes = sometimes(&self.coverage, self.runs, self.options.variant == vmemsim_model::Variant::Faithful.name());
        self
    }

    /// The sometimes assertions that fail.
    pub fn unreached(&self) -> impl Iterator<Item = &SometimesDoc> {
        self.sometimes.iter().filter(|s| !s.holds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coverage::{points, sometimes_points, SOMETIMES_FROM};

    fn rows(zero: usize) -> Vec<RowDoc> {
        points().iter().enumerate().map(|(i, p)| RowDoc { name: p.key(), count: u64::from(i != zero), examples: Vec::new() }).collect()
    }

    #[test]
    fn an_unreached_sometimes_fails_a_long_faithful_campaign_only() {
        let (p, name, _) = sometimes_points()[0];
        let failing = |runs, faithful| sometimes(&rows(p), runs, faithful).into_iter().filter(|s| !s.holds).map(|s| s.point).collect::<Vec<_>>();
        assert_eq!(failing(SOMETIMES_FROM, true), vec![name.to_string()]);
        assert!(failing(SOMETIMES_FROM - 1, true).is_empty(), "too few runs to hold a campaign to it");
        assert!(failing(SOMETIMES_FROM, false).is_empty(), "a variant removes rules on purpose");
        assert!(sometimes(&rows(usize::MAX), SOMETIMES_FROM, true).iter().all(|s| s.holds && s.count == 1));
    }
}
