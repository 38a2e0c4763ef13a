//! Bad scenario files get errors that name the field, the line and what is allowed; nothing
//! panics on user input.

use std::path::Path;

use vmemsim_sim::{build, parse, SimError};

const GOOD: &str = r#"name = "ok"
[source]
machine = "q35"
backend = { kind = "memfd" }
[destination]
backend = { kind = "memfd", capacity = "64M" }
[[device]]
id = "vmem0"
pci = "0000:00:03.0"
memaddr = "0x100000000"
region = "1G"
block_size = "2M"
requested = "256M"
"#;

fn error(text: &str) -> String {
    match parse(Path::new("t.toml"), text).and_then(|l| build(&l).map(|_| ())) {
        Ok(()) => panic!("accepted:\n{text}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn the_good_file_builds() {
    let l = parse(Path::new("t.toml"), GOOD).unwrap();
    build(&l).unwrap();
}

#[test]
fn a_typo_names_the_field_line_and_the_allowed_fields() {
    let e = error(&GOOD.replace("requested =", "requestd ="));
    assert!(e.contains("line 13"), "{e}");
    assert!(e.contains("unknown field `requestd`"), "{e}");
    assert!(e.contains("`requested`"), "{e}");
}

#[test]
fn a_bad_size_names_its_line_and_the_format() {
    let e = error(&GOOD.replace("\"1G\"", "\"1Q\""));
    assert!(e.contains("line 11"), "{e}");
    assert!(e.contains("'1Q' is not a size"), "{e}");
}

#[test]
fn a_bad_backend_kind_lists_the_kinds() {
    let e = error(&GOOD.replace("kind = \"memfd\" }", "kind = \"ramfs\" }"));
    assert!(e.contains("line 4"), "{e}");
    assert!(e.contains("hugetlbfs"), "{e}");
}

#[test]
fn qemus_words_for_impossible_devices() {
    let e = error(&GOOD.replace("block_size = \"2M\"", "block_size = \"3M\""));
    assert!(e.contains("'block-size' property has to be a power of two"), "{e}");
    let e = error(&GOOD.replace("region = \"1G\"", "region = \"1025M\""));
    assert!(e.contains("'memdev' property memdev size has to be multiples of'block-size' (0x200000)"), "{e}");
}

#[test]
fn semantic_errors_point_at_the_device() {
    let e = error(&format!("{GOOD}plugged = \"512M\"\n"));
    match parse(Path::new("t.toml"), &format!("{GOOD}plugged = \"512M\"\n")).and_then(|l| build(&l).map(|_| ())) {
        Err(SimError::Invalid { line, field, .. }) => {
            assert_eq!(line, 7, "the [[device]] table");
            assert_eq!(field, "device.plugged");
        }
        other => panic!("{other:?}"),
    }
    assert!(e.contains("NACK"), "{e}");
    let e = error(&GOOD.replace("machine = \"q35\"", "machine = \"pc-q35-1.0\""));
    assert!(e.contains("t.toml:3:"), "{e}");
    assert!(e.contains("unsupported machine type"), "{e}");
}

#[test]
fn guest_ranges_must_be_plugged_and_aligned() {
    let e = error(&format!("{GOOD}[[guest.touch]]\ndevice = \"vmem0\"\noffset = \"300M\"\nlen = \"4K\"\n"));
    assert!(e.contains("guest.touch") && e.contains("not wholly plugged"), "{e}");
    let e = error(&format!("{GOOD}[[balloon.hint]]\ndevice = \"vmem9\"\noffset = \"0\"\nlen = \"4K\"\n"));
    assert!(e.contains("no device with id 'vmem9'"), "{e}");
    let e = error(&format!("{GOOD}[[guest.data]]\ndevice = \"vmem0\"\noffset = \"1\"\nlen = \"4K\"\n"));
    assert!(e.contains("multiples of 4K"), "{e}");
}

#[test]
fn postcopy_on_a_regular_file_is_refused() {
    let text = GOOD.replace("kind = \"memfd\", capacity", "kind = \"regular-file\", capacity") + "[migration]\nmode = \"postcopy\"\n";
    let e = error(&text);
    assert!(e.contains("postcopy is not supported on regular-file memory"), "{e}");
}

#[test]
fn the_cli_reports_errors_with_exit_status_2() {
    let dir = std::env::temp_dir().join(format!("vmemsim-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("typo.toml");
    std::fs::write(&file, GOOD.replace("region =", "regoin =")).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vmemsim")).arg("run").arg(&file).output().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unknown field `regoin`") && stderr.contains("line 11"), "{stderr}");
}

#[test]
fn the_cli_prints_the_seed_outcome() {
    let seed = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/seed/two-devices-short-hugetlb.toml");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vmemsim")).arg("run").arg(&seed).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("outcome: failed gracefully (exit status 1) at early section '0000:00:03.0/virtio-mem-device-early'"), "{stdout}");
    assert!(stdout.contains("expectation: met"), "{stdout}");
}

#[test]
fn plugged_blocks_that_overflow_name_the_device_and_field() {
    for runs in ["[[18446744073709551615, 2]]", "[[2, 18446744073709551615]]", "[[0, 513]]"] {
        let text = format!("{GOOD}plugged_blocks = {runs}\n");
        match parse(Path::new("t.toml"), &text).and_then(|l| build(&l).map(|_| ())) {
            Err(SimError::Invalid { line, field, message, .. }) => {
                assert_eq!((line, field.as_str()), (7, "device.plugged_blocks"), "{runs}");
                assert!(message.contains("of vmem0 does not fit the region's 512 blocks"), "{runs}: {message}");
            }
            other => panic!("{runs}: {other:?}"),
        }
    }
}

#[test]
fn devices_that_overlap_or_sit_on_main_ram_get_qemus_words() {
    let second = GOOD[GOOD.find("[[device]]").unwrap()..].replace("vmem0", "vmem1").replace("03.0", "04.0");
    let e = error(&format!("{GOOD}{second}"));
    assert!(e.contains("-device virtio-mem-pci,id=vmem1: address range conflicts with memory device id='vmem0'"), "{e}");
    let e = error(&format!("{GOOD}{}", second.replace("0x100000000", "0x120000000")));
    assert!(e.contains("address range conflicts with memory device id='vmem0'"), "{e}");
    let e = error(&GOOD.replace("machine = \"q35\"", "machine = \"q35\"\nmain_ram = \"8G\""));
    // q35 keeps 2 GiB of the 8 below 4 GiB: device memory starts at 4 + 6 GiB (observed on QEMU 10.0.2).
    assert!(e.contains("-device virtio-mem-pci,id=vmem0: can't add memory device [0x100000000:0x40000000], usable range for memory devices [0x280000000:0x80000000]"), "{e}");
    // Next to each other is fine.
    let l = parse(Path::new("t.toml"), &format!("{GOOD}{}", second.replace("0x100000000", "0x140000000"))).unwrap();
    build(&l).unwrap();
}

#[test]
fn qemu_versions_and_machine_types_name_what_the_release_offers() {
    let e = error(&GOOD.replace("machine = \"q35\"", "qemu = \"11.1.2\"\nmachine = \"q35\""));
    assert!(e.contains("line 3") && e.contains("8.0.0 to 10.2.x"), "{e}");
    let e = error(&GOOD.replace("machine = \"q35\"", "qemu = \"10.0\"\nmachine = \"q35\""));
    assert!(e.contains("line 3") && e.contains("major.minor.micro"), "{e}");
    // The source must run its machine type; the error says what its release offers.
    let e = error(&GOOD.replace("machine = \"q35\"", "machine = \"pc-q35-10.2\""));
    assert!(e.contains("source.machine") && e.contains("unsupported machine type: \"pc-q35-10.2\""), "{e}");
    assert!(e.contains("QEMU 10.0.2 offers q35 = pc-q35-10.0"), "{e}");
    // A destination release without the source's machine type is an outcome, not an error.
    let newer = GOOD.replace("machine = \"q35\"", "qemu = \"10.2.2\"\nmachine = \"q35\"").replace("[destination]\n", "[destination]\nqemu = \"10.0.2\"\n");
    let l = parse(Path::new("t.toml"), &newer).unwrap();
    let r = vmemsim_sim::run(&l).unwrap();
    assert_eq!(r.outcome.lines(), ["unsupported machine type: \"pc-q35-10.2\"".to_string()]);
    // A name no release has is a typo.
    let e = error(&GOOD.replace("[destination]\n", "[destination]\nmachine = \"pc-q35-10.9\"\n"));
    assert!(e.contains("t.toml:6:") && e.contains("destination.machine") && e.contains("QEMU 10.0.2 offers"), "{e}");
}

#[test]
fn postcopy_start_times_say_what_is_allowed() {
    let postcopy = |start: &str| GOOD.to_string() + &format!("[migration]\nmode = \"postcopy\"\nstart_postcopy = \"{start}\"\n");
    for good in ["at-once", "250ms", "1s", "0%", "100%"] {
        build(&parse(Path::new("t.toml"), &postcopy(good)).unwrap()).unwrap_or_else(|e| panic!("{good}: {e}"));
    }
    for (bad, says) in [("soon", "at-once"), ("101%", "0% to 100%"), ("1.5s", "\"250ms\""), ("-1s", "\"1s\""), ("99999999999999s", "\"1s\"")] {
        let e = error(&postcopy(bad));
        assert!(e.contains("line 16") && e.contains(says), "{bad}: {e}");
    }
    let e = error(&(postcopy("at-once") + "switch_percent = 10\n"));
    assert!(e.contains("not both"), "{e}");
    let e = error(&(GOOD.to_string() + "[migration]\nstart_postcopy = \"1s\"\n"));
    assert!(e.contains("migration.start_postcopy") && e.contains("only applies to mode = \"postcopy\""), "{e}");
}

#[test]
fn a_requested_size_larger_than_the_region_names_region_and_both_sizes() {
    let e = error(&GOOD.replace("region = \"1G\"", "region = \"128M\""));
    assert!(e.contains("device.requested"), "{e}");
    assert!(e.contains("256 MiB") && e.contains("128 MiB"), "{e}");
    assert!(e.starts_with("t.toml:13:1: device.requested"), "names the line of requested: {e}");
    // An explicit plugged size within the region is what QEMU can run: it builds.
    let fits = GOOD.replace("region = \"1G\"", "region = \"128M\"").replace("requested = \"256M\"", "requested = \"256M\"\nplugged = \"64M\"");
    build(&parse(Path::new("t.toml"), &fits).unwrap()).unwrap();
    let e = error(&GOOD.replace("requested = \"256M\"", "requested = \"256M\"\nplugged = \"2G\""));
    assert!(e.contains("device.plugged") && e.contains("2 GiB") && e.contains("1 GiB"), "{e}");
}

#[test]
fn the_vmm_field_names_both_sides_or_says_what_is_wrong() {
    // `vmm` gives both sides' QEMU release; it and `source.qemu` together are one release too many.
    let both = GOOD.replace("[source]\nmachine = \"q35\"", "vmm = \"qemu-9.2.4\"\n[source]\nqemu = \"9.2.4\"\nmachine = \"q35\"");
    let e = error(&both);
    assert!(e.contains("t.toml:2:") && e.contains("source.qemu") && e.contains("give vmm or source.qemu, not both"), "{e}");
    let e = error(&GOOD.replace("[destination]\n", "[destination]\nqemu = \"10.0.2\"\n").replace("[source]", "vmm = \"qemu-9.2.4\"\n[source]"));
    assert!(e.contains("destination.qemu") && e.contains("not both"), "{e}");
    // A profile string that is no VMM, or a release the model has not read, lists what is.
    let e = error(&GOOD.replace("[source]", "vmm = \"kvmtool\"\n[source]"));
    assert!(e.contains("line 2") && e.contains("not a VMM profile") && e.contains("cloud-hypervisor-v53.0"), "{e}");
    let e = error(&GOOD.replace("[source]", "vmm = \"firecracker-v1.13.0\"\n[source]"));
    assert!(e.contains("line 2") && e.contains("firecracker-v1.14.0, firecracker-v1.15.0, firecracker-v1.16.1"), "{e}");
    let e = error(&GOOD.replace("[source]", "vmm = \"qemu-7.2.0\"\n[source]"));
    assert!(e.contains("line 2") && e.contains("8.0.0 to 10.2.x"), "{e}");
    // run/check/replay are QEMU's engine: a Cloud Hypervisor or Firecracker file is refused
    // there (never run as QEMU) and pointed at `vmemsim diff`.
    for name in ["cloud-hypervisor-v53.0", "firecracker-v1.16.1"] {
        let e = error(&GOOD.replace("[source]", &format!("vmm = \"{name}\"\n[source]")));
        assert!(e.contains("t.toml:2:") && e.contains("vmm") && e.contains(name.split("-v").next().unwrap()), "{e}");
        assert!(e.contains(&format!("vmemsim diff FILE --vmm {name}")), "{e}");
    }
}
