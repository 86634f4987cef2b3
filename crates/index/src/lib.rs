//! The store: redb is the source of truth for everything the gateway acknowledges.
//!
//! This crate is the only one that knows redb (and, later, the HNSW graph). Today it holds
//! API keys; collections, vectors and their graphs join it with the vector index.

mod error;
mod keys;
mod store;

pub use error::StoreError;
pub use keys::{ApiKeyRecord, KeyHash};
pub use store::Store;
