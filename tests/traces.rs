//! Snapshots of the traces of the shipped scenarios: any change to what the engine does, or to
//! how it says it, shows up here.

mod common;

use vmemsim_sim::{load, run};

#[test]
fn traces_of_the_shipped_scenarios() {
    for f in common::scenario_files() {
        let rel = f.strip_prefix(common::scenario("")).expect("under scenarios/");
        if rel.starts_with("found") {
            continue; // Findings carry their own trace hash.
        }
        let name = rel.to_string_lossy().trim_end_matches(".toml").replace('/', "__");
        let sim = run(&load(&f).unwrap()).unwrap();
        insta::assert_snapshot!(name, sim.trace.join("\n"));
    }
}
