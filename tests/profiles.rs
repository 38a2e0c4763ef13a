//! Cloud Hypervisor and Firecracker profiles on the shipped scenarios (`vmemsim diff`): every
//! scenario runs or is refused with a reason, and the differences each profile's code makes
//! (Cloud Hypervisor's SIGBUS without reserve, its whole-region prefault, Firecracker's ERROR
//! that breaks the Linux driver) show as outcomes, verdicts and neutral properties.

mod common;

use std::process::Command;

use vmemsim_model::migration::verdict::Verdict;
use vmemsim_model::vmm::{Vmm, CLOUD_HYPERVISOR_TAGS, FIRECRACKER_TAGS};
use vmemsim_model::OutcomeClass;
use vmemsim_sim::profile_run::{run_profile, ProfileRun, NEUTRAL};
use vmemsim_sim::{build, load};

fn on(rel: &str, vmm: &str) -> Result<ProfileRun, String> {
    let l = load(&common::scenario(rel)).unwrap();
    let b = build(&l).unwrap();
    run_profile(&l, &b, vmm.parse().unwrap()).map_err(|r| r.why)
}

fn broken(r: &ProfileRun) -> Vec<&'static str> {
    r.violations.iter().map(|v| v.0).collect()
}

#[test]
fn every_conformance_and_real_qemu_scenario_runs_on_every_profile_or_says_why() {
    let mut ran = [0usize; 2];
    let mut files = 0;
    for path in common::scenario_files().into_iter().filter(|p| ["conformance", "real-qemu"].iter().any(|d| p.parent().is_some_and(|q| q.ends_with(d)))) {
        files += 1;
        let l = load(&path).unwrap();
        let b = build(&l).unwrap();
        let vmms = CLOUD_HYPERVISOR_TAGS.iter().map(|&t| Vmm::CloudHypervisor(t)).chain(FIRECRACKER_TAGS.iter().map(|&t| Vmm::Firecracker(t)));
        for vmm in vmms {
            match run_profile(&l, &b, vmm) {
                Ok(r) => {
                    ran[usize::from(matches!(vmm, Vmm::Firecracker(_)))] += 1;
                    assert!(!broken(&r).contains(&"plugged-size-consistent"), "{}: {vmm}: {:?}", path.display(), r.violations);
                    assert!(r.violations.iter().all(|v| NEUTRAL.contains(&v.0)));
                    assert_eq!(r.vmm, vmm);
                }
                Err(why) => assert!(why.why.len() > 20, "{}: {vmm} refused without a reason: {why:?}", path.display()),
            }
        }
    }
    assert!(files >= 25, "{files} files");
    // Postcopy is refused on both; the rest runs on Cloud Hypervisor, and Firecracker runs what
    // its anonymous and huge page memory can express.
    assert!(ran[0] >= 3 * 18 && ran[1] >= 3 * 3, "ran {ran:?}");
}

#[test]
fn cloud_hypervisor_dies_of_sigbus_where_qemu_with_prealloc_fails_cleanly() {
    // No prealloc, a 64 MiB quota: both QEMU and Cloud Hypervisor die reading the pages.
    let r = on("conformance/hugetlbfs-noprealloc-short.toml", "cloud-hypervisor-v53.0").unwrap();
    assert_eq!((r.outcome.class(), r.verdict), (OutcomeClass::Crashed, Verdict::Recoverable));
    assert_eq!(broken(&r), ["clean-error-possible"]);
    // QEMU's prealloc: the nearest Cloud Hypervisor option populates the whole 1 GiB region.
    let r = on("real-qemu/new-prealloc-enough.toml", "cloud-hypervisor-v53.0").unwrap();
    assert_eq!((r.outcome.class(), r.outcome.stage().map(|s| s.to_string())), (OutcomeClass::Failed, Some("startup".into())));
    assert!(r.outcome.lines().iter().any(|l| l.starts_with("Failed to prefault memory")), "{:?}", r.outcome.lines());
    assert!(r.notes.iter().any(|n| n.contains("prefault=on")));
    let r = on("real-qemu/new-noprealloc-enough.toml", "cloud-hypervisor-v53.0").unwrap();
    assert_eq!((r.outcome.class(), r.verdict), (OutcomeClass::Completed, Verdict::Safe));
}

#[test]
fn reserve_on_is_a_clean_error_from_v53_and_a_sigbus_before() {
    let rel = "profiles/cloud-hypervisor/hugetlbfs-short-reserve.toml";
    let r = on(rel, "cloud-hypervisor-v53.0").unwrap();
    assert_eq!(r.outcome.class(), OutcomeClass::Failed);
    assert_eq!(r.outcome.lines()[1], "Error from region creation: Cannot allocate memory");
    assert!(r.violations.is_empty());
    for old in ["cloud-hypervisor-v52.0", "cloud-hypervisor-v48.0"] {
        let r = on(rel, old).unwrap();
        assert_eq!(r.outcome.class(), OutcomeClass::Crashed, "{old}");
        assert_eq!(r.outcome.fault_site().unwrap().offset.0, 512 << 20, "the quota's end");
        assert!(r.notes.iter().any(|n| n.contains("reserve=on has no counterpart before v53.0")));
    }
}

#[test]
fn firecracker_answers_error_where_the_others_nack_and_the_driver_gives_up() {
    let rel = "profiles/firecracker/lowered-request-breaks-driver.toml";
    let r = on(rel, "firecracker-v1.16.1").unwrap();
    assert_eq!(broken(&r), ["driver-usable"]);
    assert!(r.violations[0].1.contains("vmem0 answered PLUG 0x14f000000 x8") && r.violations[0].1.contains("with ERROR"), "{:?}", r.violations);
    for t in FIRECRACKER_TAGS {
        assert_eq!(broken(&run_profile(&load(&common::scenario(rel)).unwrap(), &build(&load(&common::scenario(rel)).unwrap()).unwrap(), Vmm::Firecracker(t)).unwrap()), ["driver-usable"]);
    }
    let r = on(rel, "cloud-hypervisor-v53.0").unwrap();
    assert!(r.violations.is_empty(), "{:?}", r.violations);
    assert_eq!(r.verdict, Verdict::Safe);
}

#[test]
fn other_block_sizes_latent_memory_and_refusals() {
    // 4 MiB QEMU blocks are whole 2 MiB blocks of Cloud Hypervisor's.
    let r = on("conformance/two-devices-short.toml", "cloud-hypervisor-v53.0").unwrap();
    assert!(r.notes.iter().any(|n| n.contains("fixed at 2 MiB")), "{:?}", r.notes);
    // A guest that grows on the destination with nothing populating the plug: latent, as QEMU.
    let r = on("hazards/grow-after-restore-latent.toml", "cloud-hypervisor-v53.0").unwrap();
    assert_eq!((r.outcome.class(), r.verdict), (OutcomeClass::Completed, Verdict::LatentCrash));
    // Postcopy: none before v53.0, not modelled on v53.0; Firecracker has no live migration.
    assert!(on("conformance/postcopy-short.toml", "cloud-hypervisor-v48.0").unwrap_err().contains("arrived in v53.0"));
    assert!(on("conformance/postcopy-short.toml", "cloud-hypervisor-v53.0").unwrap_err().contains("not modelled yet"));
    assert!(on("conformance/postcopy-short.toml", "firecracker-v1.16.1").unwrap_err().contains("no live migration"));
    // tmpfs files have no Firecracker counterpart; huge pages are refused by a file restore.
    assert!(on("real-qemu/new-noprealloc-enough.toml", "firecracker-v1.16.1").unwrap_err().contains("no counterpart"));
    let r = on("conformance/hugetlbfs-prealloc-enough.toml", "firecracker-v1.16.1").unwrap();
    assert!(r.outcome.lines()[0].contains("Please use uffd"));
}

#[test]
fn diff_prints_the_table_and_exits_by_agreement() {
    let exe = env!("CARGO_BIN_EXE_vmemsim");
    let f = |rel: &str| common::scenario(rel).to_str().unwrap().to_string();
    let out = Command::new(exe).args(["diff", &f("conformance/hugetlbfs-prealloc-short.toml"), &f("deployments/libvirt-hugepages-private.toml")]).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "all recoverable, nothing broken:\n{text}");
    assert!(text.contains("| scenario | qemu-10.0.2 | cloud-hypervisor-v53.0 | firecracker-v1.16.1 |"), "{text}");
    assert!(text.contains("| hugetlbfs-prealloc-short | failed (recoverable) | failed (recoverable) | failed (recoverable) |"), "{text}");
    let out = Command::new(exe).args(["diff", &f("real-qemu/new-prealloc-enough.toml"), "--vmm", "qemu-10.0.2,cloud-hypervisor-v53.0"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "safe on QEMU, recoverable on Cloud Hypervisor");
    let out = Command::new(exe).args(["diff", &f("real-qemu/new-prealloc-enough.toml"), "--vmm", ","]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("name at least one profile"));
}

#[test]
fn profile_campaigns_do_not_depend_on_threads_and_find_the_shipped_seeds() {
    use vmemsim_sim::profile_campaign::{campaign, run_seed, SeedRun};
    let fc: Vmm = "firecracker-v1.16.1".parse().unwrap();
    let one = campaign(fc, 27_000, Some(600), 1, None);
    let two = campaign(fc, 27_000, Some(600), 2, None);
    assert_eq!((one.runs, &one.by_class, &one.by_verdict, &one.not_expressible, &one.by_property), (two.runs, &two.by_class, &two.by_verdict, &two.not_expressible, &two.by_property));
    assert_eq!(one.by_property.get("driver-usable").map(|p| p.1), Some(27_433), "{one:?}");
    assert!(one.build_errors.is_empty());
    // The shipped findings' seeds still break their property on the profile they name.
    match run_seed(13, "cloud-hypervisor-v53.0".parse().unwrap()) {
        SeedRun::Ran { violations, .. } => assert!(violations.contains(&"clean-error-possible"), "{violations:?}"),
        other => panic!("seed 13 on cloud-hypervisor: {other:?}"),
    }
    for f in common::scenario_files().into_iter().filter(|p| p.to_string_lossy().contains("/profiles/")) {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        let Some(seed) = name.strip_suffix(".toml").and_then(|n| n.rsplit("-seed").next()).and_then(|s| s.parse::<u64>().ok()) else { continue };
        let vmm = Vmm::newest().into_iter().find(|v| name.starts_with(&v.to_string())).expect("a finding names its profile");
        let property = NEUTRAL.iter().find(|p| name.contains(*p)).expect("and its property");
        let r = on(&f.strip_prefix(common::scenario("")).unwrap().to_string_lossy(), &vmm.to_string()).unwrap();
        assert!(broken(&r).contains(property), "{name}: {:?}", r.violations);
        assert!(matches!(run_seed(seed, vmm), SeedRun::Ran { ref violations, .. } if violations.contains(property)), "{name}");
    }
}

#[test]
fn campaign_vmm_takes_only_other_profiles() {
    let exe = env!("CARGO_BIN_EXE_vmemsim");
    let out = Command::new(exe).args(["campaign", "--vmm", "qemu-10.0.2", "--runs", "10"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("a QEMU campaign takes --qemu"));
    let out = Command::new(exe).args(["campaign", "--vmm", "firecracker-v1.16.1", "--qemu", "9.2.4"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "--vmm and --qemu conflict");
    let out = Command::new(exe).args(["campaign", "--vmm", "cloud-hypervisor-v53.0", "--runs", "200", "--seed", "1", "--no-shrink"]).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(1), "seed 13 breaks clean-error-possible:\n{text}");
    assert!(text.contains("clean-error-possible     broken in") && text.contains("first seed 13"), "{text}");
}
