//! The source side of a live migration over a socket: where the source's `MigrationStatus`
//! and runstate end when the destination ends as it did, what the source prints, and what
//! `migrate_cancel` and then `cont` answer there. Read in QEMU's migration/migration.c and
//! monitor/qmp-cmds.c (10.0.2, and the later commits of [`crate::profile`]) and observed on a
//! real QEMU 10.0.2 (every case three times; the project's notes on the source states). What
//! differs by version comes from the [`QemuProfile`].

use std::fmt;

use crate::migration::item::Item;
use crate::migration::outcome::{Outcome, Stage};
use crate::migration::switchover::{meets, unsent_pages, Meets};
use crate::profile::QemuProfile;

/// QEMU's `MigrationStatus` (qapi/migration.json), the states a source rests in.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum MigrationStatus {
    Completed,
    Failed,
    PostcopyPaused,
    /// Left in `device` by a failed `postcopy_start` (10.0.0 to 10.0.4 and 10.1.0).
    Device,
    /// `migrate_cancel` of a source stuck in `device`: nobody moves it on to `cancelled`.
    Cancelling,
    Cancelled,
}

impl MigrationStatus {
    pub fn name(self) -> &'static str {
        match self {
            MigrationStatus::Completed => "completed",
            MigrationStatus::Failed => "failed",
            MigrationStatus::PostcopyPaused => "postcopy-paused",
            MigrationStatus::Device => "device",
            MigrationStatus::Cancelling => "cancelling",
            MigrationStatus::Cancelled => "cancelled",
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

/// Where the source ends, and what an operator's `migrate_cancel` and then `cont` get there.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SourceFate {
    pub status: MigrationStatus,
    pub runstate: RunState,
    /// `error-desc` of `query-migrate`.
    pub error: Option<String>,
    /// The source's stderr lines, without QEMU's prefix.
    pub lines: Vec<String>,
    pub cancel: Reply,
    /// The status and runstate once `migrate_cancel` was answered.
    pub after_cancel: (MigrationStatus, RunState),
    /// `cont` after the cancel.
    pub cont: Reply,
}

/// `qmp_migrate_cancel` → `migration_cancel` → `migrate_fd_cancel`. With
/// [`crate::profile::CANCEL_REFUSED_IN_POSTCOPY`] refused while `migration_in_postcopy()`.
/// Before it, `postcopy-paused` counts as running (`migration_is_running`), so the state
/// moves to CANCELLING, but the migration thread waits in `postcopy_pause` on
/// `postcopy_pause_sem`, which only a recovery posts: the source stays in `cancelling` with
/// the guest stopped [read in 9.x migrate_fd_cancel and postcopy_pause; INF: the patch that
/// would have kicked the semaphore, "migration: Kick postcopy threads on cancel" (v1, Dec
/// 2024), was replaced by the refusal in v3]. A stuck `device` is running too: it moves to
/// CANCELLING and nobody moves it further (cleanup ran already) [observed 10.0.2]. Completed
/// and failed migrations are not running: nothing changes and the answer is success.
fn cancel(status: MigrationStatus, runstate: RunState, qemu: &QemuProfile) -> (Reply, (MigrationStatus, RunState)) {
    match status {
        MigrationStatus::PostcopyPaused if qemu.cancel_refused_in_postcopy => {
            (Reply::Error("Postcopy migration in progress, cannot cancel.".into()), (status, runstate))
        }
        MigrationStatus::PostcopyPaused | MigrationStatus::Device => (Reply::Ok, (MigrationStatus::Cancelling, runstate)),
        MigrationStatus::Completed | MigrationStatus::Failed | MigrationStatus::Cancelling | MigrationStatus::Cancelled => (Reply::Ok, (status, runstate)),
    }
}

/// `qmp_cont` (monitor/qmp-cmds.c): refused in finish-migrate, else `vm_start`.
fn cont_reply(runstate: RunState) -> Reply {
    match runstate {
        RunState::FinishMigrate => Reply::Error("Migration is not finalized yet".into()),
        RunState::Running | RunState::Postmigrate => Reply::Ok,
    }
}

/// Without a return path the source learns nothing but a failed write: once its last write
/// went out it completes (`migration_completion`), whatever the destination does with the
/// rest of the stream [INF: the same socket-buffer reading as [`meets`]].
fn sent_everything(items: &[Item], failed: usize, outcome: &Outcome) -> bool {
    !unsent_pages(items, failed, items.len(), outcome)
}

/// The failed iteration's line (`qemu_savevm_state_iterate`).
const ITERATE_FAILED: &str = "failed to save SaveStateEntry with id(name): 1(ram): -5";

/// The lines `postcopy_pause` and the failed iteration print (`qemu_savevm_state_iterate`,
/// `postcopy_pause`): the same for every destination failure seen.
fn pause_lines() -> Vec<String> {
    vec![ITERATE_FAILED.into(), "Unable to shutdown socket: Bad file descriptor".into(), "Detected IO failure for postcopy. Migration paused.".into()]
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

/// `postcopy_start` failing on a dead destination: "Migration stream errored (pre package)"
/// (the first `qemu_file_get_error` check); the return path's EOF is the stored error
/// [observed 6 of 6 on 10.0.2; INF: the same lines before 10.0]. With
/// [`QemuProfile::postcopy_start_failure_fails`] the source fails and
/// `migration_iteration_finish` restarts the guest; without it the state stays
/// `device`, which `migration_iteration_finish` does not know ("Unknown ending state 13",
/// MigrationStatus numbering of 10.0 and 10.1), and the guest stays stopped.
fn postcopy_start_failed(qemu: &QemuProfile) -> (MigrationStatus, RunState, Option<String>, Vec<String>) {
    let error = "Channel error: Input/output error".to_string();
    let first = "postcopy_start: Migration stream errored (pre package)".to_string();
    if qemu.postcopy_start_failure_fails {
        (MigrationStatus::Failed, RunState::Running, Some(error.clone()), vec![first, error])
    } else {
        (MigrationStatus::Device, RunState::FinishMigrate, Some(error.clone()), vec![first, "migration_iteration_finish: Unknown ending state 13".into(), error])
    }
}

/// A file error outside POSTCOPY_ACTIVE → FAILED (`migration_detect_error`);
/// `migration_iteration_finish` restarts a guest stopped for the switchover;
/// `migration_cleanup` prints the stored error after the iteration's line.
fn failed_back(outcome: &Outcome, return_path: bool) -> (MigrationStatus, RunState, Option<String>, Vec<String>) {
    let error = first_error(outcome, return_path);
    (MigrationStatus::Failed, RunState::Running, Some(error.clone()), vec![ITERATE_FAILED.into(), error])
}

/// The source of QEMU `qemu` when the destination ended as `outcome` after failing on item
/// `failed` (None when it read the whole stream), for a stream with a return path or not
/// (postcopy-ram opens one: `migrate_fd_connect`).
pub fn source_fate(items: &[Item], failed: Option<usize>, outcome: &Outcome, qemu: &QemuProfile) -> SourceFate {
    let return_path = items.iter().any(|i| matches!(i, Item::OpenReturnPath));
    let completed = || (MigrationStatus::Completed, RunState::Postmigrate, None, Vec::new());
    let (status, runstate, error, lines) = match (outcome, failed) {
        // The destination never started: `migrate` cannot connect and fails in setup
        // [INF: the connect error's text is not modelled].
        (Outcome::Failed { stage: Stage::Startup, .. }, _) => (MigrationStatus::Failed, RunState::Running, None, Vec::new()),
        // migration_completion → COMPLETED; migration_iteration_finish → POSTMIGRATE. A crash
        // after the completion is the destination's alone.
        (Outcome::Completed { .. } | Outcome::RuntimeCrash { .. }, _) | (_, None) => completed(),
        (_, Some(f)) if !return_path && sent_everything(items, f, outcome) => completed(),
        (_, Some(f)) => match meets(items, f, outcome) {
            Meets::Precopy => failed_back(outcome, return_path),
            Meets::PostcopyStart => postcopy_start_failed(qemu),
            // With POSTCOPY_DEVICE_STATE the source is in postcopy-device until the package is
            // loaded, and a file error there fails the migration (migration_detect_error).
            Meets::PackageUnloaded if qemu.postcopy_device => failed_back(outcome, return_path),
            // A file error in POSTCOPY_ACTIVE → postcopy_pause (migration_detect_error); the
            // guest, stopped by postcopy_start, is never restarted. A destination that pauses
            // itself (placement failed after RUN: postcopy_pause_incoming) closes the socket
            // without an error message: "Channel error" (qemu_file_get_error_obj).
            Meets::PackageUnloaded | Meets::Postcopy => {
                let error = match outcome {
                    Outcome::PostcopyFailed { .. } => "Channel error: Input/output error".to_string(),
                    other => first_error(other, return_path),
                };
                (MigrationStatus::PostcopyPaused, RunState::FinishMigrate, Some(error), pause_lines())
            }
        },
    };
    let (cancel, after_cancel) = cancel(status, runstate, qemu);
    SourceFate { status, runstate, error, lines, cancel, after_cancel, cont: cont_reply(after_cancel.1) }
}

impl fmt::Display for SourceFate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "source: status {}, runstate {}", self.status.name(), self.runstate.name())?;
        if let Some(e) = &self.error {
            write!(f, ", error '{e}'")?;
        }
        write!(f, "; migrate_cancel: {}", self.cancel)?;
        if self.after_cancel != (self.status, self.runstate) {
            write!(f, " (then {}, {})", self.after_cancel.0.name(), self.after_cancel.1.name())?;
        }
        writeln!(f, "; cont: {}", self.cont)?;
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

    fn q(v: &str) -> QemuProfile {
        QemuProfile::of(v.parse().unwrap())
    }

    fn fate(items: &[Item], failed: usize, outcome: &Outcome) -> SourceFate {
        source_fate(items, Some(failed), outcome, &QemuProfile::default())
    }

    #[test]
    fn a_precopy_destination_that_fails_leaves_the_guest_running_on_the_source() {
        let items = vec![small(), small(), small(), pages(0, 256), small(), Item::Eof];
        let f = fate(&items, 2, &failed());
        assert_eq!((f.status, f.runstate), (MigrationStatus::Failed, RunState::Running));
        assert_eq!(f.error.as_deref(), Some("Unable to write to socket: Broken pipe"));
        assert_eq!((f.cancel.clone(), f.cont.clone()), (Reply::Ok, Reply::Ok));
        // A SIGBUS inside the page run: the rest of the run is still unsent, the source fails.
        let f = fate(&items, 3, &crashed_at(Bytes::mib(64)));
        assert_eq!(f.status, MigrationStatus::Failed);
        // On the run's last page the source had written everything and completed.
        let f = fate(&items, 3, &crashed_at(Bytes((256 << 20) - 4096)));
        assert_eq!((f.status, f.runstate, f.cont), (MigrationStatus::Completed, RunState::Postmigrate, Reply::Ok));
    }

    #[test]
    fn postcopy_started_at_once_pauses_the_source_when_the_early_section_fails() {
        let items = postcopy(vec![]);
        for v in ["10.0.2", "10.0.13", "10.1.1"] {
            let f = source_fate(&items, Some(4), &failed(), &q(v));
            assert_eq!((f.status, f.runstate), (MigrationStatus::PostcopyPaused, RunState::FinishMigrate), "{v}");
            assert_eq!(f.error.as_deref(), Some("Sibling indicated error 1"));
            assert_eq!(f.cancel, Reply::Error("Postcopy migration in progress, cannot cancel.".into()));
            assert_eq!(f.cont, Reply::Error("Migration is not finalized yet".into()));
            assert_eq!(f.lines.last().map(String::as_str), Some("Detected IO failure for postcopy. Migration paused."));
        }
    }

    #[test]
    fn from_10_2_the_source_fails_back_until_the_destination_loaded_the_package() {
        let items = postcopy(vec![]);
        let f = source_fate(&items, Some(4), &failed(), &q("10.2.2"));
        assert_eq!((f.status, f.runstate, f.cancel.clone(), f.cont.clone()), (MigrationStatus::Failed, RunState::Running, Reply::Ok, Reply::Ok));
        // A destination that fails after RUN has loaded the package: paused, as before.
        let out = Outcome::PostcopyFailed { stage: Stage::PostcopyPlacement, lines: vec![] };
        let f = source_fate(&items, Some(items.len() - 2), &out, &q("10.2.2"));
        assert_eq!(f.status, MigrationStatus::PostcopyPaused);
    }

    #[test]
    fn postcopy_started_after_pages_fails_back_to_the_source_when_the_early_section_fails() {
        let items = postcopy(vec![pages(0, 128)]);
        let f = fate(&items, 4, &failed());
        assert_eq!((f.status, f.runstate, f.cont), (MigrationStatus::Failed, RunState::Running, Reply::Ok));
        assert_eq!(f.lines, vec![ITERATE_FAILED.to_string(), "Sibling indicated error 1".into()]);
    }

    #[test]
    fn a_destination_dead_before_postcopy_start_leaves_10_0_2_stuck_in_device() {
        // The destination dies in the last pre-switch run, past its last page.
        let items = postcopy(vec![pages(0, 128)]);
        let dead = crashed_at(Bytes((128 << 20) - 4096));
        let f = fate(&items, 5, &dead);
        assert_eq!((f.status, f.runstate), (MigrationStatus::Device, RunState::FinishMigrate));
        assert_eq!(f.lines[1], "migration_iteration_finish: Unknown ending state 13");
        assert_eq!((f.cancel.clone(), f.after_cancel.0), (Reply::Ok, MigrationStatus::Cancelling));
        assert_eq!(f.cont, Reply::Error("Migration is not finalized yet".into()));
        // 725a9e5f78 (10.0.5, 10.1.1, 10.2) fails it back and restarts the guest.
        for v in ["10.0.5", "10.1.1", "10.2.0"] {
            let f = source_fate(&items, Some(5), &dead, &q(v));
            assert_eq!((f.status, f.runstate, f.cont.clone()), (MigrationStatus::Failed, RunState::Running, Reply::Ok), "{v}");
        }
        assert_eq!(source_fate(&items, Some(5), &dead, &q("10.1.0")).status, MigrationStatus::Device);
    }

    #[test]
    fn before_10_0_a_cancel_of_a_paused_postcopy_hangs_in_cancelling() {
        let items = postcopy(vec![]);
        for v in ["8.2.0", "9.2.4"] {
            let f = source_fate(&items, Some(4), &failed(), &q(v));
            assert_eq!((f.status, f.cancel.clone(), f.after_cancel), (MigrationStatus::PostcopyPaused, Reply::Ok, (MigrationStatus::Cancelling, RunState::FinishMigrate)), "{v}");
            assert_eq!(f.cont, Reply::Error("Migration is not finalized yet".into()));
        }
        // The state was already POSTCOPY_ACTIVE inside postcopy_start: its failure path fails.
        let items = postcopy(vec![pages(0, 128)]);
        let f = source_fate(&items, Some(5), &crashed_at(Bytes((128 << 20) - 4096)), &q("9.2.0"));
        assert_eq!((f.status, f.runstate), (MigrationStatus::Failed, RunState::Running));
    }

    #[test]
    fn a_destination_that_pauses_after_run_leaves_the_source_paused_on_a_channel_error() {
        let items = postcopy(vec![]);
        let out = Outcome::PostcopyFailed { stage: Stage::PostcopyPlacement, lines: vec![] };
        let f = fate(&items, items.len() - 2, &out);
        assert_eq!((f.status, f.error.as_deref()), (MigrationStatus::PostcopyPaused, Some("Channel error: Input/output error")));
    }
}
