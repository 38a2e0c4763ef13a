//! Runs a whole migration: the source's stream into a destination, then the guest.

use crate::host::HostMemory;
use crate::migration::destination::Destination;
use crate::migration::item::Item;
use crate::migration::outcome::Outcome;
use crate::migration::plan::Plan;
use crate::migration::source;
use crate::vm::Vm;

/// Feeds `items` to `dest` in order; after EOF the guest runs `plan.touches`. `observe` sees
/// every item before the destination consumes it.
pub fn feed<H: HostMemory>(mut dest: Destination<H>, items: &[Item], plan: &Plan, mut observe: impl FnMut(&Item)) -> Outcome {
    for item in items {
        observe(item);
        if let Err(outcome) = dest.apply(item) {
            return outcome;
        }
    }
    assert!(dest.eof_seen(), "the source's stream ends with EOF");
    let hints: &[_] = if plan.is_postcopy() { &[] } else { &plan.hints };
    match dest.run_guest(&plan.touches, hints) {
        Ok(()) => dest.finish(),
        Err(outcome) => outcome,
    }
}

/// Migrates `src` into `dest` with `plan` and returns the outcome.
pub fn migrate<S: HostMemory, D: HostMemory>(src: &Vm<S>, dest: Vm<D>, plan: &Plan) -> Outcome {
    let items = source::stream(src, plan);
    feed(Destination::new(dest), &items, plan, |_| {})
}

/// Like [`migrate`], and also returns every item as a trace line.
pub fn migrate_traced<S: HostMemory, D: HostMemory>(src: &Vm<S>, dest: Vm<D>, plan: &Plan) -> (Outcome, Vec<String>) {
    let items = source::stream(src, plan);
    let mut trace = Vec::new();
    let outcome = feed(Destination::new(dest), &items, plan, |i| trace.push(i.to_string()));
    (outcome, trace)
}
