//! `replay --accept`: a run's result written as the scenario's `[expect]`, the rest of the
//! file (comments, order, layout) kept as it was.

use toml_edit::{value, Array, DocumentMut, Item, Table};

use crate::engine::Sim;
use crate::error::SimError;
use crate::load::Loaded;

/// The `[expect]` keys a run fills, in the order a new table lists them.
const KEYS: [&str; 8] = ["outcome", "stage", "fault", "verdict", "source_status", "stderr", "violates", "trace_hash"];

/// The run's value for one `[expect]` key (`None`: the run has none, e.g. no fault site).
fn run_value(key: &str, r: &Sim) -> Option<Item> {
    match key {
        "outcome" => Some(value(r.outcome.class().name())),
        "stage" => r.outcome.stage().map(|s| value(s.to_string())),
        "fault" => r.outcome.fault_site().map(|s| value(s.text())),
        "verdict" => Some(value(r.judgement.verdict.name())),
        "source_status" => Some(value(r.source.status.name())),
        "stderr" => {
            let mut lines: Array = r.outcome.stderr().into_iter().collect();
            // One line per element, as people write them.
            for l in lines.iter_mut() {
                l.decor_mut().set_prefix("\n  ");
            }
            if !lines.is_empty() {
                lines.set_trailing("\n");
                lines.set_trailing_comma(true);
            }
            Some(value(lines))
        }
        "violates" => {
            let mut names: Vec<&str> = r.violations.iter().map(|v| v.property.name()).collect();
            names.sort_unstable();
            (!names.is_empty()).then(|| value(names.into_iter().collect::<Array>()))
        }
        "trace_hash" => Some(value(format!("{:016x}", r.trace_hash))),
        _ => unreachable!("KEYS lists every key"),
    }
}

/// A value without its layout: strings by content, arrays element by element.
fn canonical(v: &toml_edit::Value) -> String {
    match v {
        toml_edit::Value::String(s) => format!("{:?}", s.value()),
        toml_edit::Value::Array(a) => format!("[{}]", a.iter().map(canonical).collect::<Vec<_>>().join(",")),
        other => other.clone().decorated("", "").to_string(),
    }
}

/// The file's text with `[expect]` set from the run. An existing `[expect]` keeps its choice
/// of keys (a file that does not pin its stderr or trace hash still does not) and gains
/// `outcome` and `violates` where the run needs them; a file without one gets every key the
/// run has.
pub fn accept(l: &Loaded, r: &Sim) -> Result<String, SimError> {
    let mut doc: DocumentMut = l.text.parse().map_err(|e: toml_edit::TomlError| {
        let at = e.span().map_or(0, |s| s.start);
        l.invalid(at, "expect", format!("the file cannot be rewritten: {}", e.message()))
    })?;
    let existing = doc.get("expect").and_then(Item::as_table_like).map(|t| t.iter().map(|(k, _)| k.to_string()).collect::<Vec<_>>());
    let keep = |key: &str| match &existing {
        None => true,
        Some(keys) => key == "outcome" || key == "violates" || keys.iter().any(|k| k == key),
    };
    if doc.get("expect").is_some_and(|e| !e.is_table()) {
        // An inline `expect = { ... }` becomes a table of its own.
        doc.remove("expect");
    }
    let table = doc.entry("expect").or_insert(Item::Table(Table::new())).as_table_mut().expect("made a table above");
    for key in KEYS {
        match run_value(key, r).filter(|_| keep(key)) {
            // A value the run confirms keeps the way the file writes it.
            Some(v) if table.get(key).and_then(Item::as_value).zip(v.as_value()).is_some_and(|(a, b)| canonical(a) == canonical(b)) => {}
            Some(v) => {
                table.insert(key, v);
            }
            None => {
                table.remove(key);
            }
        }
    }
    Ok(doc.to_string())
}
