//! A small process that outlives a real run only to repair it: it waits for its parent's end
//! (the pipe from the parent reaches end-of-file however the parent ends, SIGKILL included),
//! then takes back the huge pages the parent added and did not release. A parent that ends
//! normally has released them already, and the guardian finds nothing to do.

use std::io::Read;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use super::isolation::own_session;
use super::ledger::Owner;
use super::pool;

/// The guardian of this process, spawned as `exe __guard`. Dropping it ends the guardian.
pub struct Guardian {
    child: Child,
    pipe: Option<ChildStdin>,
}

impl Guardian {
    pub fn spawn(exe: &Path) -> std::io::Result<Guardian> {
        let mut cmd = Command::new(exe);
        let me = Owner::me();
        cmd.arg("__guard").arg(me.pid.to_string()).arg(me.start.to_string());
        // In a session of its own: a terminal's Ctrl-C ends the run, not its guardian.
        own_session(&mut cmd);
        let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::null()).spawn()?;
        let pipe = child.stdin.take();
        Ok(Guardian { child, pipe })
    }
}

impl Drop for Guardian {
    /// The parent's own release has run: say so, and the guardian ends at once.
    fn drop(&mut self) {
        if let Some(mut pipe) = self.pipe.take() {
            let _ = std::io::Write::write_all(&mut pipe, b"done");
        }
        let _ = self.child.wait();
    }
}

/// The guardian's main: reads stdin to its end; unless the parent said "done" first, waits for
/// the parent to be gone (at most 60 s), then repairs. Returns the exit status.
pub fn guardian_main(parent: Owner) -> i32 {
    let mut said = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut said);
    if said == b"done" {
        return 0;
    }
    let start = Instant::now();
    // The parent closes its files before it becomes a zombie: wait until it is one, or gone.
    while parent.alive() && start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(10));
    }
    match pool::repair() {
        Ok(_) => 0,
        Err(_) => 1,
    }
}
