//! Cloud Hypervisor's and Firecracker's request rules, each path against what the VMM's code
//! does (virtio-devices/src/mem.rs; src/vmm/src/devices/virtio/mem/device.rs), with the Linux
//! driver's reaction where a difference from QEMU has a consequence for the guest.

use vmemsim_model::host::{HostError, Errno as HostErrno, PageKind, Sigbus};
use vmemsim_model::vmm::guest_driver::{reaction, errno, Reaction, Sent};
use vmemsim_model::vmm::mem_state::{Answer, DeviceRules, Malformed, MemState};
use vmemsim_model::vmm::other_migration::{cloud_hypervisor_receive, firecracker_restore, Zone};
use vmemsim_model::vmm::{cloud_hypervisor::CloudHypervisor, firecracker::Firecracker, Tag, Vmm};
use vmemsim_model::{Backend, BackendKind, BlockState, Bytes, Capacity, Gpa, HostMemory, ModelMemory, OutcomeClass, RamBlockId, Request, Response};

const ADDR: u64 = 0x1_0000_0000;
const MIB2: u64 = 2 << 20;

fn plug(block: u64, n: u16) -> Request {
    Request::Plug { addr: Gpa(ADDR + block * MIB2), nb_blocks: n }
}
fn unplug(block: u64, n: u16) -> Request {
    Request::Unplug { addr: Gpa(ADDR + block * MIB2), nb_blocks: n }
}
fn state(block: u64, n: u16) -> Request {
    Request::State { addr: Gpa(ADDR + block * MIB2), nb_blocks: n }
}

/// A host whose discards fail (EINVAL) when `fail` is set.
struct Host {
    mem: ModelMemory,
    fail: bool,
}

impl HostMemory for Host {
    fn populate(&mut self, b: RamBlockId, o: Bytes, l: Bytes) -> Result<(), HostError> {
        self.mem.populate(b, o, l)
    }
    fn discard(&mut self, b: RamBlockId, o: Bytes, l: Bytes) -> Result<(), HostError> {
        if self.fail {
            return Err(HostError { errno: HostErrno::Inval, offset: o });
        }
        self.mem.discard(b, o, l)
    }
    fn load(&mut self, b: RamBlockId, o: Bytes, l: Bytes, k: PageKind) -> Result<(), Sigbus> {
        self.mem.load(b, o, l, k)
    }
    fn place(&mut self, b: RamBlockId, o: Bytes, l: Bytes, z: bool) -> Result<(), HostError> {
        self.mem.place(b, o, l, z)
    }
    fn touch(&mut self, b: RamBlockId, o: Bytes, l: Bytes) -> Result<(), Sigbus> {
        self.mem.touch(b, o, l)
    }
    fn populated(&self, b: RamBlockId, o: Bytes, l: Bytes) -> Bytes {
        self.mem.populated(b, o, l)
    }
}

fn host(kind: BackendKind, capacity: Capacity, len: Bytes) -> (Host, RamBlockId) {
    let mut mem = ModelMemory::new();
    let pool = mem.add_pool(capacity);
    let rb = mem.add_block("vmem0", Backend { kind, page_size: kind.default_page_size(), capacity }, len, pool);
    (Host { mem, fail: false }, rb)
}

fn ch(tag: Tag) -> CloudHypervisor {
    CloudHypervisor { tag }
}
const V48: Tag = Tag::new(48, 0, 0);
const V52: Tag = Tag::new(52, 0, 0);
const V53: Tag = Tag::new(53, 0, 0);
fn fc() -> Firecracker {
    Firecracker { tag: Tag::new(1, 16, 1) }
}

/// A Cloud Hypervisor device of 1 GiB with 256 MiB requested.
fn ch_dev() -> MemState {
    CloudHypervisor::new_device(Gpa(ADDR), Bytes::gib(1), Bytes::mib(256))
}

/// A Firecracker device of 1 GiB with 256 MiB requested (the API's PATCH after activation).
fn fc_dev() -> MemState {
    let mut d = Firecracker::new_device(Gpa(ADDR), Bytes::gib(1), Bytes::mib(2));
    fc().set_requested_size(&mut d, Bytes::mib(256), false).unwrap();
    d
}

#[test]
fn cloud_hypervisor_nacks_beyond_the_requested_size_before_it_checks_the_range() {
    let (mut h, rb) = host(BackendKind::Memfd, Capacity::Unlimited, Bytes::gib(1));
    let mut d = ch_dev();
    let r = ch(V53);
    // 129 blocks beyond the region's end and beyond requested: NACK, not ERROR (QEMU: ERROR).
    assert_eq!(r.handle(&mut d, Request::Plug { addr: Gpa(ADDR + (1 << 30)), nb_blocks: 129 }, &mut h, rb), Response::Nack);
    // The same out-of-range start within requested: ERROR.
    assert_eq!(r.handle(&mut d, Request::Plug { addr: Gpa(ADDR + (1 << 30)), nb_blocks: 1 }, &mut h, rb), Response::Error);
    // Unaligned, below the region, and zero blocks: ERROR.
    assert_eq!(r.handle(&mut d, Request::Plug { addr: Gpa(ADDR + 4096), nb_blocks: 1 }, &mut h, rb), Response::Error);
    assert_eq!(r.handle(&mut d, Request::Plug { addr: Gpa(ADDR - MIB2), nb_blocks: 1 }, &mut h, rb), Response::Error);
    assert_eq!(r.handle(&mut d, plug(0, 0), &mut h, rb), Response::Error);
    // The whole region is usable (the usable region is the region, `Mem::new`).
    assert_eq!(r.handle(&mut d, plug(511, 1), &mut h, rb), Response::Ack);
    assert_eq!(r.handle(&mut d, plug(0, 128), &mut h, rb), Response::Nack, "128 more would pass 256M");
    assert_eq!(r.handle(&mut d, plug(0, 127), &mut h, rb), Response::Ack);
    assert_eq!(d.plugged_size, Bytes::mib(256));
    assert!(d.consistent());
    // A plug of plugged blocks, and an unplug of unplugged ones: ERROR.
    let mut d2 = ch_dev();
    assert_eq!(r.handle(&mut d2, plug(0, 2), &mut h, rb), Response::Ack);
    assert_eq!(r.handle(&mut d2, plug(1, 2), &mut h, rb), Response::Error);
    assert_eq!(r.handle(&mut d2, unplug(1, 2), &mut h, rb), Response::Error);
    assert_eq!(r.handle(&mut d2, state(0, 3), &mut h, rb), Response::AckState(BlockState::Mixed));
    assert_eq!(r.handle(&mut d2, state(0, 2), &mut h, rb), Response::AckState(BlockState::Plugged));
    assert_eq!(r.handle(&mut d2, state(2, 2), &mut h, rb), Response::AckState(BlockState::Unplugged));
    assert_eq!(r.handle(&mut d2, state(600, 1), &mut h, rb), Response::Error);
    assert_eq!(r.handle(&mut d2, unplug(0, 2), &mut h, rb), Response::Ack);
    assert_eq!(d2.plugged_size, Bytes::ZERO);
}

#[test]
fn a_plug_populates_nothing_in_cloud_hypervisor_or_firecracker() {
    for rules in [Box::new(ch(V53)) as Box<dyn DeviceRules>, Box::new(fc())] {
        let (mut h, rb) = host(BackendKind::Hugetlbfs, Capacity::Limited(Bytes::mib(4)), Bytes::gib(1));
        let mut d = if rules.malformed(Malformed::BadDescriptor) == Answer::QueueStalled { fc_dev() } else { ch_dev() };
        // 64 MiB plugged on a 4 MiB pool: ACK (QEMU with prealloc: BUSY), nothing populated.
        assert_eq!(rules.handle(&mut d, plug(0, 32), &mut h, rb), Response::Ack);
        assert_eq!(h.populated(rb, Bytes::ZERO, Bytes::gib(1)), Bytes::ZERO);
        // The guest's first write past 4 MiB is a SIGBUS.
        assert_eq!(h.touch(rb, Bytes::ZERO, Bytes::mib(64)), Err(Sigbus { offset: Bytes::mib(4) }));
    }
}

#[test]
fn cloud_hypervisor_answers_error_when_the_unplug_discard_fails_and_changes_nothing() {
    let (mut h, rb) = host(BackendKind::Memfd, Capacity::Unlimited, Bytes::gib(1));
    let mut d = ch_dev();
    let r = ch(V53);
    assert_eq!(r.handle(&mut d, plug(0, 4), &mut h, rb), Response::Ack);
    h.fail = true;
    assert_eq!(r.handle(&mut d, unplug(0, 4), &mut h, rb), Response::Error);
    assert_eq!(d.plugged_size, Bytes::mib(8));
    assert_eq!(r.handle(&mut d, Request::UnplugAll, &mut h, rb), Response::Error);
    assert_eq!(d.plugged_size, Bytes::mib(8));
    // Firecracker only logs a failed discard: the unplug is ACKed and the blocks are gone.
    let mut f = fc_dev();
    h.fail = false;
    assert_eq!(fc().handle(&mut f, plug(0, 4), &mut h, rb), Response::Ack);
    h.fail = true;
    assert_eq!(fc().handle(&mut f, unplug(0, 4), &mut h, rb), Response::Ack);
    assert_eq!(f.plugged_size, Bytes::ZERO);
}

#[test]
fn cloud_hypervisor_unplug_all_keeps_the_usable_region_and_firecracker_empties_it() {
    let (mut h, rb) = host(BackendKind::Memfd, Capacity::Unlimited, Bytes::gib(1));
    let mut d = ch_dev();
    assert_eq!(ch(V53).handle(&mut d, plug(3, 8), &mut h, rb), Response::Ack);
    assert_eq!(ch(V53).handle(&mut d, Request::UnplugAll, &mut h, rb), Response::Ack);
    assert_eq!((d.plugged_size, d.usable_region_size), (Bytes::ZERO, Bytes::gib(1)));
    assert_eq!(ch(V53).handle(&mut d, plug(3, 8), &mut h, rb), Response::Ack);

    let mut f = fc_dev();
    assert_eq!(f.usable_region_size, Bytes::mib(256), "256M rounded up to the 128M slot");
    assert_eq!(fc().handle(&mut f, plug(3, 8), &mut h, rb), Response::Ack);
    assert_eq!(fc().handle(&mut f, Request::UnplugAll, &mut h, rb), Response::Ack);
    assert_eq!((f.plugged_size, f.usable_region_size), (Bytes::ZERO, Bytes::ZERO));
    // The driver's next plug is out of the (empty) usable region: ERROR, and the Linux driver
    // marks the device broken (-EINVAL) until the guest reboots.
    let resp = fc().handle(&mut f, plug(0, 1), &mut h, rb);
    assert_eq!(resp, Response::Error);
    assert_eq!(reaction(errno(Sent::Plug, resp)), Reaction::Broken);
    // The same requested size again grows the usable region back.
    fc().set_requested_size(&mut f, Bytes::mib(256), false).unwrap();
    assert_eq!(f.usable_region_size, Bytes::mib(256));
    assert_eq!(fc().handle(&mut f, plug(0, 1), &mut h, rb), Response::Ack);
    // A requested size of 0 after UNPLUG_ALL leaves it empty.
    fc().handle(&mut f, Request::UnplugAll, &mut h, rb);
    fc().set_requested_size(&mut f, Bytes::ZERO, false).unwrap();
    assert_eq!(f.usable_region_size, Bytes::ZERO);
}

#[test]
fn firecracker_answers_error_beyond_the_requested_size_and_the_driver_gives_up() {
    let (mut h, rb) = host(BackendKind::PrivateAnonymous, Capacity::Unlimited, Bytes::gib(1));
    let mut f = fc_dev();
    assert_eq!(fc().handle(&mut f, plug(0, 120), &mut h, rb), Response::Ack);
    // The host lowers the requested size while the driver's next plug is in flight.
    fc().set_requested_size(&mut f, Bytes::mib(240), false).unwrap();
    let resp = fc().handle(&mut f, plug(120, 8), &mut h, rb);
    assert_eq!(resp, Response::Error);
    assert_eq!(reaction(errno(Sent::Plug, resp)), Reaction::Broken);
    // Cloud Hypervisor's NACK in the same place makes the driver retry.
    let mut d = ch_dev();
    assert_eq!(ch(V53).handle(&mut d, plug(0, 120), &mut h, rb), Response::Ack);
    ch(V53).set_requested_size(&mut d, Bytes::mib(240), false).unwrap();
    let resp = ch(V53).handle(&mut d, plug(120, 8), &mut h, rb);
    assert_eq!(resp, Response::Nack);
    assert_eq!(reaction(errno(Sent::Plug, resp)), Reaction::RetryNow);
    // Firecracker checks the range first: a bad range within requested is ERROR too.
    assert_eq!(fc().handle(&mut f, plug(200, 1), &mut h, rb), Response::Error, "block 200 lies beyond the 256M usable region");
    assert_eq!(fc().handle(&mut f, state(200, 1), &mut h, rb), Response::Error);
    assert_eq!(fc().handle(&mut f, state(0, 121), &mut h, rb), Response::AckState(BlockState::Mixed));
    assert_eq!(fc().handle(&mut f, unplug(119, 2), &mut h, rb), Response::Error);
    assert_eq!(fc().handle(&mut f, unplug(0, 120), &mut h, rb), Response::Ack);
    assert!(f.consistent() && f.plugged_size.is_zero());
}

#[test]
fn malformed_chains_by_release() {
    assert_eq!(ch(V48).malformed(Malformed::BadDescriptor), Answer::DeviceStopped);
    assert_eq!(ch(V48).malformed(Malformed::UnknownType(7)), Answer::DeviceStopped);
    for t in [V52, V53] {
        assert_eq!(ch(t).malformed(Malformed::BadDescriptor), Answer::ReturnedEmpty);
        assert_eq!(ch(t).malformed(Malformed::UnknownType(7)), Answer::Respond(Response::Error));
    }
    assert_eq!(fc().malformed(Malformed::UnknownType(7)), Answer::QueueStalled);
    assert_eq!(fc().malformed(Malformed::BadDescriptor), Answer::QueueStalled);
}

#[test]
fn resizes_by_profile() {
    let mut d = ch_dev();
    assert!(ch(V53).set_requested_size(&mut d, Bytes::mib(256), false).unwrap_err().contains("identical"));
    assert!(ch(V53).set_requested_size(&mut d, Bytes::gib(2), false).unwrap_err().contains("bigger than region_size"));
    assert!(ch(V53).set_requested_size(&mut d, Bytes::mib(3), false).unwrap_err().contains("not aligned"));
    assert!(ch(V53).set_requested_size(&mut d, Bytes::mib(512), true).unwrap_err().contains("VmMigrating"));
    // Before v53.0 the control loop handles the resize after the migration: not refused here.
    ch(V52).set_requested_size(&mut d, Bytes::mib(512), true).unwrap();
    assert_eq!((d.requested_size, d.usable_region_size), (Bytes::mib(512), Bytes::gib(1)));
    let mut f = fc_dev();
    assert!(fc().set_requested_size(&mut f, Bytes::mib(3), false).is_err());
    assert!(fc().set_requested_size(&mut f, Bytes::gib(2), false).is_err());
    fc().set_requested_size(&mut f, Bytes::mib(130), false).unwrap();
    assert_eq!(f.usable_region_size, Bytes::mib(256), "never shrinks");
    fc().set_requested_size(&mut f, Bytes::mib(258), false).unwrap();
    assert_eq!(f.usable_region_size, Bytes::mib(384), "the next slot multiple");
    assert!(Firecracker::check_config(Bytes::mib(192), Bytes::mib(2)).is_err());
    assert!(Firecracker::check_config(Bytes::gib(1), Bytes::mib(1)).is_err());
    assert!(Firecracker::check_config(Bytes::gib(1), Bytes::mib(6)).is_err());
    Firecracker::check_config(Bytes::gib(1), Bytes::mib(4)).unwrap();
}

#[test]
fn cloud_hypervisor_receive_sigbus_prefault_and_discard() {
    let zone = |rb, prefault| Zone { name: "mem0".into(), rb, len: Bytes::gib(1), prefault, unplugged: vec![(Bytes::mib(64), Bytes::mib(960))] };
    // 64 MiB plugged, a 32 MiB hugetlbfs quota: SIGBUS in the memory phase at 32 MiB.
    let (mut h, rb) = host(BackendKind::Hugetlbfs, Capacity::Limited(Bytes::mib(32)), Bytes::gib(1));
    let o = cloud_hypervisor_receive(&mut h, &[zone(rb, false)], &[(0, Bytes::ZERO, Bytes::mib(64))]);
    assert_eq!(o.class(), OutcomeClass::Crashed);
    assert_eq!(o.fault_site().unwrap().offset, Bytes::mib(32));
    // prefault=on populates the whole region first: a clean failure, even with 512 MiB free
    // for 64 MiB plugged.
    let (mut h, rb) = host(BackendKind::Hugetlbfs, Capacity::Limited(Bytes::mib(512)), Bytes::gib(1));
    let o = cloud_hypervisor_receive(&mut h, &[zone(rb, true)], &[(0, Bytes::ZERO, Bytes::mib(64))]);
    assert_eq!(o.class(), OutcomeClass::Failed);
    assert!(o.lines()[1].starts_with("Failed to prefault memory"), "{:?}", o.lines());
    // Enough memory: completed, and the unplugged ranges are discarded again.
    let (mut h, rb) = host(BackendKind::Hugetlbfs, Capacity::Limited(Bytes::mib(512)), Bytes::gib(1));
    h.mem.populate(rb, Bytes::mib(100), Bytes::mib(2)).unwrap();
    let o = cloud_hypervisor_receive(&mut h, &[zone(rb, false)], &[(0, Bytes::ZERO, Bytes::mib(64))]);
    assert_eq!(o.class(), OutcomeClass::Completed);
    assert_eq!(h.populated(rb, Bytes::ZERO, Bytes::gib(1)), Bytes::mib(64));
}

#[test]
fn firecracker_refuses_a_huge_page_file_restore() {
    assert_eq!(firecracker_restore(true).class(), OutcomeClass::Failed);
    assert!(firecracker_restore(true).lines()[0].contains("Please use uffd"));
    assert_eq!(firecracker_restore(false).class(), OutcomeClass::Completed);
}

#[test]
fn every_profile_has_its_rules() {
    assert!(Vmm::DEFAULT.device_rules().is_none());
    for v in &Vmm::newest()[1..] {
        assert!(v.device_rules().is_some(), "{v}");
    }
}
