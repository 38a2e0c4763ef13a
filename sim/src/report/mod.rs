//! Machine-readable answers: the `vmemsim/1` JSON documents that `--format json` prints, one
//! kind per command (described by `schema/vmemsim-1.schema.json` at the repository's root),
//! and JUnit XML for CI dashboards.

pub mod around_doc;
pub mod campaign_doc;
pub mod junit;
pub mod merge;
pub mod run_doc;

use serde::Serialize;

/// The schema every document names in its `schema` field. A field is only ever added to a
/// version; renaming or removing one makes `vmemsim/2`.
pub const SCHEMA: &str = "vmemsim/1";

/// A command's error as a document: what went wrong, in the words the human form prints.
#[derive(Clone, Debug, Serialize)]
pub struct ErrorDoc {
    pub schema: &'static str,
    pub command: String,
    /// The file it is about, in a `replay` of many files.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    pub error: String,
    pub exit_code: u8,
}

impl ErrorDoc {
    pub fn new(command: &str, error: &str) -> ErrorDoc {
        ErrorDoc { schema: SCHEMA, command: command.to_string(), file: None, error: error.to_string(), exit_code: 2 }
    }
}

/// A run's result as `--show` prints it under a scenario (as `#` comments): the outcome with
/// QEMU's lines, the verdict, each violation and the trace hash.
pub fn result_lines(sim: &crate::engine::Sim) -> Vec<String> {
    let mut lines: Vec<String> = sim.outcome.to_string().lines().map(str::to_string).collect();
    lines.push(format!("verdict: {}", sim.judgement));
    lines.extend(sim.violations.iter().map(|v| format!("property {} violated: {}", v.property, v.detail)));
    lines.push(format!("trace hash: {:016x}", sim.trace_hash));
    lines
}

/// Pretty JSON of a document (a serializable struct cannot fail to print).
pub fn to_json<T: Serialize>(doc: &T) -> String {
    serde_json::to_string_pretty(doc).expect("reports hold only strings, numbers, booleans and lists")
}
