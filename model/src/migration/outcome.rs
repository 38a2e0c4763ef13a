//! How a destination ends: completed, failed gracefully, killed by SIGBUS while loading,
//! broken during postcopy, or killed by SIGBUS later, when the guest runs.

use std::fmt;

use crate::units::Bytes;

/// The prefix QEMU puts before every error and warning line.
pub const QEMU_PREFIX: &str = "qemu-system-x86_64: ";

/// Where in the incoming migration something happened.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Stage {
    /// Starting the destination QEMU (realize), before any migration.
    Startup,
    /// The header and configuration section.
    Header,
    /// MIG_CMD_POSTCOPY_ADVISE.
    Advise,
    /// The "ram" setup section (block list).
    RamSetup,
    /// A device's early section, by idstr.
    EarlySection(String),
    /// Loading RAM pages before LISTEN (the precopy path).
    RamLoad,
    /// MIG_CMD_POSTCOPY_RAM_DISCARD.
    PostcopyDiscard,
    /// MIG_CMD_POSTCOPY_LISTEN.
    Listen,
    /// A device's late section, by idstr.
    LateSection(String),
    /// Placing pages with userfaultfd after LISTEN.
    PostcopyPlacement,
    /// MIG_CMD_POSTCOPY_RUN.
    Run,
    /// The end of the stream.
    Eof,
    /// The guest running on the destination after the migration completed.
    GuestRuntime,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stage::Startup => write!(f, "startup"),
            Stage::Header => write!(f, "header"),
            Stage::Advise => write!(f, "postcopy advise"),
            Stage::RamSetup => write!(f, "ram setup"),
            Stage::EarlySection(id) => write!(f, "early section '{id}'"),
            Stage::RamLoad => write!(f, "RAM load"),
            Stage::PostcopyDiscard => write!(f, "postcopy RAM discard"),
            Stage::Listen => write!(f, "postcopy listen"),
            Stage::LateSection(id) => write!(f, "device section '{id}'"),
            Stage::PostcopyPlacement => write!(f, "postcopy page placement"),
            Stage::Run => write!(f, "postcopy run"),
            Stage::Eof => write!(f, "end of stream"),
            Stage::GuestRuntime => write!(f, "guest run time"),
        }
    }
}

/// The class of an outcome, for tables and expectations.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OutcomeClass {
    Completed,
    Failed,
    Crashed,
    PostcopyFailed,
    RuntimeCrash,
}

impl OutcomeClass {
    pub const ALL: [OutcomeClass; 5] = [
        OutcomeClass::Completed,
        OutcomeClass::Failed,
        OutcomeClass::Crashed,
        OutcomeClass::PostcopyFailed,
        OutcomeClass::RuntimeCrash,
    ];

    pub fn name(self) -> &'static str {
        match self {
            OutcomeClass::Completed => "completed",
            OutcomeClass::Failed => "failed",
            OutcomeClass::Crashed => "crashed",
            OutcomeClass::PostcopyFailed => "postcopy-failed",
            OutcomeClass::RuntimeCrash => "runtime-crash",
        }
    }

    pub fn parse(s: &str) -> Option<OutcomeClass> {
        OutcomeClass::ALL.into_iter().find(|c| c.name() == s)
    }
}

impl fmt::Display for OutcomeClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where a SIGBUS hit: the RAM block's idstr and the byte offset in it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FaultSite {
    pub block: String,
    pub offset: Bytes,
}

impl FaultSite {
    /// As a scenario's `[expect] fault` writes it: `block+0xOFFSET`.
    pub fn text(&self) -> String {
        format!("{}+{:#x}", self.block, self.offset.0)
    }
}

/// How the destination ended. `lines` are QEMU's stderr lines without the
/// `qemu-system-x86_64: ` prefix, warnings included, in the order QEMU prints them.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The migration completed and the guest ran without a fault.
    Completed { lines: Vec<String> },
    /// QEMU exited with status 1 after printing `lines`; nothing was lost but the migration.
    Failed { stage: Stage, lines: Vec<String> },
    /// QEMU was killed by SIGBUS while loading the stream.
    Crashed { stage: Stage, site: FaultSite, lines: Vec<String> },
    /// Placing a page after LISTEN failed: the guest already runs on the destination and the
    /// source has stopped, so the VM is lost or paused.
    PostcopyFailed { stage: Stage, lines: Vec<String> },
    /// The migration completed, then the guest touched a page that was never populated and
    /// could not be: SIGBUS at run time.
    RuntimeCrash { site: FaultSite, why: String, lines: Vec<String> },
}

impl Outcome {
    pub fn class(&self) -> OutcomeClass {
        match self {
            Outcome::Completed { .. } => OutcomeClass::Completed,
            Outcome::Failed { .. } => OutcomeClass::Failed,
            Outcome::Crashed { .. } => OutcomeClass::Crashed,
            Outcome::PostcopyFailed { .. } => OutcomeClass::PostcopyFailed,
            Outcome::RuntimeCrash { .. } => OutcomeClass::RuntimeCrash,
        }
    }

    /// Where the SIGBUS hit, for the outcomes a SIGBUS ends.
    pub fn fault_site(&self) -> Option<&FaultSite> {
        match self {
            Outcome::Crashed { site, .. } | Outcome::RuntimeCrash { site, .. } => Some(site),
            _ => None,
        }
    }

    pub fn stage(&self) -> Option<&Stage> {
        match self {
            Outcome::Completed { .. } => None,
            Outcome::Failed { stage, .. } | Outcome::Crashed { stage, .. } | Outcome::PostcopyFailed { stage, .. } => {
                Some(stage)
            }
            Outcome::RuntimeCrash { .. } => Some(&Stage::GuestRuntime),
        }
    }

    pub fn lines(&self) -> &[String] {
        match self {
            Outcome::Completed { lines }
            | Outcome::Failed { lines, .. }
            | Outcome::Crashed { lines, .. }
            | Outcome::PostcopyFailed { lines, .. }
            | Outcome::RuntimeCrash { lines, .. } => lines,
        }
    }

    /// The stderr QEMU prints, each line with its prefix.
    pub fn stderr(&self) -> Vec<String> {
        self.lines().iter().map(|l| format!("{QEMU_PREFIX}{l}")).collect()
    }
}

/// A readable, multi-line report: class, stage, fault site, then QEMU's stderr.
impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Completed { .. } => writeln!(f, "outcome: completed")?,
            Outcome::Failed { stage, .. } => writeln!(f, "outcome: failed gracefully (exit status 1) at {stage}")?,
            Outcome::Crashed { stage, site, .. } => writeln!(
                f,
                "outcome: crashed: killed by SIGBUS at {stage}, RAM block '{}' offset {:#x}",
                site.block, site.offset.0
            )?,
            Outcome::PostcopyFailed { stage, .. } => {
                writeln!(f, "outcome: postcopy failed at {stage}: the guest already runs on the destination")?
            }
            Outcome::RuntimeCrash { site, why, .. } => writeln!(
                f,
                "outcome: runtime crash: migration completed, then SIGBUS when the guest touched RAM block '{}' offset {:#x}\n  why: {why}",
                site.block, site.offset.0
            )?,
        }
        if !self.lines().is_empty() {
            writeln!(f, "stderr:")?;
            for l in self.stderr() {
                writeln!(f, "  {l}")?;
            }
        }
        Ok(())
    }
}
