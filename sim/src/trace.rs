//! The engine's trace as data: one [`Entry`] per step, recorded without allocating, hashed over
//! a stable binary encoding ([`TraceHasher`]) and rendered as text only when a trace is printed,
//! saved or snapshotted ([`render`]).

use vmemsim_model::migration::item::Item;
use vmemsim_model::{Bytes, Request, Response};

use crate::build::Built;
use crate::scenario::DrainPoint;
use crate::trace_setup;

/// Where a guest request or a resize ran.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Side {
    Source,
    Destination,
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Side::Source => "source",
            Side::Destination => "destination",
        }
    }
}

/// Which stream item a channel step carried.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ItemRef {
    /// `attempts[attempt][index]` of [`Trace::attempts`].
    Stream { attempt: u8, index: u32 },
    /// A late section written at completion from the source's state then: [`Trace::lates`].
    Late(u32),
}

/// One step of a run.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// The `i`-th line of the set-up ([`trace_setup::lines`]).
    Setup(u16),
    /// A guest request and the device's response.
    Guest { side: Side, dev: u16, req: Request, resp: Response },
    /// The manager's `requested-size` change that the device took.
    Resize { side: Side, dev: u16, size: Bytes },
    /// The manager's `requested-size` change the device refused: [`Trace::texts`].
    ResizeRefused { side: Side, text: u32 },
    /// The competitor found no limit to take `asked` from.
    CompetitorNoLimit { asked: Bytes, at: DrainPoint },
    /// The competitor took `took` from the destination's limit `limit`.
    Competitor { took: Bytes, limit: u16, at: DrainPoint },
    MigrationStarts,
    Channel(ItemRef),
    Cancel,
    Retry,
    GuestRuns { touched: u64 },
    /// The `i`-th violation of the run.
    Violation(u8),
    /// The outcome's class and stage.
    Outcome,
}

/// A step at its virtual time (µs).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub at: u64,
    pub step: Step,
}

/// A run's steps and what they refer to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Trace {
    pub entries: Vec<Entry>,
    /// The stream of each attempt (a cancelled one, then its retry).
    pub attempts: Vec<Vec<Item>>,
    pub lates: Vec<Item>,
    /// Texts of rare steps (a refused resize).
    pub texts: Vec<String>,
}

impl Trace {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The item a channel step carried.
    pub fn item(&self, r: ItemRef) -> &Item {
        match r {
            ItemRef::Stream { attempt, index } => &self.attempts[usize::from(attempt)][index as usize],
            ItemRef::Late(i) => &self.lates[i as usize],
        }
    }
}

/// A stable 64-bit hash over words: the same on every machine, Rust version and thread count
/// (integer operations only), finished by splitmix64's mixer.
#[derive(Clone, Debug)]
pub struct TraceHasher(u64);

impl Default for TraceHasher {
    fn default() -> Self {
        TraceHasher(0xcbf2_9ce4_8422_2325)
    }
}

impl TraceHasher {
    pub fn word(&mut self, w: u64) {
        self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(0x517c_c1b7_2722_0a95);
    }

    pub fn flag(&mut self, b: bool) {
        self.word(u64::from(b));
    }

    /// Its length, then its bytes in little-endian words.
    pub fn str(&mut self, s: &str) {
        self.word(s.len() as u64);
        for chunk in s.as_bytes().chunks(8) {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            self.word(u64::from_le_bytes(w));
        }
    }

    pub fn finish(&self) -> u64 {
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

fn request_words(h: &mut TraceHasher, req: Request) {
    match req {
        Request::Plug { addr, nb_blocks } => [0, addr.0, u64::from(nb_blocks)].into_iter().for_each(|w| h.word(w)),
        Request::Unplug { addr, nb_blocks } => [1, addr.0, u64::from(nb_blocks)].into_iter().for_each(|w| h.word(w)),
        Request::UnplugAll => h.word(2),
        Request::State { addr, nb_blocks } => [3, addr.0, u64::from(nb_blocks)].into_iter().for_each(|w| h.word(w)),
    }
}

fn response_word(resp: Response) -> u64 {
    match resp {
        Response::Ack => 0,
        Response::AckState(s) => 0x10 | s as u64,
        Response::Nack => 1,
        Response::Busy => 2,
        Response::Error => 3,
    }
}

fn drain_word(at: DrainPoint) -> u64 {
    match at {
        DrainPoint::AfterEarly => 0,
        DrainPoint::Listen => 1,
        DrainPoint::End => 2,
    }
}

/// What an item's trace line shows, as words.
fn item_words(h: &mut TraceHasher, item: &Item) {
    use vmemsim_model::host::PageKind;
    match item {
        Item::Header { machine } => {
            h.word(0);
            h.str(machine);
        }
        Item::OpenReturnPath => h.word(1),
        Item::Ping(n) => {
            h.word(2);
            h.word(u64::from(*n));
        }
        Item::PostcopyAdvise => h.word(3),
        Item::RamSetup { blocks } => {
            h.word(4);
            h.word(blocks.len() as u64);
            for (name, len) in blocks {
                h.str(name);
                h.word(len.0);
            }
        }
        Item::Early(e) => {
            h.word(5);
            h.str(&e.idstr);
            h.word(e.state.size.0);
            h.word(e.state.plug.plugged_blocks().0);
        }
        Item::Ram { block, offset, len, kind } => {
            [6, *block as u64, offset.0, len.0, matches!(kind, PageKind::Zero) as u64].into_iter().for_each(|w| h.word(w));
        }
        Item::SwitchoverStart => h.word(7),
        Item::RamDiscard { block, ranges } => {
            h.word(8);
            h.word(*block as u64);
            h.word(ranges.len() as u64);
            for (o, l) in ranges {
                h.word(o.0);
                h.word(l.0);
            }
        }
        Item::Listen => h.word(9),
        Item::Late(l) => {
            h.word(10);
            h.str(&l.idstr);
            h.word(l.usable_region_size.0);
            h.word(l.requested_size.0);
            match &l.plug {
                Some(p) => {
                    h.word(1);
                    h.word(p.size.0);
                    h.word(p.plug.plugged_blocks().0);
                }
                None => h.word(0),
            }
        }
        Item::Run => h.word(11),
        Item::Eof => h.word(12),
    }
}

/// The hash of a run's trace: the set-up's fields, then each step's time and data. `violations`
/// and `outcome` are the run's (the steps that name them hash their text).
pub fn hash(b: &Built, t: &Trace, violations: &[crate::Violation], outcome: &vmemsim_model::Outcome) -> u64 {
    let mut h = TraceHasher::default();
    trace_setup::hash(b, &mut h);
    for e in &t.entries {
        h.word(e.at);
        match e.step {
            Step::Setup(i) => h.word(0x100 | u64::from(i)),
            Step::Guest { side, dev, req, resp } => {
                h.word(0x200 | side as u64);
                h.word(u64::from(dev));
                request_words(&mut h, req);
                h.word(response_word(resp));
            }
            Step::Resize { side, dev, size } => {
                h.word(0x300 | side as u64);
                h.word(u64::from(dev));
                h.word(size.0);
            }
            Step::ResizeRefused { side, text } => {
                h.word(0x400 | side as u64);
                h.str(&t.texts[text as usize]);
            }
            Step::CompetitorNoLimit { asked, at } => {
                h.word(0x500 | drain_word(at));
                h.word(asked.0);
            }
            Step::Competitor { took, limit, at } => {
                h.word(0x600 | drain_word(at));
                h.word(took.0);
                h.word(u64::from(limit));
            }
            Step::MigrationStarts => h.word(0x700),
            Step::Channel(r) => {
                h.word(0x800);
                item_words(&mut h, t.item(r));
            }
            Step::Cancel => h.word(0x900),
            Step::Retry => h.word(0xa00),
            Step::GuestRuns { touched } => {
                h.word(0xb00);
                h.word(touched);
            }
            Step::Violation(i) => {
                let v = &violations[usize::from(i)];
                h.word(0xc00);
                h.str(v.property.name());
                h.str(&v.detail);
            }
            Step::Outcome => {
                h.word(0xd00);
                h.str(outcome.class().name());
                match outcome.stage() {
                    Some(s) => {
                        h.word(1);
                        trace_setup::stage_words(&mut h, s);
                    }
                    None => h.word(0),
                }
            }
        }
    }
    h.finish()
}

/// The trace as text, one line per step, as `vmemsim run --trace` prints it.
pub fn render(b: &Built, t: &Trace, violations: &[crate::Violation], outcome: &vmemsim_model::Outcome) -> Vec<String> {
    let setup = trace_setup::lines(b);
    let id = |side: Side, dev: u16| -> &str {
        match side {
            Side::Source => b.source.devices[usize::from(dev)].id(),
            Side::Destination => &b.destination.devices[usize::from(dev)].id,
        }
    };
    t.entries
        .iter()
        .map(|e| {
            let (who, text) = match e.step {
                Step::Setup(i) => ("setup", setup[usize::from(i)].clone()),
                Step::Guest { side, dev, req, resp } => (side.name(), format!("guest {} {req} -> {resp}", id(side, dev))),
                Step::Resize { side, dev, size } => (side.name(), format!("manager {} requested-size {size}", id(side, dev))),
                Step::ResizeRefused { side, text } => (side.name(), format!("manager refused: {}", t.texts[text as usize])),
                Step::CompetitorNoLimit { asked, at } => ("competitor", format!("finds no limit to take {asked} from at {at:?}")),
                Step::Competitor { took, limit, at } => {
                    let what = crate::engine::limit_name(&b.destination.memory.limits[usize::from(limit)].kind);
                    ("competitor", format!("takes {took} from {what} at {at:?}"))
                }
                Step::MigrationStarts => ("source", "migration starts".to_string()),
                Step::Channel(r) => ("channel", t.item(r).to_string()),
                Step::Cancel => ("manager", "migrate_cancel: the first destination is dropped".to_string()),
                Step::Retry => ("manager", "migration retried to a second destination".to_string()),
                Step::GuestRuns { touched } => ("guest", format!("runs on the destination, touched {touched} ranges")),
                Step::Violation(i) => {
                    let v = &violations[usize::from(i)];
                    return format!("t={:>10} property {} violated: {}", e.at, v.property, v.detail);
                }
                Step::Outcome => ("outcome", format!("{} {}", outcome.class(), outcome.stage().map(|s| s.to_string()).unwrap_or_default())),
            };
            format!("t={:>10} {who}: {text}", e.at)
        })
        .collect()
}
