//! QEMU releases: the same migration judged on each release the model knows, by the commits of
//! its history (model/src/profile.rs), and campaigns that count QEMU's hazards per release.

mod common;

use vmemsim_model::migration::verdict::Verdict;
use vmemsim_model::QemuVersion;
use vmemsim_sim::campaign::{campaign, run_seed_on, Options, Shard};
use vmemsim_sim::hazards::{hazards, Hazard};
use vmemsim_sim::{load, run, Sim};

/// Runs a shipped scenario with both sides on `qemu`.
fn on(rel: &str, qemu: &str) -> Sim {
    let mut l = load(&common::scenario(rel)).unwrap();
    l.scenario.source.qemu = Some(qemu.parse().unwrap());
    l.scenario.destination.qemu = None;
    run(&l).unwrap()
}

#[test]
fn the_vmm_field_runs_both_sides_on_its_release() {
    // `vmm = "qemu-X"` is the same run as `source.qemu = "X"` with no destination release.
    for qemu in ["9.2.4", "10.0.2", "10.2.2"] {
        let mut l = load(&common::scenario("conformance/postcopy-short.toml")).unwrap();
        l.scenario.vmm = Some(toml::Spanned::new(0..0, format!("qemu-{qemu}").parse().unwrap()));
        let by_vmm = run(&l).unwrap();
        let by_source = on("conformance/postcopy-short.toml", qemu);
        assert_eq!(by_vmm.trace_hash, by_source.trace_hash, "{qemu}");
        assert_eq!((by_vmm.judgement.verdict, by_vmm.source.status.name()), (by_source.judgement.verdict, by_source.source.status.name()), "{qemu}");
    }
}

#[test]
fn postcopy_started_at_once_on_a_short_destination_loses_the_guest_until_10_2() {
    for (qemu, verdict, status) in [
        ("8.2.0", Verdict::VmLost, "postcopy-paused"),
        ("9.2.4", Verdict::VmLost, "postcopy-paused"),
        ("10.0.2", Verdict::VmLost, "postcopy-paused"),
        ("10.0.13", Verdict::VmLost, "postcopy-paused"),
        ("10.1.1", Verdict::VmLost, "postcopy-paused"),
        ("10.2.0", Verdict::Recoverable, "failed"),
        ("10.2.2", Verdict::Recoverable, "failed"),
    ] {
        let s = on("conformance/postcopy-short.toml", qemu);
        assert_eq!((s.judgement.verdict, s.source.status.name()), (verdict, status), "{qemu}: {}", s.judgement);
    }
}

#[test]
fn a_destination_dead_at_the_switchover_leaves_the_source_stuck_until_725a9e5f78() {
    for (qemu, verdict, status) in [
        ("9.2.4", Verdict::Recoverable, "failed"),
        ("10.0.0", Verdict::VmLost, "device"),
        ("10.0.4", Verdict::VmLost, "device"),
        ("10.0.5", Verdict::Recoverable, "failed"),
        ("10.1.0", Verdict::VmLost, "device"),
        ("10.1.1", Verdict::Recoverable, "failed"),
        ("10.2.2", Verdict::Recoverable, "failed"),
    ] {
        let s = on("versions/device-window-10.0.2.toml", qemu);
        assert_eq!((s.judgement.verdict, s.source.status.name()), (verdict, status), "{qemu}: {}", s.judgement);
        assert_eq!(hazards(&s).contains(&Hazard::SourceStuck), status == "device", "{qemu}");
    }
}

#[test]
fn hazards_tell_a_stuck_source_from_a_lost_guest() {
    // The destination exited: the paused source has nobody to recover to.
    let s = on("conformance/postcopy-short.toml", "10.0.2");
    assert_eq!(hazards(&s), vec![Hazard::SourceStuck, Hazard::GuestLost]);
    // Both paused, the destination alive: postcopy recovery can still continue once memory is
    // freed, so the source is not stuck, but no side runs the guest now.
    let s = on("conformance/two-devices-postcopy-short.toml", "10.0.2");
    assert_eq!(hazards(&s), vec![Hazard::GuestLost]);
    assert!(s.judgement.reason.contains("migrate-recover"), "{}", s.judgement);
    let s = on("conformance/postcopy-enough.toml", "10.0.2");
    assert!(hazards(&s).is_empty());
    // Before 10.0 the operator's cancel is accepted and hangs in cancelling.
    let s = on("conformance/two-devices-postcopy-short.toml", "9.2.4");
    assert_eq!(s.source.after_cancel.0.name(), "cancelling");
    assert_eq!(hazards(&s), vec![Hazard::SourceStuck, Hazard::GuestLost]);
}

#[test]
fn campaigns_count_qemus_hazards_per_release() {
    let opts = |qemu: &str| Options {
        runs: Some(2000),
        seed: 1,
        threads: 2,
        shard: Shard::WHOLE,
        variant: vmemsim_model::Variant::Faithful,
        qemu: qemu.parse().unwrap(),
        time: None,
        stop_on_finding: false,
        guided: false,
        target: None,
    };
    let old = campaign(&opts("10.0.2"), &|_, _| {});
    let new = campaign(&opts("10.2.2"), &|_, _| {});
    for s in [&old, &new] {
        assert!(s.findings.is_empty() && s.generator_errors.is_empty(), "{:?} {:?}", s.by_property, s.generator_errors);
        assert_eq!(s.runs, 2000);
    }
    let count = |s: &vmemsim_sim::campaign::Summary, h| s.by_hazard.get(&h).map_or(0, |t| t.count);
    assert!(count(&old, Hazard::SourceStuck) > 0 && count(&new, Hazard::SourceStuck) == 0, "{:?} {:?}", old.by_hazard, new.by_hazard);
    assert!(count(&new, Hazard::GuestLost) < count(&old, Hazard::GuestLost));
    // The first seed of each hazard replays it on its release.
    let seed = old.by_hazard[&Hazard::SourceStuck].first();
    let (r, _) = run_seed_on(seed, vmemsim_model::Variant::Faithful, QemuVersion::DEFAULT);
    assert!(r.hazards.contains(&Hazard::SourceStuck), "seed {seed}");
}
