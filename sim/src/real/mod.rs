//! The real-memory adapter: the same scenarios on actual mmap'd memory, in a child process, so
//! that a SIGBUS is a real signal and a graceful failure a real error. The only unsafe code of
//! the project lives here, each block with a `// SAFETY:` line.
#![allow(unsafe_code)]

pub mod advisor;
pub mod advisor_kinds;
pub mod advisor_report;
pub mod child;
pub mod competitor;
pub mod guardian;
pub mod cleanup;
pub mod interrupt;
pub mod isolation;
pub mod fits_memdevs;
pub mod ledger;
pub mod mapping;
pub mod memory;
pub mod mounts;
pub mod parent;
pub mod pool;
pub mod prealloc;
pub mod uffd;

pub use memory::{Places, RealMemory};
pub use parent::{compare, fits, fits_within, model_outcome, run_real, simulated_outcome, Needs, RealRun};
