//! The source side of a live migration over a socket, QEMU 10.0.2: where the source's
//! `MigrationStatus` and runstate end when the destination ends as it did, what the source
//! prints, and what `migrate_cancel` and `cont` answer there. Read in QEMU 10.0.2's
//! migration/migration.c and monitor/qmp-cmds.c, and observed on a real QEMU 10.0.2 (every
//! case three times; the project's notes on the source states). Later versions differ
//! (725a9e5f78 in 10.0.5, `postcopy-device` 7b842fe354 in 10.2): not modelled yet.

use std::fmt;

use crate::backend::HOST_PAGE_SIZE;
use crate::migration::item::Item;
use crate::migration::outcome::{Outcome, Stage};

/// QEMU's `MigrationStatus` (qapi/migration.json), the states a source ends in.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum MigrationStatus {
    Completed,
    Failed,
    PostcopyPaused,
}

impl MigrationStatus {
    pub fn name(self) -> &'static str {
        match self {
            MigrationStatus::Completed => "completed",
            MigrationStatus::Failed => "failed",
            MigrationStatus::PostcopyPaused => "postcopy-paused",
        }
    }
}

/// The source's runstate (`query-status`).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum RunState {
    /// The guest runs on the source.
    Running,
    /// Stopped after a completed migration; `cont` runs the old copy again.
    Postmigrate,
    /// Stopped for the switchover and never restarted; `cont` is refused.
    FinishMigrate,
}

impl RunState {
    pub fn name(self) -> &'static str {
        match self {
            RunState::Running => "running",
            RunState::Postmigrate => "postmigrate",
            RunState::FinishMigrate => "finish-migrate",
        }
    }
}

/// A QMP command's answer: success, or QEMU's error text.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Reply {
    Ok,
    Error(String),
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reply::Ok => f.write_str("ok"),
            Reply::Error(e) => write!(f, "error '{e}'"),
        }
    }
}

/// Where the source ends.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SourceFate {
    pub status: MigrationStatus,
    pub runstate: RunState,
    /// `error-desc` of `query-migrate`.
    pub error: Option<String>,
    /// The source's stderr lines, without QEMU's prefix.
    pub lines: Vec<String>,
    pub cancel: Reply,
    pub cont: Reply,
}

/// `qmp_migrate_cancel`: refused while `migration_in_postcopy()`; elsewhere (completed,
/// failed) `migration_cancel` finds nothing running and succeeds without a change.
fn cancel_reply(status: MigrationStatus) -> Reply {
    match status {
        MigrationStatus::PostcopyPaused => Reply::Error("Postcopy migration in progress, cannot cancel.".into()),
        MigrationStatus::Completed | MigrationStatus::Failed => Reply::Ok,
    }
}

/// `qmp_cont` (monitor/qmp-cmds.c): refused in finish-migrate, else `vm_start`.
fn cont_reply(runstate: RunState) -> Reply {
    match runstate {
        RunState::FinishMigrate => Reply::Error("Migration is not finalized yet".into()),
        RunState::Running | RunState::Postmigrate => Reply::Ok,
    }
}

/// Whether the source had entered `postcopy_start` when the destination failed on item
/// `failed`. `migration_iteration_run` calls it in the first iteration after
/// `migrate-start-postcopy` (with postcopy-ram all RAM can be postcopied), and
/// `postcopy_start` waits for nothing from the destination; until then a source blocked on a
/// full socket is still in `active`. So the source is in postcopy iff no page data was still
/// to be sent before the switch when the destination failed (the socket's buffer holds less
/// than any page run) [INF: the buffer; observed: a switch at once is ahead of a destination
/// still in its early section, and a SIGBUS inside a page run fails a precopy source].
pub fn entered_postcopy(items: &[Item], failed: usize, outcome: &Outcome) -> bool {
    let Some(switch) = items.iter().position(|i| matches!(i, Item::RamDiscard { .. } | Item::Listen)) else { return false };
    failed >= switch || !unsent_pages(items, failed, switch, outcome)
}

/// Whether page data was still unsent after the destination failed on item `failed`, before
/// item `to`: the rest of a page run that killed it, or later page runs.
fn unsent_pages(items: &[Item], failed: usize, to: usize, outcome: &Outcome) -> bool {
    let rest_of_failed = match (&items[failed], outcome) {
        (Item::Ram { offset, len, .. }, Outcome::Crashed { site, .. }) => site.offset.0.saturating_add(HOST_PAGE_SIZE.0) < offset.0.saturating_add(len.0),
        _ => false,
    };
    rest_of_failed || items[failed + 1..to].iter().any(|i| matches!(i, Item::Ram { len, .. } if len.0 > 0))
}

/// Without a return path the source learns nothing but a failed write: once its last write
/// went out it completes (`migration_completion`), whatever the destination does with the
/// rest of the stream [INF: the same socket-buffer reading as [`entered_postcopy`]].
fn sent_everything(items: &[Item], failed: usize, outcome: &Outcome) -> bool {
    !unsent_pages(items, failed, items.len(), outcome)
}

/// The lines `postcopy_pause` and the failed iteration print (`qemu_savevm_state_iterate`,
/// `postcopy_pause`): the same for every destination failure seen.
fn pause_lines() -> Vec<String> {
    vec![
        "failed to save SaveStateEntry with id(name): 1(ram): -5".into(),
        "Unable to shutdown socket: Bad file descriptor".into(),
        "Detected IO failure for postcopy. Migration paused.".into(),
    ]
}

/// The error the source stores first: a destination that failed to load sends
/// MIG_RP_MSG_SHUT(1) on the return path (`migration_incoming_state_destroy`), which
/// `source_return_path_thread` records as "Sibling indicated error 1"; one that died (SIGBUS)
/// sends nothing and the return path's read fails [observed 5 of 6; the write error can come
/// first]; without a return path only the write fails (`qio_channel_socket_writev`).
fn first_error(outcome: &Outcome, return_path: bool) -> String {
    let died = matches!(outcome, Outcome::Crashed { .. } | Outcome::RuntimeCrash { .. });
    match (return_path, died) {
        (true, false) => "Sibling indicated error 1".into(),
        (true, true) => "Unable to read from socket: Connection reset by peer".into(),
        (false, _) => "Unable to write to socket: Broken pipe".into(),
    }
}

/// QEMU 10.0.2's source when the destination ended as `outcome` after failing on item
/// `failed` (None when it read the whole stream), for a stream with a return path or not
/// (postcopy-ram opens one: `migrate_fd_connect`).
pub fn source_fate(items: &[Item], failed: Option<usize>, outcome: &Outcome) -> SourceFate {
    let return_path = items.iter().any(|i| matches!(i, Item::OpenReturnPath));
    let (status, runstate, error, lines) = match (outcome, failed) {
        // The destination never started: `migrate` cannot connect and fails in setup
        // [INF: the connect error's text is not modelled].
        (Outcome::Failed { stage: Stage::Startup, .. }, _) => (MigrationStatus::Failed, RunState::Running, None, Vec::new()),
        // migration_completion → COMPLETED; migration_iteration_finish → POSTMIGRATE. A crash
        // after the completion is the destination's alone.
        (Outcome::Completed { .. } | Outcome::RuntimeCrash { .. }, _) | (_, None) => (MigrationStatus::Completed, RunState::Postmigrate, None, Vec::new()),
        (_, Some(f)) if !return_path && sent_everything(items, f, outcome) => (MigrationStatus::Completed, RunState::Postmigrate, None, Vec::new()),
        // A file error in POSTCOPY_ACTIVE → postcopy_pause (migration_detect_error); the VM,
        // stopped by postcopy_start, is never restarted. A destination that pauses itself
        // (placement failed after RUN: postcopy_pause_incoming) closes the socket without an
        // error message: "Channel error" (qemu_file_get_error_obj).
        (_, Some(f)) if entered_postcopy(items, f, outcome) => {
            let error = match outcome {
                Outcome::PostcopyFailed { .. } => "Channel error: Input/output error".to_string(),
                other => first_error(other, return_path),
            };
            (MigrationStatus::PostcopyPaused, RunState::FinishMigrate, Some(error), pause_lines())
        }
        // Any other file error → FAILED (migration_detect_error); migration_iteration_finish
        // restarts a VM that was stopped for the switchover; migration_cleanup prints the
        // stored error after the iteration's line.
        (other, Some(_)) => {
            let error = first_error(other, return_path);
            let lines = vec!["failed to save SaveStateEntry with id(name): 1(ram): -5".into(), error.clone()];
            (MigrationStatus::Failed, RunState::Running, Some(error), lines)
        }
    };
    SourceFate { status, runstate, error, lines, cancel: cancel_reply(status), cont: cont_reply(runstate) }
}

impl fmt::Display for SourceFate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "source: status {}, runstate {}", self.status.name(), self.runstate.name())?;
        if let Some(e) = &self.error {
            write!(f, ", error '{e}'")?;
        }
        writeln!(f, "; migrate_cancel: {}; cont: {}", self.cancel, self.cont)?;
        if !self.lines.is_empty() {
            writeln!(f, "source stderr:")?;
            for l in &self.lines {
                writeln!(f, "  {}{l}", crate::migration::outcome::QEMU_PREFIX)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::PageKind;
    use crate::migration::outcome::FaultSite;
    use crate::units::Bytes;

    /// A small section (header, setup, early or late section: no page data) stands in as a PING.
    fn small() -> Item {
        Item::Ping(0)
    }

    fn pages(offset: u64, len: u64) -> Item {
        Item::Ram { block: 0, offset: Bytes::mib(offset), len: Bytes::mib(len), kind: PageKind::Normal }
    }

    fn failed() -> Outcome {
        Outcome::Failed { stage: Stage::EarlySection("0000:00:03.0/virtio-mem-device-early".into()), lines: vec![] }
    }

    fn crashed_at(offset: Bytes) -> Outcome {
        Outcome::Crashed { stage: Stage::RamLoad, site: FaultSite { block: "0000:00:03.0/mem0".into(), offset }, lines: vec![] }
    }

    fn postcopy(before_switch: Vec<Item>) -> Vec<Item> {
        let mut items = vec![small(), Item::OpenReturnPath, Item::PostcopyAdvise, small(), small()];
        items.extend(before_switch);
        items.extend([Item::RamDiscard { block: 0, ranges: vec![] }, Item::Listen, small(), Item::Run, pages(0, 256), Item::Eof]);
        items
    }

    #[test]
    fn a_precopy_destination_that_fails_leaves_the_guest_running_on_the_source() {
        let items = vec![small(), small(), small(), pages(0, 256), small(), Item::Eof];
        let f = source_fate(&items, Some(2), &failed());
        assert_eq!((f.status, f.runstate), (MigrationStatus::Failed, RunState::Running));
        assert_eq!(f.error.as_deref(), Some("Unable to write to socket: Broken pipe"));
        assert_eq!((f.cancel.clone(), f.cont.clone()), (Reply::Ok, Reply::Ok));
        // A SIGBUS inside the page run: the rest of the run is still unsent, the source fails.
        let f = source_fate(&items, Some(3), &crashed_at(Bytes::mib(64)));
        assert_eq!(f.status, MigrationStatus::Failed);
        // On the run's last page the source had written everything and completed.
        let f = source_fate(&items, Some(3), &crashed_at(Bytes((256 << 20) - 4096)));
        assert_eq!((f.status, f.runstate, f.cont), (MigrationStatus::Completed, RunState::Postmigrate, Reply::Ok));
    }

    #[test]
    fn postcopy_started_at_once_pauses_the_source_when_the_early_section_fails() {
        let items = postcopy(vec![]);
        let f = source_fate(&items, Some(4), &failed());
        assert_eq!((f.status, f.runstate), (MigrationStatus::PostcopyPaused, RunState::FinishMigrate));
        assert_eq!(f.error.as_deref(), Some("Sibling indicated error 1"));
        assert_eq!(f.cancel, Reply::Error("Postcopy migration in progress, cannot cancel.".into()));
        assert_eq!(f.cont, Reply::Error("Migration is not finalized yet".into()));
        assert_eq!(f.lines.last().map(String::as_str), Some("Detected IO failure for postcopy. Migration paused."));
    }

    #[test]
    fn postcopy_started_after_pages_fails_back_to_the_source_when_the_early_section_fails() {
        let items = postcopy(vec![pages(0, 128)]);
        let f = source_fate(&items, Some(4), &failed());
        assert_eq!((f.status, f.runstate, f.cont), (MigrationStatus::Failed, RunState::Running, Reply::Ok));
        assert_eq!(f.lines, vec!["failed to save SaveStateEntry with id(name): 1(ram): -5".to_string(), "Sibling indicated error 1".into()]);
        // The destination dies in the last pre-switch run, past its last page: switched already.
        let f = source_fate(&items, Some(5), &crashed_at(Bytes((128 << 20) - 4096)));
        assert_eq!(f.status, MigrationStatus::PostcopyPaused);
        assert_eq!(f.error.as_deref(), Some("Unable to read from socket: Connection reset by peer"));
    }

    #[test]
    fn a_destination_that_pauses_after_run_leaves_the_source_paused_on_a_channel_error() {
        let items = postcopy(vec![]);
        let out = Outcome::PostcopyFailed { stage: Stage::PostcopyPlacement, lines: vec![] };
        let f = source_fate(&items, Some(items.len() - 2), &out);
        assert_eq!((f.status, f.error.as_deref()), (MigrationStatus::PostcopyPaused, Some("Channel error: Input/output error")));
    }
}
