//! Migration ordering, preallocation and discard, end to end on the model.

use vmemsim_model::config::HostFacts;
use vmemsim_model::migration::destination::{Destination, PostcopyState};
use vmemsim_model::migration::item::Item;
use vmemsim_model::migration::source;
use vmemsim_model::migration::drive;
use vmemsim_model::PostcopyStart;
use vmemsim_model::{
    Backend, BackendKind, BlockCount, BlockIndex, Bytes, Capacity, DeviceConfig, GuestRange, HostMemory, MachineType,
    Mode, Outcome, OutcomeClass, Plan, Request, Response, Stage, Variant, Vm, VmConfig,
};

struct Setup {
    machine: &'static str,
    kind: BackendKind,
    capacity: Capacity,
    region: Bytes,
    plugged: Bytes,
    prealloc: bool,
    variant: Variant,
}

impl Default for Setup {
    fn default() -> Setup {
        Setup {
            machine: "q35",
            kind: BackendKind::Hugetlbfs,
            capacity: Capacity::Unlimited,
            region: Bytes::gib(1),
            plugged: Bytes::mib(256),
            prealloc: true,
            variant: Variant::Faithful,
        }
    }
}

fn device(region: Bytes, requested: Bytes, prealloc: bool) -> DeviceConfig {
    DeviceConfig::vmem0(vmemsim_model::Gpa(0x1_4000_0000), region, requested, prealloc)
}

fn config(s: &Setup, capacity: Capacity) -> VmConfig {
    VmConfig {
        qemu: vmemsim_model::QemuProfile::default(),
        machine: MachineType::parse(s.machine).unwrap(),
        devices: vec![device(s.region, s.plugged, s.prealloc)],
        memory: vmemsim_model::Memory::one_backend(Backend { kind: s.kind, page_size: s.kind.default_page_size(), capacity }, ["mem0".to_string()]),
        main_ram: Bytes::mib(512),
        extra_ram: Vec::new(),
        facts: HostFacts::default(),
        variant: s.variant,
    }
}

fn source(s: &Setup) -> Vm {
    let (mut vm, _) = Vm::realize(&config(s, Capacity::Unlimited)).unwrap();
    assert_eq!(vm.guest_plug_size(0, s.plugged, false), None);
    vm
}

fn destination(s: &Setup) -> Destination<vmemsim_model::ModelMemory> {
    Destination::new(Vm::realize(&config(s, s.capacity)).unwrap().0)
}

/// Feeds the whole stream and returns the destination (for inspection) or the outcome.
fn feed_all(s: &Setup, plan: &Plan) -> Result<Destination<vmemsim_model::ModelMemory>, Outcome> {
    let src = source(s);
    let mut dest = destination(s);
    for item in source::stream(&src, plan) {
        dest.apply(&item)?;
    }
    Ok(dest)
}

fn outcome(s: &Setup, plan: &Plan) -> Outcome {
    let src = source(s);
    drive::migrate(&src, Vm::realize(&config(s, s.capacity)).unwrap().0, plan)
}

fn postcopy(percent: u8) -> Plan {
    Plan { mode: Mode::Postcopy { start: PostcopyStart::Share(percent) }, ..Plan::default() }
}

#[test]
fn precopy_stream_order_follows_qemu() {
    let s = Setup::default();
    let items = source::stream(&source(&s), &Plan::default());
    let names: Vec<String> = items.iter().map(|i| i.to_string().split(' ').next().unwrap().to_string()).collect();
    assert_eq!(names, ["HEADER", "START", "FULL", "RAM", "RAM", "CMD", "FULL", "EOF"]);
    assert!(matches!(items[2], Item::Early(_)), "the early section comes right after the RAM setup");
    assert_eq!(items[5], Item::SwitchoverStart);
    // Old machines: no early section, no switchover-start, the bitmap in the late section.
    let old = Setup { machine: "pc-q35-7.1", ..Setup::default() };
    let items = source::stream(&source(&old), &Plan::default());
    assert!(!items.iter().any(|i| matches!(i, Item::Early(_) | Item::SwitchoverStart)));
    assert!(matches!(&items[items.len() - 2], Item::Late(l) if l.plug.is_some()));
}

#[test]
fn postcopy_stream_order_follows_qemu() {
    let s = Setup::default();
    let items = source::stream(&source(&s), &postcopy(50));
    let pos = |f: &dyn Fn(&Item) -> bool| items.iter().position(f).unwrap();
    let advise = pos(&|i| *i == Item::PostcopyAdvise);
    let early = pos(&|i| matches!(i, Item::Early(_)));
    let discard = pos(&|i| matches!(i, Item::RamDiscard { .. }));
    let listen = pos(&|i| *i == Item::Listen);
    let late = pos(&|i| matches!(i, Item::Late(_)));
    let run = pos(&|i| *i == Item::Run);
    assert!(advise < early && early < discard && discard < listen && listen < late && late < run);
    assert_eq!(&items[..3], &[Item::Header { machine: "pc-q35-10.0".into() }, Item::OpenReturnPath, Item::Ping(1)]);
    assert!(items[run + 2..items.len() - 1].iter().all(|i| matches!(i, Item::Ram { .. })));
}

#[test]
fn precopy_with_prealloc_populates_exactly_the_plugged_blocks() {
    let s = Setup { capacity: Capacity::Limited(Bytes::mib(256)), ..Setup::default() };
    let dest = feed_all(&s, &Plan::default()).unwrap();
    let d = &dest.vm().devices[0];
    assert_eq!(d.size(), Bytes::mib(256));
    let rb = d.ram_block();
    assert_eq!(dest.vm().host.populated(rb, Bytes::ZERO, Bytes::mib(256)), Bytes::mib(256));
    assert_eq!(dest.vm().host.populated(rb, Bytes::mib(256), Bytes::mib(768)), Bytes::ZERO);
}

#[test]
fn exactly_enough_completes_and_one_block_short_fails_gracefully() {
    let enough = Setup { capacity: Capacity::Limited(Bytes::mib(256)), ..Setup::default() };
    assert_eq!(outcome(&enough, &Plan::default()), Outcome::Completed { lines: vec![] });
    let short = Setup { capacity: Capacity::Limited(Bytes::mib(254)), ..Setup::default() };
    let o = outcome(&short, &Plan::default());
    assert_eq!(o.class(), OutcomeClass::Failed);
    assert_eq!(o.stage(), Some(&Stage::EarlySection("0000:00:03.0/virtio-mem-device-early".into())));
    let zero = Setup { capacity: Capacity::Limited(Bytes::ZERO), ..Setup::default() };
    assert_eq!(outcome(&zero, &Plan::default()).class(), OutcomeClass::Failed);
}

#[test]
fn without_prealloc_a_short_destination_dies_at_the_first_page_past_capacity() {
    let s = Setup { capacity: Capacity::Limited(Bytes::mib(64)), prealloc: false, ..Setup::default() };
    match outcome(&s, &Plan::default()) {
        Outcome::Crashed { stage, site, .. } => {
            assert_eq!(stage, Stage::RamLoad);
            assert_eq!(site.block, "0000:00:03.0/mem0");
            assert_eq!(site.offset, Bytes::mib(64));
        }
        other => panic!("expected SIGBUS, got {other}"),
    }
}

#[test]
fn a_16_tib_region_migrates_without_per_page_state() {
    let s = Setup {
        region: Bytes(16 << 40),
        plugged: Bytes::gib(64),
        kind: BackendKind::MemfdHugetlb,
        capacity: Capacity::Limited(Bytes::gib(64)),
        ..Setup::default()
    };
    let src = source(&s);
    let items = source::stream(&src, &Plan::default());
    assert!(items.len() < 12, "items follow runs, not pages: {}", items.len());
    let dest = feed_all(&s, &Plan::default()).unwrap();
    let rb = dest.vm().devices[0].ram_block();
    assert_eq!(dest.vm().host.populated(rb, Bytes::ZERO, Bytes(16 << 40)), Bytes::gib(64));
    assert_eq!(dest.received(1).runs(), 1);
    assert_eq!(outcome(&s, &Plan::default()), Outcome::Completed { lines: vec![] });
}

#[test]
fn postcopy_faithful_leaves_every_unreceived_page_absent_at_listen() {
    let s = Setup { kind: BackendKind::Memfd, ..Setup::default() };
    let src = source(&s);
    let mut dest = destination(&s);
    for item in source::stream(&src, &postcopy(30)) {
        if item == Item::Listen {
            let rb = dest.vm().devices[0].ram_block();
            let populated = dest.vm().host.populated(rb, Bytes::ZERO, Bytes::gib(1));
            let received = Bytes(dest.received(1).total());
            assert_eq!(populated, received, "only pages that arrived before LISTEN are present");
        }
        dest.apply(&item).unwrap();
    }
    assert_eq!(dest.postcopy_state(), PostcopyState::End);
    assert_eq!(outcome(&s, &postcopy(30)), Outcome::Completed { lines: vec![] });
}

#[test]
fn postcopy_prealloc_checks_capacity_before_listen() {
    let s = Setup { capacity: Capacity::Limited(Bytes::mib(128)), ..Setup::default() };
    let o = outcome(&s, &postcopy(50));
    assert_eq!(o.class(), OutcomeClass::Failed);
    assert!(matches!(o.stage(), Some(Stage::EarlySection(_))));
}

/// The source's RAM_DISCARD commands cover every page not yet sent
/// (`ram_postcopy_send_discard_bitmap`: "Pages that have never been transmitted"), so they
/// also drop what the early section preallocated. The discard in `virtio_mem_post_load_early`
/// matters when no discard command covers a page: then, without it, placement hits EEXIST.
#[test]
fn no_discard_after_prealloc_hits_eexist_when_no_discard_command_covers_the_page() {
    let run = |variant, keep_discards: bool| {
        let s = Setup { variant, ..Setup::default() };
        let src = source(&s);
        let plan = postcopy(0);
        let items: Vec<Item> = source::stream(&src, &plan)
            .into_iter()
            .filter(|i| keep_discards || !matches!(i, Item::RamDiscard { .. }))
            .collect();
        drive::feed(destination(&s), &items, &plan, |_, _| {})
    };
    assert_eq!(run(Variant::NoDiscardAfterPrealloc, true).class(), OutcomeClass::Completed);
    assert_eq!(run(Variant::Faithful, false).class(), OutcomeClass::Completed);
    let o = run(Variant::NoDiscardAfterPrealloc, false);
    assert_eq!(o.class(), OutcomeClass::PostcopyFailed);
    assert_eq!(o.lines()[0], "postcopy_place_page: File exists copy host: 0000:00:03.0/mem0+0x0 from: tmp-page (size: 2097152)", "hugetlb pages are copied from the zero page: {o}");
}

#[test]
fn dontneed_on_shared_memory_hits_eexist_under_postcopy() {
    let s = Setup { variant: Variant::DontneedOnShared, kind: BackendKind::Memfd, ..Setup::default() };
    assert_eq!(outcome(&s, &postcopy(20)).class(), OutcomeClass::PostcopyFailed);
    // On private anonymous memory MADV_DONTNEED frees: no EEXIST.
    let s = Setup { variant: Variant::DontneedOnShared, kind: BackendKind::PrivateAnonymous, ..Setup::default() };
    assert_eq!(outcome(&s, &postcopy(20)).class(), OutcomeClass::Completed);
}

#[test]
fn a_drained_pool_after_the_early_discard_fails_postcopy_placement() {
    // "nothing (not even hugetlb reservations) guarantees for postcopy that backend memory is
    // still free after it was freed" (d71920d425).
    let s = Setup { capacity: Capacity::Limited(Bytes::mib(256)), ..Setup::default() };
    let src = source(&s);
    let (vm, pools) = Vm::realize(&config(&s, s.capacity)).unwrap();
    let mut dest = Destination::new(vm);
    let mut outcome = None;
    for item in source::stream(&src, &postcopy(0)) {
        if item == Item::Listen {
            dest.vm_mut().host.drain_pool(pools.of(vmemsim_model::LimitId(0)), Bytes::mib(100));
        }
        if let Err(o) = dest.apply(&item) {
            outcome = Some(o);
            break;
        }
    }
    let o = outcome.expect("placement runs out of huge pages");
    assert_eq!(o.class(), OutcomeClass::PostcopyFailed);
    // hugetlb's UFFDIO_COPY reports the failed allocation as EEXIST (mm/hugetlb.c), which
    // QEMU prints as "File exists"; the destination knows it is not a present page.
    assert!(o.lines()[0].starts_with("postcopy_place_page: File exists"), "{o}");
    assert_eq!(dest.placement_error().map(|e| e.errno), Some(vmemsim_model::host::Errno::ExistNoPage));
}

#[test]
fn free_page_hints_crash_the_guest_later_without_prealloc() {
    let hint = GuestRange { device: 0, offset: Bytes::mib(100), len: Bytes::mib(20) };
    let plan = Plan { hints: vec![hint], touches: vec![hint], ..Plan::default() };
    // The destination has room for what is sent, not for the hinted pages.
    let s = Setup { capacity: Capacity::Limited(Bytes::mib(236)), prealloc: false, ..Setup::default() };
    match outcome(&s, &plan) {
        Outcome::RuntimeCrash { site, why, .. } => {
            assert_eq!(site.offset, Bytes::mib(100));
            assert!(why.contains("free page hint"), "{why}");
        }
        other => panic!("expected a run-time SIGBUS, got {other}"),
    }
    // With prealloc the same capacity is refused up front; with enough it completes.
    let s = Setup { capacity: Capacity::Limited(Bytes::mib(236)), ..Setup::default() };
    assert_eq!(outcome(&s, &plan).class(), OutcomeClass::Failed);
    let s = Setup { capacity: Capacity::Limited(Bytes::mib(256)), ..Setup::default() };
    assert_eq!(outcome(&s, &plan).class(), OutcomeClass::Completed);
    // Under postcopy the balloon does not hint: everything is sent.
    let s = Setup { capacity: Capacity::Limited(Bytes::mib(256)), prealloc: false, ..Setup::default() };
    let pc = Plan { mode: Mode::Postcopy { start: PostcopyStart::Share(50) }, ..plan };
    assert_eq!(outcome(&s, &pc).class(), OutcomeClass::Completed);
}

#[test]
fn precopy_discards_unplugged_blocks_after_load() {
    // Blocks the destination had populated for other reasons are discarded by
    // virtio_mem_restore_unplugged.
    let s = Setup::default();
    let src = source(&s);
    let mut dest = destination(&s);
    let rb = dest.vm().devices[0].ram_block();
    dest.vm_mut().host.populate(rb, Bytes::mib(512), Bytes::mib(64)).unwrap();
    for item in source::stream(&src, &Plan::default()) {
        dest.apply(&item).unwrap();
    }
    assert_eq!(dest.vm().host.populated(rb, Bytes::mib(256), Bytes::mib(768)), Bytes::ZERO);
}

#[test]
fn sanity_checks_name_the_changed_property() {
    let s = Setup::default();
    let src = source(&s);
    let cases: Vec<(Box<dyn Fn(&mut VmConfig)>, &str)> = vec![
        (Box::new(|c| c.devices[0].block_size = Some(Bytes::mib(4))), "Property 'block-size' changed from 0x200000 to 0x400000"),
        (Box::new(|c| c.devices[0].memaddr = vmemsim_model::Gpa(0x2_0000_0000)), "Property 'memaddr' changed from 0x140000000 to 0x200000000"),
        (
            Box::new(|c| {
                c.facts.numa_nodes = 2;
                c.devices[0].node = 1;
            }),
            "Property 'node' changed from 0 to 1",
        ),
    ];
    for (edit, line) in cases {
        let mut cfg = config(&s, Capacity::Unlimited);
        edit(&mut cfg);
        let o = drive::migrate(&src, Vm::realize(&cfg).unwrap().0, &Plan::default());
        assert_eq!(
            o.lines(),
            [
                line.to_string(),
                "error while loading state for instance 0x0 of device '0000:00:03.0/virtio-mem-device-early'".into(),
                "load of migration failed: Invalid argument".into()
            ]
        );
    }
    // A different region size is caught earlier, by the RAM block list.
    let mut cfg = config(&s, Capacity::Unlimited);
    cfg.devices[0].region_size = Bytes::gib(2);
    let o = drive::migrate(&src, Vm::realize(&cfg).unwrap().0, &Plan::default());
    assert_eq!(o.stage(), Some(&Stage::RamSetup));
}

#[test]
fn mismatched_machine_types_are_refused_at_the_header() {
    let s = Setup::default();
    let src = source(&s);
    let old = Setup { machine: "pc-q35-7.1", ..Setup::default() };
    let o = drive::migrate(&src, Vm::realize(&config(&old, Capacity::Unlimited)).unwrap().0, &Plan::default());
    assert_eq!(o.stage(), Some(&Stage::Header));
    assert_eq!(o.lines()[0], "Machine type received is 'pc-q35-10.0' and local is 'pc-q35-7.1'");
}

#[test]
fn out_of_order_postcopy_commands_are_refused() {
    let s = Setup::default();
    for (items, line) in [
        (vec![Item::Listen], "CMD_POSTCOPY_LISTEN in wrong postcopy state (0)"),
        (vec![Item::Run], "CMD_POSTCOPY_RUN in wrong postcopy state (0)"),
        (vec![Item::PostcopyAdvise, Item::PostcopyAdvise], "CMD_POSTCOPY_ADVISE in wrong postcopy state (1)"),
        (vec![Item::PostcopyAdvise, Item::Listen, Item::RamDiscard { block: 0, ranges: vec![] }], "CMD_POSTCOPY_RAM_DISCARD in wrong postcopy state (3)"),
    ] {
        let mut dest = destination(&s);
        dest.apply(&Item::Header { machine: "pc-q35-10.0".into() }).unwrap();
        let err = items.iter().find_map(|i| dest.apply(i).err()).expect("refused");
        assert_eq!(err.lines()[0], line);
    }
}

#[test]
fn the_destination_device_is_busy_during_incoming_postcopy() {
    let s = Setup::default();
    let src = source(&s);
    let mut dest = destination(&s);
    for item in source::stream(&src, &postcopy(50)) {
        dest.apply(&item).unwrap();
        if matches!(item, Item::RamDiscard { .. }) {
            assert!(dest.in_incoming_postcopy());
            let busy = dest.in_incoming_postcopy();
            let addr = vmemsim_model::Gpa(0x1_4000_0000);
            let resp = dest.vm_mut().request(0, Request::Unplug { addr, nb_blocks: 1 }, busy);
            assert_eq!(resp, Response::Busy);
        }
    }
    assert!(!dest.in_incoming_postcopy());
}

#[test]
fn variants_change_what_a_short_destination_does() {
    let short = |variant| Setup { capacity: Capacity::Limited(Bytes::mib(64)), variant, ..Setup::default() };
    assert_eq!(outcome(&short(Variant::Faithful), &Plan::default()).class(), OutcomeClass::Failed);
    assert_eq!(outcome(&short(Variant::Pre80), &Plan::default()).class(), OutcomeClass::Crashed);
    assert_eq!(outcome(&short(Variant::PreallocAfterRamLoad), &Plan::default()).class(), OutcomeClass::Crashed);
    // Whole-region prealloc refuses a destination that has exactly enough for the plugged blocks.
    let exact = |variant| Setup { capacity: Capacity::Limited(Bytes::mib(256)), variant, ..Setup::default() };
    assert_eq!(outcome(&exact(Variant::Faithful), &Plan::default()).class(), OutcomeClass::Completed);
    assert_eq!(outcome(&exact(Variant::PreallocWholeRegion), &Plan::default()).class(), OutcomeClass::Failed);
}

#[test]
fn plugged_runs_with_holes_are_preallocated_run_by_run() {
    let s = Setup::default();
    let (mut src, _) = Vm::realize(&config(&s, Capacity::Unlimited)).unwrap();
    for first in [0u64, 10, 50, 100] {
        assert_eq!(src.guest_plug(0, BlockIndex(first), BlockCount(5), false), None);
    }
    let mut dest = destination(&s);
    for item in source::stream(&src, &Plan::default()) {
        dest.apply(&item).unwrap();
    }
    let d = &dest.vm().devices[0];
    assert_eq!(d.plugged_runs().len(), 4);
    assert_eq!(dest.vm().host.populated(d.ram_block(), Bytes::ZERO, Bytes::gib(1)), Bytes::mib(40));
}

#[test]
fn postcopy_onto_a_regular_file_is_refused_at_advise() {
    let s = Setup { kind: BackendKind::RegularFile, prealloc: false, ..Setup::default() };
    let o = outcome(&s, &postcopy(0));
    assert_eq!((o.class(), o.stage()), (OutcomeClass::Failed, Some(&Stage::Advise)), "{o}");
    assert_eq!(o.lines()[0], "Postcopy is not supported on regular-file memory");
    // tmpfs can be registered with userfaultfd: the same stream passes advise.
    let s = Setup { kind: BackendKind::TmpfsFile, prealloc: false, ..Setup::default() };
    assert_ne!(outcome(&s, &postcopy(0)).stage(), Some(&Stage::Advise));
}
