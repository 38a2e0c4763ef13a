//! A simulated run's destination side replayed on another host memory, step by step in the
//! order of its trace: each stream item the channel carried, each guest request and
//! `requested-size` change on the destination, each competitor strike, a cancel and its retry
//! to a second destination, the guest running after the migration. The real-memory child runs
//! a scenario this way (`real/child.rs`), so guest requests, resizes, competitors and
//! cancellation happen on real memory at the moment the simulator gave them. Where the other
//! memory answers differently (a request, a resize, a competitor's take), the replay goes on
//! with what that memory did and records the divergence.
//!
//! The source side stays the simulator's: its requests and resizes are not replayed, and each
//! late section is the one the simulated source wrote (`Trace::lates`).

use vmemsim_model::migration::destination::Destination;
use vmemsim_model::migration::item::Item;
use vmemsim_model::{Bytes, HostMemory, Outcome, Request, Response};

use crate::build::Built;
use crate::engine::{write_plugged, Sim};
use crate::trace::{Side, Step};

/// What the replay needs from the memory it runs on.
pub trait Host<H: HostMemory> {
    /// A new destination (the first, or the retry's second); `Err` is the startup failure.
    fn destination(&mut self) -> Result<Destination<H>, Outcome>;
    /// A competitor takes `bytes` from the destination's limit `limit` (its index in the
    /// destination's memory); returns how much it took.
    fn compete(&mut self, dest: &mut Destination<H>, limit: u16, bytes: Bytes) -> Result<Bytes, String>;
    /// `migrate_cancel`: the destination is gone, and what competed with it for its memory
    /// goes with it (the retry's destination has memory of its own, as in the simulation).
    fn cancelled(&mut self) {}
    /// Called before an item is applied, and before the guest runs after the stream.
    fn before_item(&mut self, _item: &Item, _dest: &Destination<H>) {}
    fn before_guest(&mut self, _dest: &Destination<H>) {}
}

/// How the replay ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Replayed {
    pub outcome: Outcome,
    /// Where the other memory did not do what the simulated run did, in order.
    pub divergences: Vec<String>,
}

fn side_events(side: Side) -> bool {
    side == Side::Destination
}

/// Replays `sim` (a run of `b`) on the memory behind `host`.
pub fn replay<H: HostMemory>(b: &Built, sim: &Sim, host: &mut dyn Host<H>) -> Replayed {
    let mut divergences = Vec::new();
    let mut dest = match host.destination() {
        Ok(d) => Some(d),
        Err(outcome) => return Replayed { outcome, divergences },
    };
    let mut attempt = 0usize;
    let mut applied = 0usize;
    let mut guest_ran = false;
    let mut after_restore_crash: Option<Outcome> = None;
    let hints: &[_] = if b.plan.is_postcopy() { &[] } else { &b.plan.hints };
    for (i, e) in sim.trace.entries.iter().enumerate() {
        let complete = sim.trace.attempts.get(attempt).is_some_and(|items| applied == items.len());
        match e.step {
            Step::Setup(_) | Step::MigrationStarts | Step::Violation(_) => {}
            Step::Channel(r) => {
                let d = dest.as_mut().expect("a channel step belongs to an attempt");
                let item = sim.trace.item(r);
                host.before_item(item, d);
                if let Err(outcome) = d.apply(item) {
                    return Replayed { outcome, divergences };
                }
                applied += 1;
            }
            Step::Guest { side, dev, req, resp } if side_events(side) => {
                let d = dest.as_mut().expect("a destination request belongs to an attempt");
                let restored = d.eof_seen();
                let busy = d.in_incoming_postcopy();
                let dev = usize::from(dev);
                let got = d.vm_mut().request(dev, req, busy);
                if got != resp {
                    divergences.push(format!("step {i}: guest {req} on the destination answered {got}, the simulation {resp}"));
                }
                if let (true, true, Request::Plug { addr, nb_blocks }, Response::Ack) = (restored, b.init_on_free, req, got) {
                    after_restore_crash = after_restore_crash.or_else(|| write_plugged(d.vm_mut(), dev, addr, nb_blocks));
                }
            }
            Step::Resize { side, dev, size } if side_events(side) => {
                let d = dest.as_mut().expect("a destination resize belongs to an attempt");
                if let Err(err) = d.vm_mut().devices[usize::from(dev)].set_requested_size(size) {
                    divergences.push(format!("step {i}: requested-size {size} refused on the destination ({err}), taken in the simulation"));
                }
            }
            // A refused resize does not depend on memory; the source side stays simulated.
            Step::Guest { .. } | Step::Resize { .. } | Step::ResizeRefused { .. } => {}
            Step::Competitor { took, limit, .. } => {
                let d = dest.as_mut().expect("a competitor strikes during an attempt");
                match host.compete(d, limit, took) {
                    Ok(real) if real == took => {}
                    Ok(real) => divergences.push(format!("step {i}: the competitor took {real}, in the simulation {took}")),
                    Err(why) => divergences.push(format!("step {i}: the competitor could not run: {why}")),
                }
            }
            Step::CompetitorNoLimit { .. } => {}
            Step::Cancel => {
                // migrate_cancel: the first destination is dropped, its memory given back.
                dest = None;
                host.cancelled();
            }
            Step::Retry => {
                attempt += 1;
                applied = 0;
                dest = match host.destination() {
                    Ok(d) => Some(d),
                    Err(outcome) => return Replayed { outcome, divergences },
                };
            }
            Step::GuestRuns { .. } => {
                let d = dest.as_mut().expect("the guest runs on the destination");
                host.before_guest(d);
                if let Err(outcome) = d.run_guest(&b.plan.touches, hints) {
                    return Replayed { outcome, divergences };
                }
                guest_ran = true;
            }
            Step::Outcome => {
                let mut d = dest.take().expect("the run ends on a destination");
                if !complete {
                    // The simulated run failed on an item this memory loaded: the rest of the
                    // stream follows (as the source wrote it when the attempt started).
                    divergences.push(format!("step {i}: the simulated run ended on item {} of the stream, which this memory loaded", applied.saturating_sub(1)));
                    let fresh;
                    let items = match sim.trace.attempts.get(attempt) {
                        Some(items) => items,
                        None => {
                            // The simulated destination did not start: no stream in the trace.
                            fresh = vmemsim_model::migration::source::stream(&b.source, &b.plan);
                            &fresh
                        }
                    };
                    for item in &items[applied.min(items.len())..] {
                        host.before_item(item, &d);
                        if let Err(outcome) = d.apply(item) {
                            return Replayed { outcome, divergences };
                        }
                    }
                }
                if !guest_ran {
                    // The simulated guest never ran (its run failed, or the stream did): this
                    // memory's guest runs now.
                    host.before_guest(&d);
                    if let Err(outcome) = d.run_guest(&b.plan.touches, hints) {
                        return Replayed { outcome, divergences };
                    }
                }
                let outcome = match after_restore_crash.take() {
                    Some(crash) => crash,
                    None => d.finish(),
                };
                return Replayed { outcome, divergences };
            }
        }
    }
    unreachable!("every trace ends with its outcome step")
}

/// The simulator's own memory as a replay host: the replay of a run on it is the run.
pub struct ModelHost<'a>(pub &'a Built);

impl Host<vmemsim_model::ModelMemory> for ModelHost<'_> {
    fn destination(&mut self) -> Result<Destination<vmemsim_model::ModelMemory>, Outcome> {
        match vmemsim_model::Vm::realize(&self.0.destination) {
            Ok((vm, _)) => Ok(Destination::new(vm)),
            Err(e) => Err(Outcome::Failed { stage: vmemsim_model::migration::outcome::Stage::Startup, lines: vec![e.to_string()] }),
        }
    }

    fn compete(&mut self, dest: &mut Destination<vmemsim_model::ModelMemory>, limit: u16, bytes: Bytes) -> Result<Bytes, String> {
        let pool = vmemsim_model::ModelMemory::pool_of(vmemsim_model::LimitId(usize::from(limit)));
        Ok(dest.vm_mut().host.drain_pool(pool, bytes))
    }
}
