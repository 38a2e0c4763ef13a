//! `vmemsim encode`, `analyze` and `preflight` end to end, through the binary.

mod common;
#[path = "stream/hostile.rs"]
mod hostile;

use std::process::{Command, Stdio};

const EXE: &str = env!("CARGO_BIN_EXE_vmemsim");

fn tmp(name: &str) -> std::path::PathBuf {
    common::scratch("stream").join(name)
}

fn encode(scenario: &str, out: &std::path::Path) {
    let s = Command::new(EXE).arg("encode").arg(common::scenario(scenario)).arg(out).status().unwrap();
    assert!(s.success());
}

/// analyze-migration.py's output for the reference's synthetic stream (qemu-migration.md §9),
/// for the sections vmemsim writes.
const REFERENCE: &str = r#"{
    "ram (2)": {
        "section sizes": {
            "pc.ram": "0x0000000000010000",
            "0000:00:03.0/mem0": "0x0000000001000000"
        }
    },
    "0000:00:03.0/virtio-mem-device-early (51)": {
        "tmp": "00 00 00 01 40 00 00 00 00 00 00 00 01 00 00 00 00 00 00 00 00 20 00 00 00 00 00 00",
        "size": "0x0000000000400000",
        "bitmap": "00 00 00 00 00 00 00 05"
    }
}
"#;

#[test]
fn analyze_prints_what_analyze_migration_prints() {
    let f = tmp("synthetic.mig");
    encode("streams/reference-synthetic.toml", &f);
    let out = Command::new(EXE).arg("analyze").arg(&f).output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), REFERENCE);
    // Standard input works too.
    let mut child = Command::new(EXE).arg("analyze").arg("-").arg("--summary").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), &std::fs::read(&f).unwrap()).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("virtio-mem 0000:00:03.0: memaddr 0x140000000, region 16 MiB, block 2 MiB, node 0, plugged 4 MiB in 2 run(s)"), "{text}");
    assert!(text.contains("0000:00:03.0/mem0: 0 normal, 1024 zero"), "{text}");
}

#[test]
fn the_seed_stream_analyzes_like_the_commit_message() {
    let f = tmp("seed.mig");
    encode("seed/two-devices-short-hugetlb.toml", &f);
    let out = Command::new(EXE).arg("analyze").arg(&f).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    // d71920d425's example: addr 0x140000000, region 30 GiB, block 2 MiB, 1 GiB plugged.
    assert!(text.contains(r#""tmp": "00 00 00 01 40 00 00 00 00 00 00 07 80 00 00 00 00 00 00 00 00 20 00 00 00 00 00 00""#), "{text}");
    assert!(text.contains(r#""size": "0x0000000040000000""#));
    assert!(text.contains(r#""bitmap": "ff ff ff ff"#));
}

#[test]
fn preflight_predicts_the_destination() {
    let f = tmp("preflight.mig");
    encode("seed/two-devices-short-hugetlb.toml", &f);
    let run = |args: &[&str]| {
        let out = Command::new(EXE).arg("preflight").arg(&f).args(args).output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let (code, text) = run(&["--backend", "hugetlbfs", "--capacity", "768M"]);
    assert_eq!(code, Some(1));
    assert!(text.contains("qemu-system-x86_64: error while loading state for instance 0x0 of device '0000:00:03.0/virtio-mem-device-early'"), "{text}");
    assert!(text.contains("verdict: not safe: the restore fails gracefully"), "{text}");
    let (code, text) = run(&["--backend", "hugetlbfs", "--capacity", "768M", "--prealloc", "off"]);
    assert_eq!(code, Some(1));
    assert!(text.contains("verdict: NOT SAFE: the destination dies of SIGBUS while loading RAM"), "{text}");
    let (code, text) = run(&["--backend", "hugetlbfs", "--capacity", "9124M"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("verdict: safe"));
    let (code, _) = run(&["--backend", "ramfs", "--capacity", "1G"]);
    assert_eq!(code, Some(2));
}

#[test]
fn a_broken_stream_is_an_error_with_its_offset() {
    let f = tmp("broken.mig");
    encode("streams/reference-synthetic.toml", &f);
    let mut bytes = std::fs::read(&f).unwrap();
    bytes.truncate(60);
    std::fs::write(&f, &bytes).unwrap();
    let out = Command::new(EXE).arg("analyze").arg(&f).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("byte 60: the stream ends early"), "{err}");
}

#[test]
fn preflight_machine_is_the_destinations_and_is_compared_with_the_streams() {
    let f = tmp("preflight-machine.mig");
    encode("seed/two-devices-short-hugetlb.toml", &f);
    let run = |args: &[&str]| {
        let out = Command::new(EXE).arg("preflight").arg(&f).args(["--backend", "hugetlbfs", "--capacity", "9124M"]).args(args).output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    // The alias is QEMU 10.0.2's concrete q35, the stream's: the restore completes.
    let (code, text) = run(&["--machine", "q35"]);
    assert_eq!(code, Some(0), "{text}");
    // Another machine type, or q35 of a newer QEMU, is refused in the header as QEMU does.
    for (args, local) in [(&["--machine", "pc-q35-7.1"][..], "pc-q35-7.1"), (&["--machine", "q35", "--qemu", "10.2.2"][..], "pc-q35-10.2")] {
        let (code, text) = run(args);
        assert_eq!(code, Some(1), "{args:?}: {text}");
        assert!(text.contains(&format!("Machine type received is 'pc-q35-10.0' and local is '{local}'")), "{args:?}: {text}");
    }
}
