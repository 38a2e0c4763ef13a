//! `vmemsim merge`: four shards of a campaign, run side by side by GNU parallel (Debian's
//! `parallel`, installed by `.ci/run`), merge into exactly the report one run prints: same
//! tables, same examples, same findings (the shrunk files byte for byte).

mod common;

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

const EXE: &str = env!("CARGO_BIN_EXE_vmemsim");

fn vmemsim(args: &[&str]) -> Output {
    Command::new(EXE).args(args).output().expect("the binary runs")
}

fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("no JSON ({e}): {}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)))
}

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 paths")
}

fn have_parallel() -> bool {
    let found = Command::new("parallel").arg("--version").output().is_ok_and(|o| o.status.success());
    if !found {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "CI=true: .ci/run installs GNU parallel, but it is not on PATH");
        eprintln!("skipping: GNU parallel is not installed (apt-get install parallel)");
    }
    found
}

/// Runs `campaign ARGS --shard {i}/4` for i in 0..4 through GNU parallel, each shard's
/// document into `dir/shard-i.json` and its findings into `dir/found-i`.
fn shards(dir: &Path, args: &str) -> Vec<String> {
    let job = format!("{EXE} --format json campaign {args} --shard {{}}/4 --found-dir {d}/found-{{}} > {d}/shard-{{}}.json", d = path(dir));
    let o = Command::new("parallel").args(["--will-cite", "-j", "4", &job, ":::", "0", "1", "2", "3"]).output().unwrap();
    // A shard with findings exits 1, and parallel counts it: only a crash is a failure here.
    assert!(matches!(o.status.code(), Some(0..=4)), "{}", String::from_utf8_lossy(&o.stderr));
    (0..4).map(|i| dir.join(format!("shard-{i}.json")).to_str().unwrap().to_string()).collect()
}

/// The document without what depends on timing and on how the runs were spread.
fn comparable(mut d: Value) -> Value {
    let o = d.as_object_mut().unwrap();
    for k in ["elapsed_s", "runs_per_s"] {
        o.remove(k);
    }
    o["options"].as_object_mut().unwrap().remove("threads");
    // A finding's file is in each run's own folder: compare what it holds.
    for f in o["findings"].as_array_mut().unwrap() {
        let file = f["file"].as_str().unwrap().to_string();
        f["file"] = Value::String(std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{file}: {e}")));
        f.as_object_mut().unwrap().remove("replay");
    }
    d
}

#[test]
fn four_shards_through_gnu_parallel_merge_into_one_run() {
    if !have_parallel() {
        return;
    }
    let dir = common::scratch("merge-findings");
    let files = shards(&dir, "--runs 4000 --seed 11 --variant no-rollback");
    let one = vmemsim(&["--format", "json", "campaign", "--runs", "4000", "--seed", "11", "--variant", "no-rollback", "--found-dir", path(&dir.join("found-one"))]);
    let mut args = vec!["--format", "json", "merge"];
    args.extend(files.iter().map(String::as_str));
    let merged = vmemsim(&args);
    assert_eq!(merged.status.code(), Some(1), "findings exit 1");
    let (one, merged) = (json(&one), json(&merged));
    assert!(!one["findings"].as_array().unwrap().is_empty(), "the variant's findings: {one}");
    assert_eq!(merged["runs"], 4000);
    assert_eq!(comparable(merged), comparable(one));
}

#[test]
fn merged_tables_print_as_one_runs() {
    if !have_parallel() {
        return;
    }
    let dir = common::scratch("merge-faithful");
    let files = shards(&dir, "--runs 6000 --seed 3");
    let one = vmemsim(&["campaign", "--runs", "6000", "--seed", "3"]);
    let mut args = vec!["merge"];
    args.extend(files.iter().map(String::as_str));
    let merged = vmemsim(&args);
    assert!(merged.status.success() && one.status.success());
    let text = |o: &Output| String::from_utf8_lossy(&o.stdout).into_owned();
    let (one, merged) = (text(&one), text(&merged));
    assert_eq!(merged.lines().next(), Some("merged 4 shards"));
    // After each header line (times differ), every line is the same.
    let tables = |t: &str, skip: usize| t.lines().skip(skip).map(str::to_string).collect::<Vec<_>>();
    assert_eq!(tables(&merged, 2), tables(&one, 1));
    assert!(one.contains("lowest seeds"));
}

#[test]
fn shards_that_do_not_make_one_campaign_are_refused_with_the_file_and_field() {
    let dir = common::scratch("merge-bad");
    let doc = |name: &str, args: &[&str]| {
        let file = dir.join(name);
        let o = vmemsim(&[&["--format", "json", "campaign"], args].concat());
        std::fs::write(&file, &o.stdout).unwrap();
        file.to_str().unwrap().to_string()
    };
    let a = doc("a.json", &["--runs", "200", "--seed", "5", "--shard", "0/2"]);
    let b = doc("b.json", &["--runs", "200", "--seed", "5", "--shard", "1/2"]);
    let other_seed = doc("seed6.json", &["--runs", "200", "--seed", "6", "--shard", "1/2"]);
    let timed = doc("timed.json", &["--time", "200ms", "--seed", "5", "--shard", "1/2"]);
    let beyond = dir.join("beyond.json");
    let text = std::fs::read_to_string(&a).unwrap();
    assert!(text.contains("\"index\": 0,"));
    std::fs::write(&beyond, text.replacen("\"index\": 0,", "\"index\": 5,", 1)).unwrap();
    let garbage = dir.join("garbage.json");
    std::fs::write(&garbage, "{\"schema\": \"vmemsim/1\",\n \"command\": 3}").unwrap();
    for (files, says) in [
        (vec![a.clone()], "shard 1/2 is missing"),
        (vec![a.clone(), a.clone(), b.clone()], "shard 0/2 is given twice"),
        (vec![a.clone(), other_seed.clone()], "options.seed: 6 here, 5 in"),
        (vec![a.clone(), path(&garbage).to_string()], "garbage.json:2:"),
        (vec![a.clone(), timed.clone()], "options.runs"),
        (vec![a.clone(), b.clone(), path(&beyond).to_string()], "shard 5/2 is not a shard"),
    ] {
        let mut args = vec!["merge"];
        args.extend(files.iter().map(String::as_str));
        let o = vmemsim(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{files:?}: {err}");
        assert!(err.contains(says), "{files:?}: '{says}' not in: {err}");
    }
    // Both shards merge, and the merge equals one run's tables.
    let o = vmemsim(&["--format", "json", "merge", &a, &b]);
    let one = vmemsim(&["--format", "json", "campaign", "--runs", "200", "--seed", "5"]);
    assert_eq!(comparable(json(&o)), comparable(json(&one)));
}
