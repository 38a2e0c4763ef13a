//! Where the destination's failure meets the source: before the source's switchover to
//! postcopy, inside it, or after it. The source learns of a failure only through its own
//! writes and the return path, so what matters is what the source was doing when it learned.

use crate::backend::HOST_PAGE_SIZE;
use crate::migration::item::Item;
use crate::migration::outcome::Outcome;

/// What the source was doing when the destination's failure reached it.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Meets {
    /// Still sending precopy pages (`migration_iteration_run` before `postcopy_start`), or a
    /// migration without postcopy.
    Precopy,
    /// Inside `postcopy_start`: the destination died while the source stopped the guest and
    /// wrote the discard bitmap and the package.
    PostcopyStart,
    /// After `postcopy_start`, before the destination loaded the package's device state (its
    /// answer to the package's PING never came).
    PackageUnloaded,
    /// After the destination loaded the package and ran the guest (RUN).
    Postcopy,
}

/// Where the failure on item `failed` of `items` met the source.
///
/// `migration_iteration_run` calls `postcopy_start` in the first iteration after
/// `migrate-start-postcopy` (with postcopy-ram all RAM can be postcopied), and `postcopy_start`
/// waits for nothing from the destination; until then a source blocked on a full socket is
/// still in `active`. So: page data still unsent before the switch → [`Meets::Precopy`] (the
/// socket's buffer holds less than any page run [INF]; observed: a late start fails the source
/// back). A destination that dies in the last page run before the switch, with no page left
/// to write, is gone while the source stops the guest and writes the package →
/// [`Meets::PostcopyStart`] [INF: observed when the destination was killed 0 to 30 ms before
/// the switch, 6 of 6 runs on 10.0.2]. A destination still in its early section when the
/// switch came (no page data before it) fails after `postcopy_start` returned: it is busy
/// preallocating [observed: at once, even on a 4M quota, 3 of 3].
pub fn meets(items: &[Item], failed: usize, outcome: &Outcome) -> Meets {
    let Some(switch) = items.iter().position(|i| matches!(i, Item::RamDiscard { .. } | Item::Listen)) else { return Meets::Precopy };
    if failed >= switch {
        let run = items.iter().position(|i| *i == Item::Run).unwrap_or(items.len());
        return if failed < run && !matches!(outcome, Outcome::PostcopyFailed { .. }) { Meets::PackageUnloaded } else { Meets::Postcopy };
    }
    if unsent_pages(items, failed, switch, outcome) {
        Meets::Precopy
    } else if carries_pages(&items[failed]) {
        Meets::PostcopyStart
    } else {
        Meets::PackageUnloaded
    }
}

fn carries_pages(item: &Item) -> bool {
    matches!(item, Item::Ram { len, .. } if len.0 > 0)
}

/// Whether page data was still unsent after the destination failed on item `failed`, before
/// item `to`: the rest of a page run that killed it, or later page runs.
pub fn unsent_pages(items: &[Item], failed: usize, to: usize, outcome: &Outcome) -> bool {
    let rest_of_failed = match (&items[failed], outcome) {
        (Item::Ram { offset, len, .. }, Outcome::Crashed { site, .. }) => site.offset.0.saturating_add(HOST_PAGE_SIZE.0) < offset.0.saturating_add(len.0),
        _ => false,
    };
    rest_of_failed || items[failed + 1..to].iter().any(carries_pages)
}
