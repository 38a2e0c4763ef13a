//! QEMU's own hazards: where a faithful run shows that QEMU, not the model, leaves a migration
//! in a state nobody can leave, or loses the guest. They are not property violations (the
//! model is right to predict them); campaigns count them per QEMU version, and the ones found
//! ship as scenarios in `scenarios/hazards/`.

use std::fmt;

use vmemsim_model::migration::source_fate::MigrationStatus;
use vmemsim_model::migration::verdict::Verdict;
use vmemsim_model::Outcome;

use crate::engine::Sim;

#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Hazard {
    /// Liveness: the source rests where QEMU cannot move it on. `device` left by a failed
    /// `postcopy_start` (cancel only reaches `cancelling`), or `postcopy-paused` with no
    /// destination to recover to (postcopy recovery, `migrate-recover` and `migrate
    /// resume=true`, needs the destination's process, which exited or died).
    SourceStuck,
    /// Guest survival: no side can run the guest (verdict vm-lost).
    GuestLost,
}

impl Hazard {
    pub const ALL: [Hazard; 2] = [Hazard::SourceStuck, Hazard::GuestLost];

    pub fn name(self) -> &'static str {
        match self {
            Hazard::SourceStuck => "source-stuck",
            Hazard::GuestLost => "guest-lost",
        }
    }
}

impl fmt::Display for Hazard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Whether the destination process still exists to take part in a postcopy recovery.
fn destination_alive(outcome: &Outcome) -> bool {
    matches!(outcome, Outcome::PostcopyFailed { .. } | Outcome::Completed { .. })
}

/// The hazards a run shows.
pub fn hazards(sim: &Sim) -> Vec<Hazard> {
    let mut out = Vec::new();
    let stuck = match sim.source.after_cancel.0 {
        MigrationStatus::Device | MigrationStatus::Cancelling => true,
        MigrationStatus::PostcopyPaused => !destination_alive(&sim.outcome),
        MigrationStatus::Completed | MigrationStatus::Failed | MigrationStatus::Cancelled => false,
    };
    if stuck {
        out.push(Hazard::SourceStuck);
    }
    if sim.judgement.verdict == Verdict::VmLost {
        out.push(Hazard::GuestLost);
    }
    out
}
