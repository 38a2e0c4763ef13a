//! Replays every input the fuzz targets ever crashed on (`fuzz/regressions/<target>/`) and the
//! committed seed corpus (`fuzz/corpus/<target>/`) through the targets' own code
//! (`vmemsim_sim::fuzzing`), so a fixed crash stays fixed and the seeds stay valid inputs.

use std::panic::catch_unwind;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

type Target = fn(&[u8]) -> bool;

const TARGETS: [(&str, Target); 4] = [
    ("decode", vmemsim_sim::fuzzing::decode),
    ("preflight", vmemsim_sim::fuzzing::preflight),
    ("scenario", vmemsim_sim::fuzzing::scenario),
    ("import", vmemsim_sim::fuzzing::import),
];

/// The files of `fuzz/<dir>/<target>/`, sorted; none when the folder does not exist.
fn files(dir: &str, target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz").join(dir).join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else { return Vec::new() };
    let mut out: Vec<PathBuf> = entries.map(|e| e.expect("readable entry").path()).filter(|p| p.is_file()).collect();
    out.sort();
    out
}

/// How long one input may take in this unoptimized build (the fuzzer allows 1 s optimized): a
/// saved timeout or out-of-memory input fails the test instead of hanging it.
const DEADLINE: Duration = Duration::from_secs(20);

/// Runs each file through `f`, each on its own thread with a deadline; returns how many ran, how
/// many reached the end of the target, and one line per panic or overrun.
fn replay(f: Target, paths: &[PathBuf]) -> (usize, usize, Vec<String>) {
    let (mut ran, mut reached, mut failures) = (0, 0, Vec::new());
    for p in paths {
        let data = std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(catch_unwind(|| f(&data)));
        });
        match rx.recv_timeout(DEADLINE) {
            Ok(Ok(r)) => reached += usize::from(r),
            Ok(Err(e)) => {
                let msg = e.downcast_ref::<String>().cloned().or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()));
                failures.push(format!("{}: panicked: {}", p.display(), msg.unwrap_or_default()));
            }
            // The thread is left running: the test fails and its process ends.
            Err(_) => failures.push(format!("{}: still running after {DEADLINE:?}", p.display())),
        }
        ran += 1;
    }
    (ran, reached, failures)
}

#[test]
fn every_saved_crash_input_runs_without_a_panic() {
    let mut panics = Vec::new();
    let mut total = 0;
    for (name, f) in TARGETS {
        let paths = files("regressions", name);
        let (ran, _, p) = replay(f, &paths);
        assert_eq!(ran, paths.len(), "{name}: every file replayed");
        println!("fuzz regressions: {name}: {ran} input(s) replayed");
        total += ran;
        panics.extend(p);
    }
    println!("fuzz regressions: {total} input(s) replayed in all");
    assert!(panics.is_empty(), "{} input(s) panic or overrun:\n{}", panics.len(), panics.join("\n"));
}

#[test]
fn the_seed_corpus_is_valid_input_for_each_target() {
    for (name, f) in TARGETS {
        let paths = files("corpus", name);
        assert!(paths.len() >= 3, "{name}: the seed corpus has {} file(s)", paths.len());
        let (ran, reached, panics) = replay(f, &paths);
        assert!(panics.is_empty(), "{name}: seeds panic:\n{}", panics.join("\n"));
        println!("fuzz corpus: {name}: {ran} seed(s), {reached} reach the end of the target");
        // Seeds are whole streams and scenarios that run: a seed the target rejects early
        // (a format change made it stale) would leave the fuzzer without its starting points.
        assert_eq!(reached, ran, "{name}: every seed reaches the end of the target");
    }
}
