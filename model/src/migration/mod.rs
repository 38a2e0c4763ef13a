//! Migration: the items of the stream, the source that writes them, the destination that
//! consumes them, and how it ends.

pub mod destination;
pub mod drive;
pub mod item;
pub mod outcome;
pub mod plan;
pub mod source;
pub mod source_fate;
pub mod switchover;
pub mod verdict;
