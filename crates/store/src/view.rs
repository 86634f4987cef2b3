//! [`StoreView`]: one instant of a store, read a page at a time. Every read of a view answers
//! what the store held when the view was opened, whatever is written meanwhile: what a copy
//! reads (and what a snapshot will), so that it holds one consistent state, never half of a
//! write.

use crate::{ApiKeyRecord, CollectionKey, CollectionRecord, MediaRecord, StoreError, StoredItem};

/// One instant of a store (see [`crate::Store::view`]). Reads block like the store's own.
pub trait StoreView {
    /// Every key, revoked ones included.
    fn list_keys(&mut self) -> Result<Vec<ApiKeyRecord>, StoreError>;
    /// Up to `limit` media records in `media_ref` order after `after`, of every workspace.
    fn list_media(
        &mut self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<MediaRecord>, StoreError>;
    /// The length of content `sha256`, if it is stored.
    fn content_len(&mut self, sha256: &str) -> Result<Option<u64>, StoreError>;
    /// Up to `len` bytes of content `sha256` from `offset` (fewer at its end).
    fn read_content(
        &mut self,
        sha256: &str,
        offset: u64,
        len: usize,
    ) -> Result<Vec<u8>, StoreError>;
    /// Every collection, in every workspace, with its count at this instant.
    fn collections(&mut self) -> Result<Vec<CollectionRecord>, StoreError>;
    /// Up to `limit` items with their vectors, in id order after `after`.
    fn export_items(
        &mut self,
        key: &CollectionKey,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<StoredItem>, StoreError>;
}
