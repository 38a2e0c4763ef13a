//! Reading a scenario file, with errors that name the file, line, column and field.

use std::path::{Path, PathBuf};

use crate::error::SimError;
use crate::scenario::Scenario;

/// A parsed scenario with its text, so later checks can point into the file.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub path: PathBuf,
    pub text: String,
    pub scenario: Scenario,
}

impl Loaded {
    /// An error about `field`, located at byte offset `at` of the file.
    pub fn invalid(&self, at: usize, field: &str, message: impl Into<String>) -> SimError {
        let (line, column) = line_col(&self.text, at);
        SimError::Invalid { path: self.path.clone(), line, column, field: field.to_string(), message: message.into() }
    }

    /// The byte offset of the line `key = ...` of the table whose header is at `table` (up to
    /// the next header), or the header when the key is not written there (a default).
    pub fn key_at(&self, table: usize, key: &str) -> usize {
        let start = table.min(self.text.len());
        let mut offset = start;
        for (n, line) in self.text[start..].split_inclusive('\n').enumerate() {
            let trimmed = line.trim_start();
            if n > 0 && trimmed.starts_with('[') {
                break;
            }
            if trimmed.strip_prefix(key).is_some_and(|rest| rest.trim_start().starts_with('=')) {
                return offset + (line.len() - trimmed.len());
            }
            offset += line.len();
        }
        start
    }
}

/// 1-based line and column of a byte offset.
pub fn line_col(text: &str, at: usize) -> (usize, usize) {
    let at = at.min(text.len());
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// Parses scenario text; `path` is only used in messages.
pub fn parse(path: &Path, text: &str) -> Result<Loaded, SimError> {
    let scenario: Scenario = toml::from_str(text).map_err(|e| SimError::Parse {
        path: path.to_path_buf(),
        message: e.to_string().trim_end().to_string(),
    })?;
    Ok(Loaded { path: path.to_path_buf(), text: text.to_string(), scenario })
}

/// Reads and parses a scenario file.
pub fn load(path: &Path) -> Result<Loaded, SimError> {
    let text = std::fs::read_to_string(path).map_err(|source| SimError::Read { path: path.to_path_buf(), source })?;
    parse(path, &text)
}
