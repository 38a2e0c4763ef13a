//! `vmemsim prealloc` on small regions: every strategy row of each measured kind, numbers that
//! are positive and finite, fractions that are GiB/s ÷ bandwidth, a best and a recommendation
//! that are the fastest graceful rows, the JSON document's fields, bad input refused with the
//! option named, and nothing left on the host (pool pages, ledger entries, mounts).

use std::process::{Command, Output};

use serde_json::Value;

fn vmemsim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vmemsim")).args(args).output().expect("vmemsim runs")
}

/// The tests that use huge pages, one at a time: one would take the free pages that the other's
/// pool grow just added.
static HUGE_PAGES: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn huge_pages() -> std::sync::MutexGuard<'static, ()> {
    HUGE_PAGES.lock().unwrap_or_else(|p| p.into_inner())
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Root, or a printed skip; CI runs as root, so there a missing root is a failure.
fn root_or_skip(what: &str) -> bool {
    if is_root() {
        return true;
    }
    assert!(std::env::var("CI").as_deref() != Ok("true"), "CI=true runs as root, but this test is not root");
    eprintln!("skipping {what}: not root (a pool grow and a private mount need root)");
    false
}

/// The JSON document of a run; exit 0 when a kind was measured, 1 when every kind was skipped.
fn json(args: &[&str]) -> Value {
    let out = vmemsim(&[&["--format", "json", "prealloc"], args].concat());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let doc: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {stdout}\n{}", String::from_utf8_lossy(&out.stderr)));
    let measured = !doc["kinds"].as_array().expect("kinds").is_empty();
    assert_eq!(out.status.code(), Some(if measured { 0 } else { 1 }), "{args:?}: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    doc
}

fn strategies(kind: &str) -> Vec<&'static str> {
    let mut all = vec!["qemu", "touch", "per-block", "parallel", "fallocate"];
    if kind == "anon" {
        all.retain(|s| *s != "fallocate");
    }
    all
}

/// Checks one measured kind of the document against the rules of the table.
fn check_kind(k: &Value) -> String {
    let name = k["memory"].as_str().expect("memory").to_string();
    let bw = k["bandwidth_gib_s"].as_f64().expect("bandwidth");
    assert!(bw.is_finite() && bw > 0.0, "{name}: bandwidth {bw}");
    assert!(k["region_bytes"].as_u64().unwrap() > 0 && k["page_size"].as_u64().unwrap() > 0);
    let cases = k["cases"].as_array().expect("cases");
    let layouts: Vec<&str> = cases.iter().map(|c| c["layout"].as_str().unwrap()).collect();
    assert_eq!(layouts, ["contiguous", "fragmented"], "{name}");
    let mut means: Vec<(String, f64)> = Vec::new();
    for c in cases {
        let rows = c["rows"].as_array().expect("rows");
        let got: Vec<&str> = rows.iter().map(|r| r["strategy"].as_str().unwrap()).collect();
        assert_eq!(got, strategies(&name), "{name}: every strategy that applies, in order");
        for r in rows {
            let (g, f) = (r["gib_s"].as_f64().unwrap(), r["fraction"].as_f64().unwrap());
            assert!(g.is_finite() && g > 0.0 && f.is_finite() && f > 0.0, "{name}: {r}");
            assert!((f - g / bw).abs() <= 1e-12 * f.max(1.0), "{name}: fraction {f} is not {g} / {bw}");
            assert_eq!(r["graceful"].as_bool(), Some(r["strategy"] != "touch"));
        }
        let graceful = rows.iter().filter(|r| r["graceful"] == true);
        let fastest = graceful.max_by(|a, b| a["gib_s"].as_f64().unwrap().total_cmp(&b["gib_s"].as_f64().unwrap())).unwrap();
        assert_eq!(c["best"], fastest["strategy"], "{name}: the best is the fastest graceful row");
        assert_eq!(rows.iter().filter(|r| r["best"] == true).count(), 1);
        assert_eq!(fastest["best"], true);
        for r in rows.iter().filter(|r| r["graceful"] == true) {
            let s = r["strategy"].as_str().unwrap().to_string();
            let g = r["gib_s"].as_f64().unwrap() / cases.len() as f64;
            match means.iter_mut().find(|(n, _)| *n == s) {
                Some(m) => m.1 += g,
                None => means.push((s, g)),
            }
        }
    }
    let best = means.iter().max_by(|a, b| a.1.total_cmp(&b.1)).unwrap();
    let rec = &k["recommendation"];
    assert_eq!(rec["strategy"].as_str(), Some(best.0.as_str()), "{name}: the recommendation is the fastest mean");
    let text = rec["text"].as_str().unwrap();
    assert!(text.starts_with(&format!("{}: {}, ", k["title"].as_str().unwrap(), best.0)) && text.ends_with("of the bandwidth"), "{text}");
    name
}

/// The pool's persistent size, and whether any ledger entry exists (another run's increment).
fn pool_state(dir: &str) -> (u64, bool) {
    let base = format!("/sys/kernel/mm/hugepages/{dir}");
    let read = |f: &str| std::fs::read_to_string(format!("{base}/{f}")).ok().and_then(|t| t.trim().parse::<u64>().ok()).unwrap_or(0);
    let others = std::fs::read_dir("/run/vmemsim/pool").map(|d| d.count() > 0).unwrap_or(false);
    (read("nr_hugepages").saturating_sub(read("surplus_hugepages")), others)
}

fn mounts() -> usize {
    std::fs::read_to_string("/proc/self/mountinfo").unwrap().lines().count()
}

#[test]
fn a_small_run_measures_every_strategy_and_recommends_the_fastest() {
    let doc = json(&["--memory", "memfd,anon", "--size", "16M", "--repeat", "1"]);
    assert_eq!(doc["schema"], "vmemsim/1");
    assert_eq!(doc["command"], "prealloc");
    assert!(doc["machine"]["cores"].as_u64().unwrap() >= 1);
    assert!(!doc["machine"]["kernel"].as_str().unwrap().is_empty());
    assert_eq!(doc["plugged_percent"], 50);
    let kinds: Vec<String> = doc["kinds"].as_array().unwrap().iter().map(check_kind).collect();
    assert_eq!(kinds, ["memfd", "anon"]);
    let skipped = doc["skipped"].as_array().unwrap();
    assert!(skipped.iter().any(|s| s["memory"] == "anon" && s["strategy"] == "fallocate" && s["reason"].as_str().unwrap().contains("no fd")), "{skipped:?}");
}

/// The table as printed: every fraction is the printed GiB/s ÷ the printed bandwidth (within
/// the rounding of two decimals), the starred cell the fastest graceful one.
#[test]
fn the_table_prints_fractions_of_the_printed_bandwidth() {
    let out = vmemsim(&["prealloc", "--memory", "memfd", "--size", "16M", "--repeat", "1", "--plugged", "25"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("machine: ") && text.contains(" cores") && text.contains("kernel "), "{text}");
    let rows: Vec<&str> = text.lines().filter(|l| l.starts_with("memfd 4 KiB ")).collect();
    assert_eq!(rows.len(), 2, "{text}");
    for row in rows {
        let bw: f64 = row.split_whitespace().last().unwrap().parse().unwrap();
        let cells: Vec<(bool, f64, f64)> = row
            .split(')')
            .filter_map(|c| {
                let (g, f) = c.rsplit_once(" (")?;
                let g = g.split_whitespace().last()?;
                Some((g.starts_with('*'), g.trim_start_matches('*').parse().ok()?, f.parse().ok()?))
            })
            .collect();
        assert_eq!(cells.len(), 5, "{row}");
        for &(_, g, f) in &cells {
            let (lo, hi) = ((g - 0.005) / (bw + 0.005) - 0.005, (g + 0.005) / (bw - 0.005) + 0.005);
            assert!(f >= lo && f <= hi, "{row}: {f} is not {g} / {bw}");
        }
        // Touch (the second cell) is never starred.
        let star: Vec<_> = cells.iter().enumerate().filter(|(_, c)| c.0).collect();
        assert_eq!(star.len(), 1, "{row}");
        let max = cells.iter().enumerate().filter(|(i, _)| *i != 1).map(|(_, c)| c.1).fold(0.0, f64::max);
        assert_eq!(star[0].1 .1, max, "{row}");
    }
    assert!(text.lines().any(|l| l.starts_with("recommendation: memfd 4 KiB: ")), "{text}");
}

#[test]
fn bad_input_is_refused_with_the_option_named() {
    for (args, option, accepted) in [
        (&["--memory", "hugetlb-3m"][..], "--memory", "hugetlb-2m, hugetlb-1g, tmpfs, memfd, anon"),
        (&["--size", "lots"][..], "--size", "512M"),
        (&["--plugged", "150"][..], "--plugged", "1 to 100"),
        (&["--plugged", "0"][..], "--plugged", "1 to 100"),
        (&["--layout", "striped"][..], "--layout", "contiguous, fragmented"),
        (&["--repeat", "0"][..], "--repeat", "1..=1000"),
        (&["--memory", "hugetlb-1g", "--size", "64M"][..], "--size", "whole 1 GiB blocks"),
        (&["--memory", "memfd", "--size", "3M"][..], "--size", "whole 2 MiB blocks"),
    ] {
        let out = vmemsim(&[&["prealloc"], args].concat());
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(option) && err.contains(accepted), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

/// Without --grow-pool a hugetlb kind the free pool cannot hold is skipped with the reason.
#[test]
fn hugetlb_without_free_pages_or_grow_pool_is_skipped_with_the_reason() {
    let _serial = huge_pages();
    let doc = json(&["--memory", "hugetlb-2m", "--size", "16M", "--repeat", "1"]);
    match doc["kinds"].as_array().unwrap().first() {
        // The pool had 8 free pages (another run's, or the host's): measured on them.
        Some(k) => {
            check_kind(k);
            assert_eq!(k["pool"]["grown_by"], 0);
        }
        None => {
            let reason = doc["skipped"][0]["reason"].as_str().unwrap();
            assert!(reason.contains("free 2 MiB huge pages, 8 needed") && reason.contains("--grow-pool"), "{reason}");
        }
    }
}

/// As root: a private tmpfs mount and a pool grown through the ledger for 2 MiB and 1 GiB pages,
/// all given back (pool size, ledger, mounts).
#[test]
fn as_root_tmpfs_and_grown_pools_are_measured_and_given_back() {
    if !root_or_skip("the tmpfs and pool-grow run") {
        return;
    }
    let _serial = huge_pages();
    let before = (pool_state("hugepages-2048kB"), pool_state("hugepages-1048576kB"), mounts());
    let doc = json(&["--memory", "hugetlb-2m,tmpfs", "--size", "16M", "--repeat", "1", "--grow-pool"]);
    let kinds: Vec<String> = doc["kinds"].as_array().unwrap().iter().map(check_kind).collect();
    assert_eq!(kinds, ["hugetlb-2m", "tmpfs"], "{doc}");
    assert!(doc["kinds"][1]["backing"].as_str().unwrap().contains("private tmpfs mount"));
    let one_g = std::path::Path::new("/sys/kernel/mm/hugepages/hugepages-1048576kB").exists();
    if one_g {
        // Two 1 GiB pages: measured, or skipped because the kernel could not give them.
        let doc = json(&["--memory", "hugetlb-1g", "--size", "2G", "--repeat", "1", "--grow-pool"]);
        match doc["kinds"].as_array().unwrap().first() {
            Some(k) => assert_eq!(check_kind(k), "hugetlb-1g"),
            None => {
                let reason = doc["skipped"][0]["reason"].as_str().unwrap();
                assert!(reason.contains("the kernel gave only"), "{reason}");
            }
        }
    } else {
        eprintln!("no 1 GiB huge pages on this kernel: the 1 GiB part is not run");
    }
    let after = (pool_state("hugepages-2048kB"), pool_state("hugepages-1048576kB"), mounts());
    for (pool, b, a) in [("2 MiB", before.0, after.0), ("1 GiB", before.1, after.1)] {
        // Another run's increment may come or go meanwhile; with none, the size is exact.
        if !b.1 && !a.1 {
            assert_eq!(a.0, b.0, "the {pool} pool is back at the size found");
        }
    }
    assert_eq!(after.2, before.2, "no mount is left on the host");
}
