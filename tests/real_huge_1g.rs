//! 1 GiB huge pages on real memory: a scenario with a pagesize=1G hugetlbfs quota one page short
//! runs in a child with a private hugetlbfs mount of 1 GiB pages and one 1 GiB page added to the
//! pool for the run, agrees with the model, and leaves the pool as it found it.

mod common;

use std::process::Command;

use vmemsim_model::Bytes;
use vmemsim_sim::real::fits;
use vmemsim_sim::{build, load};

const POOL: &str = "/sys/kernel/mm/hugepages/hugepages-1048576kB";

fn pool_size() -> u64 {
    let read = |f: &str| std::fs::read_to_string(format!("{POOL}/{f}")).ok().and_then(|t| t.trim().parse::<u64>().ok()).unwrap_or(0);
    read("nr_hugepages").saturating_sub(read("surplus_hugepages"))
}

fn others_hold_increments() -> bool {
    std::fs::read_dir("/run/vmemsim/pool").map(|d| d.count() > 0).unwrap_or(false)
}

#[test]
fn a_1g_hugetlbfs_scenario_runs_on_real_memory_and_agrees() {
    if !rustix::process::geteuid().is_root() {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "CI=true runs as root, but this test is not root");
        eprintln!("skipping: not root (a private hugetlbfs mount and the 1 GiB pool need root)");
        return;
    }
    if !std::path::Path::new(POOL).exists() {
        eprintln!("skipping: this kernel has no 1 GiB huge pages (no {POOL})");
        return;
    }
    let file = common::scenario("real/hugetlbfs-1g-short.toml");
    let needs = fits(&build(&load(&file).unwrap()).unwrap()).expect("1 GiB pages run for real");
    assert_eq!(needs.huge_pages, vec![(Bytes::gib(1), 1)], "one 1 GiB page: the quota");
    let m = &needs.mounts[0].1;
    assert_eq!((m.fstype.as_str(), m.huge_page, m.quota), ("hugetlbfs", Some(1 << 30), Some(1 << 30)));
    let (before, busy) = (pool_size(), others_hold_increments());
    let out = Command::new(env!("CARGO_BIN_EXE_vmemsim")).args(["run", "--backend", "real"]).arg(&file).output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if stderr.contains("the kernel gave only 0 new huge pages") {
        eprintln!("the kernel has no free 1 GiB page to give (contiguous memory): {stderr}");
    } else {
        assert!(out.status.success(), "{stdout}{stderr}");
        assert!(stdout.contains("1 huge page of 1 GiB added to the pool for the run"), "{stdout}");
        assert!(stdout.contains("agreement: the model and real memory agree"), "{stdout}");
        assert!(stdout.contains("qemu_prealloc_mem: preallocating memory failed"), "{stdout}");
    }
    if !busy && !others_hold_increments() {
        assert_eq!(pool_size(), before, "the 1 GiB pool is back at the size found");
    }
}
