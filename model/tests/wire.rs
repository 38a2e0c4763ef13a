//! The stream codec: the reference's own bytes, round trips of model migrations, and every kind
//! of malformed input answered with an error that names the byte offset.

use std::io::Cursor;

use proptest::prelude::*;
use vmemsim_model::config::HostFacts;
use vmemsim_model::host::PageKind;
use vmemsim_model::migration::item::Item;
use vmemsim_model::migration::source::page_runs;
use vmemsim_model::wire::decode::{find_vmdesc, Decoder, Event};
use vmemsim_model::wire::encode::encode_precopy;
use vmemsim_model::wire::WireError;
use vmemsim_model::{Backend, BackendKind, BlockCount, BlockIndex, Bytes, DeviceConfig, GuestRange, Gpa, MachineType, Plan, Variant, Vm, VmConfig};

fn events(bytes: &[u8]) -> Result<Vec<Event>, WireError> {
    let vmdesc = find_vmdesc(&mut Cursor::new(bytes))?;
    let mut d = Decoder::new(Cursor::new(bytes), vmdesc);
    let mut out = Vec::new();
    while let Some(e) = d.next_event()? {
        out.push(e);
    }
    Ok(out)
}

/// The synthetic early section of qemu-migration.md §5.7, byte for byte.
fn reference_stream() -> Vec<u8> {
    let mut s = Vec::new();
    s.extend_from_slice(&[0x51, 0x45, 0x56, 0x4d, 0, 0, 0, 3]);
    s.extend_from_slice(&[0x07, 0, 0, 0, 10]);
    s.extend_from_slice(b"pc-q35-9.2");
    // START ram: 16 MiB block.
    s.push(0x01);
    s.extend_from_slice(&2u32.to_be_bytes());
    s.push(3);
    s.extend_from_slice(b"ram");
    s.extend_from_slice(&0u32.to_be_bytes());
    s.extend_from_slice(&4u32.to_be_bytes());
    s.extend_from_slice(&((16u64 << 20) | 0x04).to_be_bytes());
    s.push(17);
    s.extend_from_slice(b"0000:00:03.0/mem0");
    s.extend_from_slice(&(16u64 << 20).to_be_bytes());
    s.extend_from_slice(&0x10u64.to_be_bytes());
    s.extend_from_slice(&[0x7e, 0, 0, 0, 2]);
    // The early section, as §5.7 prints it.
    s.push(0x04);
    s.extend_from_slice(&0x33u32.to_be_bytes());
    s.push(0x24);
    s.extend_from_slice(b"0000:00:03.0/virtio-mem-device-early");
    s.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 1]);
    for w in [0x1_4000_0000u64, 0x100_0000, 0x20_0000] {
        s.extend_from_slice(&w.to_be_bytes());
    }
    s.extend_from_slice(&0u32.to_be_bytes());
    s.extend_from_slice(&0x40_0000u64.to_be_bytes());
    s.extend_from_slice(&5u64.to_be_bytes());
    s.extend_from_slice(&[0x7e, 0, 0, 0, 0x33]);
    // A page and a zero page, then the end.
    s.push(0x02);
    s.extend_from_slice(&2u32.to_be_bytes());
    s.extend_from_slice(&(0x08u64).to_be_bytes());
    s.push(17);
    s.extend_from_slice(b"0000:00:03.0/mem0");
    s.extend_from_slice(&[0xab; 4096]);
    s.extend_from_slice(&(0x1000u64 | 0x02 | 0x20).to_be_bytes());
    s.push(0);
    s.extend_from_slice(&0x10u64.to_be_bytes());
    s.extend_from_slice(&[0x7e, 0, 0, 0, 2]);
    s.push(0x00);
    s
}

#[test]
fn the_reference_early_section_decodes() {
    let ev = events(&reference_stream()).unwrap();
    assert_eq!(ev[0], Event::Configuration { machine: "pc-q35-9.2".into() });
    assert_eq!(ev[1], Event::RamSetup { section: 2, blocks: vec![("0000:00:03.0/mem0".into(), 16 << 20)] });
    let Event::Early { section, idstr, state, tmp, bitmap_bytes, .. } = &ev[2] else { panic!("{:?}", ev[2]) };
    assert_eq!((*section, idstr.as_str()), (0x33, "0000:00:03.0/virtio-mem-device-early"));
    let hex: Vec<String> = tmp.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(hex.join(" "), "00 00 00 01 40 00 00 00 00 00 00 00 01 00 00 00 00 00 00 00 00 20 00 00 00 00 00 00");
    assert_eq!(bitmap_bytes, &[0, 0, 0, 0, 0, 0, 0, 5]);
    assert_eq!(state.size, Bytes::mib(4));
    assert_eq!(state.plug.to_bitmap().iter_ones().collect::<Vec<_>>(), vec![0, 2]);
    assert_eq!(state.plug.plugged_runs().count(), 2);
    assert_eq!(ev[3], Event::RamPages { block: "0000:00:03.0/mem0".into(), offset: 0, pages: 1, kind: PageKind::Normal });
    assert_eq!(ev[4], Event::RamPages { block: "0000:00:03.0/mem0".into(), offset: 0x1000, pages: 1, kind: PageKind::Zero });
    assert_eq!(ev[5], Event::Eof);
}

#[test]
fn malformed_streams_name_the_byte_offset_and_never_panic() {
    let good = reference_stream();
    for cut in 0..good.len() - 1 {
        match events(&good[..cut]) {
            Err(WireError::Truncated { offset, .. }) => assert!(offset <= cut as u64),
            other => panic!("a stream cut at {cut} gave {other:?}"),
        }
    }
    let mut bad = good.clone();
    bad[0] = b'X';
    assert_eq!(events(&bad).unwrap_err().to_string(), "byte 0: expected the magic 0x5145564d (\"QEVM\"), found 0x5845564d");
    let mut bad = good.clone();
    bad[7] = 2;
    assert!(events(&bad).unwrap_err().to_string().starts_with("byte 4: expected stream version 3"));
    // A footer that names another section.
    let at = good.windows(5).position(|w| w == [0x7e, 0, 0, 0, 0x33]).unwrap();
    let mut bad = good.clone();
    bad[at + 4] = 0x34;
    assert!(events(&bad).unwrap_err().to_string().contains("expected the footer of section 51, found section 52"));
    // A section nobody describes.
    let mut bad = good[..good.len() - 1].to_vec();
    bad.push(0x04);
    bad.extend_from_slice(&7u32.to_be_bytes());
    bad.push(8);
    bad.extend_from_slice(b"test-dev");
    bad.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 2]);
    assert!(matches!(events(&bad), Err(WireError::UnknownSection { idstr, .. }) if idstr == "test-dev"));
    // Garbage after EOF.
    let mut bad = good.clone();
    bad.extend_from_slice(&[0x06, 0, 0, 0, 2, b'{', b'x']);
    assert!(matches!(events(&bad), Err(WireError::BadJson { .. })));
}

fn vm(plugs: &[(u64, u64)], machine: &str) -> Vm {
    let cfg = VmConfig {
        qemu: vmemsim_model::QemuProfile::default(),
        machine: MachineType::parse(machine).unwrap(),
        devices: vec![DeviceConfig::vmem0(Gpa(0x1_4000_0000), Bytes::mib(512), Bytes::mib(512), true)],
        memory: vmemsim_model::Memory::one_backend(Backend::unlimited(BackendKind::Memfd), ["mem0".to_string()]),
        main_ram: Bytes::mib(8),
        extra_ram: Vec::new(),
        facts: HostFacts::default(),
        variant: Variant::Faithful,
    };
    let (mut v, _) = Vm::realize(&cfg).unwrap();
    for &(first, count) in plugs {
        v.guest_plug(0, BlockIndex(first), BlockCount(count), false);
    }
    v
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// A model migration encodes and decodes back to the same block list, plug state and pages.
    #[test]
    fn encode_then_decode_gives_the_same_migration(runs in proptest::collection::vec((0u64..250, 1u64..6), 0..6), data in 0u64..8, hint in 0u64..8) {
        let src = vm(&runs, "q35");
        let d = &src.devices[0];
        let mut plan = Plan::default();
        if let Some(r) = d.plugged_runs().first() {
            let (off, _) = d.run_bytes(*r);
            plan.data.push(GuestRange { device: 0, offset: Bytes(off.0 + data * 4096), len: Bytes(4096) });
            plan.hints.push(GuestRange { device: 0, offset: Bytes(off.0 + hint * 4096 + 8192), len: Bytes(4096) });
        }
        let mut bytes = Vec::new();
        encode_precopy(&src, &plan, &mut bytes).unwrap();
        let ev = events(&bytes).unwrap();
        let Event::Early { state, .. } = ev.iter().find(|e| matches!(e, Event::Early { .. })).unwrap() else { unreachable!() };
        prop_assert_eq!(&state.plug, d.plug_map());
        prop_assert_eq!(state.size, d.size());
        let got: Vec<(String, u64, u64, PageKind)> = ev.iter().filter_map(|e| match e {
            Event::RamPages { block, offset, pages, kind } => Some((block.clone(), *offset, *pages * 4096, *kind)),
            _ => None,
        }).collect();
        let want: Vec<(String, u64, u64, PageKind)> = page_runs(&src, &plan).into_iter().map(|i| match i {
            Item::Ram { block, offset, len, kind } => (src.blocks[block].name.clone(), offset.0, len.0, kind),
            _ => unreachable!(),
        }).collect();
        prop_assert_eq!(got, want);
        prop_assert!(matches!(ev.last(), Some(Event::VmDescription(_))));
    }
}

#[test]
fn old_machine_streams_have_no_early_section() {
    let src = vm(&[(0, 4)], "pc-q35-7.1");
    let mut bytes = Vec::new();
    encode_precopy(&src, &Plan::default(), &mut bytes).unwrap();
    let ev = events(&bytes).unwrap();
    assert!(!ev.iter().any(|e| matches!(e, Event::Early { .. })));
    assert!(!ev.iter().any(|e| matches!(e, Event::Command { .. })), "no SWITCHOVER_START before 10.0");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Fuzzing in `cargo test` (cargo-fuzz needs a nightly toolchain this project cannot
    /// fetch): any flipped bytes or cut of a valid stream decode to events or an error, never a
    /// panic, and every error names an offset inside the input.
    #[test]
    fn mutated_streams_never_panic(flips in proptest::collection::vec((0usize..4300, any::<u8>()), 0..6), cut in 0usize..4400) {
        let mut bytes = reference_stream();
        for (at, b) in flips {
            if at < bytes.len() {
                bytes[at] = b;
            }
        }
        bytes.truncate(cut.max(1));
        match events(&bytes) {
            Ok(_) => {}
            Err(WireError::Truncated { offset, .. }) | Err(WireError::Unexpected { offset, .. }) | Err(WireError::UnknownSection { offset, .. }) | Err(WireError::BadJson { offset, .. }) | Err(WireError::Repeated { offset, .. }) | Err(WireError::InSection { offset, .. }) => {
                prop_assert!(offset <= bytes.len() as u64);
            }
            Err(WireError::Io(e)) => prop_assert!(false, "no I/O error from memory: {}", e),
        }
    }
}

/// Appends a FULL section `name` (instance 0, version 1) with `body` and its footer
/// (save_section_header and save_section_footer, migration/savevm.c).
fn full_section(s: &mut Vec<u8>, id: u32, name: &str, body: &[u8]) {
    s.push(0x04);
    s.extend_from_slice(&id.to_be_bytes());
    s.push(name.len() as u8);
    s.extend_from_slice(name.as_bytes());
    s.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 1]);
    s.extend_from_slice(body);
    s.push(0x7e);
    s.extend_from_slice(&id.to_be_bytes());
}

/// The reference stream with `sections` added before the EOF, and `json` as its description.
fn with_sections(sections: &[(u32, &str, &[u8])], json: &str) -> Vec<u8> {
    let mut s = reference_stream();
    s.pop(); // the EOF
    for (id, name, body) in sections {
        full_section(&mut s, *id, name, body);
    }
    s.push(0x00);
    s.push(0x06);
    s.extend_from_slice(&(json.len() as u32).to_be_bytes());
    s.extend_from_slice(json.as_bytes());
    s
}

fn device_fields(ev: &[Event], name: &str) -> serde_json::Map<String, serde_json::Value> {
    ev.iter()
        .find_map(|e| match e {
            Event::Device { idstr, fields, .. } if idstr == name => Some(fields.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no section {name}"))
}

/// Integers wider than 8 bytes read as analyze-migration.py's VMSDFieldInt does (two hex
/// digits a byte, a negative signed one with its decimal); a field no reader can decode (an
/// integer or null pointer marker of 0 bytes) is named with its type and offset, never a panic.
#[test]
fn odd_field_descriptions_do_not_panic() {
    let json = r#"{"devices": [{"name": "dev", "instance_id": 0, "fields": [{"name": "b", "type": "uint64", "size": 16}, {"name": "d", "type": "int64", "size": 16}, {"name": "e", "type": "pci config", "size": 2}]}, {"name": "odd", "instance_id": 0, "fields": [{"name": "a", "type": "int32", "size": 0}]}, {"name": "nul", "instance_id": 0, "fields": [{"name": "c", "type": "nullptr", "size": 0}]}]}"#;
    let ff = [0xffu8; 34];
    let s = with_sections(&[(7, "dev", &ff), (8, "odd", &[]), (9, "nul", &[])], json);
    let ev = events(&s).unwrap();
    let dev = device_fields(&ev, "dev");
    assert_eq!(dev["b"], format!("0x{}", "f".repeat(32)));
    assert_eq!(dev["d"], format!("0x{} (-1)", "f".repeat(32)));
    assert_eq!(dev["e"], "ff ff");
    let odd = device_fields(&ev, "odd");
    let why = odd["(not decoded)"].as_str().unwrap();
    assert!(why.starts_with("byte ") && why.contains("field 'a' of type 'int32'") && why.contains("section 'odd'"), "{why}");
    let nul = device_fields(&ev, "nul");
    assert!(nul["(not decoded)"].as_str().unwrap().contains("field 'c' of type 'nullptr'"), "{nul:?}");
}

/// The constructs of the VM description analyze-migration.py reads, laid out as QEMU writes
/// them: a compressed array (`array_len`, `size` one element's: vmsd_desc_field_start and
/// vmsd_desc_field_end, migration/vmstate.c) of integers and of structs, a nested struct,
/// an uncompressed array (each element its own entry with an `index`, as for a struct with
/// subsections: vmsd_can_compress), an unused buffer, a null pointer marker, a bool, a signed
/// negative, and a subsection (vmstate_subsection_save) inside an array element's struct.
#[test]
fn arrays_of_structs_nested_structs_and_subsections_decode_as_the_analyzer_does() {
    let seg = r#"{"vmsd_name": "segment", "version": 1, "fields": [{"name": "sel", "type": "uint16", "size": 2}, {"name": "neg", "type": "int8", "size": 1}]}"#;
    let port = r#"{"vmsd_name": "port", "version": 1, "fields": [{"name": "on", "type": "bool", "size": 1}], "subsections": [{"vmsd_name": "port/extra", "version": 1, "fields": [{"name": "x", "type": "uint8 equal", "size": 1}]}]}"#;
    let json = format!(
        r#"{{"devices": [{{"name": "cpu", "instance_id": 0, "vmsd_name": "cpu", "version": 1, "fields": [
        {{"name": "regs", "array_len": 3, "type": "uint32", "size": 4}},
        {{"name": "unused", "type": "unused_buffer", "size": 2}},
        {{"name": "segs", "array_len": 2, "type": "struct", "struct": {seg}, "size": 3}},
        {{"name": "outer", "type": "struct", "struct": {{"vmsd_name": "o", "version": 1, "fields": [{{"name": "ldt", "type": "struct", "struct": {seg}, "size": 3}}]}}, "size": 3}},
        {{"name": "ports", "index": 0, "type": "struct", "struct": {port}, "size": 8}},
        {{"name": "ports", "index": 1, "type": "struct", "struct": {port}, "size": 8}},
        {{"name": "ptr", "type": "nullptr", "size": 1}}
        ]}}]}}"#
    );
    let mut body = Vec::new();
    for r in [1u32, 2, 0xffff_ffff] {
        body.extend_from_slice(&r.to_be_bytes());
    }
    body.extend_from_slice(&[0, 0]); // unused
    body.extend_from_slice(&[0, 8, 0x80, 0, 0x10, 5]); // segs
    body.extend_from_slice(&[0, 0x18, 0xff]); // outer.ldt
    for (on, x) in [(1u8, 0xffu8), (0, 1)] {
        body.push(on);
        body.push(0x05);
        body.push(10);
        body.extend_from_slice(b"port/extra");
        body.extend_from_slice(&1u32.to_be_bytes());
        body.push(x);
    }
    body.push(b'0');
    let ev = events(&with_sections(&[(7, "cpu", &body)], &json)).unwrap();
    let got = serde_json::Value::Object(device_fields(&ev, "cpu"));
    let want = serde_json::json!({
        "regs": ["0x00000001", "0x00000002", "0xffffffff"],
        "unused": "00 00",
        "segs": [{"sel": "0x0008", "neg": "0x80 (-128)"}, {"sel": "0x0010", "neg": "0x05"}],
        "outer": {"ldt": {"sel": "0x0018", "neg": "0xff (-1)"}},
        "ports": [{"on": true, "port/extra": {"x": "0xff (-1)"}}, {"on": false, "port/extra": {"x": "0x01"}}],
        "ptr": "nullptr"
    });
    assert_eq!(got, want);
    // Every cut and flipped byte of the section decodes or fails with an offset, never a panic;
    // a cut inside the body is named with the field and type where it stopped.
    let full = with_sections(&[(7, "cpu", &body)], &json);
    let start = full.len() - json.len() - 5 - 1 - 5 - body.len();
    for cut in 0..body.len() {
        let ev = events(&with_sections(&[(7, "cpu", &body[..cut])], &json)).unwrap();
        let f = device_fields(&ev, "cpu");
        let why = f.get("(not decoded)").and_then(|v| v.as_str()).unwrap_or_else(|| panic!("cut at {cut}: {f:?}"));
        assert!(why.starts_with("byte ") && why.contains("section 'cpu'"), "{why}");
    }
    for at in 0..body.len() {
        let mut b = full.clone();
        b[start + at] ^= 0xa5;
        let _ = events(&b);
    }
}

/// The late `<pci>/virtio-mem` section of QEMU 10.0.2's pc-q35-7.1 stream (an excerpt,
/// tests/stream/pc-q35-7.1-late.excerpt.mig in the workspace): it decodes to the plug state
/// QEMU reported (qom-get size 256 MiB), and flipped bytes or cuts in it decode or fail with an
/// offset inside the input, never a panic.
#[test]
fn the_late_section_of_an_old_machine_decodes_and_mutations_do_not_panic() {
    let bytes = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/stream/pc-q35-7.1-late.excerpt.mig")).unwrap();
    let late = events(&bytes).unwrap().into_iter().find_map(|e| match e {
        Event::Late { state, .. } => Some(state),
        _ => None,
    });
    let late = late.expect("a late section");
    let plug = late.plug.expect("the plug state of an old machine");
    assert_eq!((plug.size.0, plug.sanity.addr.0, plug.sanity.block_size.0, plug.sanity.region_size.0), (256 << 20, 1 << 32, 2 << 20, 1 << 30));
    assert_eq!((late.usable_region_size.0, late.requested_size.0), (512 << 20, 256 << 20));
    let check = |b: &[u8]| match events(b) {
        Ok(_) => {}
        Err(WireError::Io(e)) => panic!("no I/O error from memory: {e}"),
        Err(e) => {
            let at: u64 = e.to_string().strip_prefix("byte ").and_then(|r| r.split(':').next()).and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("no offset in: {e}"));
            assert!(at <= b.len() as u64, "{e}");
        }
    };
    // The late section starts after the RAM setup, at byte 219; its body 37 bytes later, and
    // the device state 362 bytes into the body.
    for at in (219..219 + 1200).step_by(7) {
        let mut b = bytes.clone();
        b[at] ^= 0xa5;
        check(&b);
    }
    for cut in (219..bytes.len()).step_by(997) {
        check(&bytes[..cut]);
    }
}

/// The configuration section with the `configuration/capabilities` subsection QEMU sends when a
/// capability it validates is on (vmstate_capabilites, migration/savevm.c: caps_count, then
/// each capability as a counted string, vmstate_info_capability): read in place, so the
/// sections after it decode.
#[test]
fn a_configuration_section_with_capabilities_is_read_through_its_description() {
    let json = r#"{"configuration": {"vmsd_name": "configuration", "version": 1, "fields": [{"name": "len", "type": "uint32", "size": 4}, {"name": "name", "type": "buffer", "size": 10}], "subsections": [{"vmsd_name": "configuration/capabilities", "version": 1, "fields": [{"name": "caps_count", "type": "uint32", "size": 4}, {"name": "capabilities", "array_len": 2, "type": "capability", "size": 17}]}]}, "devices": [{"name": "dev", "instance_id": 0, "fields": [{"name": "x", "type": "uint8", "size": 1}]}]}"#;
    let mut s = with_sections(&[(7, "dev", &[9])], json);
    // After the machine type (header 8 bytes, 0x07, be32 10, "pc-q35-9.2"): the subsection.
    let mut sub = vec![0x05, 26];
    sub.extend_from_slice(b"configuration/capabilities");
    sub.extend_from_slice(&1u32.to_be_bytes());
    sub.extend_from_slice(&2u32.to_be_bytes());
    for cap in ["x-ignore-shared", "mapped-ram"] {
        sub.push(cap.len() as u8);
        sub.extend_from_slice(cap.as_bytes());
    }
    s.splice(23..23, sub.iter().copied());
    let ev = events(&s).unwrap();
    assert!(matches!(&ev[0], Event::Configuration { machine } if machine == "pc-q35-9.2"), "{:?}", ev[0]);
    assert_eq!(device_fields(&ev, "dev")["x"], "0x09");
    // Without the subsection's bytes the stream is an error naming where the 0x05 was due.
    let e = events(&with_sections(&[(7, "dev", &[9])], json)).unwrap_err().to_string();
    assert!(e.starts_with("byte 23: expected subsection 'configuration/capabilities' (0x05)"), "{e}");
}

/// The device sections of QEMU 10.0.2's pc-q35-10.0 stream (tests/stream/pc-q35-10.0-devices
/// .excerpt.mig in the workspace) all decode through the description, and flipped bytes or
/// cuts anywhere in them decode, are named `(not decoded)` with a byte offset, or fail with an
/// offset inside the input, never a panic.
#[test]
fn the_device_sections_of_a_q35_stream_decode_and_mutations_do_not_panic() {
    let bytes = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/stream/pc-q35-10.0-devices.excerpt.mig")).unwrap();
    let ev = events(&bytes).unwrap();
    let devices: Vec<_> = ev.iter().filter_map(|e| if let Event::Device { fields, .. } = e { Some(fields) } else { None }).collect();
    assert_eq!(devices.len(), 10);
    assert!(devices.iter().all(|f| !f.contains_key("(not decoded)") && !f.contains_key("(not described)")), "{devices:?}");
    let check = |b: &[u8]| match events(b) {
        Ok(ev) => {
            for e in ev {
                if let Event::Device { fields, .. } = e {
                    if let Some(why) = fields.get("(not decoded)") {
                        assert!(why.as_str().is_some_and(|w| w.starts_with("byte ")), "{why}");
                    }
                }
            }
        }
        Err(WireError::Io(e)) => panic!("no I/O error from memory: {e}"),
        Err(e) => {
            let at: u64 = e.to_string().strip_prefix("byte ").and_then(|r| r.split(':').next()).and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("no offset in: {e}"));
            assert!(at <= b.len() as u64, "{e}");
        }
    };
    let desc_at = bytes.windows(10).rposition(|w| w == b"{\"configur").unwrap_or(bytes.len());
    for at in (8..desc_at).step_by(41) {
        let mut b = bytes.clone();
        b[at] ^= 0xa5;
        check(&b);
    }
    for cut in (8..bytes.len()).step_by(331) {
        check(&bytes[..cut]);
    }
}
