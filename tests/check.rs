//! `vmemsim check`: one verdict over both sides, and an exit code that follows it (0 safe, 1 not
//! safe, 2 bad input); `run` without an `[expect]` exits 0 only when safe.

mod common;

use std::process::Command;

const EXE: &str = env!("CARGO_BIN_EXE_vmemsim");

fn check(rel: &str) -> (Option<i32>, String) {
    let out = Command::new(EXE).arg("check").arg(common::scenario(rel)).output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn the_verdict_and_the_exit_code_follow_both_sides() {
    for (rel, code, verdict, words) in [
        ("conformance/postcopy-enough.toml", 0, "safe", "the guest runs on the destination"),
        ("conformance/postcopy-short.toml", 1, "vm-lost", "the source is stopped in postcopy-paused (migrate_cancel: error 'Postcopy migration in progress, cannot cancel.'; cont: error 'Migration is not finalized yet')"),
        ("conformance/postcopy-short-late-start.toml", 1, "recoverable", "the guest keeps running on the source (status failed, 'Sibling indicated error 1')"),
        ("real-qemu/new-noprealloc-short.toml", 1, "recoverable", "the destination died of SIGBUS at RAM load"),
        ("hazards/latent-hinted-pages.toml", 1, "latent-crash", "32 MiB of its plugged memory is not populated and the backend has 0 B left"),
        ("real/runtime-sigbus-hints.toml", 1, "vm-lost", "`cont` there resumes a copy of the guest from before the switchover"),
    ] {
        let (got, out) = check(rel);
        let first = out.lines().next().unwrap_or_default();
        assert_eq!(got, Some(code), "{rel}: {out}");
        assert!(first.contains(&format!(": {verdict}: ")) && first.contains(words), "{rel}: {first}");
    }
}

#[test]
fn check_refuses_a_bad_file_with_exit_status_2() {
    let dir = common::scratch("check");
    let f = dir.join("bad.toml");
    std::fs::write(&f, "name = 1\n").unwrap();
    let out = Command::new(EXE).arg("check").arg(&f).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad.toml"));
}

#[test]
fn run_without_an_expectation_exits_0_only_when_safe() {
    let dir = common::scratch("run-verdict");
    for (rel, code) in [("conformance/postcopy-enough.toml", 0), ("conformance/postcopy-short.toml", 1)] {
        let text = std::fs::read_to_string(common::scenario(rel)).unwrap();
        let bare = &text[..text.find("[expect]").unwrap()];
        let f = dir.join(rel.replace('/', "-"));
        std::fs::write(&f, bare).unwrap();
        let out = Command::new(EXE).arg("run").arg(&f).output().unwrap();
        assert_eq!(out.status.code(), Some(code), "{rel}: {}", String::from_utf8_lossy(&out.stdout));
        assert!(String::from_utf8_lossy(&out.stdout).contains("verdict: "));
    }
}

/// A faithful campaign reaches every verdict, counts each run once, and names a seed for each
/// verdict whose replay gives that verdict.
#[test]
fn a_campaign_counts_verdicts_and_names_a_seed_for_each() {
    use vmemsim_model::migration::verdict::Verdict;
    use vmemsim_sim::campaign::{campaign, run_seed, Options, Shard};
    let o = Options { runs: Some(3000), seed: 1, threads: 2, shard: Shard::WHOLE, variant: vmemsim_model::Variant::Faithful, qemu: vmemsim_model::QemuVersion::DEFAULT, time: None, stop_on_finding: false, guided: false, target: None };
    let s = campaign(&o, &|_, _| {});
    assert_eq!(s.by_verdict.values().map(|t| t.count).sum::<u64>(), s.runs - s.generator_errors.len() as u64);
    assert_eq!(s.by_class.values().map(|t| t.count).sum::<u64>(), s.runs - s.generator_errors.len() as u64);
    for v in Verdict::ALL {
        let t = s.by_verdict.get(&v).unwrap_or_else(|| panic!("no {v} in {} runs: {:?}", s.runs, s.by_verdict));
        assert_eq!(t.examples.len() as u64, t.count.min(3), "{v}: up to three examples");
        assert!(t.examples.windows(2).all(|w| w[0] < w[1]), "{v}: examples ascending");
        for &seed in &t.examples {
            assert_eq!(run_seed(seed, o.variant).0.verdict, Some(v), "seed {seed} replays as {v}");
        }
    }
    // Each outcome class's example seeds replay as that class.
    for (class, t) in &s.by_class {
        for &seed in &t.examples {
            assert_eq!(run_seed(seed, o.variant).0.class.as_deref(), Ok(class.as_str()), "seed {seed} replays as {class}");
        }
    }
}

/// A faithful campaign shrinks the first seed of each QEMU hazard into a scenario that names the
/// release and replays to its verdict.
#[test]
fn a_campaign_saves_qemus_hazards_as_scenarios_that_replay() {
    let dir = common::scratch("hazards");
    let out = Command::new(EXE)
        .args(["campaign", "--runs", "100", "--seed", "1", "--threads", "1", "--qemu", "10.0.2", "--shrink-time", "2s", "--save-hazards"])
        .arg(&dir)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    let files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    assert!(files.iter().any(|f| f.to_string_lossy().contains("qemu-10.0.2-source-stuck-seed")), "{files:?}\n{text}");
    for f in &files {
        let body = std::fs::read_to_string(f).unwrap();
        assert!(body.contains("qemu = \"10.0.2\"") && body.contains("verdict = \"vm-lost\""), "{}", f.display());
        let replay = Command::new(EXE).arg("replay").arg(f).output().unwrap();
        assert_eq!(replay.status.code(), Some(0), "{}: {}", f.display(), String::from_utf8_lossy(&replay.stdout));
    }
    let refused = Command::new(EXE).args(["campaign", "--runs", "10", "--variant", "no-rollback", "--no-shrink", "--save-hazards"]).arg(&dir).output().unwrap();
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--save-hazards is for faithful campaigns"));
}
