//! The document of `run`, `check` and `replay`: both sides, the migration, the verdict.

use serde::Serialize;
use vmemsim_model::migration::outcome::Stage;
use vmemsim_model::migration::source_fate::{Reply, SourceFate};
use vmemsim_model::{Capacity, Memory, Mode, Outcome, PostcopyStart, QemuProfile};

use super::SCHEMA;
use crate::build::Built;
use crate::engine::Sim;
use crate::load::Loaded;

#[derive(Clone, Debug, Serialize)]
pub struct RunDoc {
    pub schema: &'static str,
    /// `run`, `check` or `replay`.
    pub command: &'static str,
    /// `model`: this document; `run --backend real` prints a [`RealRunDoc`].
    pub backend: &'static str,
    pub file: String,
    pub scenario: String,
    pub variant: String,
    pub migration: MigrationDoc,
    pub source: SourceDoc,
    pub destination: DestinationDoc,
    pub verdict: VerdictDoc,
    pub violations: Vec<ViolationDoc>,
    /// 16 hex digits.
    pub trace_hash: String,
    /// Every step, with `--trace` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace: Option<Vec<String>>,
    /// `null` when the file has no `[expect]`.
    pub expectation: Option<ExpectationDoc>,
    pub exit_code: u8,
}

#[derive(Clone, Debug, Serialize)]
pub struct MigrationDoc {
    /// `precopy` or `postcopy`.
    pub mode: &'static str,
    /// When `migrate-start-postcopy` is sent: `{"percent": P}` or `{"after_bytes": B}`.
    pub postcopy_start: Option<PostcopyStartDoc>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PostcopyStartDoc {
    Percent(u8),
    AfterBytes(u64),
}

#[derive(Clone, Debug, Serialize)]
pub struct MemdevDoc {
    pub id: String,
    /// The backend kind, e.g. `hugetlbfs`, `memfd`, `anonymous`.
    pub kind: String,
    pub page_size_bytes: u64,
    /// Main RAM (`-machine memory-backend=`) is on it.
    pub main: bool,
    /// Every limit its pages are charged to.
    pub limits: Vec<LimitDoc>,
}

#[derive(Clone, Debug, Serialize)]
pub struct LimitDoc {
    /// e.g. `hugetlbfs mount /dev/hugepages`, `free 2 MiB huge pages`.
    pub limit: String,
    /// What is left; `null`: unlimited.
    pub capacity_bytes: Option<u64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct DeviceDoc {
    pub id: String,
    pub pci: String,
    pub memdev: String,
    pub region_bytes: u64,
    /// `null` on the destination: QEMU's default for its memory.
    pub block_bytes: Option<u64>,
    pub requested_bytes: u64,
    /// The source's plugged size when migration starts; `null` on the destination.
    pub plugged_bytes: Option<u64>,
    pub prealloc: bool,
    /// `null`: the machine type's default.
    pub early_migration: Option<bool>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ReplyDoc {
    pub ok: bool,
    /// QEMU's error text when refused.
    pub error: Option<String>,
}

impl From<&Reply> for ReplyDoc {
    fn from(r: &Reply) -> ReplyDoc {
        match r {
            Reply::Ok => ReplyDoc { ok: true, error: None },
            Reply::Error(e) => ReplyDoc { ok: false, error: Some(e.clone()) },
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct StateDoc {
    pub status: String,
    pub runstate: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct SourceDoc {
    pub qemu: String,
    pub machine: String,
    pub memory: Vec<MemdevDoc>,
    pub devices: Vec<DeviceDoc>,
    /// Its final `MigrationStatus`, e.g. `failed`, `postcopy-paused`.
    pub status: String,
    pub runstate: String,
    /// `error-desc` of `query-migrate`.
    pub error: Option<String>,
    /// With QEMU's `qemu-system-x86_64: ` prefix.
    pub stderr: Vec<String>,
    pub migrate_cancel: ReplyDoc,
    pub after_cancel: StateDoc,
    /// `cont` after the cancel.
    pub cont: ReplyDoc,
}

#[derive(Clone, Debug, Serialize)]
pub struct StageDoc {
    /// A stable name: `startup`, `header`, `advise`, `ram-setup`, `early-section`, `ram-load`,
    /// `postcopy-discard`, `listen`, `late-section`, `postcopy-placement`, `run`, `eof`,
    /// `guest-runtime`.
    pub name: &'static str,
    /// The section's idstr for `early-section` and `late-section`.
    pub section: Option<String>,
    /// As the human form prints it.
    pub text: String,
}

impl From<&Stage> for StageDoc {
    fn from(s: &Stage) -> StageDoc {
        let (name, section) = match s {
            Stage::Startup => ("startup", None),
            Stage::Header => ("header", None),
            Stage::Advise => ("advise", None),
            Stage::RamSetup => ("ram-setup", None),
            Stage::EarlySection(id) => ("early-section", Some(id.clone())),
            Stage::RamLoad => ("ram-load", None),
            Stage::PostcopyDiscard => ("postcopy-discard", None),
            Stage::Listen => ("listen", None),
            Stage::LateSection(id) => ("late-section", Some(id.clone())),
            Stage::PostcopyPlacement => ("postcopy-placement", None),
            Stage::Run => ("run", None),
            Stage::Eof => ("eof", None),
            Stage::GuestRuntime => ("guest-runtime", None),
        };
        StageDoc { name, section, text: s.to_string() }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct FaultDoc {
    /// The RAM block's idstr.
    pub block: String,
    pub offset: u64,
    /// As `[expect] fault` writes it: `block+0xOFFSET`.
    pub text: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct OutcomeDoc {
    /// `completed`, `failed`, `crashed`, `postcopy-failed` or `runtime-crash`.
    pub class: String,
    /// QEMU's exit status (1 for a graceful failure); `null` while it runs or when a signal
    /// ended it.
    pub exit_status: Option<u8>,
    /// `SIGBUS` when a signal killed it.
    pub signal: Option<&'static str>,
    /// Where it ended; `null` for a completed migration.
    pub stage: Option<StageDoc>,
    pub fault: Option<FaultDoc>,
    /// Why a run-time fault could not be served.
    pub detail: Option<String>,
    /// With QEMU's `qemu-system-x86_64: ` prefix.
    pub stderr: Vec<String>,
}

impl From<&Outcome> for OutcomeDoc {
    fn from(o: &Outcome) -> OutcomeDoc {
        let (exit_status, signal, fault, detail) = match o {
            Outcome::Completed { .. } | Outcome::PostcopyFailed { .. } => (None, None, None, None),
            Outcome::Failed { .. } => (Some(1), None, None, None),
            Outcome::Crashed { site, .. } => (None, Some("SIGBUS"), Some(site), None),
            Outcome::RuntimeCrash { site, why, .. } => (None, Some("SIGBUS"), Some(site), Some(why.clone())),
        };
        let fault = fault.map(|s| FaultDoc { block: s.block.clone(), offset: s.offset.0, text: s.text() });
        OutcomeDoc { class: o.class().name().to_string(), exit_status, signal, stage: o.stage().map(StageDoc::from), fault, detail, stderr: o.stderr() }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct DestinationDoc {
    pub qemu: String,
    pub machine: String,
    pub memory: Vec<MemdevDoc>,
    pub devices: Vec<DeviceDoc>,
    pub outcome: OutcomeDoc,
}

#[derive(Clone, Debug, Serialize)]
pub struct VerdictDoc {
    /// `safe`, `recoverable`, `vm-lost` or `latent-crash`.
    pub verdict: String,
    pub safe: bool,
    pub reason: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct ViolationDoc {
    pub property: String,
    pub detail: String,
    /// The index of the trace line where it was detected.
    pub step: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct ExpectationDoc {
    pub met: bool,
    /// One line per difference, as the human form prints them.
    pub differences: Vec<String>,
}

/// The memdevs of a side with their limits (the one-backend form is one memdev).
pub fn memory_doc(memory: &Memory) -> Vec<MemdevDoc> {
    let cap = |c: Capacity| c.limit().map(|b| b.0);
    memory
        .memdevs
        .iter()
        .map(|m| MemdevDoc {
            id: m.id.clone(),
            kind: m.kind.name().to_string(),
            page_size_bytes: m.page_size.0,
            main: memory.main.as_deref() == Some(m.id.as_str()),
            limits: memory.draws(m).iter().flatten().map(|l| LimitDoc { limit: memory.limits[l.0].kind.describe(), capacity_bytes: cap(memory.limits[l.0].capacity) }).collect(),
        })
        .collect()
}

fn source_doc(qemu: &QemuProfile, b: &Built, fate: &SourceFate) -> SourceDoc {
    let devices = b
        .source
        .devices
        .iter()
        .map(|d| DeviceDoc {
            id: d.id().to_string(),
            pci: d.pci().to_string(),
            memdev: d.config().config.memdev.clone(),
            region_bytes: d.region_size().0,
            block_bytes: Some(d.block_size().0),
            requested_bytes: d.requested_size().0,
            plugged_bytes: Some(d.size().0),
            prealloc: d.prealloc(),
            early_migration: Some(d.early_migration()),
        })
        .collect();
    SourceDoc {
        qemu: qemu.version.to_string(),
        machine: b.source.machine.name().to_string(),
        memory: memory_doc(&b.source_memory),
        devices,
        status: fate.status.name().to_string(),
        runstate: fate.runstate.name().to_string(),
        error: fate.error.clone(),
        stderr: fate.lines.iter().map(|l| format!("{}{l}", vmemsim_model::migration::outcome::QEMU_PREFIX)).collect(),
        migrate_cancel: (&fate.cancel).into(),
        after_cancel: StateDoc { status: fate.after_cancel.0.name().to_string(), runstate: fate.after_cancel.1.name().to_string() },
        cont: (&fate.cont).into(),
    }
}

impl RunDoc {
    /// The document of a run; `differences` is `None` when the file has no `[expect]`.
    pub fn new(command: &'static str, l: &Loaded, b: &Built, sim: &Sim, trace: bool, differences: Option<Vec<String>>, exit_code: u8) -> RunDoc {
        let postcopy_start = match b.plan.mode {
            Mode::Precopy => None,
            Mode::Postcopy { start: PostcopyStart::Share(p) } => Some(PostcopyStartDoc::Percent(p)),
            Mode::Postcopy { start: PostcopyStart::After(x) } => Some(PostcopyStartDoc::AfterBytes(x.0)),
        };
        let destination_devices = b
            .destination
            .devices
            .iter()
            .map(|d| DeviceDoc {
                id: d.id.clone(),
                pci: d.pci.clone(),
                memdev: d.memdev.clone(),
                region_bytes: d.region_size.0,
                block_bytes: d.block_size.map(|x| x.0),
                requested_bytes: d.requested_size.0,
                plugged_bytes: None,
                prealloc: d.prealloc,
                early_migration: d.early_migration,
            })
            .collect();
        RunDoc {
            schema: SCHEMA,
            command,
            backend: "model",
            file: l.path.display().to_string(),
            scenario: l.scenario.name.clone(),
            variant: l.scenario.variant.name().to_string(),
            migration: MigrationDoc { mode: if postcopy_start.is_some() { "postcopy" } else { "precopy" }, postcopy_start },
            source: source_doc(&b.source_qemu, b, &sim.source),
            destination: DestinationDoc {
                qemu: b.destination_qemu.version.to_string(),
                machine: b.destination.machine.name().to_string(),
                memory: memory_doc(&b.destination.memory),
                devices: destination_devices,
                outcome: (&sim.outcome).into(),
            },
            verdict: VerdictDoc { verdict: sim.judgement.verdict.name().to_string(), safe: sim.judgement.verdict == vmemsim_model::migration::verdict::Verdict::Safe, reason: sim.judgement.reason.clone() },
            violations: sim.violations.iter().map(|v| ViolationDoc { property: v.property.name().to_string(), detail: v.detail.clone(), step: v.step }).collect(),
            trace_hash: format!("{:016x}", sim.trace_hash),
            trace: trace.then(|| sim.lines(b)),
            expectation: differences.map(|d| ExpectationDoc { met: d.is_empty(), differences: d }),
            exit_code,
        }
    }
}

/// `run --backend real`: the model's outcome beside real memory's.
#[derive(Clone, Debug, Serialize)]
pub struct RealRunDoc {
    pub schema: &'static str,
    pub command: &'static str,
    pub backend: &'static str,
    pub file: String,
    pub scenario: String,
    /// What the run used on this host, for people.
    pub uses: String,
    pub model: OutcomeDoc,
    pub real: OutcomeDoc,
    pub real_elapsed_s: f64,
    pub agree: bool,
    pub differences: Vec<String>,
    pub exit_code: u8,
}

impl RealRunDoc {
    pub fn new(l: &Loaded, uses: String, model: &Outcome, real: &Outcome, real_elapsed_s: f64, differences: Vec<String>) -> RealRunDoc {
        RealRunDoc {
            schema: SCHEMA,
            command: "run",
            backend: "real",
            file: l.path.display().to_string(),
            scenario: l.scenario.name.clone(),
            uses,
            model: model.into(),
            real: real.into(),
            real_elapsed_s,
            agree: differences.is_empty(),
            exit_code: u8::from(!differences.is_empty()),
            differences,
        }
    }
}
