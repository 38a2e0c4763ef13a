//! The per-memdev scenario form: memory backends as QEMU has them and the host limits they
//! draw from. Mistakes name the field and the line; limits bind where they really are.

use std::path::Path;

use vmemsim_model::OutcomeClass;
use vmemsim_sim::{build, parse, run};

const TWO_MOUNTS: &str = r#"name = "two mounts"
[source]
machine = "q35"
main_ram = "4G"
[[source.mount]]
path = "/mnt/a"
fs = "hugetlbfs"
[[source.mount]]
path = "/mnt/b"
fs = "hugetlbfs"
[[source.memdev]]
id = "mem0"
type = "memory-backend-file"
mem_path = "/mnt/a/guest"
share = true
reserve = false
[[source.memdev]]
id = "mem1"
type = "memory-backend-file"
mem_path = "/mnt/b/guest"
share = true
reserve = false
[destination]
[[destination.mount]]
path = "/mnt/a"
fs = "hugetlbfs"
size = "QUOTA_A"
[[destination.mount]]
path = "/mnt/b"
fs = "hugetlbfs"
size = "QUOTA_B"
[[device]]
id = "vmem0"
pci = "0000:00:03.0"
memdev = "mem0"
region = "4G"
requested = "1G"
prealloc = true
[[device]]
id = "vmem1"
pci = "0000:00:04.0"
memdev = "mem1"
region = "4G"
requested = "1G"
prealloc = true
"#;

fn outcome(text: &str) -> vmemsim_model::Outcome {
    let l = parse(Path::new("t.toml"), text).unwrap_or_else(|e| panic!("{e}"));
    run(&l).unwrap_or_else(|e| panic!("{e}")).outcome
}

fn error(text: &str) -> String {
    match parse(Path::new("t.toml"), text).and_then(|l| build(&l).map(|_| ())) {
        Ok(()) => panic!("accepted:\n{text}"),
        Err(e) => e.to_string(),
    }
}

fn quotas(a: &str, b: &str) -> String {
    TWO_MOUNTS.replace("QUOTA_A", a).replace("QUOTA_B", b)
}

#[test]
fn each_mount_limits_only_its_own_device() {
    // 3 GiB in all would hold both devices; split 512M / 2560M the first one is short.
    let o = outcome(&quotas("512M", "2560M"));
    assert_eq!(o.class(), OutcomeClass::Failed);
    assert_eq!(o.stage().unwrap().to_string(), "early section '0000:00:03.0/virtio-mem-device-early'");
    let o = outcome(&quotas("2560M", "512M"));
    assert_eq!(o.stage().unwrap().to_string(), "early section '0000:00:04.0/virtio-mem-device-early'");
    assert_eq!(outcome(&quotas("1G", "1G")).class(), OutcomeClass::Completed);
}

#[test]
fn reserve_on_reserves_the_whole_region_at_mmap() {
    let text = quotas("1G", "1G").replace("reserve = false\n[[source.memdev]]\nid = \"mem1\"", "[[source.memdev]]\nid = \"mem1\"");
    let o = outcome(&text);
    assert_eq!(o.class(), OutcomeClass::Failed);
    assert_eq!(o.stage().unwrap().to_string(), "startup");
    assert_eq!(o.stderr(), ["qemu-system-x86_64: unable to map backing store for guest RAM: Cannot allocate memory"]);
    // With room for the 4 GiB region the reservation holds, and the restore completes.
    assert_eq!(outcome(&text.replace("size = \"1G\"\n[[destination.mount]]", "size = \"4G\"\n[[destination.mount]]")).class(), OutcomeClass::Completed);
}

#[test]
fn a_pool_per_node_binds_a_bound_memdev_and_a_free_one_falls_back() {
    let memfd = |nodes: &str| {
        format!(
            "[[source.memdev]]\nid = \"mem0\"\ntype = \"memory-backend-memfd\"\nhugetlb = true\nreserve = false\n{nodes}\n"
        )
    };
    let text = |nodes: &str| {
        format!(
            "name = \"n\"\n[source]\nmachine = \"q35\"\nmain_ram = \"4G\"\n{}[destination]\n[[destination.hugepages]]\npage_size = \"2M\"\nnode = 0\nfree = \"256M\"\n[[destination.hugepages]]\npage_size = \"2M\"\nnode = 1\nfree = \"2G\"\n[[device]]\nid = \"vmem0\"\nmemdev = \"mem0\"\nregion = \"4G\"\nrequested = \"1G\"\nprealloc = true\n",
            memfd(nodes)
        )
    };
    assert_eq!(outcome(&text("host_nodes = [0]\npolicy = \"bind\"")).class(), OutcomeClass::Failed);
    assert_eq!(outcome(&text("host_nodes = [1]\npolicy = \"bind\"")).class(), OutcomeClass::Completed);
    assert_eq!(outcome(&text("")).class(), OutcomeClass::Completed, "an unbound memdev takes node 1's pages when node 0 runs out");
}

#[test]
fn the_destinations_requested_size_is_replaced_by_the_streams() {
    let text = quotas("2G", "2G").replacen("prealloc = true\n", "prealloc = true\ndestination = { requested = \"0\" }\n", 1);
    assert_eq!(outcome(&text).class(), OutcomeClass::Completed);
    // Realize still checks the destination's own value: QEMU refuses to start.
    let o = outcome(&quotas("2G", "2G").replacen("prealloc = true\n", "prealloc = true\ndestination = { requested = \"3M\" }\n", 1));
    assert_eq!(o.stage().unwrap().to_string(), "startup");
    assert!(o.stderr()[0].ends_with("'requested-size' property has to be multiples of 'block-size' (0x200000)"), "{:?}", o.stderr());
}

#[test]
fn two_devices_on_one_memdev_are_refused_with_qemus_words() {
    let text = quotas("2G", "2G").replacen("prealloc = true\n", "prealloc = true\ndestination = { memdev = \"mem1\" }\n", 1);
    let o = outcome(&text);
    assert_eq!(o.stage().unwrap().to_string(), "startup");
    assert_eq!(o.stderr(), ["qemu-system-x86_64: -device virtio-mem-pci,id=vmem1: 'memdev' property specifies a busy memdev: mem1"]);
}

#[test]
fn mistakes_name_the_field_and_the_line() {
    let cases: [(String, &str, &str); 8] = [
        (quotas("1G", "1G").replace("/mnt/a/guest", "/srv/guest"), "source.memdev.mem_path", "'/srv/guest' is not under any mount of this side"),
        (quotas("1G", "1G").replacen("fs = \"hugetlbfs\"", "fs = \"tmpfs\"", 1).replacen("share = true\n", "", 1), "source.memdev.share", "modelled on hugetlbfs only; write share = true"),
        (quotas("1G", "1G").replacen("memdev = \"mem0\"", "memdev = \"mem9\"", 1), "device.memdev", "the source has no memdev 'mem9' (its memdevs: mem0, mem1)"),
        (quotas("1G", "1G").replacen("id = \"mem1\"", "id = \"mem0\"", 1), "source.memdev.id", "memdev id 'mem0' is used twice"),
        (quotas("1G", "1G").replacen("fs = \"hugetlbfs\"", "fs = \"hugetlbfs\"\npage_size = \"4M\"", 1), "source.mount.page_size", "x86-64 huge pages are 2M or 1G, not 4 MiB"),
        (quotas("1G", "1G").replacen("share = true\n", "share = true\nhost_nodes = [1]\n", 1), "source.memdev.host_nodes", "host-nodes must be empty for policy default"),
        (quotas("1G", "1G").replace("[destination]\n", "[destination]\nbackend = { kind = \"memfd\" }\n"), "destination.backend", "not both"),
        (quotas("1G", "1G").replacen("machine = \"q35\"\n", "machine = \"q35\"\nmain_memdev = \"ram\"\n", 1), "source.main_memdev", "no [[source.memdev]] has id 'ram'"),
    ];
    for (text, field, words) in cases {
        let e = error(&text);
        assert!(e.contains(&format!(": {field}: ")) && e.contains(words), "{field}: {e}");
        assert!(e.starts_with("t.toml:"), "names the line: {e}");
    }
}
