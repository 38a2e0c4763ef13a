//! One verdict over both sides of a migration: does the VM survive, and where.

use std::fmt;

use crate::migration::outcome::Outcome;
use crate::migration::source_fate::{MigrationStatus, RunState, SourceFate};
use crate::units::Bytes;

/// The VM's fate, for people and scripts.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Verdict {
    /// The VM runs on exactly one side with all its memory backed.
    Safe,
    /// The migration failed; the VM keeps running on the source (or `cont` resumes it there).
    Recoverable,
    /// No side can run the guest.
    VmLost,
    /// It runs now, but memory it may touch cannot be backed.
    LatentCrash,
}

impl Verdict {
    pub const ALL: [Verdict; 4] = [Verdict::Safe, Verdict::Recoverable, Verdict::VmLost, Verdict::LatentCrash];

    pub fn name(self) -> &'static str {
        match self {
            Verdict::Safe => "safe",
            Verdict::Recoverable => "recoverable",
            Verdict::VmLost => "vm-lost",
            Verdict::LatentCrash => "latent-crash",
        }
    }

    pub fn parse(s: &str) -> Option<Verdict> {
        Verdict::ALL.into_iter().find(|v| v.name() == s)
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The verdict with the side the VM is on (or was lost on) and why, in QEMU's words.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Judgement {
    pub verdict: Verdict,
    pub reason: String,
}

impl fmt::Display for Judgement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.verdict, self.reason)
    }
}

/// Plugged memory of a completed migration that is not backed, beside what the destination's
/// backend has left for it.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Unbacked {
    pub plugged_unpopulated: Bytes,
    /// None: the backend is unlimited.
    pub left: Option<Bytes>,
}

impl Unbacked {
    fn short(&self) -> bool {
        self.left.is_some_and(|l| self.plugged_unpopulated > l)
    }
}

fn dest_end(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Failed { stage, .. } => format!("the destination exited with status 1 at {stage}"),
        Outcome::Crashed { stage, .. } => format!("the destination died of SIGBUS at {stage}"),
        Outcome::PostcopyFailed { .. } => "the destination paused (postcopy-paused): its guest waits for pages it cannot place".into(),
        Outcome::RuntimeCrash { .. } => "the destination died of SIGBUS when the guest touched memory after the migration".into(),
        Outcome::Completed { .. } => "the destination runs the guest".into(),
    }
}

/// Judges both sides: the destination's outcome, the source's fate, and (after a completed
/// migration) plugged memory that the destination could not back if the guest touched it.
pub fn judge(outcome: &Outcome, source: &SourceFate, unbacked: Option<Unbacked>) -> Judgement {
    let (verdict, reason) = match (outcome, source.status, source.runstate) {
        (Outcome::Completed { .. }, _, _) => match unbacked.filter(Unbacked::short) {
            Some(u) => (
                Verdict::LatentCrash,
                format!(
                    "the guest runs on the destination, but {} of its plugged memory is not populated and the backend has {} left: the guest's first write there is a SIGBUS",
                    u.plugged_unpopulated,
                    u.left.unwrap_or_default()
                ),
            ),
            None => (Verdict::Safe, "the guest runs on the destination with all its plugged memory backed; the source is completed (postmigrate)".into()),
        },
        (_, _, RunState::Running) => (
            Verdict::Recoverable,
            format!(
                "{}; the guest keeps running on the source (status {}{})",
                dest_end(outcome),
                source.status.name(),
                source.error.as_ref().map_or(String::new(), |e| format!(", '{e}'"))
            ),
        ),
        (Outcome::RuntimeCrash { .. }, _, _) => (
            Verdict::VmLost,
            format!("{}; the source completed (postmigrate): `cont` there resumes a copy of the guest from before the switchover", dest_end(outcome)),
        ),
        (_, MigrationStatus::Completed, RunState::Postmigrate) => (
            Verdict::Recoverable,
            format!("{}, after the source had sent everything and completed (postmigrate): `cont` on the source resumes the guest there", dest_end(outcome)),
        ),
        (_, status, _) => {
            let after = if source.after_cancel.0 != status { format!(", then {}", source.after_cancel.0.name()) } else { String::new() };
            // postcopy_pause_incoming keeps a paused destination's process: postcopy recovery
            // (migrate-recover there, migrate resume=true here) is the only way on.
            let recovery = if matches!(outcome, Outcome::PostcopyFailed { .. }) {
                "; only a postcopy recovery (migrate-recover on the destination, migrate with resume=true on the source) after memory is freed on the destination host can continue"
            } else {
                ""
            };
            (
                Verdict::VmLost,
                format!(
                    "{}; the source is stopped in {} (migrate_cancel: {}{after}; cont: {}): no side can run the guest{recovery}",
                    dest_end(outcome),
                    status.name(),
                    source.cancel,
                    source.cont
                ),
            )
        }
    };
    Judgement { verdict, reason }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migration::source_fate::{source_fate, Reply};
    use crate::migration::item::Item;

    fn completed() -> (Outcome, SourceFate) {
        let o = Outcome::Completed { lines: vec![] };
        let s = source_fate(&[Item::Eof], None, &o, &crate::profile::QemuProfile::default());
        (o, s)
    }

    #[test]
    fn a_completed_migration_is_safe_unless_plugged_memory_cannot_be_backed() {
        let (o, s) = completed();
        assert_eq!(judge(&o, &s, None).verdict, Verdict::Safe);
        let fits = Unbacked { plugged_unpopulated: Bytes::mib(64), left: Some(Bytes::mib(64)) };
        assert_eq!(judge(&o, &s, Some(fits)).verdict, Verdict::Safe);
        let short = Unbacked { plugged_unpopulated: Bytes::mib(64), left: Some(Bytes::mib(62)) };
        let j = judge(&o, &s, Some(short));
        assert_eq!(j.verdict, Verdict::LatentCrash);
        assert!(j.reason.contains("64 MiB") && j.reason.contains("62 MiB"), "{}", j.reason);
        let unlimited = Unbacked { plugged_unpopulated: Bytes::mib(64), left: None };
        assert_eq!(judge(&o, &s, Some(unlimited)).verdict, Verdict::Safe);
    }

    #[test]
    fn where_the_source_rests_decides_between_recoverable_and_lost() {
        let dest = Outcome::Failed { stage: crate::migration::outcome::Stage::RamLoad, lines: vec![] };
        let running = SourceFate {
            status: MigrationStatus::Failed,
            runstate: RunState::Running,
            error: None,
            lines: vec![],
            cancel: Reply::Ok,
            after_cancel: (MigrationStatus::Failed, RunState::Running),
            cont: Reply::Ok,
        };
        assert_eq!(judge(&dest, &running, None).verdict, Verdict::Recoverable);
        let paused = SourceFate {
            status: MigrationStatus::PostcopyPaused,
            runstate: RunState::FinishMigrate,
            cancel: Reply::Error("Postcopy migration in progress, cannot cancel.".into()),
            after_cancel: (MigrationStatus::PostcopyPaused, RunState::FinishMigrate),
            cont: Reply::Error("Migration is not finalized yet".into()),
            ..running.clone()
        };
        let j = judge(&dest, &paused, None);
        assert_eq!(j.verdict, Verdict::VmLost);
        assert!(j.reason.contains("postcopy-paused") && j.reason.contains("cannot cancel"), "{}", j.reason);
        let completed = SourceFate { status: MigrationStatus::Completed, runstate: RunState::Postmigrate, after_cancel: (MigrationStatus::Completed, RunState::Postmigrate), ..running };
        assert_eq!(judge(&dest, &completed, None).verdict, Verdict::Recoverable, "cont resumes a source that completed");
        let crash = Outcome::RuntimeCrash { site: crate::migration::outcome::FaultSite { block: "b".into(), offset: Bytes::ZERO }, why: String::new(), lines: vec![] };
        assert_eq!(judge(&crash, &completed, None).verdict, Verdict::VmLost);
    }
}
