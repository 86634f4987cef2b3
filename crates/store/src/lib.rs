//! The storage interface: the records the gateway keeps (API keys, uploads, media, collections
//! and items), what a filter means, the [`Store`] trait every store implements, and the
//! [`contract`] suite each of them must pass.
//!
//! The stores themselves live in crates of their own (`aimp-store-embedded`, ...): only they
//! know their database.

mod collection;
pub mod contract;
pub mod copy;
mod error;
pub mod filter;
mod keys;
mod media;
pub mod metadata;
mod search;
pub mod snapshot;
mod store;
mod view;

pub use aimp_index::{Cancel, HnswParams, Metric};
pub use collection::{
    CollectionKey, CollectionParams, CollectionRecord, FORMAT_VERSION, ItemRecord, MAX_ID_BYTES,
    NewItem, Precision, StoredItem, check_items, check_precision, check_query, check_write,
};
pub use error::{StorageFault, StoreError, check_cancelled, is_full};
pub use filter::{Filter, FilterError, FilterLimits};
pub use keys::{ApiKeyRecord, KeyHash};
pub use media::{MediaPages, MediaRecord, Transition, UploadRecord, UploadState};
pub use metadata::{MetadataError, json_type};
pub use search::{DeleteOutcome, Hit, Plan, SearchOptions, SearchOutcome, UpsertOutcome};
pub use store::Store;
pub use view::StoreView;
