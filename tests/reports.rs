//! The answers in the user's formats: every shipped scenario replayed into one JUnit file,
//! `replay --accept` writing `[expect]` and keeping the rest of the file, and
//! `campaign --show` printing a scenario that replays as the campaign ran it.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use serde::Deserialize;

const EXE: &str = env!("CARGO_BIN_EXE_vmemsim");

fn vmemsim(args: &[&str]) -> Output {
    Command::new(EXE).args(args).output().expect("the binary runs")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 paths")
}

#[derive(Debug, Deserialize)]
struct Suites {
    #[serde(rename = "@tests")]
    tests: usize,
    #[serde(rename = "@failures")]
    failures: usize,
    #[serde(rename = "@errors")]
    errors: usize,
    testsuite: Vec<Suite>,
}

#[derive(Debug, Deserialize)]
struct Suite {
    #[serde(rename = "@tests")]
    tests: usize,
    #[serde(rename = "@failures")]
    failures: usize,
    #[serde(default)]
    testcase: Vec<Case>,
}

#[derive(Debug, Deserialize)]
struct Case {
    #[serde(rename = "@name")]
    name: String,
    failure: Option<Problem>,
    error: Option<Problem>,
}

#[derive(Debug, Deserialize)]
struct Problem {
    #[serde(rename = "@message")]
    message: String,
}

fn junit(file: &Path) -> Suites {
    let xml = std::fs::read_to_string(file).expect("the JUnit file is written");
    quick_xml::de::from_str(&xml).unwrap_or_else(|e| panic!("not JUnit XML ({e}):\n{xml}"))
}

#[test]
fn every_shipped_scenario_replays_into_one_junit_file() {
    let dir = common::scratch("reports-junit");
    let out = dir.join("replay.xml");
    let files = common::scenario_files();
    let mut args = vec!["replay", "--junit", path(&out)];
    args.extend(files.iter().map(|f| path(f)));
    let o = vmemsim(&args);
    assert!(o.status.success(), "{}", text(&o));
    let j = junit(&out);
    assert_eq!((j.tests, j.failures, j.errors), (files.len(), 0, 0));
    assert_eq!(j.testsuite.len(), 1);
    let cases = &j.testsuite[0].testcase;
    assert_eq!(cases.len(), files.len());
    for (case, file) in cases.iter().zip(&files) {
        assert!(file.ends_with(&case.name) || case.name == path(file), "{} is not {}", case.name, file.display());
        assert!(case.failure.is_none() && case.error.is_none(), "{case:?}");
    }
}

#[test]
fn a_wrong_expectation_is_a_failure_and_a_bad_file_an_error_in_junit() {
    let dir = common::scratch("reports-junit-bad");
    let wrong = dir.join("wrong.toml");
    let good = std::fs::read_to_string(common::scenario("conformance/postcopy-short.toml")).unwrap();
    assert!(good.contains("outcome = \"failed\""));
    std::fs::write(&wrong, good.replace("outcome = \"failed\"", "outcome = \"completed\"")).unwrap();
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "name = 3\n").unwrap();
    let out = dir.join("replay.xml");
    let o = vmemsim(&["replay", "--junit", path(&out), path(&common::scenario("conformance/postcopy-short.toml")), path(&wrong), path(&bad)]);
    assert_eq!(o.status.code(), Some(2), "a file that does not load is bad input: {}", text(&o));
    let j = junit(&out);
    assert_eq!((j.tests, j.failures, j.errors), (3, 1, 1));
    assert_eq!((j.testsuite[0].tests, j.testsuite[0].failures), (3, 1));
    let c = &j.testsuite[0].testcase;
    assert!(c[0].failure.is_none() && c[0].error.is_none());
    assert!(c[1].failure.as_ref().unwrap().message.contains("completed"), "{:?}", c[1]);
    assert!(c[2].error.as_ref().unwrap().message.contains("line 1"), "{:?}", c[2]);
}

#[test]
fn accept_writes_expect_from_the_run_and_keeps_the_rest_of_the_file() {
    let dir = common::scratch("reports-accept");
    let file = dir.join("s.toml");
    let original = std::fs::read_to_string(common::scenario("conformance/postcopy-short.toml")).unwrap();
    let head = "# my notes: keep this line\n";
    let broken = format!("{head}{}", original.replace("outcome = \"failed\"", "outcome = \"completed\""));
    std::fs::write(&file, &broken).unwrap();
    let o = vmemsim(&["replay", path(&file)]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));

    let o = vmemsim(&["replay", "--accept", path(&file)]);
    assert!(o.status.success(), "{}", text(&o));
    let said = text(&o);
    assert!(said.contains("differs from its [expect]") && said.contains("completed"), "the difference is shown first: {said}");
    let now = std::fs::read_to_string(&file).unwrap();
    assert!(now.starts_with(head), "{now}");
    // Everything but the accepted value is as it was.
    assert_eq!(now, format!("{head}{original}"), "only the wrong value changed");
    let o = vmemsim(&["replay", path(&file)]);
    assert!(o.status.success(), "{}", text(&o));

    // A file without [expect] gets one with every key the run has, and then meets it.
    let bare = dir.join("bare.toml");
    let cut = original.find("[expect]").unwrap();
    std::fs::write(&bare, &original[..cut]).unwrap();
    assert_eq!(vmemsim(&["replay", path(&bare)]).status.code(), Some(2));
    assert!(vmemsim(&["replay", "--accept", path(&bare)]).status.success());
    let written = std::fs::read_to_string(&bare).unwrap();
    assert!(written.starts_with(&original[..cut]));
    for key in ["outcome = \"failed\"", "verdict = \"vm-lost\"", "source_status = \"postcopy-paused\"", "trace_hash = "] {
        assert!(written.contains(key), "no {key} in\n{written}");
    }
    let o = vmemsim(&["replay", path(&bare)]);
    assert!(o.status.success(), "{}", text(&o));

    // A stale trace hash is the only line that changes: the values the run confirms keep the
    // way the file writes them (a one-line stderr, an empty one).
    for rel in ["real-qemu/old-prealloc-enough.toml", "real/parallel-prealloc-enough.toml"] {
        let original = std::fs::read_to_string(common::scenario(rel)).unwrap();
        let line = original.lines().find(|l| l.starts_with("trace_hash = ")).expect("the file pins its trace hash");
        let stale = original.replace(line, "trace_hash = \"0000000000000000\"");
        let file = dir.join("stale.toml");
        std::fs::write(&file, &stale).unwrap();
        assert!(vmemsim(&["replay", "--accept", path(&file)]).status.success());
        assert_eq!(std::fs::read_to_string(&file).unwrap(), original, "{rel}");
    }
}

#[test]
fn a_shown_campaign_seed_replays_as_the_campaign_ran_it() {
    let dir = common::scratch("reports-show");
    for seed in ["5", "17", "123"] {
        let o = vmemsim(&["campaign", "--seed", seed, "--runs", "1", "--show"]);
        assert!(o.status.success(), "{}", text(&o));
        let shown = String::from_utf8(o.stdout).unwrap();
        let hash = shown.lines().find_map(|l| l.strip_prefix("# trace hash: ")).unwrap_or_else(|| panic!("no trace hash in\n{shown}")).to_string();
        let file = dir.join(format!("seed{seed}.toml"));
        std::fs::write(&file, &shown).unwrap();
        let o = vmemsim(&["run", path(&file)]);
        let ran = text(&o);
        assert!(ran.contains(&format!("trace hash: {hash}")), "seed {seed}: the saved scenario ran differently:\n{ran}");
    }
    let o = vmemsim(&["campaign", "--runs", "101", "--show"]);
    assert_eq!(o.status.code(), Some(2), "--show prints at most 100 scenarios: {}", text(&o));
}

#[test]
fn campaign_tables_give_seeds_that_show_their_row() {
    let o = vmemsim(&["--format", "json", "campaign", "--runs", "500", "--seed", "9"]);
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let mut checked = 0;
    for row in doc["outcomes"].as_array().unwrap() {
        for ex in row["examples"].as_array().unwrap() {
            let cmd: Vec<String> = ex["command"].as_str().unwrap().split(' ').map(str::to_string).collect();
            assert_eq!(cmd[0], "vmemsim");
            let args: Vec<&str> = cmd[1..].iter().map(String::as_str).collect();
            let mut full = vec!["--format", "json"];
            full.extend(args);
            let shown: serde_json::Value = serde_json::from_slice(&vmemsim(&full).stdout).unwrap();
            let class = shown["outcomes"].as_array().unwrap().iter().find(|r| r["count"] == 1).unwrap()["name"].clone();
            assert_eq!(class, row["name"], "{} does not show a {} run", ex["command"], row["name"]);
            checked += 1;
        }
    }
    assert!(checked >= 3, "only {checked} examples");
}
