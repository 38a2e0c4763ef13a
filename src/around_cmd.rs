//! `vmemsim campaign --around FILE`: one scenario perturbed, a table per axis, the flips of its
//! verdict, and `--variant-index K --show` to print one variant as a file to save and replay.

use std::path::PathBuf;
use std::process::ExitCode;

use vmemsim_sim::around::{explore, run_text, variant_text, Axis, Ran};
use vmemsim_sim::report::around_doc::{variant_command, AroundDoc, ShownVariantDoc};
use vmemsim_sim::report::SCHEMA;
use vmemsim_sim::{load, Loaded};

use crate::format::{print_doc, Format};

pub struct Args {
    pub file: PathBuf,
    pub seed: u64,
    /// The budget of variants.
    pub runs: usize,
    pub variant_index: Option<usize>,
    pub show: bool,
    pub format: Format,
}

/// Runs the around campaign: exit 0 when no variant's verdict differs from the base's, 1 when
/// some do, 2 when the file is wrong.
pub fn run(a: Args) -> Result<ExitCode, String> {
    let l = load(&a.file).map_err(|e| e.to_string())?;
    let file = a.file.display().to_string();
    if a.show || a.variant_index.is_some() {
        return show(&l, &file, &a);
    }
    let around = explore(&l, a.seed, a.runs).map_err(|e| e.to_string())?;
    let doc = AroundDoc::new(&file, a.seed, a.runs, &around);
    if a.format.json() {
        print_doc(&doc);
    } else {
        print_human(&doc);
    }
    Ok(ExitCode::from(doc.exit_code))
}

fn print_human(d: &AroundDoc) {
    out!("around: {}, seed {}, {} variants (budget {}), {} not scenarios", d.file, d.seed, d.variants.len() + d.not_scenarios.len(), d.runs, d.not_scenarios.len());
    out!("base: outcome {}, verdict {}", d.base.outcome, d.base.verdict);
    for c in &d.capacities {
        let value = c.value_bytes.map_or("unlimited".to_string(), |b| vmemsim_model::Bytes(b).to_string());
        out!("  {} = {value}: the plugged memory needs {}, in blocks of {}", c.field, vmemsim_model::Bytes(c.need_bytes), vmemsim_model::Bytes(c.block_bytes));
    }
    for axis in Axis::ALL {
        let mut rows: Vec<_> = d.variants.iter().filter(|v| v.axis == axis.name()).collect();
        // A sweep reads in the order of its values, bisection steps included.
        let first = |f: &str| d.variants.iter().position(|v| v.field == f);
        if matches!(axis, Axis::Capacity | Axis::Timing) {
            rows.sort_by_key(|v| (first(&v.field), v.number.unwrap_or(u64::MAX)));
        }
        if rows.is_empty() {
            continue;
        }
        out!("");
        let field_w = rows.iter().map(|v| v.field.chars().count()).max().unwrap_or(5).clamp(5, 60);
        let value_w = rows.iter().map(|v| v.value.chars().count()).max().unwrap_or(5).clamp(5, 60);
        out!("{} ({} variants)", axis.name(), rows.len());
        out!("  {:>5}  {:<field_w$}  {:<value_w$}  {:<16} {:<12}", "#", "field", "value", "outcome", "verdict");
        for v in rows {
            let mark = if v.flipped { "  FLIPPED" } else { "" };
            out!("  {:>5}  {:<field_w$}  {:<value_w$}  {:<16} {:<12}{mark}", v.index, v.field, v.value, v.outcome, v.verdict);
        }
    }
    out!("");
    if d.flips.is_empty() {
        out!("flips: none (every variant's verdict is the base's, {})", d.base.verdict);
    } else {
        out!("flips: {}", d.flips.len());
        for f in &d.flips {
            out!("  {:<9} {}: {} {} → {} {}", f.axis, f.field, f.from.value, f.from.verdict, f.to.value, f.to.verdict);
            out!("            {}", f.command);
        }
    }
    if !d.not_scenarios.is_empty() {
        out!("");
        out!("not scenarios (the loader refuses them): {}", d.not_scenarios.len());
        for n in &d.not_scenarios {
            out!("  {:>5}  {} = {}: {}", n.index, n.field, n.value, n.error.replace('\n', " "));
        }
    }
}

/// `--show`: the variant (every variant without `--variant-index`) as a scenario file whose
/// `[expect]` is its run's, with the result as comments.
fn show(l: &Loaded, file: &str, a: &Args) -> Result<ExitCode, String> {
    if a.format.json() && a.variant_index.is_none() {
        return Err("--format json --show prints one variant: give --variant-index K".into());
    }
    // Variant K is the same whatever the budget that reaches it.
    let budget = a.variant_index.map_or(a.runs, |k| k.saturating_add(1));
    let around = explore(l, a.seed, budget).map_err(|e| e.to_string())?;
    let indices: Vec<usize> = match a.variant_index {
        Some(k) if k >= around.variants.len() => {
            return Err(format!("{file}: there is no variant {k}: with seed {} the around campaign has {} variants (0 to {})", a.seed, around.variants.len(), around.variants.len().saturating_sub(1)));
        }
        Some(k) => vec![k],
        None => (0..around.variants.len()).collect(),
    };
    let mut code = 0;
    for (n, k) in indices.into_iter().enumerate() {
        let (p, ran) = &around.variants[k];
        let mut result = vec![format!("{} (variant {k}: {} {} = {}, base {} {}):", variant_command(file, a.seed, k), p.axis.name(), p.field, p.value, around.base_outcome, around.base_verdict.name())];
        let text = match (ran, variant_text(l, p).and_then(|t| run_text(l, k, &t).map(|r| (t, r)))) {
            (Ran::Run { .. }, Ok((_, (vl, sim)))) => {
                let text = vmemsim_sim::accept::accept(&vl, &sim).map_err(|e| e.to_string())?;
                result.extend(vmemsim_sim::report::result_lines(&sim));
                if sim.judgement.verdict != around.base_verdict {
                    code = 1;
                }
                text
            }
            (_, Ok((t, _))) => t,
            (_, Err(e)) => {
                result.push(format!("not a scenario: {e}"));
                variant_text(l, p).unwrap_or_default()
            }
        };
        if a.format.json() {
            print_doc(&ShownVariantDoc {
                schema: SCHEMA,
                command: "campaign",
                mode: "around-show",
                file: file.to_string(),
                seed: a.seed,
                index: k,
                axis: p.axis.name().to_string(),
                field: p.field.clone(),
                value: p.value.clone(),
                scenario: text,
                result,
                exit_code: code,
            });
            continue;
        }
        if n > 0 {
            out!("");
        }
        out_raw!("{text}");
        if !text.ends_with('\n') {
            out!("");
        }
        for line in result {
            out!("# {line}");
        }
    }
    Ok(ExitCode::from(code))
}
