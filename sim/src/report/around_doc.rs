//! The document of `campaign --around FILE`: the base's result, every variant with its result
//! and the command that shows it, the flips, and the variants the loader refused.

use serde::Serialize;

use super::SCHEMA;
use crate::around::{Around, Axis, Ran};
use crate::around_flips::flips;

#[derive(Clone, Debug, Serialize)]
pub struct AroundDoc {
    pub schema: &'static str,
    pub command: &'static str,
    /// `around`.
    pub mode: &'static str,
    pub file: String,
    pub seed: u64,
    /// The budget of variants.
    pub runs: usize,
    pub base: BaseDoc,
    /// Each capacity of the destination that the sweep varies, with what the plugged memory
    /// needs of it.
    pub capacities: Vec<CapacityDoc>,
    /// The variants that ran, by index.
    pub variants: Vec<VariantDoc>,
    pub flips: Vec<FlipDoc>,
    /// The variants the loader refused.
    pub not_scenarios: Vec<NotScenarioDoc>,
    /// 0: no variant's verdict differs from the base's; 1: some do.
    pub exit_code: u8,
}

#[derive(Clone, Debug, Serialize)]
pub struct BaseDoc {
    pub outcome: String,
    pub verdict: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct CapacityDoc {
    pub field: String,
    /// `null`: unlimited.
    pub value_bytes: Option<u64>,
    pub need_bytes: u64,
    pub block_bytes: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct VariantDoc {
    pub index: usize,
    /// `capacity`, `timing`, `fault`, `postcopy` or `pair`.
    pub axis: String,
    pub field: String,
    pub value: String,
    /// On a capacity or time sweep: the value in bytes or µs (`null`: unlimited, or not a sweep).
    pub number: Option<u64>,
    pub outcome: String,
    pub verdict: String,
    /// Its verdict differs from the base's.
    pub flipped: bool,
    /// Prints the variant's TOML with its result.
    pub command: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct FlipDoc {
    pub axis: String,
    pub field: String,
    pub from: SideDoc,
    pub to: SideDoc,
    /// Shows the variant on the `to` side.
    pub command: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct SideDoc {
    pub value: String,
    pub verdict: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct NotScenarioDoc {
    pub index: usize,
    pub axis: String,
    pub field: String,
    pub value: String,
    /// The loader's error.
    pub error: String,
}

/// `vmemsim --format json campaign --around FILE --seed S --variant-index K --show`: one
/// variant's TOML and its result.
#[derive(Clone, Debug, Serialize)]
pub struct ShownVariantDoc {
    pub schema: &'static str,
    pub command: &'static str,
    /// `around-show`.
    pub mode: &'static str,
    pub file: String,
    pub seed: u64,
    pub index: usize,
    pub axis: String,
    pub field: String,
    pub value: String,
    /// The variant as a scenario file, its `[expect]` the run's.
    pub scenario: String,
    /// Its result, as the human form prints it.
    pub result: Vec<String>,
    pub exit_code: u8,
}

/// A path as a shell word (quoted when it holds more than letters, digits and `/._-+`).
fn shell_word(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "/._-+".contains(c)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// The one-line command that prints variant `index` of the around campaign of `file`.
pub fn variant_command(file: &str, seed: u64, index: usize) -> String {
    format!("vmemsim campaign --around {} --seed {seed} --variant-index {index} --show", shell_word(file))
}

impl AroundDoc {
    pub fn new(file: &str, seed: u64, runs: usize, a: &Around) -> AroundDoc {
        let base = a.base_verdict;
        let mut variants = Vec::new();
        let mut not_scenarios = Vec::new();
        for (index, (p, r)) in a.variants.iter().enumerate() {
            let (axis, field, value) = (p.axis.name().to_string(), p.field.clone(), p.value.clone());
            match r {
                Ran::Run { outcome, verdict } => variants.push(VariantDoc {
                    index,
                    axis,
                    field,
                    value,
                    number: p.order.filter(|o| *o != u64::MAX),
                    outcome: outcome.to_string(),
                    verdict: verdict.name().to_string(),
                    flipped: *verdict != base,
                    command: variant_command(file, seed, index),
                }),
                Ran::NotScenario(error) => not_scenarios.push(NotScenarioDoc { index, axis, field, value, error: error.clone() }),
            }
        }
        let flips: Vec<FlipDoc> = flips(a)
            .into_iter()
            .map(|f| FlipDoc {
                axis: f.axis.name().to_string(),
                field: f.field,
                from: SideDoc { value: f.from.0, verdict: f.from.1.name().to_string() },
                to: SideDoc { value: f.to.0, verdict: f.to.1.name().to_string() },
                command: variant_command(file, seed, f.index),
            })
            .collect();
        // A flip counts unless it needs a mismatch QEMU refuses by design.
        let mismatch = |i: usize| a.variants[i].0.axis == Axis::Mismatch;
        let counts = |i: usize| match a.variants[i].0.parts {
            Some((x, y)) => !mismatch(x) && !mismatch(y),
            None => !mismatch(i),
        };
        let exit_code = u8::from(variants.iter().any(|v| v.flipped && counts(v.index)));
        AroundDoc {
            schema: SCHEMA,
            command: "campaign",
            mode: "around",
            file: file.to_string(),
            seed,
            runs,
            base: BaseDoc { outcome: a.base_outcome.to_string(), verdict: base.name().to_string() },
            capacities: a.needs.iter().map(|n| CapacityDoc { field: n.field.clone(), value_bytes: n.value.map(|b| b.0), need_bytes: n.need.0, block_bytes: n.block.0 }).collect(),
            variants,
            flips,
            not_scenarios,
            exit_code,
        }
    }
}
