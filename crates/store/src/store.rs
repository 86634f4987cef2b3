//! The storage interface: everything the gateway persists, behind one trait with one
//! implementation per store (`crates/store-embedded`, `crates/store-postgres`). The gateway
//! holds an `Arc<dyn Store>` and never knows which.
//!
//! Every method is synchronous and may block on I/O: callers run it off the async threads
//! (the gateway's `blocking`), inside an [`aimp_index::Cancel::scope`] where reading work
//! should give up once its client went away ([`crate::check_cancelled`]). A write is durable
//! when its method returns `Ok`, and not before.

use chrono::{DateTime, Utc};

use crate::{
    ApiKeyRecord, CollectionKey, CollectionParams, CollectionRecord, DeleteOutcome, Filter,
    ItemRecord, KeyHash, MediaRecord, NewItem, SearchOptions, SearchOutcome, StoreError, StoreView,
    StoredItem, Transition, UploadRecord, UploadState, UpsertOutcome,
};

/// Everything the gateway persists: API keys, uploads and media, and collections of items.
pub trait Store: Send + Sync + std::fmt::Debug {
    /// The store's kind, for logs: `embedded`, `postgres`.
    fn kind(&self) -> &'static str;
    /// Whether the store answers reads now: the readiness probe.
    fn is_ready(&self) -> bool;
    /// One instant of the store to read from ([`StoreView`]): what a copy or a snapshot reads,
    /// while writes go on.
    fn view(&self) -> Result<Box<dyn StoreView + '_>, StoreError>;
    /// Saves what is derived from the truth and slow to rebuild (the embedded store's
    /// graphs), so the next start is quick; how many things it saved. Nothing to do for a
    /// store whose database keeps its own indexes.
    fn checkpoint(&self) -> Result<usize, StoreError>;

    // API keys, by id and by the hash of the key (the key itself is never stored).

    /// Stores a new key record; [`StoreError::KeyExists`] for a hash already registered.
    fn insert_key(&self, record: &ApiKeyRecord) -> Result<(), StoreError>;
    /// The record whose hash is `hash`, revoked or not.
    fn find_key_by_hash(&self, hash: &KeyHash) -> Result<Option<ApiKeyRecord>, StoreError>;
    /// The record with this id; [`StoreError::KeyNotFound`] when there is none.
    fn get_key(&self, id: &str) -> Result<ApiKeyRecord, StoreError>;
    /// Every key, revoked ones included, oldest first.
    fn list_keys(&self) -> Result<Vec<ApiKeyRecord>, StoreError>;
    fn rename_key(&self, id: &str, name: &str) -> Result<ApiKeyRecord, StoreError>;
    /// Marks the key revoked at `at` (a key revoked already keeps its first time).
    fn revoke_key(&self, id: &str, at: DateTime<Utc>) -> Result<ApiKeyRecord, StoreError>;
    /// Records that the key was used at `at`.
    fn touch_key(&self, id: &str, at: DateTime<Utc>) -> Result<ApiKeyRecord, StoreError>;

    // Uploads (from `init` to `complete`) and the media records they end in.

    /// Records a new upload (state `Pending`).
    fn insert_upload(&self, record: &UploadRecord) -> Result<(), StoreError>;
    fn get_upload(&self, id: &str) -> Result<Option<UploadRecord>, StoreError>;
    /// Moves an upload to `to` when `from` accepts its current state, in one transaction:
    /// [`Transition::Refused`] with the record unchanged when it does not.
    fn transition_upload(
        &self,
        id: &str,
        from: &dyn Fn(&UploadState) -> bool,
        to: UploadState,
    ) -> Result<Transition, StoreError>;
    /// Completes a `Received` upload: stores `media` and marks the upload `Completed`, in one
    /// transaction. Completing again answers the media of the first completion.
    fn complete_upload(
        &self,
        id: &str,
        media: &MediaRecord,
    ) -> Result<Transition<MediaRecord, UploadRecord>, StoreError>;
    /// Uploads whose time is over: those that never completed once they expire, completed
    /// ones `keep_completed` after they expire (so a repeated `complete` still answers).
    fn stale_uploads(
        &self,
        now: DateTime<Utc>,
        keep_completed: chrono::Duration,
    ) -> Result<Vec<UploadRecord>, StoreError>;
    /// Forgets an upload record (its media, if any, stays).
    fn remove_upload(&self, id: &str) -> Result<(), StoreError>;
    /// The media record of `media_ref`, in any workspace (the caller checks whose it is).
    fn get_media(&self, media_ref: &str) -> Result<Option<MediaRecord>, StoreError>;
    /// Up to `limit` media records in `media_ref` order after `after`, of every workspace:
    /// how a copy or a snapshot reads them all.
    fn list_media(&self, after: Option<&str>, limit: usize)
    -> Result<Vec<MediaRecord>, StoreError>;
    /// Stores a media record as another store kept it, replacing one with its `media_ref`.
    /// Its content must be stored first ([`Store::content_len`] answers it).
    fn import_media(&self, record: &MediaRecord) -> Result<(), StoreError>;

    // Media bytes: an upload's part while its PUT streams it in, then content named by its
    // SHA-256, stored once whatever the media records that name it. The bytes go in and out
    // in chunks; no call holds a whole upload unless the caller asks for all of it.

    /// The secret that signs upload URLs: made on first use and the same afterwards, for
    /// every gateway on this store.
    fn upload_secret(&self) -> Result<[u8; 32], StoreError>;
    /// Drops whatever the part of `upload_id` held, so a PUT starts it empty.
    fn begin_part(&self, upload_id: &str) -> Result<(), StoreError>;
    /// Appends `bytes` to the part of `upload_id`.
    fn append_part(&self, upload_id: &str, bytes: &[u8]) -> Result<(), StoreError>;
    /// The whole part of `upload_id`, if it has one.
    fn read_part(&self, upload_id: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Makes the part of `upload_id` durable as content `sha256` and drops the part (or just
    /// drops it when equal bytes are stored already). Idempotent: once the content is there,
    /// committing again does nothing; with neither part nor content it is an error.
    fn commit_content(&self, upload_id: &str, sha256: &str) -> Result<(), StoreError>;
    /// Drops the part of `upload_id`, if there is one.
    fn remove_part(&self, upload_id: &str) -> Result<(), StoreError>;
    /// The uploads that have a part now.
    fn part_ids(&self) -> Result<Vec<String>, StoreError>;
    /// The length of content `sha256`, if it is stored.
    fn content_len(&self, sha256: &str) -> Result<Option<u64>, StoreError>;
    /// Up to `len` bytes of content `sha256` from `offset` (fewer at its end).
    fn read_content(&self, sha256: &str, offset: u64, len: usize) -> Result<Vec<u8>, StoreError>;

    // Collections of items, each with a vector and metadata, searched by vector and filter.

    /// Upserts `items` by id into `key`, creating the collection with `params` the first
    /// time. Bad items are refused whole ([`crate::check_items`]); a collection made with
    /// other parameters is [`StoreError::ParamsMismatch`].
    fn upsert(
        &self,
        key: &CollectionKey,
        params: CollectionParams,
        items: Vec<NewItem>,
    ) -> Result<UpsertOutcome, StoreError>;
    /// Deletes the items `ids` names, those `filter` passes, or (both given) those named that
    /// it passes. Neither given deletes nothing.
    fn delete_where(
        &self,
        key: &CollectionKey,
        ids: Option<Vec<String>>,
        filter: Option<Filter>,
    ) -> Result<DeleteOutcome, StoreError>;
    /// Drops the collection and everything in it; whether it existed.
    fn drop_collection(&self, key: &CollectionKey) -> Result<bool, StoreError>;
    /// The collection's record (its parameters and live count), if it exists.
    fn record(&self, key: &CollectionKey) -> Result<Option<CollectionRecord>, StoreError>;
    /// Every collection, in every workspace.
    fn collections(&self) -> Result<Vec<CollectionRecord>, StoreError>;
    /// One item with its vector.
    fn get(
        &self,
        key: &CollectionKey,
        id: &str,
    ) -> Result<Option<(ItemRecord, Vec<f32>)>, StoreError>;
    /// Up to `limit` items with their vectors, in id order after `after`: how a copy or a
    /// snapshot reads a collection.
    fn export_items(
        &self,
        key: &CollectionKey,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<StoredItem>, StoreError>;
    /// Upserts items as another store kept them, their timestamps kept rather than stamped
    /// now, creating the collection with `params` the first time. Checked and refused like
    /// [`Store::upsert`].
    fn import_items(
        &self,
        key: &CollectionKey,
        params: CollectionParams,
        items: Vec<StoredItem>,
    ) -> Result<UpsertOutcome, StoreError>;
    /// Up to `n` stored vectors picked with `seed`, for a recall check's queries.
    fn sample_vectors(
        &self,
        key: &CollectionKey,
        n: usize,
        seed: u64,
    ) -> Result<Vec<Vec<f32>>, StoreError>;
    /// Up to `limit` items in id order after `after`, those `filter` passes.
    fn list_items(
        &self,
        key: &CollectionKey,
        after: Option<&str>,
        limit: usize,
        filter: Option<&Filter>,
    ) -> Result<Vec<ItemRecord>, StoreError>;
    /// How many items `filter` passes; `None` when the collection does not exist.
    fn count_matching(
        &self,
        key: &CollectionKey,
        filter: &Filter,
    ) -> Result<Option<u64>, StoreError>;
    /// The nearest items to `query`; an empty answer when the collection does not exist.
    fn search(
        &self,
        key: &CollectionKey,
        query: &[f32],
        options: SearchOptions,
    ) -> Result<SearchOutcome, StoreError>;
}
