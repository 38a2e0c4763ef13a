//! Runs a whole migration: the source's stream into a destination, then the guest.

use crate::host::HostMemory;
use crate::migration::destination::Destination;
use crate::migration::item::Item;
use crate::migration::outcome::Outcome;
use crate::migration::plan::Plan;
use crate::migration::source;
use crate::vm::Vm;

/// What is about to happen in [`feed`].
pub enum Step<'a> {
    Item(&'a Item),
    /// The stream ended; the guest runs on the destination.
    Guest,
}

/// Feeds `items` to `dest` in order, then runs the guest's `plan.touches`; `observe` sees each
/// step before it happens. The model and the real-memory child both run exactly this.
pub fn feed<H: HostMemory>(mut dest: Destination<H>, items: &[Item], plan: &Plan, mut observe: impl FnMut(Step, &Destination<H>)) -> Outcome {
    for item in items {
        observe(Step::Item(item), &dest);
        if let Err(outcome) = dest.apply(item) {
            return outcome;
        }
    }
    assert!(dest.eof_seen(), "the source's stream ends with EOF");
    observe(Step::Guest, &dest);
    let hints: &[_] = if plan.is_postcopy() { &[] } else { &plan.hints };
    match dest.run_guest(&plan.touches, hints) {
        Ok(_) => dest.finish(),
        Err(outcome) => outcome,
    }
}

/// Migrates `src` into `dest` with `plan` and returns the outcome.
pub fn migrate<S: HostMemory, D: HostMemory>(src: &Vm<S>, dest: Vm<D>, plan: &Plan) -> Outcome {
    let items = source::stream(src, plan);
    feed(Destination::new(dest), &items, plan, |_, _| {})
}
