//! The simulator's one error enum: what is wrong with a scenario and where.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The file could not be read.
    #[error("{path}: cannot read: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    /// The TOML does not parse or does not fit the scenario format; toml's message names the
    /// line, column and field.
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    /// A value parsed but makes no sense; names the field and where it is.
    #[error("{path}:{line}:{column}: {field}: {message}")]
    Invalid { path: PathBuf, line: usize, column: usize, field: String, message: String },
    /// A migration stream is malformed; `message` names the byte offset and what was expected.
    #[error("{path}: {message}")]
    Stream { path: PathBuf, message: String },
    /// Running on real memory failed (not the destination's outcome: the harness itself).
    #[error("real memory: {message}")]
    Real { message: String },
    /// A signal (SIGINT, SIGTERM, SIGHUP) stopped a real run; what it changed was given back.
    #[error("interrupted by signal {signal}: the run was stopped and what it changed on the host was given back")]
    Interrupted { signal: i32 },
    /// A shard's document that cannot be merged with the others; names the field.
    #[error("{path}: {field}: {message}")]
    Merge { path: PathBuf, field: String, message: String },
    /// The source VM cannot be set up as the scenario says (QEMU would refuse to start it).
    #[error("{path}: the source cannot start: {source}")]
    Source { path: PathBuf, source: vmemsim_model::ModelError },
}
