//! The vector index alone: our HNSW graph, the distance kernels it runs on, and the baseline
//! and data sets it is measured with. It knows no database: the stores (`crates/store-*`)
//! keep the vectors and derive a graph from them.

pub mod baseline;
pub mod build_pool;
mod cancel;
pub mod dataset;
pub mod distance;
pub mod graph_file;
pub mod hnsw;
pub mod huge_pages;
mod visited;

pub use cancel::{Cancel, requested as cancel_requested};
pub use distance::Metric;
pub use graph_file::{GraphFile, GraphFileError};
pub use hnsw::{Hnsw, HnswParams, Neighbour, Probe};
