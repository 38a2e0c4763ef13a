//! The properties every run is checked against, each with a stable name.

use std::fmt;

#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Property {
    /// 1. New machine + prealloc: the destination never dies of SIGBUS while loading RAM; a
    ///    capacity problem fails gracefully before the first RAM page is loaded.
    GracefulCapacityFailure,
    /// 2. After a completed precopy migration with prealloc on a new machine, every plugged
    ///    block is populated: no guest touch can SIGBUS, hinted pages included.
    PluggedPopulated,
    /// 3. After a completed precopy migration, unplugged blocks are not populated.
    UnpluggedNotPopulated,
    /// 4. Postcopy: from the early section until the first page arrives no virtio-mem page is
    ///    present, at LISTEN only received pages are, and no placement hits EEXIST.
    PostcopyCleanSlate,
    /// 5. The source's bitmap and plugged size do not change while migrating; the
    ///    destination ends with the source's bitmap.
    PlugStateFrozen,
    /// 6. plugged size == popcount(bitmap) × block size, on both sides, always.
    PluggedSizeInvariant,
    /// 7. Where the reference table predicts the outcome class from the configuration alone
    ///    (precopy, matching sides, no competitor), the run ends in that class.
    ReferenceTable,
    /// 8. Where QEMU promises graceful failure (the premise of 1: precopy, prealloc, a new
    ///    machine, no competitor), the guest survives on one side: the verdict over both sides
    ///    is safe or recoverable.
    GuestSurvival,
}

impl Property {
    pub const ALL: [Property; 8] = [
        Property::GracefulCapacityFailure,
        Property::PluggedPopulated,
        Property::UnpluggedNotPopulated,
        Property::PostcopyCleanSlate,
        Property::PlugStateFrozen,
        Property::PluggedSizeInvariant,
        Property::ReferenceTable,
        Property::GuestSurvival,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Property::GracefulCapacityFailure => "graceful-capacity-failure",
            Property::PluggedPopulated => "plugged-populated",
            Property::UnpluggedNotPopulated => "unplugged-not-populated",
            Property::PostcopyCleanSlate => "postcopy-clean-slate",
            Property::PlugStateFrozen => "plug-state-frozen",
            Property::PluggedSizeInvariant => "plugged-size-invariant",
            Property::ReferenceTable => "reference-table",
            Property::GuestSurvival => "guest-survival",
        }
    }

    pub fn parse(s: &str) -> Option<Property> {
        Property::ALL.into_iter().find(|p| p.name() == s)
    }
}

impl fmt::Display for Property {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A property that failed, where, and why.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Violation {
    pub property: Property,
    /// The trace line index at which it was detected.
    pub step: usize,
    pub detail: String,
}
