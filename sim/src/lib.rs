//! vmemsim-sim: scenarios, the deterministic engine, properties, and the tools around them.
#![deny(unsafe_code)]

pub mod accept;
pub mod around;
pub mod around_edit;
pub mod around_flips;
pub mod build;
pub mod build_memory;
pub mod campaign;
pub mod conformance;
pub mod coverage;
pub mod engine;
pub mod error;
pub mod found;
pub mod fuzzing;
pub mod gen;
pub mod guide;
pub mod hazards;
pub mod import;
pub mod load;
pub mod oracle;
pub mod profile_campaign;
pub mod profile_ch;
pub mod profile_fc;
pub mod profile_run;
pub mod properties;
pub mod real;
pub mod report;
pub mod rng;
pub mod run;
pub mod scenario;
pub mod shrink;
pub mod stream;
pub mod trace;
pub mod trace_replay;
pub mod trace_setup;

pub use build::{build, Built};
pub use engine::{simulate, Sim};
pub use error::SimError;
pub use load::{load, parse, Loaded};
pub use properties::{Property, Violation};
pub use run::{check_expectations, run, run_built};
