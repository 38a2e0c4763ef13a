#![allow(dead_code)]
//! Helpers shared by the integration tests.

pub mod bytes;

use std::path::{Path, PathBuf};

/// Every scenario file under `scenarios/`, sorted.
pub fn scenario_files() -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("scenarios/ exists") {
            let path = entry.expect("readable entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "toml") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

pub fn scenario(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios").join(rel)
}

/// A scratch folder for this test binary's files, inside the target folder (cargo's
/// `CARGO_TARGET_TMPDIR`), so that tests leave nothing in the host's temp dir.
pub fn scratch(what: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{what}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("the target folder is writable");
    dir
}
