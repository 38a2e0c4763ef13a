//! Hostile streams through `vmemsim analyze` and `preflight`: each is refused with the byte
//! offset and the section, or decoded in time linear in its size; none panics.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::common::bytes::Bytes;
use super::EXE;
const MIB: u64 = 1 << 20;

fn file(name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let f = super::common::scratch("stream-input").join(name);
    std::fs::write(&f, bytes).unwrap();
    f
}

/// Runs the binary; kills it and fails after `limit` (a hang or unbounded allocation).
fn run(args: &[&std::ffi::OsStr], limit: Duration) -> (Output, Duration) {
    let start = Instant::now();
    let child = Command::new(EXE).args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output().unwrap()));
    match rx.recv_timeout(limit) {
        Ok(o) => (o, start.elapsed()),
        Err(_) => {
            // The child we started, by its id.
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
            panic!("{args:?} ran longer than {limit:?}");
        }
    }
}

fn preflight(f: &std::path::Path) -> Output {
    run(&["preflight".as_ref(), f.as_os_str(), "--backend".as_ref(), "memfd".as_ref(), "--capacity".as_ref(), "unlimited".as_ref()], Duration::from_secs(60)).0
}

fn blocks() -> Vec<(String, u64)> {
    vec![("pc.ram".into(), 0x10000), ("0000:00:03.0/mem0".into(), 16 * MIB)]
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn a_second_early_section_is_refused_with_its_offset() {
    let first = Bytes::header("pc-q35-9.2").ram_setup(&blocks()).early(51, "0000:00:03.0", 0x1_4000_0000, 16 * MIB, 2 * MIB, &[5]);
    let at = first.0.len();
    let bytes = first.early(52, "0000:00:03.0", 0x1_4000_0000, 16 * MIB, 2 * MIB, &[1]).zero_pages(["0000:00:03.0/mem0"]).end(None);
    let o = preflight(&file("early-twice.mig", &bytes));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let want = format!("byte {at}: section '0000:00:03.0/virtio-mem-device-early' (instance 0) comes a second time");
    assert!(stderr(&o).contains(&want), "{}", stderr(&o));
}

#[test]
fn a_second_ram_setup_is_refused_with_its_offset() {
    let first = Bytes::header("pc-q35-9.2").ram_setup(&blocks()).early(51, "0000:00:03.0", 0x1_4000_0000, 16 * MIB, 2 * MIB, &[5]);
    let at = first.0.len();
    let mut more = blocks();
    more.push(("extra".into(), 0x1000));
    let bytes = first.ram_setup(&more).zero_pages(["extra"]).end(None);
    let o = preflight(&file("ram-twice.mig", &bytes));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains(&format!("byte {at}: section 'ram' (instance 0) comes a second time")), "{}", stderr(&o));
}

#[test]
fn an_array_len_cannot_outgrow_its_section() {
    // 1e18 elements over a 4-byte section; and a fair array next to it (`size` is one
    // element's, vmsd_desc_field_end in migration/vmstate.c).
    let desc = r#"{"devices": [{"name": "huge", "instance_id": 0, "fields": [{"name": "a", "type": "uint8", "size": 1, "array_len": 1000000000000000000}]}, {"name": "fair", "instance_id": 0, "fields": [{"name": "b", "type": "uint16", "size": 2, "array_len": 2}]}]}"#;
    let bytes = Bytes::header("pc-q35-9.2").device(60, "huge", &[1, 2, 3, 4]).device(61, "fair", &[0, 1, 0, 2]).end(Some(desc));
    let f = file("array-len.mig", &bytes);
    let (o, _) = run(&["analyze".as_ref(), f.as_os_str()], Duration::from_secs(30));
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains(r#""(not decoded)": "byte "#), "{out}");
    assert!(out.contains("field 'a' of type 'uint8', found array_len 1000000000000000000 is more elements than the 4 bytes left in the section (section 'huge', 4 bytes from byte "), "{out}");
    assert!(out.contains(r#""b": [
            "0x0001",
            "0x0002"
        ]"#), "{out}");
}

#[test]
fn two_hundred_thousand_ram_blocks_decode_in_linear_time() {
    let mut list = blocks();
    list.extend((0..200_000).map(|i| (format!("rom{i}"), 0x1000)));
    let names: Vec<String> = list.iter().map(|b| b.0.clone()).collect();
    let bytes = Bytes::header("pc-q35-9.2").ram_setup(&list).early(51, "0000:00:03.0", 0x1_4000_0000, 16 * MIB, 2 * MIB, &[5]).zero_pages(names.iter().map(String::as_str)).end(None);
    let f = file("many-blocks.mig", &bytes);
    for args in [&["analyze".as_ref(), f.as_os_str()][..], &["analyze".as_ref(), f.as_os_str(), "--summary".as_ref()][..]] {
        let (o, took) = run(args, Duration::from_secs(60));
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        eprintln!("{args:?}: {took:?}");
    }
    let o = preflight(&f);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("verdict: safe"));
}

#[test]
fn a_missing_footer_is_found_in_linear_time_and_named_escaped() {
    // A 16 MiB section with a control sequence in its name and no footer; a VM description
    // exists, so the decoder scans for the footer to the end.
    let mut s = Bytes::header("pc-q35-9.2");
    let name = "evil\u{1b}[2J";
    s.0.push(0x04);
    s.0.extend_from_slice(&60u32.to_be_bytes());
    s.0.push(name.len() as u8);
    s.0.extend_from_slice(name.as_bytes());
    s.0.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 1]);
    s.0.resize(s.0.len() + 16 * MIB as usize, 0);
    let bytes = s.end(Some(r#"{"devices": []}"#));
    let f = file("no-footer.mig", &bytes);
    let (o, took) = run(&["analyze".as_ref(), f.as_os_str()], Duration::from_secs(30));
    eprintln!("missing footer over 16 MiB: {took:?}");
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(err.contains(r"the footer of section 'evil\u{1b}[2J' (started at byte 23)"), "{err}");
    assert!(!err.contains('\u{1b}'), "{err}");
}

#[test]
fn standard_input_is_spooled_to_a_memfd_not_a_file() {
    let tmp = super::common::scratch("stdin-tmpdir");
    let bytes = Bytes::header("pc-q35-9.2").ram_setup(&blocks()).early(51, "0000:00:03.0", 0x1_4000_0000, 16 * MIB, 2 * MIB, &[5]).zero_pages(["0000:00:03.0/mem0"]).end(None);
    let mut child = Command::new(EXE).args(["analyze", "-", "--summary"]).env("TMPDIR", &tmp).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    std::io::Write::write_all(&mut stdin, &bytes[..20]).unwrap();
    // While standard input is still open, the spool exists: as a memfd, not in TMPDIR.
    let fds = format!("/proc/{}/fd", child.id());
    let deadline = Instant::now() + Duration::from_secs(20);
    let memfd = loop {
        let links: Vec<String> = std::fs::read_dir(&fds).unwrap().filter_map(|e| std::fs::read_link(e.ok()?.path()).ok()).map(|l| l.display().to_string()).collect();
        if let Some(l) = links.iter().find(|l| l.starts_with("/memfd:vmemsim-stdin") || l.starts_with(tmp.to_str().unwrap())) {
            break l.clone();
        }
        assert!(Instant::now() < deadline, "no spool among {links:?}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(memfd.starts_with("/memfd:vmemsim-stdin"), "spooled to {memfd}");
    assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0, "nothing named in TMPDIR");
    std::io::Write::write_all(&mut stdin, &bytes[20..]).unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("virtio-mem 0000:00:03.0: memaddr 0x140000000"));
    std::fs::remove_dir_all(&tmp).unwrap();
}

/// A scenario whose stream holds `data` of guest data pages (4 KiB each on the wire).
pub fn big_stream_scenario(data: &str) -> String {
    format!(
        r#"name = "encode: a stream larger than the memory the encoder may use"
[source]
machine = "q35"
backend = {{ kind = "memfd" }}
[destination]
backend = {{ kind = "memfd" }}
[[device]]
id = "vmem0"
pci = "0000:00:03.0"
memdev = "mem0"
memaddr = "0x100000000"
region = "1G"
block_size = "2M"
requested = "{data}"
[[guest.data]]
device = "vmem0"
offset = "0"
len = "{data}"
"#
    )
}

#[test]
fn encode_streams_to_its_output_in_bounded_memory() {
    // 512 MiB of pages under a 256 MiB address-space limit: only a streaming encoder fits.
    let scenario = file("big.toml", big_stream_scenario("512M").as_bytes());
    let script = r#"ulimit -v 262144 && exec "$0" encode "$1" - | wc -c"#;
    let out = Command::new("sh").arg("-c").arg(script).arg(EXE).arg(&scenario).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let n: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    assert!(n > 512 * MIB, "{n} bytes");
}

#[test]
fn encode_refuses_a_name_too_long_for_the_stream() {
    let text = big_stream_scenario("4M").replace("memdev = \"mem0\"", &format!("memdev = \"{}\"", "m".repeat(130)));
    let scenario = file("long-name.toml", text.as_bytes());
    let out_file = scenario.with_extension("mig");
    let (o, _) = run(&["encode".as_ref(), scenario.as_os_str(), out_file.as_os_str()], Duration::from_secs(30));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("has 143 bytes: a stream's names hold at most 127"), "{}", stderr(&o));
}

#[test]
fn preflight_on_events_from_elsewhere_errs_instead_of_panicking() {
    use vmemsim_model::host::PageKind;
    use vmemsim_model::wire::decode::Event;
    let bytes = Bytes::header("pc-q35-9.2").ram_setup(&blocks()).early(51, "0000:00:03.0", 0x1_4000_0000, 16 * MIB, 2 * MIB, &[5]).end(None);
    let mut events = vmemsim_sim::stream::events_of(&bytes).unwrap();
    events.insert(events.len() - 1, Event::RamPages { block: "nowhere\n".into(), offset: 0, pages: 1, kind: PageKind::Zero });
    let backend = vmemsim_sim::stream::backend_of("memfd", "unlimited").unwrap();
    let e = vmemsim_sim::stream::preflight(&events, backend, true, None).unwrap_err();
    assert_eq!(e, "RAM pages of block 'nowhere\\n', which the setup section does not list");
}

#[test]
fn a_mistake_in_the_late_virtio_mem_section_names_its_offset_and_section() {
    let late = Bytes::late_body(0x1_4000_0000, 16 * MIB, 2 * MIB, &[0b11]);
    let stream = |body: &[u8], vmdesc: Option<&str>| {
        let head = Bytes::header("pc-q35-7.1").ram_setup(&blocks()).zero_pages(["0000:00:03.0/mem0"]);
        let at = head.0.len() as u64;
        (at, head.device(38, "0000:00:03.0/virtio-mem", body).end(vmdesc))
    };
    // The section header: type, id, counted name, instance, version.
    let header = 1 + 4 + 1 + "0000:00:03.0/virtio-mem".len() as u64 + 4 + 4;
    // A queue count over VIRTIO_QUEUE_MAX (the count is at byte 344 of the body).
    let mut bad = late.clone();
    bad[344..348].copy_from_slice(&5000u32.to_be_bytes());
    let (at, bytes) = stream(&bad, None);
    for cmd in ["analyze", "preflight"] {
        let f = file("late-queues.mig", &bytes);
        let o = if cmd == "analyze" { run(&["analyze".as_ref(), f.as_os_str()], Duration::from_secs(60)).0 } else { preflight(&f) };
        assert_eq!(o.status.code(), Some(2), "{cmd}: {}", stderr(&o));
        let want = format!("byte {}: section '0000:00:03.0/virtio-mem': expected at most VIRTIO_QUEUE_MAX 1024 virtqueues", at + header + 344);
        assert!(stderr(&o).contains(&want), "{cmd}: {}", stderr(&o));
    }
    // The body cut short in the bitmap.
    let (at, bytes) = stream(&late[..late.len() - 40], None);
    let o = preflight(&file("late-short.mig", &bytes));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let want = format!("byte {}: section '0000:00:03.0/virtio-mem': expected the plug bitmap (8 bytes), but the section has 3 bytes left", at + header + 362 + 52);
    assert!(stderr(&o).contains(&want), "{}", stderr(&o));
    // A VM description whose "virtio" field is longer than the section: the footer is not
    // where it says.
    let desc = format!(r#"{{"page_size": 4096, "devices": [{{"name": "0000:00:03.0/virtio-mem", "instance_id": 0, "vmsd_name": "virtio-mem", "version": 1, "fields": [{{"name": "virtio", "type": "virtio", "size": {}}}]}}]}}"#, late.len() + 3);
    let (at, bytes) = stream(&late, Some(&desc));
    let o = preflight(&file("late-desc.mig", &bytes));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let want = format!("byte {}: expected a section footer (0x7e)", at + header + late.len() as u64 + 3);
    assert!(stderr(&o).contains(&want), "{}", stderr(&o));
}
