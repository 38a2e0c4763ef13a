//! Shrinking a finding: remove and reduce parts of the scenario while the same property still
//! fails, greedily, within a time budget.

use std::time::{Duration, Instant};

use vmemsim_model::Bytes;

use crate::build::build;
use crate::campaign::loaded;
use crate::engine::{simulate, Sim};
use crate::properties::Property;
use crate::scenario::{CapacitySpec, DeviceOverrides, ModeSpec, Scenario};

/// How big a scenario is: its parts (devices, events, ranges, faults, plugged runs, options)
/// and then its memory. Shrinking only accepts smaller scenarios, so it ends.
pub fn size(s: &Scenario) -> (usize, u64) {
    let mut parts = s.devices.len() * 4
        + s.guest.data.len()
        + s.guest.touch.len()
        + s.guest.action.len()
        + s.manager.resize.len()
        + s.balloon.hint.len()
        + s.faults.drain.len()
        + usize::from(s.faults.cancel_at_us.is_some())
        + usize::from(s.faults.skip_ram_discard)
        + usize::from(s.migration.mode == ModeSpec::Postcopy)
        + usize::from(s.destination.numa_nodes.is_some())
        + usize::from(!s.source.main_ram.is_zero());
    let mut bytes = s.source.main_ram.0 >> 20;
    for d in &s.devices {
        let d = d.get_ref();
        parts += d.plugged_blocks.as_ref().map_or(1, |r| r.len());
        parts += [d.destination.memaddr.is_some(), d.destination.region.is_some(), d.destination.block_size.is_some(), d.destination.node.is_some(), d.destination.prealloc.is_some(), d.destination.early_migration.is_some()]
            .iter()
            .filter(|x| **x)
            .count();
        bytes += d.region.0 >> 20;
    }
    for r in s.guest.data.iter().chain(&s.guest.touch) {
        bytes += r.get_ref().len.0 >> 12;
    }
    for h in &s.balloon.hint {
        bytes += h.get_ref().len.0 >> 12;
    }
    for a in &s.guest.action {
        bytes += a.get_ref().at_us >> 10;
    }
    for r in &s.manager.resize {
        bytes += r.get_ref().at_us >> 10;
    }
    bytes += s.faults.cancel_at_us.unwrap_or(0) >> 10;
    (parts, bytes)
}

/// Whether a scenario still violates `p` (a scenario that no longer builds does not).
pub fn still_fails(s: &Scenario, p: Property) -> bool {
    still_shows(s, &|sim: &Sim| sim.violates(p))
}

/// Whether a scenario still builds and its run still shows `keep`.
fn still_shows(s: &Scenario, keep: &dyn Fn(&Sim) -> bool) -> bool {
    match build(&loaded(s.clone())) {
        Ok(b) => keep(&simulate(&b)),
        Err(_) => false,
    }
}

/// The bytes the source has plugged, by the scenario's own fields.
fn plugged_bytes(s: &Scenario) -> u64 {
    s.devices
        .iter()
        .map(|d| {
            let d = d.get_ref();
            match (&d.plugged_blocks, d.plugged) {
                (Some(runs), _) => runs.iter().map(|r| r[1]).sum::<u64>() * d.block_size.map_or(2 << 20, |b| b.0),
                (None, Some(p)) => p.0,
                (None, None) => d.requested.0,
            }
        })
        .sum()
}

/// Candidate reductions of `s`, most aggressive first. A reduction that plugs less also comes
/// with the destination's capacity lowered by as much, so a shortage stays a shortage.
fn candidates(s: &Scenario) -> Vec<Scenario> {
    let mut out = Vec::new();
    let before = plugged_bytes(s);
    let mut push = |f: &dyn Fn(&mut Scenario)| {
        let mut c = s.clone();
        f(&mut c);
        let freed = before.saturating_sub(plugged_bytes(&c));
        if let Some(CapacitySpec::Limited(cap)) = c.destination.backend.as_ref().map(|b| b.get_ref().capacity.clone()) {
            if freed > 0 {
                let mut tight = c.clone();
                if let Some(b) = tight.destination.backend.as_mut() {
                    b.get_mut().capacity = CapacitySpec::Limited(Bytes(cap.0.saturating_sub(freed)));
                }
                out.push(tight);
            }
        }
        out.push(c);
    };
    // Drop a whole device, with everything that names it.
    if s.devices.len() > 1 {
        for i in 0..s.devices.len() {
            push(&|c| {
                let id = c.devices.remove(i).into_inner().id;
                c.guest.data.retain(|r| r.get_ref().device != id);
                c.guest.touch.retain(|r| r.get_ref().device != id);
                c.guest.action.retain(|r| r.get_ref().device != id);
                c.manager.resize.retain(|r| r.get_ref().device != id);
                c.balloon.hint.retain(|r| r.get_ref().device != id);
            });
        }
    }
    // Drop one event, range or fault: one candidate per element of each list.
    macro_rules! drop_each {
        ($($list:ident).+) => {
            for i in 0..s.$($list).+.len() {
                push(&|c| {
                    c.$($list).+.remove(i);
                });
            }
        };
    }
    drop_each!(guest.action);
    drop_each!(manager.resize);
    drop_each!(balloon.hint);
    drop_each!(guest.touch);
    drop_each!(guest.data);
    drop_each!(faults.drain);
    if s.faults.cancel_at_us.is_some() {
        push(&|c| c.faults.cancel_at_us = None);
    }
    if s.faults.skip_ram_discard {
        push(&|c| c.faults.skip_ram_discard = false);
    }
    if s.migration.mode == ModeSpec::Postcopy {
        push(&|c| {
            c.migration.mode = ModeSpec::Precopy;
            c.migration.switch_percent = None;
            c.migration.start_postcopy = None;
        });
    }
    if s.destination.numa_nodes.is_some() {
        push(&|c| c.destination.numa_nodes = None);
    }
    if !s.source.main_ram.is_zero() {
        push(&|c| c.source.main_ram = Bytes::ZERO);
    }
    // Simplify each device: no mismatch, fewer plugged runs, a smaller region.
    for i in 0..s.devices.len() {
        let d = s.devices[i].get_ref().clone();
        if !d.destination.is_empty() {
            push(&|c| c.devices[i].get_mut().destination = DeviceOverrides::default());
        }
        if let Some(runs) = &d.plugged_blocks {
            for r in 0..runs.len() {
                push(&|c| {
                    let dev = c.devices[i].get_mut();
                    let runs = dev.plugged_blocks.as_mut().expect("runs");
                    runs.remove(r);
                });
                if runs[r][1] > 1 {
                    push(&|c| {
                        let dev = c.devices[i].get_mut();
                        let runs = dev.plugged_blocks.as_mut().expect("runs");
                        runs[r][1] = runs[r][1].div_ceil(2);
                    });
                }
            }
        }
        if let (Some(p), Some(bs)) = (d.plugged, d.block_size) {
            let blocks = p.0 / bs.0;
            if blocks > 1 {
                push(&|c| c.devices[i].get_mut().plugged = Some(Bytes(blocks.div_ceil(2) * bs.0)));
            }
        }
        if let Some(bs) = d.block_size {
            let half = (d.region.0 / bs.0).div_ceil(2) * bs.0;
            if half < d.region.0 {
                push(&|c| {
                    let dev = c.devices[i].get_mut();
                    dev.region = Bytes(half);
                    dev.requested = dev.requested.min(Bytes(half));
                });
            }
        }
    }
    // Earlier events: a shorter migration still reaches them.
    for i in 0..s.guest.action.len() {
        if s.guest.action[i].get_ref().at_us > 0 {
            push(&|c| c.guest.action[i].get_mut().at_us /= 2);
        }
    }
    for i in 0..s.manager.resize.len() {
        if s.manager.resize[i].get_ref().at_us > 0 {
            push(&|c| c.manager.resize[i].get_mut().at_us /= 2);
        }
    }
    if let Some(t) = s.faults.cancel_at_us.filter(|t| *t > 0) {
        push(&|c| c.faults.cancel_at_us = Some(t / 2));
    }
    // Shorter ranges: one page.
    for i in 0..s.balloon.hint.len() {
        if s.balloon.hint[i].get_ref().len.0 > 4096 {
            push(&|c| c.balloon.hint[i].get_mut().len = Bytes(4096));
        }
    }
    for i in 0..s.guest.touch.len() {
        if s.guest.touch[i].get_ref().len.0 > 4096 {
            push(&|c| c.guest.touch[i].get_mut().len = Bytes(4096));
        }
    }
    // A simpler destination.
    if s.destination.backend.as_ref().is_some_and(|b| b.get_ref().capacity != CapacitySpec::Unlimited) {
        push(&|c| {
            if let Some(b) = c.destination.backend.as_mut() {
                b.get_mut().capacity = CapacitySpec::Unlimited;
            }
        });
    }
    out
}

/// The result of shrinking.
#[derive(Clone, Debug)]
pub struct Shrunk {
    pub scenario: Scenario,
    pub steps: usize,
    pub tries: usize,
    pub elapsed: Duration,
    pub timed_out: bool,
}

/// Shrinks `s` while it still violates `p`, for at most `budget`.
pub fn shrink(s: &Scenario, p: Property, budget: Duration) -> Shrunk {
    assert!(still_fails(s, p), "shrinking starts from a scenario that fails {p}");
    shrink_while(s, &|sim: &Sim| sim.violates(p), budget)
}

/// Shrinks `s` while its run still shows `keep` (a property violation, a QEMU hazard), for at
/// most `budget`.
pub fn shrink_while(s: &Scenario, keep: &dyn Fn(&Sim) -> bool, budget: Duration) -> Shrunk {
    shrink_scenario(s, &|c: &Scenario| still_shows(c, keep), budget)
}

/// Shrinks `s` while `keep` holds for the smaller scenario (any run of it: QEMU's engine or a
/// profile's), for at most `budget`.
pub fn shrink_scenario(s: &Scenario, keep: &dyn Fn(&Scenario) -> bool, budget: Duration) -> Shrunk {
    let start = Instant::now();
    let mut best = s.clone();
    let (mut steps, mut tries) = (0, 0);
    'outer: loop {
        let best_size = size(&best);
        for c in candidates(&best) {
            if start.elapsed() >= budget {
                return Shrunk { scenario: best, steps, tries, elapsed: start.elapsed(), timed_out: true };
            }
            tries += 1;
            if size(&c) < best_size && keep(&c) {
                best = c;
                steps += 1;
                continue 'outer;
            }
        }
        break;
    }
    Shrunk { scenario: best, steps, tries, elapsed: start.elapsed(), timed_out: false }
}
