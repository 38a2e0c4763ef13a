//! Snapshots of the traces of the shipped scenarios: any change to what the engine does, or to
//! how it says it, shows up here.

mod common;

use vmemsim_sim::{build, load, run_built};

#[test]
fn traces_of_the_shipped_scenarios() {
    for f in common::scenario_files() {
        let rel = f.strip_prefix(common::scenario("")).expect("under scenarios/");
        if rel.starts_with("found") {
            continue; // Findings carry their own trace hash.
        }
        let name = rel.to_string_lossy().trim_end_matches(".toml").replace('/', "__");
        let built = build(&load(&f).unwrap()).unwrap();
        let sim = run_built(&built);
        insta::assert_snapshot!(name, sim.lines(&built).join("\n"));
    }
}
