//! The store and the vector index: redb is the source of truth for everything the gateway
//! acknowledges; the HNSW graph is a structure derived from it.
//!
//! This crate is the only one that knows redb and the graph.

pub mod baseline;
mod build_pool;
mod cancel;
mod collection;
mod count_memo;
pub mod dataset;
pub mod distance;
mod error;
#[cfg(feature = "fault-injection")]
pub mod faults;
pub mod filter;
mod graph_file;
mod graphs;
mod group_commit;
pub mod hnsw;
mod huge_pages;
mod keys;
mod media;
pub mod metadata;
mod payload;
mod planner;
mod store;
mod vectors;
mod visited;

pub use cancel::Cancel;
pub use collection::{
    CollectionKey, CollectionParams, CollectionRecord, FORMAT_VERSION, ItemRecord, NewItem,
    Precision,
};
pub use distance::Metric;
pub use error::{StorageFault, StoreError, is_full};
pub use filter::{Filter, FilterError, FilterLimits};
pub use graph_file::GraphFile;
pub use hnsw::{Hnsw, HnswParams, Neighbour, Probe};
pub use keys::{ApiKeyRecord, KeyHash};
pub use media::{MediaRecord, Transition, UploadRecord, UploadState};
pub use metadata::{MetadataError, json_type};
pub use store::Store;
pub use vectors::{
    DeleteOutcome, GraphInfo, GraphOrigin, Hit, MAX_ID_BYTES, Plan, SearchOptions, SearchOutcome,
    UpsertOutcome, VectorIndex,
};
