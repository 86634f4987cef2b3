//! The embedded store: everything the gateway acknowledges in one redb file under the data
//! folder (the source of truth), and an in-memory HNSW graph per collection derived from it
//! (saved beside it so a restart is quick).
//!
//! [`EmbeddedStore`] is the [`aimp_store::Store`] the gateway runs on by default. This crate
//! is the only one that knows redb.

mod collection;
mod count_memo;
mod embedded;
mod error;
#[cfg(feature = "fault-injection")]
pub mod faults;
mod graphs;
mod group_commit;
mod keys;
mod media;
mod media_files;
mod payload;
mod planner;
mod redb_file;
mod vectors;
mod view;

// The interface's types, where this crate's modules have always found them.
use aimp_index::{Hnsw, hnsw};
use aimp_store::{Filter, Plan, filter};

pub use embedded::EmbeddedStore;
pub use error::Error;
pub use redb_file::{DB_FILE, DEFAULT_CACHE_BYTES, Redb};
pub use vectors::{GraphInfo, GraphOrigin, VectorIndex};
