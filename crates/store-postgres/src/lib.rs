//! The PostgreSQL store: everything the gateway acknowledges in one PostgreSQL database, so
//! that any number of gateways can share it and a highly available cluster (Patroni) keeps it
//! through the loss of a machine. Vectors are pgvector columns; each collection has a pgvector
//! HNSW index with its own metric and dimension.
//!
//! [`PostgresStore`] is an [`aimp_store::Store`]: the gateway runs on it unchanged when
//! `--store` names a `postgres://` URL. This crate is the only one that knows PostgreSQL.

pub mod cluster;
mod collections;
mod error;
mod filter_sql;
pub mod harness;
mod json;
mod keys;
mod media;
mod schema;
mod store;
mod uploads;
mod view;

pub use error::Error;
pub use schema::VERSION as SCHEMA_VERSION;
pub use store::{PoolOptions, PostgresStore};
