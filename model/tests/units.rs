//! Units, names and the texts reports print: what the model's own types write and read back.

use vmemsim_model::{Backend, BackendKind, BlockCount, BlockIndex, BlockState, Bytes, Capacity, DiscardMethod, Gpa, Request, Response};

#[test]
fn unit_constants_and_accessors() {
    assert_eq!((Bytes::KIB.0, Bytes::MIB.0, Bytes::GIB.0, Bytes::TIB.0), (1024, 1 << 20, 1 << 30, 1 << 40));
    assert_eq!(Bytes::mib(3).get(), 3 << 20);
    assert_eq!(Bytes(7).get(), 7);
    assert_eq!(Bytes::mib(2).checked_mul(3), Some(Bytes::mib(6)));
    assert_eq!(Bytes(u64::MAX).checked_mul(2), None);
    assert_eq!(Bytes(0x12345).align_down(Bytes(0x1000)), Bytes(0x12000));
    assert_eq!(Bytes(0x3000).align_down(Bytes(0x1000)), Bytes(0x3000));
    assert_eq!(Bytes(0x2fff).align_down(Bytes(0x1000)), Bytes(0x2000));
    assert_eq!(Bytes(5).align_down(Bytes(3)), Bytes(3));
}

#[test]
fn addresses_parse_and_print() {
    assert_eq!("0x100000000".parse::<Gpa>(), Ok(Gpa(0x1_0000_0000)));
    assert_eq!("4G".parse::<Gpa>(), Ok(Gpa(1 << 32)));
    assert!("four".parse::<Gpa>().is_err());
    assert_eq!(Gpa(0x1_4000_0000).to_string(), "0x140000000");
    assert_eq!(BlockIndex(12).to_string(), "block 12");
    assert_eq!(BlockCount(3).to_string(), "3 blocks");
}

#[test]
fn sizes_serialize_as_the_parser_reads_them() {
    let text = |b: Bytes| toml::Value::try_from(b).unwrap().as_str().unwrap().to_string();
    assert_eq!(text(Bytes::mib(2)), "2M");
    assert_eq!(text(Bytes::gib(30)), "30G");
    assert_eq!(text(Bytes(4097)), "4097");
    assert_eq!(text(Bytes::ZERO), "0");
    for b in [Bytes::mib(2), Bytes(4097), Bytes::ZERO, Bytes::TIB, Bytes::KIB] {
        assert_eq!(text(b).parse::<Bytes>(), Ok(b));
    }
}

#[test]
fn requests_and_responses_print_as_traces_show_them() {
    assert_eq!(Request::Plug { addr: Gpa(0x1_0000_0000), nb_blocks: 4 }.to_string(), "PLUG 0x100000000 x4");
    assert_eq!(Request::Unplug { addr: Gpa(0x2000_0000), nb_blocks: 1 }.to_string(), "UNPLUG 0x20000000 x1");
    assert_eq!(Request::UnplugAll.to_string(), "UNPLUG_ALL");
    assert_eq!(Request::State { addr: Gpa(0x20_0000), nb_blocks: 2 }.to_string(), "STATE 0x200000 x2");
    assert_eq!(Response::Ack.to_string(), "ACK");
    assert_eq!(Response::AckState(BlockState::Mixed).to_string(), "ACK Mixed");
    assert_eq!(Response::Nack.to_string(), "NACK");
    assert_eq!(Response::Busy.to_string(), "BUSY");
    assert_eq!(Response::Error.to_string(), "ERROR");
}

#[test]
fn backend_names_and_capacities() {
    let names: Vec<&str> = BackendKind::ALL.iter().map(|k| k.name()).collect();
    assert_eq!(names, ["private-anonymous", "shared-anonymous", "memfd", "tmpfs-file", "regular-file", "hugetlbfs", "memfd-hugetlb"]);
    assert_eq!(BackendKind::ALL.iter().filter(|k| !k.supports_postcopy()).collect::<Vec<_>>(), [&BackendKind::RegularFile]);
    assert_eq!(Capacity::Unlimited.limit(), None);
    assert_eq!(Capacity::Limited(Bytes::mib(64)).limit(), Some(Bytes::mib(64)));
    let methods = [DiscardMethod::PunchHole, DiscardMethod::PunchHoleAndDontneed, DiscardMethod::Dontneed, DiscardMethod::Remove];
    let names: Vec<&str> = methods.iter().map(|m| m.name()).collect();
    assert_eq!(names, ["fallocate(PUNCH_HOLE|KEEP_SIZE)", "fallocate(PUNCH_HOLE|KEEP_SIZE)+MADV_DONTNEED", "MADV_DONTNEED", "MADV_REMOVE"]);
    let b = Backend { kind: BackendKind::Hugetlbfs, page_size: Bytes::mib(2), capacity: Capacity::Unlimited };
    assert_eq!(b.kind.default_page_size(), Bytes::mib(2));
}
