//! The Linux guest driver's answer to the device's answers (drivers/virtio/virtio_mem.c, read
//! at linux-mm 1af43132d318, about v6.16; the mappings are the same in a v5.8-era copy). A
//! profile's responses only mean something with what the guest then does: retry at once, back
//! off for 50 s to 300 s, wait idle, or give the device up until the guest reboots.

use crate::request::Response;
use crate::units::Bytes;

/// What the driver sent.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Sent {
    Plug,
    Unplug,
    UnplugAll,
}

/// The errno a response becomes in the driver.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Errno {
    /// 0: done.
    Ok,
    /// -EAGAIN.
    Again,
    /// -ETXTBSY.
    Txtbsy,
    /// -EINVAL.
    Inval,
    /// -ENOMEM.
    Nomem,
}

/// What `virtio_mem_run_wq` does next.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Reaction {
    /// rc 0: the backoff resets.
    Done,
    /// -EAGAIN: `goto retry` in the same work run, with no delay.
    RetryNow,
    /// -ETXTBSY, -EBUSY, -ENOMEM: the retry timer, 50 s doubling to 300 s.
    Backoff,
    /// Any other error: "unknown error, marking device broken: %d"; `vm->broken` stays set
    /// until the driver is loaded again (a guest reboot).
    Broken,
}

/// `VIRTIO_MEM_RETRY_TIMER_MIN_MS`.
pub const RETRY_MIN_MS: u64 = 50_000;
/// `VIRTIO_MEM_RETRY_TIMER_MAX_MS`.
pub const RETRY_MAX_MS: u64 = 300_000;

/// `virtio_mem_send_plug_request`, `virtio_mem_send_unplug_request`,
/// `virtio_mem_send_unplug_all_request`: ACK → 0; NACK → -EAGAIN for a plug, -ENOMEM for an
/// unplug (no case of its own) and for UNPLUG_ALL; BUSY → -ETXTBSY; ERROR → -EINVAL for plug
/// and unplug, -ENOMEM for UNPLUG_ALL; anything else (a STATE answer) → -ENOMEM.
pub fn errno(sent: Sent, resp: Response) -> Errno {
    match (sent, resp) {
        (_, Response::Ack) => Errno::Ok,
        (Sent::Plug, Response::Nack) => Errno::Again,
        (_, Response::Busy) => Errno::Txtbsy,
        (Sent::Plug | Sent::Unplug, Response::Error) => Errno::Inval,
        _ => Errno::Nomem,
    }
}

/// `virtio_mem_run_wq`'s switch on the errno.
pub fn reaction(e: Errno) -> Reaction {
    match e {
        Errno::Ok => Reaction::Done,
        Errno::Again => Reaction::RetryNow,
        Errno::Txtbsy | Errno::Nomem => Reaction::Backoff,
        Errno::Inval => Reaction::Broken,
    }
}

/// The driver's state for one device.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Driver {
    /// `vm->plugged_size`: changed only by ACKs ("just a reflection of what _we_ did").
    pub plugged_size: Bytes,
    /// `vm->broken`.
    pub broken: bool,
    /// `vm->unplug_all_required`: set at probe when the device reports memory plugged.
    pub unplug_all_required: bool,
    /// `vm->retry_timer_ms`: the next backoff.
    pub retry_ms: u64,
    /// `dev_err` lines printed, in order.
    pub last_error: Option<i32>,
}

impl Driver {
    /// `virtio_mem_init_hotplug`: "unplugging all memory is required" when the device
    /// reports memory plugged at probe.
    pub fn probe(device_plugged: Bytes) -> Driver {
        Driver { plugged_size: device_plugged, broken: false, unplug_all_required: !device_plugged.is_zero(), retry_ms: RETRY_MIN_MS, last_error: None }
    }

    /// The driver's bookkeeping after `resp` to a request of `size` bytes, and what it does
    /// next. A broken driver sends nothing (`run_wq` returns at once), so calling this on one
    /// is a bug.
    pub fn answered(&mut self, sent: Sent, size: Bytes, resp: Response) -> Reaction {
        assert!(!self.broken, "a broken driver sends no request");
        let e = errno(sent, resp);
        if e == Errno::Ok {
            self.plugged_size = match sent {
                Sent::Plug => self.plugged_size.checked_add(size).expect("the device ACKs at most its region"),
                Sent::Unplug => self.plugged_size.checked_sub(size).unwrap_or(Bytes::ZERO),
                Sent::UnplugAll => {
                    self.unplug_all_required = false;
                    Bytes::ZERO
                }
            };
        }
        let r = reaction(e);
        match r {
            Reaction::Done => self.retry_ms = RETRY_MIN_MS,
            Reaction::Broken => {
                self.broken = true;
                self.last_error = Some(-22);
            }
            Reaction::Backoff => {
                // virtio_mem_timer_expired: the work is queued, then the delay doubles.
                self.retry_ms = (self.retry_ms.saturating_mul(2)).min(RETRY_MAX_MS);
            }
            Reaction::RetryNow => {}
        }
        r
    }

    /// `virtio_mem_refresh_config`: the device's plugged size replaces the driver's when they
    /// differ (`WARN_ON_ONCE`), the driver's own block states stay as they were. True when it
    /// warned.
    pub fn refresh(&mut self, device_plugged: Bytes) -> bool {
        let differs = device_plugged != self.plugged_size;
        self.plugged_size = device_plugged;
        differs
    }

    /// The `dev_err` line of a broken driver, as the guest's kernel log prints it.
    pub fn broken_line(&self) -> Option<String> {
        self.last_error.map(|rc| format!("virtio_mem virtio0: unknown error, marking device broken: {rc}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_answer_has_the_drivers_consequence() {
        assert_eq!(reaction(errno(Sent::Plug, Response::Nack)), Reaction::RetryNow);
        assert_eq!(reaction(errno(Sent::Unplug, Response::Nack)), Reaction::Backoff);
        assert_eq!(reaction(errno(Sent::Plug, Response::Busy)), Reaction::Backoff);
        assert_eq!(reaction(errno(Sent::Plug, Response::Error)), Reaction::Broken);
        assert_eq!(reaction(errno(Sent::Unplug, Response::Error)), Reaction::Broken);
        // UNPLUG_ALL: an ERROR does not break the device; it is sent again later.
        assert_eq!(reaction(errno(Sent::UnplugAll, Response::Error)), Reaction::Backoff);
        assert_eq!(reaction(errno(Sent::UnplugAll, Response::Ack)), Reaction::Done);
    }

    #[test]
    fn backoff_doubles_to_five_minutes_and_resets_on_success() {
        let mut d = Driver::probe(Bytes::ZERO);
        let mb = Bytes(2 << 20);
        let mut delays = Vec::new();
        for _ in 0..5 {
            delays.push(d.retry_ms);
            assert_eq!(d.answered(Sent::Plug, mb, Response::Busy), Reaction::Backoff);
        }
        assert_eq!(delays, [50_000, 100_000, 200_000, 300_000, 300_000]);
        assert_eq!(d.answered(Sent::Plug, mb, Response::Ack), Reaction::Done);
        assert_eq!((d.retry_ms, d.plugged_size), (RETRY_MIN_MS, mb));
        assert_eq!(d.answered(Sent::Unplug, mb, Response::Error), Reaction::Broken);
        assert!(d.broken && d.plugged_size == mb);
        assert_eq!(d.broken_line().unwrap(), "virtio_mem virtio0: unknown error, marking device broken: -22");
    }

    #[test]
    fn probe_with_memory_plugged_requires_unplug_all_first() {
        let mut d = Driver::probe(Bytes(4 << 20));
        assert!(d.unplug_all_required);
        assert_eq!(d.answered(Sent::UnplugAll, Bytes::ZERO, Response::Busy), Reaction::Backoff);
        assert!(d.unplug_all_required);
        assert_eq!(d.answered(Sent::UnplugAll, Bytes::ZERO, Response::Ack), Reaction::Done);
        assert!(!d.unplug_all_required && d.plugged_size.is_zero());
        assert!(d.refresh(Bytes(2 << 20)) && d.plugged_size == Bytes(2 << 20) && !d.refresh(Bytes(2 << 20)));
    }
}
