//! Running a scenario file and comparing the run with its `[expect]`.

use vmemsim_model::migration::verdict::Verdict;
use vmemsim_model::OutcomeClass;

use crate::build::{build, Built};
use crate::engine::{simulate, Sim};
use crate::error::SimError;
use crate::load::Loaded;
use crate::properties::Property;

/// Runs a built scenario.
pub fn run_built(b: &Built) -> Sim {
    simulate(b)
}

/// Builds and runs a loaded scenario.
pub fn run(l: &Loaded) -> Result<Sim, SimError> {
    Ok(run_built(&build(l)?))
}

/// Compares a run with the scenario's `[expect]`; each difference is one line. Without
/// `[expect]`, only property violations count.
pub fn check_expectations(l: &Loaded, r: &Sim) -> Result<Vec<String>, SimError> {
    let mut diffs = Vec::new();
    let got_violations: Vec<&str> = r.violations.iter().map(|v| v.property.name()).collect();
    let Some(expect) = &l.scenario.expect else {
        for v in &r.violations {
            diffs.push(format!("property {} violated: {}", v.property, v.detail));
        }
        return Ok(diffs);
    };
    let at = expect.span().start;
    let e = expect.get_ref();
    let class = OutcomeClass::parse(&e.outcome).ok_or_else(|| {
        let names: Vec<&str> = OutcomeClass::ALL.iter().map(|c| c.name()).collect();
        l.invalid(at, "expect.outcome", format!("'{}' is not an outcome: one of {}", e.outcome, names.join(", ")))
    })?;
    for name in &e.violates {
        if Property::parse(name).is_none() {
            let names: Vec<&str> = Property::ALL.iter().map(|p| p.name()).collect();
            return Err(l.invalid(at, "expect.violates", format!("'{name}' is not a property: one of {}", names.join(", "))));
        }
    }
    if class != r.outcome.class() {
        diffs.push(format!("outcome: expected {class}, got {}", r.outcome.class()));
    }
    if let Some(stage) = &e.stage {
        let got = r.outcome.stage().map(|s| s.to_string()).unwrap_or_default();
        if &got != stage {
            diffs.push(format!("stage: expected '{stage}', got '{got}'"));
        }
    }
    if let Some(stderr) = &e.stderr {
        let got = r.outcome.stderr();
        if &got != stderr {
            diffs.push(format!("stderr: expected {stderr:#?}, got {got:#?}"));
        }
    }
    if let Some(fault) = &e.fault {
        let got = r.outcome.fault_site().map(|s| s.text()).unwrap_or_default();
        if &got != fault {
            diffs.push(format!("fault: expected '{fault}', got '{got}'"));
        }
    }
    if let Some(verdict) = &e.verdict {
        if Verdict::parse(verdict).is_none() {
            let names: Vec<&str> = Verdict::ALL.iter().map(|v| v.name()).collect();
            return Err(l.invalid(at, "expect.verdict", format!("'{verdict}' is not a verdict: one of {}", names.join(", "))));
        }
        if verdict != r.judgement.verdict.name() {
            diffs.push(format!("verdict: expected {verdict}, got {}", r.judgement));
        }
    }
    if let Some(status) = &e.source_status {
        if status != r.source.status.name() {
            diffs.push(format!("source_status: expected {status}, got {}", r.source.status.name()));
        }
    }
    if let Some(hash) = &e.trace_hash {
        let got = format!("{:016x}", r.trace_hash);
        if &got != hash {
            diffs.push(format!("trace_hash: expected {hash}, got {got}"));
        }
    }
    let mut want: Vec<&str> = e.violates.iter().map(String::as_str).collect();
    want.sort_unstable();
    let mut got = got_violations.clone();
    got.sort_unstable();
    if want != got {
        let details: Vec<String> = r.violations.iter().map(|v| format!("{}: {}", v.property, v.detail)).collect();
        diffs.push(format!("violated properties: expected {want:?}, got {got:?} {details:?}"));
    }
    Ok(diffs)
}
