//! Every command's `--format json` document against `schema/vmemsim-1.schema.json`: each
//! document is checked against the definition its `command` names and against the whole schema
//! (exactly one definition matches), and its `exit_code` is the process's exit status.

mod common;

use std::path::Path;
use std::process::Command;

use serde_json::Value;

const EXE: &str = env!("CARGO_BIN_EXE_vmemsim");

fn schema() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("schema/vmemsim-1.schema.json");
    serde_json::from_str(&std::fs::read_to_string(&path).expect("the schema is shipped")).expect("the schema is JSON")
}

/// The definition a document should match, by its fields.
fn kind(doc: &Value) -> &'static str {
    if doc.get("error").is_some() {
        return "error";
    }
    match (doc["command"].as_str().unwrap_or_default(), doc["backend"].as_str()) {
        ("run", Some("real")) => "real_run",
        ("run" | "check", _) => "run",
        ("replay", _) => "replay",
        ("campaign", _) => match doc["mode"].as_str() {
            Some("around") => "around",
            Some("around-show") => "around_show",
            Some("profile") => "profile_campaign",
            _ => "campaign",
        },
        ("analyze", _) => "analyze",
        ("preflight", _) => "preflight",
        ("encode", _) => "encode",
        ("import", _) => "import",
        ("cleanup", _) => "cleanup",
        ("prealloc", _) => "prealloc",
        ("diff", _) => "diff",
        (other, _) => panic!("a document of an unknown command {other:?}: {doc}"),
    }
}

fn errors(schema: &Value, doc: &Value) -> Vec<String> {
    let v = jsonschema::validator_for(schema).expect("the schema compiles");
    v.iter_errors(doc).map(|e| format!("{} at {}", e, e.instance_path())).collect()
}

/// Runs `vmemsim --format json ARGS`, checks the document, and returns it with the exit code.
fn checked(args: &[&str]) -> (Value, i32) {
    let out = Command::new(EXE).arg("--format").arg("json").args(args).output().expect("the binary runs");
    let code = out.status.code().expect("the binary exits, not killed");
    let text = String::from_utf8(out.stdout).expect("UTF-8 output");
    let doc: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("vmemsim {args:?} printed no JSON document ({e}):\n{text}\nstderr: {}", String::from_utf8_lossy(&out.stderr)));
    let full = schema();
    let k = kind(&doc);
    let mut one = serde_json::json!({ "$schema": full["$schema"], "$ref": format!("#/$defs/{k}") });
    one["$defs"] = full["$defs"].clone();
    let wrong = errors(&one, &doc);
    assert!(wrong.is_empty(), "vmemsim {args:?}: the {k} document breaks the schema:\n{}\n{text}", wrong.join("\n"));
    assert!(errors(&full, &doc).is_empty(), "vmemsim {args:?}: the {k} document matches more than one definition");
    assert_eq!(doc["schema"], "vmemsim/1");
    assert_eq!(doc["exit_code"].as_i64(), Some(i64::from(code)), "vmemsim {args:?}: exit_code is not the exit status");
    (doc, code)
}

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 paths")
}

fn root() -> bool {
    rustix::process::geteuid().is_root()
}

#[test]
fn run_check_and_replay_of_every_shipped_scenario() {
    let files = common::scenario_files();
    let names: Vec<&str> = files.iter().map(|f| path(f)).collect();
    let mut args = vec!["replay"];
    args.extend(&names);
    let (doc, code) = checked(&args);
    assert_eq!(doc["files"].as_u64(), Some(files.len() as u64));
    assert_eq!(doc["results"].as_array().map(Vec::len), Some(files.len()));
    // The shipped scenarios all have an [expect] and meet it.
    assert_eq!(doc["met"].as_u64(), Some(files.len() as u64), "{doc}");
    assert_eq!(code, 0);
    for r in doc["results"].as_array().unwrap() {
        assert_eq!(r["expectation"]["met"], true, "{r}");
        assert!(r["destination"]["outcome"]["class"].is_string());
    }

    let short = common::scenario("conformance/postcopy-short.toml");
    let (doc, code) = checked(&["run", path(&short), "--trace"]);
    assert_eq!(code, 0);
    assert!(!doc["trace"].as_array().unwrap().is_empty());
    assert_eq!(doc["migration"]["mode"], "postcopy");
    let (doc, code) = checked(&["check", path(&short)]);
    assert_eq!(doc["command"], "check");
    assert_eq!(code, i32::from(doc["verdict"]["safe"] != true), "check exits 1 exactly when the verdict is not safe: {doc}");
}

#[test]
fn a_file_without_expect_and_a_broken_file_are_documents_too() {
    let dir = common::scratch("json-schema-files");
    let bare = dir.join("bare.toml");
    let text = std::fs::read_to_string(common::scenario("conformance/postcopy-short.toml")).unwrap();
    let cut = text.find("[expect]").expect("the scenario has an [expect]");
    std::fs::write(&bare, &text[..cut]).unwrap();
    let broken = dir.join("broken.toml");
    std::fs::write(&broken, "name = \"x\"\n[source]\nmachine = 7\n").unwrap();
    let (doc, code) = checked(&["replay", path(&bare), path(&broken)]);
    assert_eq!(code, 2);
    assert_eq!(doc["errors"].as_u64(), Some(2), "{doc}");
    let results = doc["results"].as_array().unwrap();
    assert!(results[1]["error"].as_str().unwrap().contains("machine"), "{doc}");

    let (doc, code) = checked(&["run", path(&broken)]);
    assert_eq!((code, doc["command"].as_str()), (2, Some("run")));
    let (doc, code) = checked(&["run", "--no-such-flag"]);
    assert_eq!(code, 2);
    assert!(doc["error"].as_str().unwrap().contains("--no-such-flag"), "{doc}");
    let (_, code) = checked(&["run", path(&dir.join("missing.toml"))]);
    assert_eq!(code, 2);
}

#[test]
fn campaigns_with_findings_and_shown_seeds() {
    let dir = common::scratch("json-schema-campaign");
    let found = dir.join("found");
    let (doc, code) = checked(&["campaign", "--runs", "300", "--seed", "1", "--threads", "2"]);
    assert_eq!(doc["runs"].as_u64(), Some(300));
    let counted: u64 = doc["outcomes"].as_array().unwrap().iter().map(|r| r["count"].as_u64().unwrap()).sum();
    assert_eq!(counted, 300);
    assert_eq!(code, 0, "the faithful model has no findings: {doc}");
    // A variant with a planted wrong rule: findings, shrunk into the scratch folder.
    let (doc, code) = checked(&["campaign", "--runs", "400", "--seed", "1", "--variant", "no-rollback", "--found-dir", path(&found)]);
    assert_eq!(code, 1, "{doc}");
    let f = &doc["findings"][0];
    assert!(Path::new(f["file"].as_str().unwrap()).exists(), "{doc}");
    // Two shards' documents, merged.
    let mut shards = Vec::new();
    for i in 0..2 {
        let o = Command::new(EXE).args(["--format", "json", "campaign", "--runs", "300", "--seed", "1", "--shard", &format!("{i}/2")]).output().unwrap();
        let file = dir.join(format!("shard-{i}.json"));
        std::fs::write(&file, &o.stdout).unwrap();
        shards.push(file);
    }
    let (doc, code) = checked(&["merge", path(&shards[0]), path(&shards[1])]);
    assert_eq!((code, doc["runs"].as_u64()), (0, Some(300)));
    let (_, code) = checked(&["merge", path(&shards[0])]);
    assert_eq!(code, 2, "a missing shard is refused");
    let around = common::scenario("conformance/hugetlbfs-prealloc-enough.toml");
    let (doc, code) = checked(&["campaign", "--around", path(&around), "--runs", "120"]);
    assert_eq!(code, 1, "the capacity flips: {doc}");
    let k = doc["flips"][0]["command"].as_str().unwrap().split(' ').skip_while(|w| *w != "--variant-index").nth(1).unwrap().to_string();
    let (doc, code) = checked(&["campaign", "--around", path(&around), "--variant-index", &k, "--show"]);
    assert_eq!(code, 1, "a flipped variant exits 1: {doc}");
    assert!(doc["scenario"].as_str().unwrap().contains("[expect]"));
    let (doc, _) = checked(&["campaign", "--seed", "5", "--runs", "1", "--show"]);
    assert_eq!(doc["shown"][0]["seed"], 5);
    assert!(doc["shown"][0]["scenario"].as_str().unwrap().contains("[source]"));
}

#[test]
fn stream_commands() {
    let dir = common::scratch("json-schema-stream");
    let mig = dir.join("stream.mig");
    let (doc, code) = checked(&["encode", path(&common::scenario("seed/two-devices-short-hugetlb.toml")), path(&mig)]);
    assert_eq!(code, 0);
    assert_eq!(doc["bytes"].as_u64(), Some(std::fs::metadata(&mig).unwrap().len()));
    let (doc, code) = checked(&["analyze", path(&mig)]);
    assert_eq!(code, 0);
    assert_eq!(doc["summary"]["virtio_mem"].as_array().map(Vec::len), Some(2), "{doc}");
    let (doc, code) = checked(&["preflight", path(&mig), "--backend", "hugetlbfs", "--capacity", "768M"]);
    assert_eq!((code, doc["safe"].as_bool()), (1, Some(false)));
    assert_eq!(doc["outcome"]["class"], "failed");
    let (doc, code) = checked(&["preflight", path(&mig), "--backend", "hugetlbfs", "--capacity", "9124M"]);
    assert_eq!((code, doc["safe"].as_bool()), (0, Some(true)), "{doc}");
    let (_, code) = checked(&["encode", path(&common::scenario("seed/two-devices-short-hugetlb.toml")), "-"]);
    assert_eq!(code, 2);
    // An old machine's stream (QEMU's, an excerpt): the late section's plug state.
    let old = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/stream/pc-q35-7.1-late.excerpt.mig");
    let (doc, code) = checked(&["analyze", path(&old)]);
    assert_eq!(code, 0);
    assert_eq!(doc["summary"]["virtio_mem"][0]["section"], "late", "{doc}");
    let (doc, code) = checked(&["preflight", path(&old), "--backend", "tmpfs-file", "--capacity", "1G"]);
    assert_eq!((code, doc["safe"].as_bool()), (0, Some(true)), "{doc}");
}


#[test]
fn importers() {
    let dir = common::scratch("json-schema-import");
    let (doc, code) = checked(&[
        "import", "qemu", "--mount", "/dev/shm:tmpfs", "--", "qemu-system-x86_64", "-machine", "q35", "-m", "4G,maxmem=8G", "-object", "memory-backend-file,id=m0,mem-path=/dev/shm/m0,size=1G,share=on",
        "-device", "virtio-mem-pci,id=v0,memdev=m0,requested-size=512M",
    ]);
    assert_eq!(code, 0);
    assert!(doc["output"].is_null());
    assert!(doc["scenario"].as_str().unwrap().contains("[source]"));
    let xml = dir.join("domain.xml");
    std::fs::write(&xml, common::LIBVIRT_DOMAIN).unwrap();
    let out = dir.join("domain.toml");
    let (doc, code) = checked(&["import", "libvirt", path(&xml), "--mount", "/dev/hugepages:hugetlbfs", "--dest-mount", "/dev/hugepages:hugetlbfs:2G", "-o", path(&out)]);
    assert_eq!(code, 0, "{doc}");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), doc["scenario"].as_str().unwrap());
    let (doc, code) = checked(&["import", "qemu", "--", "qemu-system-x86_64", "-device", "virtio-mem-pci,memdev=nowhere"]);
    assert_eq!(code, 2);
    assert!(doc["error"].as_str().unwrap().contains("nowhere"), "{doc}");
}

#[test]
fn host_commands() {
    // prealloc on private anonymous memory needs neither root nor huge pages.
    let (doc, code) = checked(&["prealloc", "--memory", "anon", "--size", "16M", "--repeat", "1", "--layout", "contiguous"]);
    assert_eq!(code, 0, "{doc}");
    assert_eq!(doc["kinds"][0]["memory"], "anon");
    let (_, code) = checked(&["prealloc", "--memory", "anon", "--size", "3M"]);
    assert_eq!(code, 2);
    if !root() {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "CI runs as root");
        eprintln!("skipped cleanup and run --backend real: they need root");
        return;
    }
    let (doc, code) = checked(&["cleanup"]);
    assert_eq!((code, doc["ok"].as_bool()), (0, Some(true)), "{doc}");
    let (doc, code) = checked(&["run", path(&common::scenario("real/private-anonymous-hints.toml")), "--backend", "real"]);
    assert_eq!((code, doc["agree"].as_bool()), (0, Some(true)), "{doc}");
}

#[test]
fn diff_documents() {
    let finding = common::scenario("profiles/firecracker/lowered-request-breaks-driver.toml");
    let postcopy = common::scenario("conformance/postcopy-short.toml");
    let (doc, code) = checked(&["diff", path(&finding), path(&postcopy)]);
    assert_eq!(code, 1, "a property is broken: {doc}");
    assert_eq!(doc["vmms"], serde_json::json!(["qemu-10.0.2", "cloud-hypervisor-v53.0", "firecracker-v1.16.1"]));
    assert_eq!(doc["scenarios"][1]["profiles"][2]["outcome"], Value::Null, "firecracker has no postcopy: {doc}");
    let (doc, code) = checked(&["campaign", "--vmm", "firecracker-v1.16.1", "--seed", "27400", "--runs", "100", "--no-shrink"]);
    assert_eq!(code, 1, "seed 27433 breaks driver-usable: {doc}");
    assert_eq!(doc["properties"][1]["first_seed"], 27433);
    let (doc, code) = checked(&["diff", path(&finding), "--vmm", "cloud-hypervisor-v54.0"]);
    assert_eq!(code, 2);
    assert!(doc["error"].as_str().unwrap().contains("cloud-hypervisor-v53.0"), "{doc}");
}
