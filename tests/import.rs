//! `vmemsim import qemu`: the command lines the conformance suite starts QEMU with, imported,
//! give the outcome their scenario files give (the suite compares both with a real QEMU);
//! libvirt's JSON options, slots QEMU assigns, and mistakes named by the option.

mod common;

use std::path::PathBuf;
use std::process::Command;

use vmemsim_sim::conformance::vm::{imported, live_mode, shape, Lab, LiveMode};
use vmemsim_sim::{build, load, run};

const EXE: &str = env!("CARGO_BIN_EXE_vmemsim");

/// A lab that is never started: only its paths and release go into the command lines.
fn lab() -> Lab {
    Lab { dir: PathBuf::from("/var/cache/vmemsim-lab"), qemu: PathBuf::from("/usr/bin/qemu-system-x86_64"), version: Default::default() }
}

#[test]
fn every_conformance_case_imported_from_its_command_lines_predicts_what_its_file_does() {
    let mut checked = 0;
    for dir in ["conformance", "real-qemu"] {
        for f in std::fs::read_dir(common::scenario(dir)).unwrap() {
            let path = f.unwrap().path();
            let l = load(&path).unwrap();
            let b = build(&l).unwrap();
            let Ok(sh) = shape(&b) else { continue };
            let start = match live_mode(&l.scenario).unwrap() {
                LiveMode::Postcopy { start_after } if start_after.is_zero() => Some("at-once".to_string()),
                LiveMode::Postcopy { start_after } => Some(format!("{}ms", start_after.as_millis())),
                LiveMode::Precopy => None,
            };
            let mut il = imported(&lab(), &sh, start.as_deref()).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            // The grow row's resize and the guest's plugs answering it are no command line's.
            il.scenario.manager = l.scenario.manager.clone();
            il.scenario.guest = l.scenario.guest.clone();
            let (want, got) = (run(&l).unwrap(), run(&il).unwrap_or_else(|e| panic!("{}: {e}", path.display())));
            assert_eq!(got.outcome.class(), want.outcome.class(), "{}", path.display());
            assert_eq!(got.outcome.stage(), want.outcome.stage(), "{}", path.display());
            assert_eq!(got.outcome.stderr(), want.outcome.stderr(), "{}", path.display());
            assert_eq!(got.judgement.verdict, want.judgement.verdict, "{}", path.display());
            assert_eq!(got.source.status, want.source.status, "{}", path.display());
            checked += 1;
        }
    }
    eprintln!("{checked} conformance cases imported from their command lines");
    assert!(checked >= 25, "only {checked} cases were imported");
}

fn import(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(EXE).arg("import").arg("qemu").args(args).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vmemsim-import-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[test]
fn a_libvirt_command_line_with_json_options_runs_and_keeps_what_it_does_not_model() {
    // As libvirt writes it (tests/qemuxmlconfdata/memory-hotplug-virtio-mem*.args): JSON
    // -object/-device, a hugetlbfs mount per page size, reserve off, the device's prealloc.
    let line = r#"LC_ALL=C PATH=/usr/bin /usr/bin/qemu-system-x86_64 \
-name guest=QEMUGuest1 -machine pc-q35-9.2,usb=off,dump-guest-core=off,memory-backend=pc.ram \
-accel tcg -m size=2097152k,slots=16,maxmem=10485760k \
-object '{"qom-type":"memory-backend-ram","id":"pc.ram","size":2147483648}' \
-nodefaults -vga none \
-object '{"qom-type":"memory-backend-file","id":"memvirtiomem0","mem-path":"/dev/hugepages2M/libvirt/qemu/-1-QEMUGuest1","reserve":false,"share":true,"size":2147483648}' \
-device '{"driver":"virtio-mem-pci","node":0,"block-size":2097152,"requested-size":1073741824,"memdev":"memvirtiomem0","prealloc":true,"id":"virtiomem0","bus":"pcie.0","addr":"0x2"}' \
-device '{"driver":"virtio-balloon-pci","id":"balloon0","bus":"pcie.0","addr":"0x3"}'
"#;
    let file = tmp("libvirt.args");
    std::fs::write(&file, line).unwrap();
    let out = tmp("libvirt.toml");
    let (ok, _, err) = import(&["--cmdline", file.to_str().unwrap(), "--mount", "/dev/hugepages2M:hugetlbfs", "--dest-mount", "/dev/hugepages2M:hugetlbfs:512M", "-o", out.to_str().unwrap()]);
    assert!(ok, "{err}");
    let text = std::fs::read_to_string(&out).unwrap();
    for kept in ["-machine usb=off: not modelled", "-machine dump-guest-core=off: not modelled", "-name guest=QEMUGuest1: not modelled", "-m slots=16: not modelled", "-device {\"driver\":\"virtio-balloon-pci\""] {
        assert!(text.contains(kept), "{kept} is kept:\n{text}");
    }
    assert!(text.contains("main_memdev = \"pc.ram\""), "{text}");
    assert!(text.contains("pci = \"0000:00:02.0\"\n"), "{text}");
    let l = load(&out).unwrap();
    let r = run(&l).unwrap();
    assert_eq!(r.outcome.stage().unwrap().to_string(), "early section '0000:00:02.0/virtio-mem-device-early'");
    assert_eq!(r.outcome.stderr()[0], "qemu-system-x86_64: qemu_prealloc_mem: preallocating memory failed: Bad address");
}

#[test]
fn slots_and_memaddr_are_qemus_when_the_command_line_leaves_them_out() {
    let (ok, text, err) = import(&[
        "--mount", "/dev/shm:tmpfs", "--", "qemu-system-x86_64", "-machine", "q35", "-m", "4G,maxmem=8G", "-object", "memory-backend-file,id=m0,mem-path=/dev/shm/m0,size=1G,share=on",
        "-device", "virtio-mem-pci,id=v0,memdev=m0,requested-size=512M", "-device", "pcie-root-port,id=rp1,addr=0x7",
        "-object", "memory-backend-ram,id=m1,size=1G", "-device", "virtio-mem-pci,id=v1,memdev=m1,bus=rp1,requested-size=0",
    ]);
    assert!(ok, "{err}");
    // Default VGA at 01.0 and NIC at 02.0 (observed on QEMU 10.0.2), then the first device.
    assert!(text.contains("pci = \"0000:00:03.0\""), "{text}");
    assert!(text.contains("pci = \"0000:00:07.0:00.0\""), "{text}");
    let f = tmp("slots.toml");
    std::fs::write(&f, &text).unwrap();
    let b = build(&load(&f).unwrap()).unwrap();
    // q35 -m 4G: device memory from 0x180000000; the second device right after the first.
    assert_eq!(b.source.devices[0].addr().0, 0x1_8000_0000);
    assert_eq!(b.source.devices[1].addr().0, 0x1_c000_0000);
}

#[test]
fn mistakes_name_the_option() {
    let base = ["--", "qemu-system-x86_64", "-machine", "q35", "-object", "memory-backend-file,id=m0,mem-path=/srv/m0,size=1G,share=on", "-device", "virtio-mem-pci,id=v0,memdev=m0"];
    let cases: [(Vec<&str>, &str); 5] = [
        ([&["--mount", "/srv:disk"], &base[..], &["-m", "1G"]].concat(), "-m has no maxmem: QEMU refuses memory devices"),
        ([&base[..], &["-m", "1G,maxmem=4G"]].concat(), "is on no known mount: give --mount"),
        ([&["--mount", "/srv:disk"], &base[..], &["-m", "1G,maxmem=1536M"]].concat(), "leaves 512M for memory devices, less than their 1G"),
        ([&["--mount", "/srv:zfs"], &base[..]].concat(), "--mount /srv:zfs: unknown file system"),
        (vec!["--", "qemu-system-x86_64", "-m"], "-m (argument 2) needs a value"),
    ];
    for (args, words) in cases {
        let (ok, _, err) = import(&args);
        assert!(!ok && err.contains(words), "{args:?}: {err}");
    }
    let (ok, _, err) = import(&["--", "qemu-system-x86_64", "-machine", "q35", "-m", "1G,maxmem=4G"]);
    assert!(!ok && err.contains("no -device virtio-mem-pci"), "{err}");
}

#[test]
fn host_reads_this_hosts_mounts_and_what_their_quota_has_left() {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    let Some(tmpfs) = mounts.lines().map(|l| l.split(' ').collect::<Vec<_>>()).find(|f| f.len() > 2 && f[2] == "tmpfs" && !f[1].contains('\\')).map(|f| f[1].to_string()) else {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "CI=true: this host has no tmpfs mount to read");
        eprintln!("skipping: this host has no tmpfs mount to read");
        return;
    };
    let st = rustix::fs::statvfs(tmpfs.as_str()).unwrap();
    let path = format!("{tmpfs}/vmemsim-import-test");
    let (ok, text, err) = import(&[
        "--host", "--", "qemu-system-x86_64", "-machine", "pc", "-m", "1G,maxmem=8G", "-object", &format!("memory-backend-file,id=m0,mem-path={path},size=1G,share=on"),
        "-device", "virtio-mem-pci,id=v0,memdev=m0,requested-size=0",
    ]);
    assert!(ok, "{err}");
    assert!(text.contains(&format!("[[destination.mount]]\npath = \"{tmpfs}\"\nfs = \"tmpfs\"")), "{text}");
    if st.f_blocks > 0 {
        // The quota's free space moves as the host runs: check the form, not the number.
        assert!(text.contains("# what its size= quota has left"), "{text}");
    }
    assert!(text.contains("--host: this host is the destination"), "{text}");
}

/// A domain as libvirt's documentation writes virtio-mem (docs/formatdomain.rst, "Memory
/// devices"; docs/kbase/memorydevices.rst), with 2 MiB huge pages behind it.

#[test]
fn a_libvirt_domain_imports_as_libvirt_starts_qemu() {
    let xml = tmp("domain.xml");
    std::fs::write(&xml, common::LIBVIRT_DOMAIN).unwrap();
    let out = tmp("domain.toml");
    let run_import = |dest: &str| {
        let o = Command::new(EXE)
            .args(["import", "libvirt", xml.to_str().unwrap(), "--mount", "/dev/hugepages:hugetlbfs", "--dest-mount", &format!("/dev/hugepages:hugetlbfs:{dest}"), "-o", out.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        std::fs::read_to_string(&out).unwrap()
    };
    let text = run_import("2G");
    // Main RAM: the NUMA cell's ram-node0, preallocated on huge pages; the device's backend
    // with reserve=off and no share (a private mapping), prealloc on the device, behind the
    // root port at 02.0.
    for want in [
        "main_memdev = \"ram-node0\"",
        "mem_path = \"/dev/hugepages/libvirt/qemu/guest1\"",
        "id = \"memvirtiomem0\"",
        "reserve = false",
        "pci = \"0000:00:02.0:00.0\"",
        "prealloc = true",
        "<memory model='dimm'>: not modelled",
    ] {
        assert!(text.contains(want), "{want}:\n{text}");
    }
    let r = run(&load(&out).unwrap()).unwrap();
    // 2 GiB of main RAM and 1 GiB plugged do not fit 2 GiB: main RAM takes its pages first (at
    // start-up, reserve=on with prealloc), and the device's preallocation fails gracefully.
    assert_eq!(r.outcome.stage().unwrap().to_string(), "early section '0000:00:02.0:00.0/virtio-mem-device-early'");
    let text = run_import("3G");
    assert!(text.contains("size = \"3G\""));
    let r = run(&load(&out).unwrap()).unwrap();
    assert_eq!(r.outcome.class(), vmemsim_model::OutcomeClass::Completed, "{:?}", r.outcome);
    assert_eq!(r.outcome.stderr(), ["qemu-system-x86_64: warning: ram_block_discard_range: Discarding RAM in private file mappings is possibly dangerous, because it will modify the underlying file and will affect other users of the file"]);
}

#[test]
fn a_libvirt_domain_without_what_the_import_needs_says_so() {
    let xml = tmp("bad.xml");
    for (text, words) in [
        (common::LIBVIRT_DOMAIN.replace("<address type='pci' domain='0x0000' bus='0x01' slot='0x00' function='0x0'/>", ""), "has no PCI <address>"),
        (common::LIBVIRT_DOMAIN.replace("machine='pc-q35-9.2'", ""), "<os><type machine='...'> is missing"),
        (common::LIBVIRT_DOMAIN.replace("model='virtio-mem'", "model='virtio-pmem'"), "no <memory model='virtio-mem'>"),
        (common::LIBVIRT_DOMAIN.replace("<size unit='KiB'>2097152</size>", "<size unit='KiB'>two</size>"), "'two' is not a number"),
        (common::LIBVIRT_DOMAIN.replace("</domain>", ""), "the domain XML"),
    ] {
        std::fs::write(&xml, text).unwrap();
        let o = Command::new(EXE).args(["import", "libvirt", xml.to_str().unwrap(), "--mount", "/dev/hugepages:hugetlbfs"]).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains(words), "{words}: {err}");
    }
    let o = Command::new(EXE).args(["import", "libvirt", xml.to_str().unwrap()]).output().unwrap();
    assert!(!o.status.success());
    std::fs::write(&xml, common::LIBVIRT_DOMAIN).unwrap();
    let o = Command::new(EXE).args(["import", "libvirt", xml.to_str().unwrap()]).output().unwrap();
    assert!(String::from_utf8_lossy(&o.stderr).contains("no hugetlbfs mount for 2M pages: give --mount"), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn preflight_takes_a_destination_per_memdev_and_reads_its_limits_on_this_host() {
    let stream = tmp("own-mounts.mig");
    let scenario = common::scenario("deployments/per-device-mounts.toml");
    let enc = Command::new(EXE).arg("encode").arg(&scenario).arg(&stream).output().unwrap();
    assert!(enc.status.success(), "{}", String::from_utf8_lossy(&enc.stderr));
    let pre = |args: &[&str]| {
        let o = Command::new(EXE).arg("preflight").arg(&stream).args(args).output().unwrap();
        (o.status.code(), String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
    };
    // The second device's own mount (1 GiB for 2 GiB plugged) fails it, as `run` says.
    let (code, out, _) = pre(&["--destination", scenario.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("memdev mem1: hugetlbfs memory, hugetlbfs mount /dev/hugepages-vm1-mem1 (pagesize=2 MiB) (1 GiB)"), "{out}");
    assert!(out.contains("error while loading state for instance 0x0 of device '0000:00:04.0/virtio-mem-device-early'"), "{out}");
    // --prealloc off overrides the scenario's: RAM load then dies of SIGBUS.
    let (_, out, _) = pre(&["--destination", scenario.to_str().unwrap(), "--prealloc", "off"]);
    assert!(out.contains("verdict: NOT SAFE: the destination dies of SIGBUS while loading RAM"), "{out}");
    // --host reads what this host has for those mounts and pools and says so.
    let (_, out, _) = pre(&["--destination", scenario.to_str().unwrap(), "--host"]);
    assert!(out.contains("read on this host: /dev/hugepages-vm1-mem0:"), "{out}");
    assert!(out.contains("read on this host: free 2 MiB huge pages:"), "{out}");
    let (code, _, err) = pre(&[]);
    assert_eq!(code, Some(2));
    assert!(err.contains("--backend KIND --capacity SIZE, or --destination SCENARIO.toml"), "{err}");
}
