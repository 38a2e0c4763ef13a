//! The competitor on real memory: a second process (`vmemsim __competitor`) that takes pages
//! from the destination's own mount at the moment the simulated competitor strikes, and holds
//! them until the run ends. It starts from the destination's process, so it lives in the same
//! private mount namespace (gone with both), and it dies with its parent.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use rustix::fs::FallocateFlags;
use vmemsim_model::Bytes;

use super::isolation::die_with_parent;

/// A running competitor: it holds what it took until it is dropped (its stdin closes).
pub struct Competitor {
    child: Child,
}

impl Competitor {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Competitor {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a competitor that takes up to `bytes` from the mount at `dir`, `page` bytes at a
/// time (the mount's page: a hugetlbfs page, or 4 KiB on tmpfs), and waits until it has taken.
pub fn spawn(exe: &Path, dir: &Path, page: Bytes, bytes: Bytes, n: usize) -> Result<(Competitor, Bytes), String> {
    let mut cmd = Command::new(exe);
    cmd.arg("__competitor").arg("--dir").arg(dir).arg("--page").arg(page.0.to_string()).arg("--bytes").arg(bytes.0.to_string()).arg("--name").arg(format!("competitor-{n}"));
    die_with_parent(&mut cmd);
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().map_err(|e| format!("cannot start {}: {e}", exe.display()))?;
    let mut line = String::new();
    let stdout = child.stdout.take().expect("piped");
    BufReader::new(stdout).read_line(&mut line).map_err(|e| format!("cannot read the competitor: {e}"))?;
    let took = line.trim().strip_prefix("took ").and_then(|n| n.parse::<u64>().ok());
    let Some(took) = took else {
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        let _ = child.kill();
        let _ = child.wait();
        return Err(format!("the competitor said '{}' {}", line.trim(), err.trim()));
    };
    Ok((Competitor { child }, Bytes(took)))
}

/// The competitor's main: takes what it can of `bytes` in a new file on `dir`, says how much,
/// and holds it until its stdin closes.
pub fn competitor_main(dir: &Path, page: u64, bytes: u64, name: &str) -> i32 {
    let took = match take(dir, page, bytes, name) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("cannot take memory on {}: {e}", dir.display());
            return 2;
        }
    };
    let mut out = std::io::stdout().lock();
    if writeln!(out, "took {took}").and_then(|()| out.flush()).is_err() {
        return 2;
    }
    // Hold the pages: the file stays open and allocated until the parent closes our stdin.
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    0
}

/// Allocates `bytes` of an unlinked file on `dir` a page at a time until the mount's quota or pool runs
/// out (ENOSPC, ENOMEM): what a process that writes a file there gets.
fn take(dir: &Path, page: u64, bytes: u64, name: &str) -> std::io::Result<u64> {
    let path = dir.join(name);
    let file = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path)?;
    // Without a name: its pages go back when this process ends, however it ends.
    std::fs::remove_file(&path)?;
    let page = page.max(4096);
    let mut took = 0u64;
    while took < bytes {
        let len = page.min(bytes - took);
        match rustix::fs::fallocate(&file, FallocateFlags::empty(), took, len) {
            Ok(()) => took += len,
            Err(e) if e == rustix::io::Errno::NOSPC || e == rustix::io::Errno::NOMEM => break,
            Err(e) => return Err(e.into()),
        }
    }
    // The file stays open (and its pages allocated) for as long as this process runs.
    std::mem::forget(file);
    Ok(took)
}
