//! Every response code path of every request, in QEMU's check order
//! (`virtio_mem_state_change_request`, `virtio_mem_unplug_all`, `virtio_mem_state_request`).

use proptest::prelude::*;
use vmemsim_model::config::HostFacts;
use vmemsim_model::{
    Backend, BackendKind, BlockState, Bytes, Capacity, DeviceConfig, Gpa, HostMemory, MachineType, ModelError, Request,
    Response, Variant, Vm, VmConfig,
};

const ADDR: u64 = 0x1_0000_0000;
const MIB2: u64 = 2 << 20;

fn vm_with(kind: BackendKind, capacity: Capacity, requested: Bytes, prealloc: bool, variant: Variant) -> Vm {
    let cfg = VmConfig {
        qemu: vmemsim_model::QemuProfile::default(),
        machine: MachineType::parse("q35").unwrap(),
        devices: vec![DeviceConfig::vmem0(Gpa(ADDR), Bytes::gib(1), requested, prealloc)],
        memory: vmemsim_model::Memory::one_backend(Backend { kind, page_size: kind.default_page_size(), capacity }, ["mem0".to_string()]),
        main_ram: Bytes::ZERO,
        extra_ram: Vec::new(),
        facts: HostFacts::default(),
        variant,
    };
    Vm::realize(&cfg).unwrap().0
}

fn vm() -> Vm {
    vm_with(BackendKind::Memfd, Capacity::Unlimited, Bytes::mib(256), false, Variant::Faithful)
}

fn plug(at_block: u64, n: u16) -> Request {
    Request::Plug { addr: Gpa(ADDR + at_block * MIB2), nb_blocks: n }
}
fn unplug(at_block: u64, n: u16) -> Request {
    Request::Unplug { addr: Gpa(ADDR + at_block * MIB2), nb_blocks: n }
}
fn state(at_block: u64, n: u16) -> Request {
    Request::State { addr: Gpa(ADDR + at_block * MIB2), nb_blocks: n }
}

#[test]
fn usable_region_is_requested_plus_extent_capped_by_region() {
    let v = vm();
    assert_eq!(v.devices[0].usable_region_size(), Bytes::mib(512));
    let v = vm_with(BackendKind::Memfd, Capacity::Unlimited, Bytes::mib(900), false, Variant::Faithful);
    assert_eq!(v.devices[0].usable_region_size(), Bytes::gib(1));
    let v = vm_with(BackendKind::Memfd, Capacity::Unlimited, Bytes::ZERO, false, Variant::Faithful);
    assert_eq!(v.devices[0].usable_region_size(), Bytes::ZERO);
}

#[test]
fn plug_range_errors_come_first() {
    let mut v = vm();
    // Misaligned, zero blocks, below the region, at and across the usable end, wrapping.
    let bad = [
        Request::Plug { addr: Gpa(ADDR + 4096), nb_blocks: 1 },
        plug(0, 0),
        Request::Plug { addr: Gpa(ADDR - MIB2), nb_blocks: 1 },
        plug(256, 1),
        plug(255, 2),
        Request::Plug { addr: Gpa(u64::MAX - MIB2 + 1), nb_blocks: 2 },
    ];
    for req in bad {
        assert_eq!(v.request(0, req, false), Response::Error, "{req}");
    }
    // An invalid range that also exceeds the requested size: ERROR wins over NACK.
    assert_eq!(v.request(0, plug(200, 200), false), Response::Error);
    assert_eq!(v.devices[0].size(), Bytes::ZERO);
}

#[test]
fn plug_nack_comes_before_state_and_busy_checks() {
    let mut v = vm();
    assert_eq!(v.request(0, plug(0, 128), false), Response::Ack);
    // Beyond requested and overlapping plugged blocks: NACK, not ERROR.
    assert_eq!(v.request(0, plug(0, 1), false), Response::Nack);
    // Beyond requested while busy: NACK, not BUSY.
    assert_eq!(v.request(0, plug(128, 1), true), Response::Nack);
}

#[test]
fn plug_state_error_comes_before_busy() {
    let mut v = vm();
    assert_eq!(v.request(0, plug(0, 4), false), Response::Ack);
    // Partially plugged range while busy: ERROR, not BUSY.
    assert_eq!(v.request(0, plug(2, 4), true), Response::Error);
    assert_eq!(v.request(0, plug(4, 4), true), Response::Busy);
    assert_eq!(v.request(0, plug(4, 4), false), Response::Ack);
    assert_eq!(v.devices[0].size(), Bytes::mib(16));
}

#[test]
fn failed_prealloc_answers_busy_rolls_back_and_warns_once() {
    let mut v = vm_with(BackendKind::Hugetlbfs, Capacity::Limited(Bytes::mib(6)), Bytes::mib(256), true, Variant::Faithful);
    assert_eq!(v.request(0, plug(0, 2), false), Response::Ack);
    assert_eq!(v.request(0, plug(2, 2), false), Response::Busy);
    assert_eq!(v.request(0, plug(4, 2), false), Response::Busy);
    assert_eq!(v.devices[0].size(), Bytes::mib(4));
    // The rollback discarded the page the failed prealloc did populate.
    let rb = v.devices[0].ram_block();
    assert_eq!(v.host.populated(rb, Bytes::ZERO, Bytes::gib(1)), Bytes::mib(4));
    assert_eq!(v.lines, vec!["warning: qemu_prealloc_mem: preallocating memory failed: Bad address"]);
}

#[test]
fn no_rollback_variant_breaks_the_invariant() {
    let mut v = vm_with(BackendKind::Hugetlbfs, Capacity::Limited(Bytes::mib(2)), Bytes::mib(256), true, Variant::NoRollback);
    assert_eq!(v.request(0, plug(0, 2), false), Response::Busy);
    assert!(v.devices[0].check_invariant().is_err());
    let rb = v.devices[0].ram_block();
    assert_eq!(v.host.populated(rb, Bytes::ZERO, Bytes::gib(1)), Bytes::mib(2));
}

#[test]
fn unplug_paths() {
    let mut v = vm();
    assert_eq!(v.request(0, plug(0, 8), false), Response::Ack);
    assert_eq!(v.request(0, unplug(0, 0), false), Response::Error);
    assert_eq!(v.request(0, unplug(6, 4), false), Response::Error, "partly unplugged");
    assert_eq!(v.request(0, unplug(0, 4), true), Response::Busy);
    // UNPLUG never NACKs, even with the requested size below the plugged size.
    v.devices[0].set_requested_size(Bytes::ZERO).unwrap();
    assert_eq!(v.request(0, unplug(0, 4), false), Response::Ack);
    assert_eq!(v.devices[0].size(), Bytes::mib(8));
}

#[test]
fn unplug_frees_memory_with_qemus_discard() {
    let mut v = vm_with(BackendKind::TmpfsFile, Capacity::Limited(Bytes::mib(8)), Bytes::mib(256), true, Variant::Faithful);
    assert_eq!(v.request(0, plug(0, 4), false), Response::Ack);
    assert_eq!(v.request(0, plug(4, 1), false), Response::Busy, "the quota is full");
    assert_eq!(v.request(0, unplug(0, 2), false), Response::Ack);
    assert_eq!(v.request(0, plug(4, 2), false), Response::Ack, "the discard gave the quota back");
}

#[test]
fn unplug_all_paths() {
    let mut v = vm();
    // Nothing plugged: ACK even while busy, and the usable region is recomputed.
    v.devices[0].set_requested_size(Bytes::ZERO).unwrap();
    assert_eq!(v.devices[0].usable_region_size(), Bytes::mib(512), "the setter only grows");
    assert_eq!(v.request(0, Request::UnplugAll, true), Response::Ack);
    assert_eq!(v.devices[0].usable_region_size(), Bytes::ZERO);
    v.devices[0].set_requested_size(Bytes::mib(256)).unwrap();
    assert_eq!(v.request(0, plug(0, 8), false), Response::Ack);
    assert_eq!(v.request(0, Request::UnplugAll, true), Response::Busy);
    assert_eq!(v.devices[0].size(), Bytes::mib(16));
    assert_eq!(v.request(0, Request::UnplugAll, false), Response::Ack);
    assert_eq!(v.devices[0].size(), Bytes::ZERO);
    assert!(v.devices[0].plug_map().none_plugged());
    assert_eq!(v.devices[0].unplugged_runs().len(), 1);
}

#[test]
fn state_paths_never_busy() {
    let mut v = vm();
    assert_eq!(v.request(0, plug(0, 2), false), Response::Ack);
    assert_eq!(v.request(0, state(0, 0), true), Response::Error);
    assert_eq!(v.request(0, state(300, 1), true), Response::Error);
    assert_eq!(v.request(0, state(0, 2), true), Response::AckState(BlockState::Plugged));
    assert_eq!(v.request(0, state(2, 2), true), Response::AckState(BlockState::Unplugged));
    assert_eq!(v.request(0, state(1, 2), true), Response::AckState(BlockState::Mixed));
    assert_eq!(Response::AckState(BlockState::Mixed).code(), 0);
    assert_eq!(Response::Busy.code(), 2);
}

#[test]
fn requested_size_setter_checks_and_grows_only() {
    let mut v = vm();
    let err = v.devices[0].set_requested_size(Bytes::mib(3)).unwrap_err();
    assert_eq!(
        err,
        ModelError::RequestedSize { device: "vmem0".into(), message: "'requested-size' has to be multiples of 'block-size' (0x200000)".into() }
    );
    let err = v.devices[0].set_requested_size(Bytes::gib(2)).unwrap_err();
    assert!(err.to_string().ends_with("'requested-size' cannot exceed the memory backend size(0x40000000)"), "{err}");
    v.devices[0].set_requested_size(Bytes::mib(600)).unwrap();
    assert_eq!(v.devices[0].usable_region_size(), Bytes::mib(856));
    v.devices[0].set_requested_size(Bytes::mib(900)).unwrap();
    assert_eq!(v.devices[0].usable_region_size(), Bytes::gib(1), "capped by the region");
    v.devices[0].set_requested_size(Bytes::mib(2)).unwrap();
    assert_eq!(v.devices[0].usable_region_size(), Bytes::gib(1), "the setter never shrinks");
}

#[test]
fn system_reset_unplugs_unless_busy() {
    let mut v = vm();
    assert_eq!(v.request(0, plug(0, 8), false), Response::Ack);
    v.devices[0].system_reset(&mut v.host, true);
    assert_eq!(v.devices[0].size(), Bytes::mib(16));
    v.devices[0].system_reset(&mut v.host, false);
    assert_eq!(v.devices[0].size(), Bytes::ZERO);
}

fn any_request() -> impl Strategy<Value = (Request, bool)> {
    let blk = 0u64..300;
    let n = 0u16..80;
    (
        prop_oneof![
            (blk.clone(), n.clone()).prop_map(|(b, n)| plug(b, n)),
            (blk.clone(), n.clone()).prop_map(|(b, n)| unplug(b, n)),
            Just(Request::UnplugAll),
            (blk, n).prop_map(|(b, n)| state(b, n)),
        ],
        any::<bool>(),
    )
}

proptest! {
    /// Any sequence of requests keeps plugged size == popcount × block size (asserted inside
    /// the device after every request), never plugs beyond the requested size, never plugs
    /// outside the usable region, and never changes state when busy.
    #[test]
    fn request_sequences_keep_the_invariants(reqs in proptest::collection::vec(any_request(), 1..60)) {
        let mut v = vm_with(BackendKind::Hugetlbfs, Capacity::Limited(Bytes::mib(200)), Bytes::mib(256), true, Variant::Faithful);
        for (req, busy) in reqs {
            let before = std::sync::Arc::clone(v.devices[0].plug_map());
            let resp = v.request(0, req, busy);
            let d = &v.devices[0];
            prop_assert!(d.check_invariant().is_ok());
            prop_assert!(d.size() <= d.requested_size());
            if busy && !matches!(req, Request::State { .. }) && !(req == Request::UnplugAll && before.none_plugged()) {
                prop_assert_ne!(resp, Response::Ack);
                prop_assert_eq!(&before, d.plug_map());
            }
            let usable_end = d.usable_region_size().0 / MIB2;
            prop_assert!(d.plugged_runs().iter().all(|r| r.first.0 + r.count.0 <= usable_end));
            // Plugged memory with prealloc is populated; the rest is not.
            let rb = d.ram_block();
            prop_assert_eq!(v.host.populated(rb, Bytes::ZERO, Bytes::gib(1)), d.size());
        }
    }
}

/// `virtio_mem_set_block_state` warns of a failed preallocation through a `static bool warned`:
/// once per QEMU process, not once per device. Two devices on a used-up backend each answer
/// BUSY to a plug, and the process prints one warning.
#[test]
fn a_failed_preallocation_warns_once_per_process_not_per_device() {
    let second = DeviceConfig { id: "vmem1".into(), pci: "0000:00:04.0".into(), memdev: "mem1".into(), ..DeviceConfig::vmem0(Gpa(ADDR + (1 << 30)), Bytes::gib(1), Bytes::mib(256), true) };
    let kind = BackendKind::Hugetlbfs;
    let cfg = VmConfig {
        qemu: vmemsim_model::QemuProfile::default(),
        machine: MachineType::parse("q35").unwrap(),
        devices: vec![DeviceConfig::vmem0(Gpa(ADDR), Bytes::gib(1), Bytes::mib(256), true), second],
        memory: vmemsim_model::Memory::one_backend(Backend { kind, page_size: kind.default_page_size(), capacity: Capacity::Limited(Bytes::ZERO) }, ["mem0".to_string(), "mem1".to_string()]),
        main_ram: Bytes::ZERO,
        extra_ram: Vec::new(),
        facts: HostFacts::default(),
        variant: Variant::Faithful,
    };
    let mut v = Vm::realize(&cfg).unwrap().0;
    assert_eq!(v.request(0, plug(0, 1), false), Response::Busy);
    assert_eq!(v.request(1, Request::Plug { addr: Gpa(ADDR + (1 << 30)), nb_blocks: 1 }, false), Response::Busy);
    assert_eq!(v.request(0, plug(1, 1), false), Response::Busy);
    let warnings: Vec<&String> = v.lines.iter().filter(|l| l.contains("preallocating memory failed")).collect();
    assert_eq!(warnings, ["warning: qemu_prealloc_mem: preallocating memory failed: Bad address"]);
}

/// `virtio_mem_set_requested_size` accepts the whole region: only a size above it is refused.
#[test]
fn requested_size_may_be_the_whole_region() {
    let mut v = vm();
    v.devices[0].set_requested_size(Bytes::gib(1)).unwrap();
    assert_eq!(v.devices[0].requested_size(), Bytes::gib(1));
    assert_eq!(v.devices[0].usable_region_size(), Bytes::gib(1));
}

/// A guest range is plugged memory when every block it touches is plugged: ranges inside,
/// at the edges of and across a plugged run of blocks 2 and 3.
#[test]
fn bytes_plugged_asks_every_block_the_range_touches() {
    let mut v = vm();
    assert_eq!(v.request(0, plug(2, 2), false), Response::Ack);
    let d = &v.devices[0];
    let m = |n: u64| Bytes(n * MIB2);
    assert!(d.bytes_plugged(m(2), m(2)), "the two blocks exactly");
    assert!(d.bytes_plugged(m(2), Bytes(4096)), "the first page of the run");
    assert!(d.bytes_plugged(Bytes(4 * MIB2 - 4096), Bytes(4096)), "the last page of the run");
    assert!(d.bytes_plugged(Bytes(3 * MIB2 - 4096), Bytes(8192)), "across the two plugged blocks");
    assert!(!d.bytes_plugged(Bytes(2 * MIB2 - 4096), Bytes(4096)), "the page before the run");
    assert!(!d.bytes_plugged(Bytes(4 * MIB2), Bytes(4096)), "the page after it");
    assert!(!d.bytes_plugged(Bytes(4 * MIB2 - 4096), Bytes(8192)), "straddling its end");
    assert!(!d.bytes_plugged(Bytes(2 * MIB2 - 4096), Bytes(8192)), "straddling its start");
    assert!(!d.bytes_plugged(m(0), m(1)), "an unplugged block");
}

/// The late section's sizes replace the destination's own, and it is named after the device's
/// PCI address as QEMU's `vmstate_register` does (`<pci>/virtio-mem`).
#[test]
fn late_section_sizes_and_name() {
    let mut v = vm();
    assert_eq!(v.devices[0].late_idstr(), "0000:00:03.0/virtio-mem");
    v.devices[0].load_sizes(Bytes::mib(640), Bytes::mib(384));
    assert_eq!((v.devices[0].usable_region_size(), v.devices[0].requested_size()), (Bytes::mib(640), Bytes::mib(384)));
}

/// The device's one-line summary, as the trace's set-up lines print it.
#[test]
fn summary_names_the_sizes_and_properties() {
    let mut v = vm();
    assert_eq!(v.request(0, plug(0, 2), false), Response::Ack);
    assert_eq!(v.devices[0].summary(), "region 1 GiB, block 2 MiB, requested 256 MiB, plugged 4 MiB in 1 run(s), prealloc=false, early-migration=true");
}
