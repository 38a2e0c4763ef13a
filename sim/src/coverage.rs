//! Coverage: the decision points a run reaches, read off its structured trace and its result.
//! Each guest request × the device's answer on each side (`virtio_mem_handle_request`'s
//! branches: ACK, NACK, BUSY, ERROR), each `requested-size` change taken or refused, each
//! competitor strike, cancel and retry, each kind of stream item the destination loaded (early
//! or late plug state), each outcome × stage, outcome × fault kind, source status, verdict and
//! QEMU hazard. A run's points are a 256-bit set (no allocation); a campaign counts them.

use std::sync::OnceLock;

use vmemsim_model::migration::item::Item;
use vmemsim_model::migration::outcome::Stage;
use vmemsim_model::migration::source_fate::MigrationStatus;
use vmemsim_model::migration::verdict::Verdict;
use vmemsim_model::{OutcomeClass, Request, Response};

use crate::engine::Sim;
use crate::gen::FaultKind;
use crate::hazards::Hazard;
use crate::scenario::DrainPoint;
use crate::trace::{Side, Step};

/// The points a run reached.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Points([u64; 4]);

impl Points {
    pub fn set(&mut self, p: usize) {
        assert!(p < COUNT, "point {p} out of range");
        self.0[p / 64] |= 1 << (p % 64);
    }

    pub fn has(&self, p: usize) -> bool {
        self.0[p / 64] & (1 << (p % 64)) != 0
    }

    /// The points, ascending.
    pub fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        (0..COUNT).filter(|&p| self.has(p))
    }
}

const SIDES: [Side; 2] = [Side::Source, Side::Destination];
/// The answers QEMU gives each request, per its handlers: `virtio_mem_state_change_request`
/// (PLUG: ERROR, NACK, BUSY, ACK; UNPLUG: ERROR, BUSY, ACK), `virtio_mem_unplug_all_request`
/// (BUSY, ACK), `virtio_mem_state_request` (ERROR, ACK with the state). Any other pair lands
/// on one point, "answered as QEMU never does", that no campaign may reach.
const ANSWERS: [(&str, &[&str]); 4] =
    [("plug", &["ack", "nack", "busy", "error"]), ("unplug", &["ack", "busy", "error"]), ("unplug-all", &["ack", "busy"]), ("state", &["ack-state", "error"])];
const ANSWERS_PER_SIDE: usize = 4 + 3 + 2 + 2;
const DRAINS: [DrainPoint; 3] = [DrainPoint::AfterEarly, DrainPoint::Listen, DrainPoint::End];
const ITEMS: [&str; 15] = [
    "header",
    "open-return-path",
    "ping",
    "postcopy-advise",
    "ram-setup",
    "early-section",
    "ram-pages",
    "ram-zero-pages",
    "switchover-start",
    "postcopy-ram-discard",
    "postcopy-listen",
    "late-section",
    "late-section-with-plug-state",
    "postcopy-run",
    "eof",
];
const STAGES: [&str; 13] = [
    "startup",
    "header",
    "postcopy advise",
    "ram setup",
    "early section",
    "RAM load",
    "postcopy RAM discard",
    "postcopy listen",
    "device section",
    "postcopy page placement",
    "postcopy run",
    "end of stream",
    "guest run time",
];
/// The classes that end at a stage (all but completed).
const FAILING: [OutcomeClass; 4] = [OutcomeClass::Failed, OutcomeClass::Crashed, OutcomeClass::PostcopyFailed, OutcomeClass::RuntimeCrash];
const STATUSES: [MigrationStatus; 6] = [
    MigrationStatus::Completed,
    MigrationStatus::Failed,
    MigrationStatus::PostcopyPaused,
    MigrationStatus::Device,
    MigrationStatus::Cancelling,
    MigrationStatus::Cancelled,
];

const REQUEST_AT: usize = 0;
const UNEXPECTED_AT: usize = REQUEST_AT + SIDES.len() * ANSWERS_PER_SIDE;
const RESIZE_AT: usize = UNEXPECTED_AT + 1;
const COMPETITOR_AT: usize = RESIZE_AT + SIDES.len() * 2;
const CANCEL_AT: usize = COMPETITOR_AT + DRAINS.len() * 3;
const ITEM_AT: usize = CANCEL_AT + 1;
const COMPLETED_AT: usize = ITEM_AT + ITEMS.len();
const STAGE_AT: usize = COMPLETED_AT + 1;
const FAULT_AT: usize = STAGE_AT + FAILING.len() * STAGES.len();
const STATUS_AT: usize = FAULT_AT + OutcomeClass::ALL.len() * FaultKind::ALL.len();
const VERDICT_AT: usize = STATUS_AT + STATUSES.len();
const HAZARD_AT: usize = VERDICT_AT + Verdict::ALL.len();
/// How many points there are.
pub const COUNT: usize = HAZARD_AT + Hazard::ALL.len();
const _: () = assert!(COUNT <= 256, "Points holds 256");

/// A point's name and the group the table lists it under.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Point {
    pub group: &'static str,
    pub name: String,
}

fn side_name(s: Side) -> &'static str {
    match s {
        Side::Source => "the source",
        Side::Destination => "the destination",
    }
}

fn drain_name(d: DrainPoint) -> &'static str {
    match d {
        DrainPoint::AfterEarly => "after the early section",
        DrainPoint::Listen => "at listen",
        DrainPoint::End => "at the end",
    }
}

/// Every point, in table order (its index is its number).
pub fn points() -> &'static [Point] {
    static ALL: OnceLock<Vec<Point>> = OnceLock::new();
    ALL.get_or_init(|| {
        let mut v = Vec::with_capacity(COUNT);
        let mut add = |group: &'static str, name: String| v.push(Point { group, name });
        for s in SIDES {
            for (r, answers) in ANSWERS {
                for a in answers {
                    add("guest request", format!("{r} on {} -> {a}", side_name(s)));
                }
            }
        }
        add("guest request", "answered as QEMU never does".to_string());
        for s in SIDES {
            add("requested-size", format!("taken on {}", side_name(s)));
            add("requested-size", format!("refused on {}", side_name(s)));
        }
        for d in DRAINS {
            add("competitor", format!("takes memory {}", drain_name(d)));
            add("competitor", format!("finds nothing left {}", drain_name(d)));
            add("competitor", format!("finds no limit {}", drain_name(d)));
        }
        add("manager", "migrate_cancel and a retry".to_string());
        for i in ITEMS {
            add("stream item", i.to_string());
        }
        add("outcome at stage", "completed".to_string());
        for c in FAILING {
            for s in STAGES {
                add("outcome at stage", format!("{c} at {s}"));
            }
        }
        for c in OutcomeClass::ALL {
            for k in FaultKind::ALL {
                add("outcome with fault kind", format!("{c} with {}", k.name()));
            }
        }
        for s in STATUSES {
            add("source ends", s.name().to_string());
        }
        for v in Verdict::ALL {
            add("verdict", v.name().to_string());
        }
        for h in Hazard::ALL {
            add("QEMU hazard", h.name().to_string());
        }
        assert_eq!(v.len(), COUNT, "the offsets and the names agree");
        v
    })
}

impl Point {
    /// `group: name`, unique among the points.
    pub fn key(&self) -> String {
        format!("{}: {}", self.group, self.name)
    }
}

/// The number of the point whose key ([`Point::key`]) is `key`.
pub fn find(key: &str) -> Option<usize> {
    points().iter().position(|p| p.key() == key)
}

/// The point of a request and its answer on one side (see [`ANSWERS`]).
fn request_point(side: Side, req: Request, resp: Response) -> usize {
    let (r, name) = match req {
        Request::Plug { .. } => (0, "plug"),
        Request::Unplug { .. } => (1, "unplug"),
        Request::UnplugAll => (2, "unplug-all"),
        Request::State { .. } => (3, "state"),
    };
    debug_assert_eq!(ANSWERS[r].0, name);
    let answer = match resp {
        Response::Ack => "ack",
        Response::AckState(_) => "ack-state",
        Response::Nack => "nack",
        Response::Busy => "busy",
        Response::Error => "error",
    };
    let before: usize = ANSWERS[..r].iter().map(|(_, a)| a.len()).sum();
    match ANSWERS[r].1.iter().position(|&a| a == answer) {
        Some(i) => REQUEST_AT + side_index(side) * ANSWERS_PER_SIDE + before + i,
        None => UNEXPECTED_AT,
    }
}

fn side_index(s: Side) -> usize {
    match s {
        Side::Source => 0,
        Side::Destination => 1,
    }
}

fn drain_index(d: DrainPoint) -> usize {
    match d {
        DrainPoint::AfterEarly => 0,
        DrainPoint::Listen => 1,
        DrainPoint::End => 2,
    }
}

fn item_index(i: &Item) -> usize {
    match i {
        Item::Header { .. } => 0,
        Item::OpenReturnPath => 1,
        Item::Ping(_) => 2,
        Item::PostcopyAdvise => 3,
        Item::RamSetup { .. } => 4,
        Item::Early(_) => 5,
        Item::Ram { kind: vmemsim_model::host::PageKind::Normal, .. } => 6,
        Item::Ram { kind: vmemsim_model::host::PageKind::Zero, .. } => 7,
        Item::SwitchoverStart => 8,
        Item::RamDiscard { .. } => 9,
        Item::Listen => 10,
        Item::Late(l) if l.plug.is_none() => 11,
        Item::Late(_) => 12,
        Item::Run => 13,
        Item::Eof => 14,
    }
}

fn stage_index(s: &Stage) -> usize {
    match s {
        Stage::Startup => 0,
        Stage::Header => 1,
        Stage::Advise => 2,
        Stage::RamSetup => 3,
        Stage::EarlySection(_) => 4,
        Stage::RamLoad => 5,
        Stage::PostcopyDiscard => 6,
        Stage::Listen => 7,
        Stage::LateSection(_) => 8,
        Stage::PostcopyPlacement => 9,
        Stage::Run => 10,
        Stage::Eof => 11,
        Stage::GuestRuntime => 12,
    }
}

fn class_index(c: OutcomeClass) -> usize {
    OutcomeClass::ALL.iter().position(|&x| x == c).expect("ALL lists every class")
}

/// The points a run reached; `faults` are its swarm's fault kinds, `hazards` its QEMU hazards.
pub fn reached(sim: &Sim, faults: &[FaultKind], hazards: &[Hazard]) -> Points {
    let mut p = Points::default();
    let mut loaded = 0usize;
    for e in &sim.trace.entries {
        match e.step {
            Step::Guest { side, req, resp, .. } => p.set(request_point(side, req, resp)),
            Step::Resize { side, .. } => p.set(RESIZE_AT + side_index(side) * 2),
            Step::ResizeRefused { side, .. } => p.set(RESIZE_AT + side_index(side) * 2 + 1),
            Step::Competitor { took, at, .. } => p.set(COMPETITOR_AT + drain_index(at) * 3 + usize::from(took.is_zero())),
            Step::CompetitorNoLimit { at, .. } => p.set(COMPETITOR_AT + drain_index(at) * 3 + 2),
            Step::Cancel => p.set(CANCEL_AT),
            Step::Channel(r) => loaded |= 1 << item_index(sim.trace.item(r)),
            _ => {}
        }
    }
    // The item the run failed on was carried but not loaded: it counts too (its stage does).
    for i in 0..ITEMS.len() {
        if loaded & (1 << i) != 0 {
            p.set(ITEM_AT + i);
        }
    }
    let class = sim.outcome.class();
    match sim.outcome.stage() {
        None => p.set(COMPLETED_AT),
        Some(s) => {
            let c = FAILING.iter().position(|&x| x == class).expect("only completed runs have no stage");
            p.set(STAGE_AT + c * STAGES.len() + stage_index(s));
        }
    }
    for &k in faults {
        let ki = FaultKind::ALL.iter().position(|&x| x == k).expect("ALL lists every kind");
        p.set(FAULT_AT + class_index(class) * FaultKind::ALL.len() + ki);
    }
    let status = STATUSES.iter().position(|&s| s == sim.source.status).expect("STATUSES lists every status");
    p.set(STATUS_AT + status);
    p.set(VERDICT_AT + Verdict::ALL.iter().position(|&v| v == sim.judgement.verdict).expect("ALL lists every verdict"));
    for h in hazards {
        p.set(HAZARD_AT + Hazard::ALL.iter().position(|x| x == h).expect("ALL lists every hazard"));
    }
    p
}

/// A state every campaign of the faithful model of at least [`SOMETIMES_FROM`] runs must reach
/// at least once, on every QEMU release: the states the framework exists to exercise.
/// Unreached, the generator or the swarm lost a part of the space, and the campaign fails. (A
/// variant removes a rule on purpose, e.g. `pre-80` never fails in the early section, so
/// variants are not held to them; a release's own hazards, like 10.0's stuck source, are not
/// here either.)
pub const SOMETIMES: [(&str, &str); 11] = [
    ("outcome at stage: failed at early section", "a destination short of memory fails gracefully in the early section (d71920d425)"),
    ("outcome at stage: crashed at RAM load", "SIGBUS while loading RAM (old machines, prealloc off)"),
    ("outcome at stage: postcopy-failed at postcopy page placement", "a postcopy placement fails after LISTEN"),
    ("outcome at stage: runtime-crash at guest run time", "the restored guest hits SIGBUS"),
    ("guest request: plug on the source -> busy", "a guest request while migrating gets BUSY (virtio_mem_state_change_request)"),
    ("requested-size: taken on the destination", "the manager resizes the restored device"),
    ("competitor: takes memory at listen", "a competitor takes memory at POSTCOPY_LISTEN"),
    ("manager: migrate_cancel and a retry", "a cancelled migration is retried"),
    ("stream item: late-section-with-plug-state", "an old machine's plug state travels in the late section"),
    ("source ends: postcopy-paused", "the source pauses in postcopy"),
    ("verdict: latent-crash", "a completed migration whose guest will die later"),
];

/// The fewest runs from which [`SOMETIMES`] is enforced.
pub const SOMETIMES_FROM: u64 = 10_000;

/// The number of each sometimes assertion's point.
pub fn sometimes_points() -> Vec<(usize, &'static str, &'static str)> {
    SOMETIMES.iter().map(|&(name, why)| (find(name).unwrap_or_else(|| panic!("sometimes '{name}' names no point")), name, why)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_point_has_its_own_name_and_every_sometimes_names_a_point() {
        let names: std::collections::BTreeSet<String> = points().iter().map(Point::key).collect();
        assert_eq!(names.len(), COUNT);
        assert_eq!(sometimes_points().len(), SOMETIMES.len());
        assert_eq!(ANSWERS.iter().map(|(_, a)| a.len()).sum::<usize>(), ANSWERS_PER_SIDE);
    }

    #[test]
    fn each_answer_has_its_point_and_others_share_one() {
        let plug = Request::Plug { addr: vmemsim_model::Gpa(0), nb_blocks: 1 };
        assert_eq!(points()[request_point(Side::Destination, plug, Response::Busy)].name, "plug on the destination -> busy");
        assert_eq!(points()[request_point(Side::Source, Request::State { addr: vmemsim_model::Gpa(0), nb_blocks: 1 }, Response::Error)].name, "state on the source -> error");
        assert_eq!(request_point(Side::Source, Request::UnplugAll, Response::Nack), UNEXPECTED_AT);
        assert_eq!(request_point(Side::Source, plug, Response::AckState(vmemsim_model::BlockState::Plugged)), UNEXPECTED_AT);
    }

    #[test]
    fn points_set_and_iterate() {
        let mut p = Points::default();
        for i in [0, 63, 64, COUNT - 1] {
            p.set(i);
        }
        assert_eq!(p.iter().collect::<Vec<_>>(), vec![0, 63, 64, COUNT - 1]);
        assert!(!p.has(1));
    }
}
