//! The model against real memory: every shipped scenario that fits, and 200 generated seeds,
//! run on actual mmap'd memory in a child process must end the way the model says: same class,
//! stage, QEMU lines and SIGBUS site. Root-only cases skip with a reason when not root, and run
//! under CI=true.

mod common;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use vmemsim_model::{OutcomeClass, Variant};
use vmemsim_sim::campaign::loaded;
use vmemsim_sim::gen::generate;
use vmemsim_sim::real::isolation::private_mount_point;
use vmemsim_sim::real::mounts::is_root;
use vmemsim_sim::real::pool::PoolDir;
use vmemsim_sim::real::{compare, fits, fits_within, model_outcome, run_real, simulated_outcome};
use vmemsim_sim::{build, load};

/// One real run at a time: they share the huge page pool.
static SERIAL: Mutex<()> = Mutex::new(());

const EXE: &str = env!("CARGO_BIN_EXE_vmemsim");
const TIMEOUT: Duration = Duration::from_secs(120);

/// Whether the root-only tests can run here; under CI=true they must.
fn root_or_skip(test: &str) -> bool {
    if is_root() {
        return true;
    }
    assert!(std::env::var("CI").as_deref() != Ok("true"), "{test}: CI=true runs as root, but this process is not root");
    eprintln!("skipping {test}: not root (private mounts and the huge page pool need root)");
    false
}

#[test]
fn shipped_scenarios_agree_on_real_memory() {
    if !root_or_skip("shipped_scenarios_agree_on_real_memory") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let (mut ran, mut failures, mut model_only) = (Vec::new(), Vec::new(), Vec::new());
    for f in common::scenario_files() {
        let l = load(&f).unwrap();
        let b = build(&l).unwrap();
        if let Err(why) = fits(&b) {
            eprintln!("{}: model only: {why}", f.display());
            model_only.push(f.file_name().unwrap().to_string_lossy().to_string());
            continue;
        }
        let model = simulated_outcome(&b);
        let real = run_real(EXE.as_ref(), &l.text, &b, TIMEOUT).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        eprintln!("{}: {} on real memory in {:.3} s", f.display(), real.outcome.class(), real.elapsed.as_secs_f64());
        let mut diffs = compare(&model, &real.outcome);
        diffs.extend(real.divergences.iter().cloned());
        if !diffs.is_empty() {
            failures.push(format!("{}: {}", f.display(), diffs.join("; ")));
        }
        if f.ends_with("hazards/drain-after-early-postcopy.toml") {
            // A second process, not this one, took the huge pages from the destination's mount.
            assert_eq!(real.competitors.len(), 1, "{:?}", real.competitors);
            assert_eq!(real.competitors[0].0, vmemsim_model::Bytes::mib(256));
            assert_ne!(real.competitors[0].1, std::process::id());
        }
        ran.push(f.file_name().unwrap().to_string_lossy().to_string());
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    for must in ["new-prealloc-short.toml", "new-noprealloc-short.toml", "old-prealloc-short.toml", "old-noprealloc-short.toml", "new-prealloc-enough.toml", "old-prealloc-enough.toml", "two-devices-short-hugetlb.toml", "big-sparse-region.toml", "per-device-mounts.toml", "shared-mount.toml", "main-ram-on-the-pool.toml", "main-ram-on-the-pool-prealloc.toml", "hugetlbfs-reserve-on.toml", "libvirt-hugepages-private.toml", "libvirt-hugepages-private-enough.toml", "prealloc-after-ram-load-graceful-capacity-failure-seed38.toml", "prealloc-after-ram-load-reference-table-seed38.toml", "prealloc-whole-region-reference-table-seed77.toml",
        // Events on real memory: a competitor, guest plugs after the restore, a cancel and its
        // retry, a guest request answered during the migration.
        "drain-after-early-postcopy.toml", "two-devices-sum-postcopy.toml", "grow-after-restore-init-on-free.toml", "grow-after-restore-latent.toml", "qemu-10.0.2-source-stuck-seed11.toml", "no-rollback-plugged-size-invariant-seed63.toml"] {
        assert!(ran.iter().any(|r| r == must), "{must} ran on real memory: {ran:?}");
    }
    // What stays in the model, each for a limit of this host: one NUMA node, 46 GiB to
    // populate on a 24 GiB machine, a capacity on private anonymous memory (a memory cgroup
    // OOM-kills instead of failing the populate).
    let allowed = ["per-node-pools.toml", "plug-during-migration-plug-state-frozen-seed3.toml", "pre-80-plugged-populated-seed15.toml"];
    assert!(model_only.iter().all(|m| allowed.contains(&m.as_str())), "only these may stay model-only: {allowed:?}, not {model_only:?}");
}

#[test]
fn two_hundred_generated_seeds_with_events_agree_on_real_memory() {
    if !root_or_skip("two_hundred_generated_seeds_with_events_agree_on_real_memory") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let start = Instant::now();
    let (mut ran, mut failures, mut classes) = (0, Vec::new(), std::collections::BTreeMap::new());
    let (mut with_events, mut kinds) = (0, std::collections::BTreeSet::new());
    let mut seed = 0;
    // Until 200 seeds with events have run (and the seeds without any between them).
    while with_events < 200 {
        seed += 1;
        assert!(seed < 20_000, "too few generated seeds fit real memory");
        // The seed's scenario as generated: guest requests, resizes, competitors and
        // cancellation included, replayed on real memory in the simulated order.
        let s = generate(seed, Variant::Faithful);
        let text = toml::to_string(&s).unwrap();
        let l = loaded(s);
        let b = build(&l).unwrap();
        if fits_within(&b, 384 << 20).is_err() {
            continue;
        }
        let model = simulated_outcome(&b);
        let real = run_real(EXE.as_ref(), &text, &b, TIMEOUT).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        let mut diffs = compare(&model, &real.outcome);
        diffs.extend(real.divergences.iter().cloned());
        if !diffs.is_empty() {
            failures.push(format!("seed {seed}: {}", diffs.join("; ")));
        }
        for (kind, has) in [("guest requests", !b.actions.is_empty()), ("resizes", !b.resizes.is_empty()), ("competitor", !b.drains.is_empty()), ("cancel", b.cancel_at.is_some())] {
            if has {
                kinds.insert(kind);
            }
        }
        with_events += usize::from(!b.actions.is_empty() || !b.resizes.is_empty() || !b.drains.is_empty() || b.cancel_at.is_some());
        *classes.entry(model.class()).or_insert(0) += 1;
        ran += 1;
    }
    eprintln!("{ran} generated seeds (up to seed {seed}, {with_events} with events: {kinds:?}) on real memory in {:.1} s: {classes:?}", start.elapsed().as_secs_f64());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(classes.len() >= 3, "the seeds cover several outcome classes: {classes:?}");
    assert!(kinds.len() == 4, "the seeds keep every kind of event: {kinds:?}");
}

#[test]
fn variants_fail_for_real() {
    if !root_or_skip("variants_fail_for_real") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    for (file, class, needle) in [
        ("real/pre80-short-hugetlbfs.toml", OutcomeClass::Crashed, None),
        // EEXIST on a zero page: UFFDIO_ZEROPAGE, printed by uffd_zero_page as errno=17.
        ("real/dontneed-shared-postcopy.toml", OutcomeClass::PostcopyFailed, Some("errno=17")),
        ("real/no-discard-after-prealloc-postcopy.toml", OutcomeClass::PostcopyFailed, Some("errno=17")),
    ] {
        let l = load(&common::scenario(file)).unwrap();
        let b = build(&l).unwrap();
        let real = run_real(EXE.as_ref(), &l.text, &b, TIMEOUT).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(real.outcome.class(), class, "{file}: {}", real.outcome);
        if let Some(n) = needle {
            assert!(real.outcome.lines().iter().any(|l| l.contains(n)), "{file}: a real {n}: {}", real.outcome);
        }
    }
}

#[test]
fn nothing_is_left_mounted_and_the_pool_is_restored() {
    if !root_or_skip("nothing_is_left_mounted_and_the_pool_is_restored") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let before = std::fs::read_to_string("/proc/sys/vm/nr_hugepages").unwrap();
    let l = load(&common::scenario("seed/two-devices-short-hugetlb.toml")).unwrap();
    let b = build(&l).unwrap();
    run_real(EXE.as_ref(), &l.text, &b, TIMEOUT).unwrap();
    assert_eq!(std::fs::read_to_string("/proc/sys/vm/nr_hugepages").unwrap(), before);
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    assert!(!mounts.contains(&format!("vmemsim-hugetlbfs-{}", std::process::id())), "{mounts}");
}

/// A capacity of 0 on a private tmpfs or hugetlbfs mount is real: the mount's one page of quota
/// is taken by a filler before the run, so the first preallocation fails gracefully, as the
/// model says; afterwards no mount (and so no filler) is left in any namespace and the pool's
/// counters are as they were.
#[test]
fn a_zero_capacity_mount_fails_the_first_populate_gracefully_and_leaves_nothing() {
    if !root_or_skip("a_zero_capacity_mount_fails_the_first_populate_gracefully_and_leaves_nothing") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let text = std::fs::read_to_string(common::scenario("conformance/hugetlbfs-prealloc-short.toml")).unwrap();
    let text = &text[..text.find("[expect]").unwrap()];
    let short = r#"backend = { kind = "hugetlbfs", page_size = "2M", capacity = "64M" }"#;
    assert!(text.contains(short));
    let pool = PoolDir::for_page_size(2 << 20);
    for (backend, filler_pages) in [(r#"backend = { kind = "hugetlbfs", page_size = "2M", capacity = "0" }"#, 1), (r#"backend = { kind = "tmpfs-file", capacity = "0" }"#, 0)] {
        let dir = common::scratch("zero-capacity");
        let file = dir.join("zero.toml");
        std::fs::write(&file, text.replace(short, backend)).unwrap();
        let l = load(&file).unwrap();
        let b = build(&l).unwrap();
        let needs = fits(&b).unwrap_or_else(|e| panic!("{backend}: {e}"));
        assert!(needs.to_string().contains("quota a filler file has used up (capacity 0)"), "{needs}");
        assert_eq!(needs.huge_pages.iter().map(|(_, n)| *n).sum::<u64>(), filler_pages, "{backend}: the pool grows by the filler's page only: {needs}");
        let before = pool.describe();
        let model = model_outcome(&b);
        assert_eq!(model.class(), OutcomeClass::Failed, "{backend}: {model}");
        let real = run_real(EXE.as_ref(), &l.text, &b, TIMEOUT).unwrap();
        assert_eq!(compare(&model, &real.outcome), Vec::<String>::new(), "{backend}");
        assert!(real.outcome.stderr()[0].contains("qemu_prealloc_mem: preallocating memory failed"), "{backend}: {}", real.outcome);
        assert_eq!(pool.describe(), before, "{backend}: the pool is back");
        assert_eq!(private_mounts_left(), Vec::<String>::new(), "{backend}: no private mount, and so no filler, is left");
    }
}

/// Mounts in any process's namespace on a private mount directory (`<tmp>/m0`, `<tmp>/m1`, ...).
fn private_mounts_left() -> Vec<String> {
    let base = private_mount_point();
    let mut left = Vec::new();
    for p in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(info) = std::fs::read_to_string(p.path().join("mountinfo")) else { continue };
        for line in info.lines() {
            let at = line.split(' ').nth(4).unwrap_or("");
            let tail = std::path::Path::new(at).strip_prefix(&base).ok().and_then(|t| t.to_str()).unwrap_or("");
            if tail.strip_prefix('m').is_some_and(|n| !n.is_empty() && n.bytes().all(|c| c.is_ascii_digit())) {
                left.push(format!("{}: {line}", p.path().display()));
            }
        }
    }
    left
}

/// A capacity of 0 without a mount: private anonymous memory is refused (a memory cgroup
/// OOM-kills rather than failing the populate), and a free-huge-page pool of 0, in both scenario
/// forms, runs and agrees while the host's pool is empty and is refused naming its free pages
/// otherwise.
#[test]
fn a_zero_pool_runs_only_on_an_empty_host_pool_and_anonymous_zero_is_refused() {
    let l = load(&common::scenario("found/pre-80-plugged-populated-seed15.toml")).unwrap();
    let why = fits(&build(&l).unwrap()).unwrap_err();
    assert!(why.contains("private-anonymous memory has no capacity limit a test can set") && why.contains("memory.max"), "{why}");
    let memdevs = common::scratch("zero-pool").join("zero-pool-memdevs.toml");
    std::fs::write(&memdevs, ZERO_POOL_MEMDEVS).unwrap();
    for file in [common::scenario("real/memfd-hugetlb-empty-pool.toml"), memdevs] {
        let l = load(&file).unwrap();
        let b = build(&l).unwrap();
        let free = PoolDir::for_page_size(2 << 20).available();
        match fits(&b) {
            Ok(needs) => {
                assert_eq!(free, 0, "{}: it runs only on an empty pool: {needs}", file.display());
                assert!(needs.huge_pages.is_empty() && needs.mounts.is_empty(), "{}: {needs}", file.display());
                if is_root() {
                    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
                    let real = run_real(EXE.as_ref(), &l.text, &b, TIMEOUT).unwrap();
                    assert_eq!(compare(&model_outcome(&b), &real.outcome), Vec::<String>::new(), "{}", file.display());
                }
            }
            Err(why) if free > 0 => assert!(why.starts_with(&format!("the host pool has {free} free 2 MiB page")) && why.contains("other processes may use"), "{why}"),
            Err(why) => panic!("{}: an empty pool runs: {why}", file.display()),
        }
    }
}

/// The memdevs form of a pool of 0: memfd hugetlb drawing on no free 2 MiB pages.
const ZERO_POOL_MEMDEVS: &str = r#"name = "zero pool, memdevs form"
[source]
machine = "q35"
main_ram = "128M"
[[source.memdev]]
id = "mem0"
type = "memory-backend-memfd"
hugetlb = true
hugetlbsize = "2M"
reserve = false
[destination]
[[destination.hugepages]]
page_size = "2M"
free = "0"
[[device]]
id = "vmem0"
memdev = "mem0"
region = "1G"
requested = "64M"
prealloc = true
"#;
