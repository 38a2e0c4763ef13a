//! vmemsim-sim: scenarios, and the engine that runs them on the vmemsim model.

pub mod build;
pub mod error;
pub mod load;
pub mod run;
pub mod scenario;

pub use build::{build, Built};
pub use error::SimError;
pub use load::{load, parse, Loaded};
pub use run::{check_expectations, run, run_built, Report};
