//! ANN benchmarking for `aimp bench`: vector file formats, exact ground truth, seeded synthetic
//! sets, the engines side by side (ours, hnsw_rs, exact), reports and recall–QPS plots.

pub mod collection;
pub mod filter;
pub mod filter_plot;
pub mod formats;
pub mod machine;
pub mod plot;
pub mod run;
pub mod synthetic;
pub mod truth;
