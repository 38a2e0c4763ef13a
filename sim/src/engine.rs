//! The deterministic engine: virtual time, an event queue ordered by (time, sequence), and the
//! actors (source, channel, destination, guest, manager, competitor, fault injector). Every step
//! is a stable trace line and every property is checked as the run goes.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap};

use std::sync::Arc;
use vmemsim_model::PlugMap;
use vmemsim_model::migration::destination::{Destination, PostcopyState};
use vmemsim_model::migration::item::Item;
use vmemsim_model::migration::outcome::{FaultSite, Stage};
use vmemsim_model::migration::source_fate::{source_fate, SourceFate};
use vmemsim_model::migration::verdict::{judge, Judgement, Unbacked, Verdict};
use vmemsim_model::migration::source;
use vmemsim_model::{Bytes, HostMemory, ModelMemory, Outcome, OutcomeClass, Request, Response, Vm};

use crate::build::Built;
use crate::oracle;
use crate::properties::{Property, Violation};
use crate::rng::{Actor, Stream};
use crate::scenario::DrainPoint;
use crate::trace::{self, Entry, ItemRef, Side, Step, Trace};
use crate::trace_setup;

/// Virtual time a cancelled migration waits before it is retried.
const RETRY_DELAY_US: u64 = 1_000;

/// The result of one simulated run.
#[derive(Clone, Debug)]
pub struct Sim {
    pub outcome: Outcome,
    /// Where the source ends (QEMU 10.0.2's rules).
    pub source: SourceFate,
    /// Both sides together: does the VM survive.
    pub judgement: Judgement,
    /// Every step, as data: [`Sim::lines`] renders it.
    pub trace: Trace,
    pub trace_hash: u64,
    /// At most one violation per property: the first.
    pub violations: Vec<Violation>,
}

impl Sim {
    pub fn violates(&self, p: Property) -> bool {
        self.violations.iter().any(|v| v.property == p)
    }

    /// The trace as text, one line per step; `b` is the scenario this run was built from.
    pub fn lines(&self, b: &Built) -> Vec<String> {
        trace::render(b, &self.trace, &self.violations, &self.outcome)
    }

    /// The hash of this run's steps (what `trace_hash` holds); `b` as in [`Sim::lines`].
    pub fn rehash(&self, b: &Built) -> u64 {
        trace::hash(b, &self.trace, &self.violations, &self.outcome)
    }
}

/// Where the guest runs.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Guest {
    Source,
    /// Stopped for switchover: its requests wait.
    Paused,
    Destination,
}

#[derive(Copy, Clone, Debug)]
enum Event {
    Request(usize, Request),
    Resize(usize, Bytes),
}

struct Run<'a> {
    b: &'a Built,
    src: Vm,
    now: u64,
    queue: BinaryHeap<Reverse<(u64, u64, usize)>>,
    events: Vec<Event>,
    trace: Trace,
    violations: Vec<Violation>,
    channel: Stream,
    /// Whether property 6 was checked once on every device; after that, each step checks only
    /// the device it touched (a step changes at most one device's plug state).
    invariants_seen: bool,
    /// Source devices that events touched since the last check of property 5, in order.
    touched_src: BTreeSet<usize>,
    /// A SIGBUS of the restored guest writing memory it had just plugged (`init_on_free`).
    after_restore_crash: Option<Outcome>,
}

/// Where a step changed a device's plug state.
#[derive(Copy, Clone)]
enum Touched {
    Source(usize),
    Destination(usize),
}

impl<'a> Run<'a> {
    fn log(&mut self, step: Step) {
        self.trace.entries.push(Entry { at: self.now, step });
    }

    fn violate(&mut self, property: Property, detail: String) {
        if !self.violations.iter().any(|v| v.property == property) {
            let step = self.trace.len();
            let index = u8::try_from(self.violations.len()).expect("one violation per property");
            self.log(Step::Violation(index));
            self.violations.push(Violation { property, step, detail });
        }
    }

    /// Runs the queued events up to `until` on the side where the guest runs.
    fn run_events(&mut self, until: u64, guest: Guest, dest: &mut Option<Destination<ModelMemory>>, busy_src: bool) {
        if guest == Guest::Paused {
            return;
        }
        while let Some(Reverse((t, _, idx))) = self.queue.peek().copied() {
            if t > until {
                break;
            }
            self.queue.pop();
            let saved = self.now;
            self.now = self.now.max(t);
            let dev = match self.events[idx] {
                Event::Request(dev, _) | Event::Resize(dev, _) => dev,
            };
            // The migration completed and the guest runs on the destination.
            let restored = guest == Guest::Destination && dest.as_ref().is_some_and(|d| d.eof_seen());
            let (side, vm, busy, touched): (Side, &mut Vm, bool, Touched) = match (guest, dest.as_mut()) {
                (Guest::Destination, Some(d)) => {
                    let busy = d.in_incoming_postcopy();
                    (Side::Destination, d.vm_mut(), busy, Touched::Destination(dev))
                }
                _ => (Side::Source, &mut self.src, busy_src, Touched::Source(dev)),
            };
            if let Touched::Source(i) = touched {
                self.touched_src.insert(i);
            }
            let devno = u16::try_from(dev).expect("a scenario has fewer than 65536 devices");
            let step = match self.events[idx] {
                Event::Request(dev, req) => {
                    let resp = vm.request(dev, req, busy);
                    if let (true, true, Request::Plug { addr, nb_blocks }, Response::Ack) = (restored, self.b.init_on_free, req, resp) {
                        self.after_restore_crash = self.after_restore_crash.take().or_else(|| write_plugged(vm, dev, addr, nb_blocks));
                    }
                    Step::Guest { side, dev: devno, req, resp }
                }
                Event::Resize(dev, size) => match vm.devices[dev].set_requested_size(size) {
                    Ok(()) => Step::Resize { side, dev: devno, size },
                    Err(e) => {
                        self.trace.texts.push(e.to_string());
                        Step::ResizeRefused { side, text: (self.trace.texts.len() - 1) as u32 }
                    }
                },
            };
            self.log(step);
            self.now = saved.max(t);
            self.check_invariants(dest.as_ref(), Some(touched));
        }
    }

    /// Property 6 on both sides: every device at the first check (what the scenario's set-up
    /// left), then the device the step touched, so a step costs O(1), not O(devices).
    fn check_invariants(&mut self, dest: Option<&Destination<ModelMemory>>, touched: Option<Touched>) {
        let broken = if !self.invariants_seen {
            self.invariants_seen = true;
            self.src.devices.iter().chain(dest.into_iter().flat_map(|d| d.vm().devices.iter())).find_map(|d| d.check_invariant().err())
        } else {
            match touched {
                Some(Touched::Source(i)) => self.src.devices[i].check_invariant().err(),
                Some(Touched::Destination(i)) => dest.and_then(|d| d.vm().devices[i].check_invariant().err()),
                None => None,
            }
        };
        if let Some(e) = broken {
            self.violate(Property::PluggedSizeInvariant, e);
        }
    }

    /// Property 5 while migrating: the source's plug state is what it was at setup. Only events
    /// change the source, so only the devices they touched since the last check are compared.
    fn check_frozen(&mut self, snapshot: &[(Bytes, Arc<PlugMap>)]) {
        let touched = std::mem::take(&mut self.touched_src);
        let changed = touched
            .into_iter()
            .map(|i| (&self.src.devices[i], &snapshot[i]))
            .find(|(d, (size, plug))| d.size() != *size || d.plug_map() != plug)
            .map(|(d, (size, _))| format!("{} changed from {} to {} plugged while migrating", d.id(), size, d.size()));
        if let Some(c) = changed {
            self.violate(Property::PlugStateFrozen, c);
        }
    }

    fn cost_us(&mut self, item: &Item) -> u64 {
        let bytes = match item {
            Item::Ram { len, .. } => len.0,
            _ => 64,
        };
        let transfer = (bytes as u128 * 1_000_000 / self.b.bandwidth as u128) as u64;
        1 + transfer + self.channel.below(8)
    }
}

fn drain(run: &mut Run, dest: &mut Destination<ModelMemory>, at: DrainPoint) {
    let b = run.b;
    let drains = b.drains.iter().filter(|(p, _)| *p == at).map(|(_, b)| *b);
    // The competitor takes from the first limit the first device's memdev draws from: the
    // older form's one capacity, or (per memdev) its mount, cgroup or huge page pool.
    let target = competitor_target(b);
    for bytes in drains {
        let Some(limit) = target else {
            run.log(Step::CompetitorNoLimit { asked: bytes, at });
            continue;
        };
        let took = dest.vm_mut().host.drain_pool(vmemsim_model::ModelMemory::pool_of(limit), bytes);
        let limit = u16::try_from(limit.0).expect("a scenario has fewer than 65536 limits");
        run.log(Step::Competitor { took, limit, at });
    }
}

/// The limit the competitor takes from: the first limit the first device's memdev draws from
/// (the older form's one capacity, or per memdev its mount, cgroup or huge page pool).
pub fn competitor_target(b: &Built) -> Option<vmemsim_model::LimitId> {
    b.destination.devices.first().and_then(|d| b.destination.memory.first_limit_of(&d.memdev))
}

/// How a trace line or a refusal names a limit of the destination.
pub fn limit_name(kind: &vmemsim_model::LimitKind) -> String {
    match kind {
        vmemsim_model::LimitKind::OneBackend => "the destination's pool".to_string(),
        other => other.describe(),
    }
}

/// Property 4 (a): with postcopy advised, no virtio-mem page is present before pages arrive.
fn clean_slate_before_pages(run: &mut Run, dest: &Destination<ModelMemory>) {
    for d in &dest.vm().devices {
        let present = dest.vm().host.populated(d.ram_block(), Bytes::ZERO, d.region_size());
        if !present.is_zero() {
            let detail = format!("{} of {} present after the early section with postcopy advised", present, d.id());
            run.violate(Property::PostcopyCleanSlate, detail);
            return;
        }
    }
}

/// Property 4 (b): at LISTEN, only received pages are present.
fn clean_slate_at_listen(run: &mut Run, dest: &Destination<ModelMemory>) {
    for (bi, block) in dest.vm().blocks.iter().enumerate() {
        if block.device.is_none() {
            continue;
        }
        let present = dest.vm().host.populated(block.id, Bytes::ZERO, block.len).0;
        let received = dest.received(bi).total();
        if present > received {
            let detail = format!("{} present but only {} received in {} at LISTEN", Bytes(present), Bytes(received), block.name);
            run.violate(Property::PostcopyCleanSlate, detail);
            return;
        }
    }
}

/// Properties 2, 3 and 5 at the end of a precopy stream, before the guest runs.
fn check_at_eof(run: &mut Run, dest: &Destination<ModelMemory>, premise_new_prealloc: bool) {
    let precopy = !run.b.plan.is_postcopy();
    let mut found = Vec::new();
    for (d, s) in dest.vm().devices.iter().zip(&run.src.devices) {
        if d.plug_map() != s.plug_map() || d.size() != s.size() {
            let detail = format!("{} ends with {} plugged, the source has {}", d.id(), d.size(), s.size());
            found.push((Property::PlugStateFrozen, detail));
        }
        let host = &dest.vm().host;
        if precopy {
            let unplugged: u64 = d.unplugged_runs().into_iter().map(|r| d.run_bytes(r)).map(|(o, l)| host.populated(d.ram_block(), o, l).0).sum();
            if unplugged > 0 {
                let detail = format!("{} of unplugged blocks of {} are populated after precopy", Bytes(unplugged), d.id());
                found.push((Property::UnpluggedNotPopulated, detail));
            }
        }
        if precopy && premise_new_prealloc {
            let plugged: u64 = d.plugged_runs().into_iter().map(|r| d.run_bytes(r)).map(|(o, l)| host.populated(d.ram_block(), o, l).0).sum();
            if plugged != d.size().0 {
                let detail = format!("only {} of {} plugged in {} is populated after precopy with prealloc", Bytes(plugged), d.size(), d.id());
                found.push((Property::PluggedPopulated, detail));
            }
        }
    }
    for (p, detail) in found {
        run.violate(p, detail);
    }
}

/// Runs a built scenario through the engine.
pub fn simulate(b: &Built) -> Sim {
    let mut run = Run {
        b,
        src: b.source.clone(),
        now: 0,
        queue: BinaryHeap::new(),
        events: Vec::new(),
        trace: Trace { entries: Vec::with_capacity(64), ..Trace::default() },
        violations: Vec::new(),
        channel: Stream::new(b.seed, Actor::Channel),
        invariants_seen: false,
        touched_src: BTreeSet::new(),
        after_restore_crash: None,
    };
    for (seq, &(t, dev, req)) in b.actions.iter().enumerate() {
        run.events.push(Event::Request(dev, req));
        run.queue.push(Reverse((t, seq as u64, run.events.len() - 1)));
    }
    for (i, &(t, dev, size)) in b.resizes.iter().enumerate() {
        run.events.push(Event::Resize(dev, size));
        run.queue.push(Reverse((t, (b.actions.len() + i) as u64, run.events.len() - 1)));
    }
    for i in 0..trace_setup::count(b) {
        run.log(Step::Setup(u16::try_from(i).expect("fewer than 65536 set-up lines")));
    }
    // QEMU promises graceful failure for precopy only. Under postcopy every device's
    // preallocation is discarded again right away (virtio_mem_post_load_early), so it checks
    // each device alone, not their sum, and a competitor may take the memory before RAM load
    // (d71920d425: "nothing ... guarantees"): known hazards, shipped as scenarios/hazards/.
    let premise = oracle::new_machine_prealloc(b) && !b.plan.is_postcopy();
    let ended = migrate(&mut run, premise);
    let outcome = ended.outcome;
    run.log(Step::Outcome);
    final_checks(&mut run, &outcome, premise);
    let items = ended.attempt.map_or(&[][..], |a| &run.trace.attempts[a][..]);
    let source = source_fate(items, ended.failed, &outcome, &b.source_qemu);
    let judgement = judge(&outcome, &source, ended.unbacked);
    if premise && !matches!(judgement.verdict, Verdict::Safe | Verdict::Recoverable) {
        run.violate(Property::GuestSurvival, format!("QEMU promises graceful failure here, but the verdict is {judgement}"));
    }
    // The trace stays the destination's (and the violations'): its hash is what every shipped
    // scenario replays.
    let trace_hash = trace::hash(b, &run.trace, &run.violations, &outcome);
    Sim { outcome, source, judgement, trace: run.trace, trace_hash, violations: run.violations }
}

/// A guest with `init_on_free=1` writes the blocks it just plugged: with prealloc off nothing
/// backed them at PLUG time (`virtio_mem_set_block_state` only populates with prealloc), so a
/// backend with no room left kills QEMU by SIGBUS.
pub(crate) fn write_plugged<H: HostMemory>(vm: &mut Vm<H>, dev: usize, addr: vmemsim_model::Gpa, nb_blocks: u16) -> Option<Outcome> {
    let d = &vm.devices[dev];
    let offset = Bytes(addr.0.checked_sub(d.addr().0).expect("an ACKed plug lies in the region"));
    let len = Bytes(d.block_size().0.checked_mul(u64::from(nb_blocks)).expect("an ACKed plug fits the region"));
    let rb = d.ram_block();
    let sigbus = vm.host.touch(rb, offset, len).err()?;
    Some(Outcome::RuntimeCrash {
        site: FaultSite { block: vm.device_block(dev).name.clone(), offset: sigbus.offset },
        why: "the guest (init_on_free=1) wrote memory it had just plugged after the restore; without prealloc nothing backed it, and the backend has no memory left".into(),
        lines: std::mem::take(&mut vm.lines),
    })
}

/// How the last attempt ended: the destination's outcome, the attempt (its stream is
/// `trace.attempts[attempt]`; none when the destination did not start) and the index of the item
/// it failed on, and after a completed one its unbacked memory.
struct Ended {
    outcome: Outcome,
    attempt: Option<usize>,
    failed: Option<usize>,
    unbacked: Option<Unbacked>,
}

/// One or two attempts (a cancelled one and its retry).
fn migrate(run: &mut Run, premise: bool) -> Ended {
    let b = run.b;
    let mut cancel_at = b.cancel_at;
    loop {
        let dest_vm = match Vm::realize(&b.destination) {
            Ok((vm, _)) => vm,
            Err(e) => return Ended { outcome: Outcome::Failed { stage: Stage::Startup, lines: vec![e.to_string()] }, attempt: None, failed: None, unbacked: None },
        };
        let attempt = run.trace.attempts.len();
        let items = source::stream(&run.src, &b.plan);
        let (end, failed) = attempt_stream(run, Destination::new(dest_vm), &items, attempt, &mut cancel_at, premise);
        run.trace.attempts.push(items);
        match end {
            AttemptEnd::Retry => continue,
            AttemptEnd::Ended(outcome, unbacked) => return Ended { outcome, attempt: Some(attempt), failed, unbacked },
        }
    }
}

enum AttemptEnd {
    /// Cancelled: the migration is retried.
    Retry,
    Ended(Outcome, Option<Unbacked>),
}

/// One attempt over its stream `items`; with the index of the item it failed on.
fn attempt_stream(run: &mut Run, dest: Destination<ModelMemory>, items: &[Item], attempt: usize, cancel_at: &mut Option<u64>, premise: bool) -> (AttemptEnd, Option<usize>) {
    let b = run.b;
    let attempt_no = u8::try_from(attempt).expect("at most two attempts");
    let mut dest = Some(dest);
    let snapshot: Vec<(Bytes, Arc<PlugMap>)> = run.src.devices.iter().map(|d| (d.size(), Arc::clone(d.plug_map()))).collect();
    run.touched_src.clear();
    let mut guest = Guest::Source;
    let mut pages_seen = false;
    let mut early_seen = false;
    run.log(Step::MigrationStarts);
    for (index, item) in items.iter().enumerate() {
        let started = run.now;
        run.now += run.cost_us(item);
        if let Some(c) = *cancel_at {
            let switched = dest.as_ref().is_some_and(|d| d.postcopy_state() >= PostcopyState::Discard) || guest != Guest::Source;
            if run.now >= c && !switched {
                // The transfer in flight is aborted at the cancel time.
                run.now = c.max(started);
                run.run_events(run.now, guest, &mut dest, true);
                run.check_frozen(&snapshot);
                *cancel_at = None;
                run.log(Step::Cancel);
                run.run_events(run.now + RETRY_DELAY_US, Guest::Source, &mut None, false);
                run.now += RETRY_DELAY_US;
                run.log(Step::Retry);
                return (AttemptEnd::Retry, None);
            }
        }
        run.run_events(run.now, guest, &mut dest, true);
        run.check_frozen(&snapshot);
        let d = dest.as_mut().expect("the destination exists during the attempt");
        // Where the guest runs: paused for switchover, then on the destination after RUN.
        match item {
            Item::SwitchoverStart | Item::Late(_) if !b.plan.is_postcopy() => guest = Guest::Paused,
            Item::RamDiscard { .. } | Item::Listen => guest = Guest::Paused,
            Item::Run => guest = Guest::Destination,
            _ => {}
        }
        // The late section is written at completion, from the source's state then.
        let late;
        let (item, item_ref) = match item {
            Item::Late(l) => {
                let dev = run.src.devices.iter().find(|dv| dv.late_idstr() == l.idstr).expect("late section of a device");
                late = Item::Late(Box::new(source::late_section(dev)));
                run.trace.lates.push(late.clone());
                (&late, ItemRef::Late((run.trace.lates.len() - 1) as u32))
            }
            other => (other, ItemRef::Stream { attempt: attempt_no, index: u32::try_from(index).expect("fewer than 2^32 items") }),
        };
        let is_listen = matches!(item, Item::Listen);
        if early_seen && !matches!(item, Item::Early(_)) {
            early_seen = false;
            drain(run, d, DrainPoint::AfterEarly);
        }
        if d.postcopy_advised() && !pages_seen {
            let virtio_page = matches!(item, Item::Ram { block, .. } if d.vm().blocks.get(*block).is_some_and(|bl| bl.device.is_some()));
            if virtio_page || is_listen {
                pages_seen = true;
                clean_slate_before_pages(run, d);
            }
        }
        if is_listen {
            drain(run, d, DrainPoint::Listen);
        }
        run.log(Step::Channel(item_ref));
        let result = d.apply(item);
        if matches!(item, Item::Early(_)) {
            early_seen = true;
        }
        if let Err(outcome) = result {
            if d.placement_error().is_some_and(|e| e.errno == vmemsim_model::host::Errno::Exist) {
                let at = d.placement_error().map(|e| e.offset).unwrap_or_default();
                run.violate(Property::PostcopyCleanSlate, format!("a postcopy placement hit EEXIST on a present page at {:#x}", at.0));
            }
            return (AttemptEnd::Ended(outcome, None), Some(index));
        }
        if is_listen {
            clean_slate_at_listen(run, d);
        }
        let touched = d.device_of(item).map(Touched::Destination);
        run.check_invariants(Some(d), touched);
        run.check_frozen(&snapshot);
    }
    // The stream ended: the guest runs on the destination.
    let mut d = dest.take().expect("the destination exists");
    drain(run, &mut d, DrainPoint::End);
    check_at_eof(run, &d, premise);
    let hints: &[_] = if b.plan.is_postcopy() { &[] } else { &b.plan.hints };
    let touched = match d.run_guest(&b.plan.touches, hints) {
        Ok(n) => n,
        Err(outcome) => return (AttemptEnd::Ended(outcome, None), None),
    };
    run.log(Step::GuestRuns { touched: touched as u64 });
    let mut holder = Some(d);
    run.run_events(u64::MAX, Guest::Destination, &mut holder, false);
    if let Some(outcome) = run.after_restore_crash.take() {
        return (AttemptEnd::Ended(outcome, None), None);
    }
    let d = holder.take().expect("the destination exists");
    let unbacked = Some(d.unbacked());
    (AttemptEnd::Ended(d.finish(), unbacked), None)
}

/// Properties 1, 2 (run-time), 4 (EEXIST) and 7 on the outcome.
fn final_checks(run: &mut Run, outcome: &Outcome, premise: bool) {
    let b = run.b;
    // QEMU's promise covers virtio-mem memory: a SIGBUS in main RAM (on a limited memdev of
    // its own) is the operator's sizing, not a broken rule.
    let on_device = match outcome {
        Outcome::Crashed { site, .. } | Outcome::RuntimeCrash { site, .. } => b.destination.devices.iter().any(|d| d.ram_block_name() == site.block),
        _ => false,
    };
    let premise = premise && (on_device || !matches!(outcome.class(), OutcomeClass::Crashed | OutcomeClass::RuntimeCrash));
    if premise && outcome.class() == OutcomeClass::Crashed {
        run.violate(Property::GracefulCapacityFailure, format!("SIGBUS at {} on a new machine with prealloc", outcome.stage().map(|s| s.to_string()).unwrap_or_default()));
    }
    if premise && !b.plan.is_postcopy() && outcome.class() == OutcomeClass::RuntimeCrash {
        run.violate(Property::PluggedPopulated, "the guest hit SIGBUS after a precopy migration with prealloc on a new machine".into());
    }
    if let Some(class) = oracle::predict(b) {
        if class != outcome.class() {
            run.violate(Property::ReferenceTable, format!("the reference table predicts {class}, the run ended {}", outcome.class()));
        }
    }
}
