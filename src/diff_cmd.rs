//! `vmemsim diff FILE... --vmm a,b,c`: the same scenario on each VMM profile, outcomes and
//! verdicts side by side.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde::Serialize;
use vmemsim_model::migration::verdict::Verdict;
use vmemsim_model::vmm::Vmm;
use vmemsim_model::Outcome;
use vmemsim_sim::profile_run::{run_profile, ProfileRun};
use vmemsim_sim::{build, load, run_built, Loaded};

use crate::format::{print_doc, Format};

/// One profile's cell.
#[derive(Serialize)]
struct Cell {
    vmm: String,
    /// Null when the scenario cannot be expressed on this profile.
    outcome: Option<&'static str>,
    stage: Option<String>,
    verdict: Option<&'static str>,
    reason: String,
    /// The VMM's own error and log lines.
    lines: Vec<String>,
    notes: Vec<String>,
    violations: Vec<String>,
}

#[derive(Serialize)]
struct Row {
    file: String,
    name: String,
    profiles: Vec<Cell>,
}

#[derive(Serialize)]
struct DiffDoc {
    schema: &'static str,
    command: &'static str,
    exit_code: u8,
    vmms: Vec<String>,
    scenarios: Vec<Row>,
}

/// Parses `--vmm a,b,c` (default: the newest release of each VMM).
pub fn parse_vmms(list: Option<&str>) -> Result<Vec<Vmm>, String> {
    let Some(list) = list else { return Ok(Vmm::newest().to_vec()) };
    let mut v = Vec::new();
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let vmm: Vmm = name.parse().map_err(|e| format!("--vmm: {e}"))?;
        if !v.contains(&vmm) {
            v.push(vmm);
        }
    }
    if v.is_empty() {
        return Err("--vmm: name at least one profile, e.g. --vmm qemu-10.0.2,cloud-hypervisor-v53.0".into());
    }
    Ok(v)
}

/// The scenario as QEMU's engine builds it for `vmm` (a QEMU profile names both sides'
/// release; a non-QEMU one takes the scenario's QEMU reading and replaces its rules).
fn for_profile(l: &Loaded, vmm: Vmm) -> Loaded {
    let mut l = l.clone();
    l.scenario.vmm = vmm.qemu().map(|_| toml::Spanned::new(0..0, vmm));
    if vmm.qemu().is_some() {
        l.scenario.source.qemu = None;
        l.scenario.destination.qemu = None;
    }
    l
}

fn qemu_cell(l: &Loaded, vmm: Vmm) -> Cell {
    let built = match build(&for_profile(l, vmm)) {
        Ok(b) => b,
        Err(e) => return refused(vmm, e.to_string()),
    };
    let sim = run_built(&built);
    let violations = sim.violations.iter().map(|v| format!("{}: {}", v.property.name(), v.detail)).collect();
    cell(vmm, &sim.outcome, sim.judgement.verdict, format!("{} (source: {}, {})", sim.judgement.reason, sim.source.status.name(), sim.source.runstate.name()), Vec::new(), violations)
}

fn other_cell(l: &Loaded, vmm: Vmm) -> Cell {
    let built = match build(&for_profile(l, vmm)) {
        Ok(b) => b,
        Err(e) => return refused(vmm, e.to_string()),
    };
    match run_profile(l, &built, vmm) {
        Ok(ProfileRun { outcome, verdict, reason, notes, violations, .. }) => {
            cell(vmm, &outcome, verdict, reason, notes, violations.into_iter().map(|(p, d)| format!("{p}: {d}")).collect())
        }
        Err(why) => refused(vmm, why.why),
    }
}

fn cell(vmm: Vmm, o: &Outcome, verdict: Verdict, reason: String, notes: Vec<String>, violations: Vec<String>) -> Cell {
    Cell {
        vmm: vmm.to_string(),
        outcome: Some(o.class().name()),
        stage: o.stage().map(|s| s.to_string()),
        verdict: Some(verdict.name()),
        reason,
        lines: o.lines().to_vec(),
        notes,
        violations,
    }
}

fn refused(vmm: Vmm, why: String) -> Cell {
    Cell { vmm: vmm.to_string(), outcome: None, stage: None, verdict: None, reason: why, lines: Vec::new(), notes: Vec::new(), violations: Vec::new() }
}

fn row(file: &Path, vmms: &[Vmm]) -> Result<Row, String> {
    let l = load(file).map_err(|e| e.to_string())?;
    let mut l0 = l.clone();
    // A file that names a non-QEMU profile is read as QEMU's default for the others.
    if l0.scenario.vmm.as_ref().is_some_and(|v| v.get_ref().qemu().is_none()) {
        l0.scenario.vmm = None;
    }
    let profiles = vmms.iter().map(|&v| if v.qemu().is_some() { qemu_cell(&l0, v) } else { other_cell(&l0, v) }).collect();
    Ok(Row { file: file.display().to_string(), name: l.scenario.name.clone(), profiles })
}

/// Exit 0 when every profile that can run a scenario agrees on its verdict and none breaks a
/// property, 1 otherwise.
pub fn run(files: &[PathBuf], vmm: Option<&str>, format: Format) -> Result<ExitCode, String> {
    let vmms = parse_vmms(vmm)?;
    let rows = files.iter().map(|f| row(f, &vmms).map_err(|e| format!("{}: {e}", f.display()))).collect::<Result<Vec<_>, _>>()?;
    let differ = rows.iter().any(|r| {
        let mut v = r.profiles.iter().filter_map(|c| c.verdict);
        v.next().is_some_and(|first| v.any(|x| x != first)) || r.profiles.iter().any(|c| !c.violations.is_empty())
    });
    let code = u8::from(differ);
    if format.json() {
        print_doc(&DiffDoc { schema: "vmemsim/1", command: "diff", exit_code: code, vmms: vmms.iter().map(Vmm::to_string).collect(), scenarios: rows });
        return Ok(ExitCode::from(code));
    }
    for r in &rows {
        out!("{}  ({})", r.name, r.file);
        let w = r.profiles.iter().map(|c| c.vmm.len()).max().unwrap_or(0);
        for c in &r.profiles {
            match (c.outcome, c.verdict) {
                (Some(o), Some(v)) => out!("  {:w$}  {:<14} {:<12} {}", c.vmm, o, v, c.stage.as_deref().unwrap_or("-")),
                _ => out!("  {:w$}  {:<14} {:<12} -", c.vmm, "not-expressible", "-"),
            }
            out!("  {:w$}    {}", "", c.reason);
            for l in c.lines.iter().take(3) {
                out!("  {:w$}    | {l}", "");
            }
            for n in &c.notes {
                out!("  {:w$}    note: {n}", "");
            }
            for v in &c.violations {
                out!("  {:w$}    VIOLATED {v}", "");
            }
        }
    }
    if rows.len() > 1 {
        out!("");
        let head: Vec<String> = vmms.iter().map(Vmm::to_string).collect();
        out!("| scenario | {} |", head.join(" | "));
        out!("|---|{}", "---|".repeat(head.len()));
        for r in &rows {
            let cells: Vec<String> = r.profiles.iter().map(|c| c.verdict.map_or("not expressible".to_string(), |v| format!("{} ({v})", c.outcome.unwrap_or("-")))).collect();
            let name = Path::new(&r.file).file_stem().map_or(r.file.clone(), |s| s.to_string_lossy().into_owned());
            out!("| {name} | {} |", cells.join(" | "));
        }
    }
    Ok(ExitCode::from(code))
}
