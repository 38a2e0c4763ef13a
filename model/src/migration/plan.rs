//! What a migration does besides moving state: its mode, the guest's data, free page hints
//! and the guest's touches after switchover.

use crate::units::Bytes;

/// A byte range of one virtio-mem device's region (device index in command-line order).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct GuestRange {
    pub device: usize,
    pub offset: Bytes,
    pub len: Bytes,
}

/// Precopy, or postcopy-ram with the switch when the manager asks for it.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Default)]
pub enum Mode {
    #[default]
    Precopy,
    /// The `postcopy-ram` capability is on (ADVISE is sent) and `migrate-start-postcopy`
    /// switches over once `start` is reached.
    Postcopy { start: PostcopyStart },
}

/// When `migrate-start-postcopy` takes effect, as the page data sent in precopy before it: the
/// source calls `postcopy_start` in its first iteration after the command
/// (`migration_iteration_run`).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum PostcopyStart {
    /// After this share (0 to 100 %) of the page bytes; 0 is a command sent with `migrate`.
    Share(u8),
    /// After this much page data (a time at the channel's bandwidth). If all page data went
    /// out before, the precopy completes first (`migration_iteration_run`: nothing is pending)
    /// and the command comes too late to switch.
    After(Bytes),
}

/// The migration's inputs beyond the two VMs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub mode: Mode,
    /// Ranges the guest wrote before migrating: sent as normal pages; the rest of plugged
    /// memory is sent as zero pages.
    pub data: Vec<GuestRange>,
    /// Free page hints: never sent (`qemu_guest_free_page_hint`). The balloon does not hint
    /// when postcopy-ram is on (`virtio_balloon_free_page_hint_notify`), so they are ignored then.
    pub hints: Vec<GuestRange>,
    /// Ranges the guest writes on the destination after switchover.
    pub touches: Vec<GuestRange>,
    /// A faulty source that sends no POSTCOPY_RAM_DISCARD before LISTEN, although pages are
    /// still unsent (QEMU's `ram_postcopy_send_discard_bitmap` always covers them): the
    /// destination's own discards are then all that keeps those pages absent.
    pub skip_ram_discard: bool,
}

impl Plan {
    pub fn is_postcopy(&self) -> bool {
        matches!(self.mode, Mode::Postcopy { .. })
    }
}
