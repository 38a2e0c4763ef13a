//! `vmemsim campaign --around FILE`: the capacity flip lies exactly where the plugged memory
//! stops fitting, the report is the same for the same seed, a flipped variant's `--show` replays
//! with the verdict the report gave, bad input exits 2, and every variant is accounted for.

mod common;

use std::path::Path;
use std::process::Command;

use serde_json::Value;
use vmemsim_model::Bytes;

const EXE: &str = env!("CARGO_BIN_EXE_vmemsim");

/// Runs vmemsim with these arguments: exit status, stdout, stderr.
fn vmemsim(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(EXE).args(args).output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// The JSON document of an around campaign, with its exit status.
fn around(file: &Path, extra: &[&str]) -> (Option<i32>, Value) {
    let f = file.to_str().unwrap();
    let mut args = vec!["--format", "json", "campaign", "--around", f];
    args.extend_from_slice(extra);
    let (code, out, err) = vmemsim(&args);
    let doc: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out} {err}"));
    (code, doc)
}

/// The one device's plugged size (its requested size when `plugged` is absent) and block size,
/// read from the scenario itself.
fn plugged_and_block(file: &Path) -> (Bytes, Bytes) {
    let t: toml::Value = toml::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    let dev = &t["device"][0];
    let size = |k: &str| dev.get(k).and_then(toml::Value::as_str).map(|s| s.parse::<Bytes>().unwrap());
    (size("plugged").or_else(|| size("requested")).unwrap(), size("block_size").unwrap())
}

/// The verdict of the capacity variant with this value.
fn verdict_at(doc: &Value, field: &str, value: Bytes) -> String {
    let v = doc["variants"].as_array().unwrap().iter().find(|v| v["field"] == field && v["number"] == value.0);
    v.unwrap_or_else(|| panic!("no variant of {field} at {value}")).get("verdict").unwrap().as_str().unwrap().to_string()
}

#[test]
fn the_capacity_flip_is_where_the_plugged_memory_stops_fitting() {
    let field = "destination.backend.capacity";
    // hugetlbfs with 2 MiB pages and blocks: the step below the need is one block.
    for rel in ["conformance/hugetlbfs-prealloc-enough.toml", "conformance/hugetlbfs-prealloc-short.toml"] {
        let file = common::scenario(rel);
        let (need, block) = plugged_and_block(&file);
        let short = need.checked_sub(block).unwrap();
        let (code, doc) = around(&file, &[]);
        assert_eq!(code, Some(1), "{rel}: a capacity below the need flips the verdict");
        assert_eq!(doc["mode"], "around");
        assert_eq!(doc["capacities"][0]["need_bytes"], need.0, "{rel}");
        assert_eq!(verdict_at(&doc, field, need), "safe", "{rel}");
        assert_eq!(verdict_at(&doc, field, short), "recoverable", "{rel}");
        assert_eq!(verdict_at(&doc, field, Bytes::ZERO), "recoverable", "{rel}");
        let flips: Vec<&Value> = doc["flips"].as_array().unwrap().iter().filter(|f| f["field"] == field).collect();
        assert_eq!(flips.len(), 1, "{rel}: one boundary: {flips:?}");
        let f = flips[0];
        let (safe_side, short_side) = if doc["base"]["verdict"] == "safe" { (&f["from"], &f["to"]) } else { (&f["to"], &f["from"]) };
        assert_eq!(safe_side["value"], need.to_string(), "{rel}: {f}");
        assert_eq!(safe_side["verdict"], "safe", "{rel}: {f}");
        assert_eq!(short_side["value"], short.to_string(), "{rel}: {f}");
        assert_eq!(short_side["verdict"], "recoverable", "{rel}: {f}");
    }
}

#[test]
fn bisection_finds_the_last_page_on_a_tmpfs_quota() {
    // tmpfs has 4 KiB pages: one page less than the need already fails.
    let file = common::scenario("conformance/postcopy-short-late-start.toml");
    let (need, _) = plugged_and_block(&file);
    let (_, doc) = around(&file, &[]);
    let f = doc["flips"].as_array().unwrap().iter().find(|f| f["field"] == "destination.backend.capacity").expect("a capacity flip");
    assert_eq!(f["from"]["value"], need.checked_sub(Bytes(4096)).unwrap().to_string(), "{f}");
    assert_eq!(f["from"]["verdict"], "recoverable", "{f}");
    assert_eq!(f["to"]["value"], need.to_string(), "{f}");
    assert_eq!(f["to"]["verdict"], "safe", "{f}");
}

#[test]
fn the_same_seed_gives_the_same_report() {
    let file = common::scenario("conformance/two-devices-own-mounts-short.toml");
    let (_, a) = around(&file, &["--seed", "7", "--runs", "300"]);
    let (_, b) = around(&file, &["--seed", "7", "--runs", "300"]);
    assert_eq!(a, b);
    let (_, c) = around(&file, &["--seed", "8", "--runs", "300"]);
    let fields = |d: &Value, pair: bool| -> Vec<String> { d["variants"].as_array().unwrap().iter().filter(|v| (v["axis"] == "pair") == pair).map(|v| format!("{} = {}", v["field"], v["value"])).collect() };
    assert_eq!(fields(&a, false), fields(&c, false), "the single changes do not depend on the seed");
    assert!(!fields(&a, true).is_empty(), "the budget leaves room for pairs");
    assert_ne!(fields(&a, true), fields(&c, true), "the seed draws the pairs");
    // Human output is as deterministic.
    let f = file.to_str().unwrap();
    assert_eq!(vmemsim(&["campaign", "--around", f, "--seed", "7"]).1, vmemsim(&["campaign", "--around", f, "--seed", "7"]).1);
}

#[test]
fn a_flipped_variant_shows_as_a_file_that_replays_with_its_verdict() {
    let file = common::scenario("conformance/hugetlbfs-prealloc-enough.toml");
    let (_, doc) = around(&file, &[]);
    let flips = doc["flips"].as_array().unwrap();
    assert!(flips.len() >= 3, "{flips:?}");
    let dir = common::scratch("around");
    for (i, f) in flips.iter().take(6).enumerate() {
        let words: Vec<&str> = f["command"].as_str().unwrap().split(' ').collect();
        assert_eq!(&words[..3], ["vmemsim", "campaign", "--around"], "{f}");
        let (code, shown, err) = vmemsim(&words[1..]);
        assert_eq!(code, Some(1), "a flipped variant's --show exits 1: {err}");
        assert!(shown.contains("\n# verdict: "), "{shown}");
        let saved = dir.join(format!("flip-{i}.toml"));
        std::fs::write(&saved, &shown).unwrap();
        let (code, out, err) = vmemsim(&["--format", "json", "run", saved.to_str().unwrap()]);
        let run: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out} {err}"));
        assert_eq!(run["verdict"]["verdict"], f["to"]["verdict"], "{f}");
        assert_ne!(run["verdict"]["verdict"], doc["base"]["verdict"], "{f}");
        assert_eq!(code, Some(0), "the shown [expect] is the variant's own run: {out}");
        let (code, out, _) = vmemsim(&["replay", saved.to_str().unwrap()]);
        assert_eq!(code, Some(0), "{out}");
    }
}

#[test]
fn every_variant_runs_or_is_listed_as_not_a_scenario() {
    // A regular file cannot take postcopy: those variants are refused by the loader.
    let file = common::scenario("real/regular-file.toml");
    let (_, doc) = around(&file, &["--runs", "120"]);
    let ran = doc["variants"].as_array().unwrap();
    let refused = doc["not_scenarios"].as_array().unwrap();
    assert!(!refused.is_empty(), "{doc}");
    let mut indices: Vec<u64> = ran.iter().chain(refused).map(|v| v["index"].as_u64().unwrap()).collect();
    indices.sort_unstable();
    assert_eq!(indices, (0..120).collect::<Vec<u64>>());
    for n in refused {
        let e = n["error"].as_str().unwrap();
        assert!(e.contains("regular-file.toml (variant ") && e.contains("postcopy"), "{n}");
        assert_eq!(n["field"], "migration.start_postcopy", "{n}");
    }
    for v in ran {
        assert!(["safe", "recoverable", "vm-lost", "latent-crash"].contains(&v["verdict"].as_str().unwrap()), "{v}");
        assert_eq!(v["flipped"], v["verdict"] != doc["base"]["verdict"], "{v}");
    }
}

#[test]
fn the_exit_status_is_0_without_a_flip() {
    // One variant: the short scenario with no capacity at all is as recoverable as the base.
    let file = common::scenario("conformance/hugetlbfs-prealloc-short.toml");
    let (code, doc) = around(&file, &["--runs", "1"]);
    assert_eq!(code, Some(0), "{doc}");
    assert_eq!(doc["exit_code"], 0);
    assert_eq!(doc["variants"][0]["value"], "0 B");
    assert!(doc["flips"].as_array().unwrap().is_empty());
}

#[test]
fn bad_input_exits_2_naming_the_file_and_field() {
    let dir = common::scratch("around-bad");
    let missing = dir.join("missing.toml");
    let (code, _, err) = vmemsim(&["campaign", "--around", missing.to_str().unwrap()]);
    assert_eq!(code, Some(2));
    assert!(err.contains("missing.toml"), "{err}");

    let bad = dir.join("bad-capacity.toml");
    let text = std::fs::read_to_string(common::scenario("conformance/hugetlbfs-prealloc-enough.toml")).unwrap().replace("capacity = \"512M\" }\n\n[[device]]", "capacity = \"lots\" }\n\n[[device]]");
    std::fs::write(&bad, text).unwrap();
    let (code, _, err) = vmemsim(&["campaign", "--around", bad.to_str().unwrap()]);
    assert_eq!(code, Some(2));
    assert!(err.contains("bad-capacity.toml") && err.contains("lots") && err.contains("capacity"), "{err}");
    let (code, doc) = around(&bad, &[]);
    assert_eq!(code, Some(2));
    assert_eq!(doc["exit_code"], 2);
    assert!(doc["error"].as_str().unwrap().contains("bad-capacity.toml"), "{doc}");

    let file = common::scenario("conformance/hugetlbfs-prealloc-enough.toml");
    let (code, _, err) = vmemsim(&["campaign", "--around", file.to_str().unwrap(), "--variant-index", "100000", "--show"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("there is no variant 100000"), "{err}");
}
