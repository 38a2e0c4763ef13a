//! The direct run: the source's stream in order into a destination on any host memory, then
//! the guest's touches. The model and the real-memory child both run exactly this, so their
//! outcomes can be compared.

use vmemsim_model::migration::destination::Destination;
use vmemsim_model::migration::item::Item;
use vmemsim_model::{HostMemory, Outcome, Plan};

use crate::engine::plugged_touches;

/// What is about to happen.
pub enum Step<'a> {
    Item(&'a Item),
    /// The stream ended; the guest runs on the destination.
    Guest,
}

/// Feeds `items` to `dest`, then runs the guest; `observe` sees each step before it happens.
pub fn run_direct<H: HostMemory>(mut dest: Destination<H>, items: &[Item], plan: &Plan, mut observe: impl FnMut(Step, &Destination<H>)) -> Outcome {
    for item in items {
        observe(Step::Item(item), &dest);
        if let Err(outcome) = dest.apply(item) {
            return outcome;
        }
    }
    observe(Step::Guest, &dest);
    let touches = plugged_touches(&dest, &plan.touches);
    let hints: &[_] = if plan.is_postcopy() { &[] } else { &plan.hints };
    match dest.run_guest(&touches, hints) {
        Ok(()) => dest.finish(),
        Err(o) => o,
    }
}
