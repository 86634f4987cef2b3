//! [`EmbeddedStore`]: the [`Store`] over one data folder. Keys, uploads and media records are
//! rows of the redb file ([`Redb`]); collections are rows of the same file with an HNSW graph
//! each, derived from them ([`VectorIndex`]).

use std::path::{Path, PathBuf};

use aimp_store::{
    ApiKeyRecord, CollectionKey, CollectionParams, CollectionRecord, DeleteOutcome, Filter,
    ItemRecord, KeyHash, MediaRecord, NewItem, SearchOptions, SearchOutcome, Store, StoreError,
    StoreView, StoredItem, Transition, UploadRecord, UploadState, UpsertOutcome,
};
use chrono::{DateTime, Utc};

use crate::media_files::MediaFiles;
use crate::{Error, Redb, VectorIndex};

/// The embedded store: one redb file, graph files and media files beside it.
#[derive(Debug)]
pub struct EmbeddedStore {
    redb: Redb,
    index: VectorIndex,
    files: MediaFiles,
}

impl EmbeddedStore {
    /// Opens (or creates) the store in `data_dir`, redb's page cache at most `cache_bytes`.
    pub fn open(data_dir: &Path, cache_bytes: usize) -> Result<EmbeddedStore, StoreError> {
        EmbeddedStore::on(Redb::open_with_cache(data_dir, cache_bytes)?)
    }

    /// The store over an open database, its media files in the same folder.
    pub fn on(redb: Redb) -> Result<EmbeddedStore, StoreError> {
        let dir = redb
            .path()
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let files = MediaFiles::open(&dir).map_err(|source| Error::Media {
            context: "the media folders",
            source,
        })?;
        Ok(EmbeddedStore {
            index: VectorIndex::new(redb.clone()),
            redb,
            files,
        })
    }

    /// The database file.
    pub fn redb(&self) -> &Redb {
        &self.redb
    }

    /// The collections and their graphs.
    pub fn index(&self) -> &VectorIndex {
        &self.index
    }

    /// The folder the database lives in.
    pub fn data_dir(&self) -> PathBuf {
        self.redb
            .path()
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default()
    }
}

impl Store for EmbeddedStore {
    fn kind(&self) -> &'static str {
        "embedded"
    }

    fn is_ready(&self) -> bool {
        self.redb.is_readable()
    }

    fn view(&self) -> Result<Box<dyn StoreView + '_>, StoreError> {
        Ok(Box::new(crate::view::EmbeddedView {
            txn: self.redb.begin_read()?,
            files: &self.files,
        }))
    }

    fn checkpoint(&self) -> Result<usize, StoreError> {
        Ok(self.index.save_graphs()?)
    }

    // API keys.

    fn insert_key(&self, record: &ApiKeyRecord) -> Result<(), StoreError> {
        Ok(self.redb.insert_key(record)?)
    }

    fn find_key_by_hash(&self, hash: &KeyHash) -> Result<Option<ApiKeyRecord>, StoreError> {
        Ok(self.redb.find_key_by_hash(hash)?)
    }

    fn get_key(&self, id: &str) -> Result<ApiKeyRecord, StoreError> {
        Ok(self.redb.get_key(id)?)
    }

    fn list_keys(&self) -> Result<Vec<ApiKeyRecord>, StoreError> {
        Ok(self.redb.list_keys()?)
    }

    fn rename_key(&self, id: &str, name: &str) -> Result<ApiKeyRecord, StoreError> {
        Ok(self.redb.rename_key(id, name)?)
    }

    fn revoke_key(&self, id: &str, at: DateTime<Utc>) -> Result<ApiKeyRecord, StoreError> {
        Ok(self.redb.revoke_key(id, at)?)
    }

    fn touch_key(&self, id: &str, at: DateTime<Utc>) -> Result<ApiKeyRecord, StoreError> {
        Ok(self.redb.touch_key(id, at)?)
    }

    // Uploads and media.

    fn insert_upload(&self, record: &UploadRecord) -> Result<(), StoreError> {
        Ok(self.redb.insert_upload(record)?)
    }

    fn get_upload(&self, id: &str) -> Result<Option<UploadRecord>, StoreError> {
        Ok(self.redb.get_upload(id)?)
    }

    fn transition_upload(
        &self,
        id: &str,
        from: &dyn Fn(&UploadState) -> bool,
        to: UploadState,
    ) -> Result<Transition, StoreError> {
        Ok(self.redb.transition_upload(id, from, to)?)
    }

    fn complete_upload(
        &self,
        id: &str,
        media: &MediaRecord,
    ) -> Result<Transition<MediaRecord, UploadRecord>, StoreError> {
        Ok(self.redb.complete_upload(id, media)?)
    }

    fn stale_uploads(
        &self,
        now: DateTime<Utc>,
        keep_completed: chrono::Duration,
    ) -> Result<Vec<UploadRecord>, StoreError> {
        Ok(self.redb.stale_uploads(now, keep_completed)?)
    }

    fn remove_upload(&self, id: &str) -> Result<(), StoreError> {
        Ok(self.redb.remove_upload(id)?)
    }

    fn get_media(&self, media_ref: &str) -> Result<Option<MediaRecord>, StoreError> {
        Ok(self.redb.get_media(media_ref)?)
    }

    fn list_media(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<MediaRecord>, StoreError> {
        Ok(self.redb.list_media(after, limit)?)
    }

    fn import_media(&self, record: &MediaRecord) -> Result<(), StoreError> {
        Ok(self.redb.put_media(record)?)
    }

    // Media bytes.

    fn upload_secret(&self) -> Result<[u8; 32], StoreError> {
        Ok(self.files.secret())
    }

    fn begin_part(&self, upload_id: &str) -> Result<(), StoreError> {
        media(self.files.begin_part(upload_id), "an upload's part")
    }

    fn append_part(&self, upload_id: &str, bytes: &[u8]) -> Result<(), StoreError> {
        media(self.files.append_part(upload_id, bytes), "an upload's part")
    }

    fn read_part(&self, upload_id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        media(self.files.read_part(upload_id), "an upload's part")
    }

    fn commit_content(&self, upload_id: &str, sha256: &str) -> Result<(), StoreError> {
        media(
            self.files.commit_content(upload_id, sha256),
            "media content",
        )
    }

    fn remove_part(&self, upload_id: &str) -> Result<(), StoreError> {
        media(self.files.remove_part(upload_id), "an upload's part")
    }

    fn part_ids(&self) -> Result<Vec<String>, StoreError> {
        media(self.files.part_ids(), "the uploads folder")
    }

    fn content_len(&self, sha256: &str) -> Result<Option<u64>, StoreError> {
        media(self.files.content_len(sha256), "media content")
    }

    fn read_content(&self, sha256: &str, offset: u64, len: usize) -> Result<Vec<u8>, StoreError> {
        media(
            self.files.read_content(sha256, offset, len),
            "media content",
        )
    }

    // Collections.

    fn upsert(
        &self,
        key: &CollectionKey,
        params: CollectionParams,
        items: Vec<NewItem>,
    ) -> Result<UpsertOutcome, StoreError> {
        Ok(self.index.upsert(key, params, items)?)
    }

    fn delete_where(
        &self,
        key: &CollectionKey,
        ids: Option<Vec<String>>,
        filter: Option<Filter>,
    ) -> Result<DeleteOutcome, StoreError> {
        Ok(self.index.delete_where(key, ids, filter)?)
    }

    fn drop_collection(&self, key: &CollectionKey) -> Result<bool, StoreError> {
        Ok(self.index.drop_collection(key)?)
    }

    fn record(&self, key: &CollectionKey) -> Result<Option<CollectionRecord>, StoreError> {
        Ok(self.index.record(key)?)
    }

    fn collections(&self) -> Result<Vec<CollectionRecord>, StoreError> {
        Ok(self.index.collections()?)
    }

    fn get(
        &self,
        key: &CollectionKey,
        id: &str,
    ) -> Result<Option<(ItemRecord, Vec<f32>)>, StoreError> {
        Ok(self.index.get(key, id)?)
    }

    fn export_items(
        &self,
        key: &CollectionKey,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<StoredItem>, StoreError> {
        Ok(self.index.export(key, after, limit)?)
    }

    fn import_items(
        &self,
        key: &CollectionKey,
        params: CollectionParams,
        items: Vec<StoredItem>,
    ) -> Result<UpsertOutcome, StoreError> {
        Ok(self.index.import(key, params, items)?)
    }

    fn sample_vectors(
        &self,
        key: &CollectionKey,
        n: usize,
        seed: u64,
    ) -> Result<Vec<Vec<f32>>, StoreError> {
        Ok(self.index.sample_vectors(key, n, seed)?)
    }

    fn list_items(
        &self,
        key: &CollectionKey,
        after: Option<&str>,
        limit: usize,
        filter: Option<&Filter>,
    ) -> Result<Vec<ItemRecord>, StoreError> {
        Ok(self.index.list_items(key, after, limit, filter)?)
    }

    fn count_matching(
        &self,
        key: &CollectionKey,
        filter: &Filter,
    ) -> Result<Option<u64>, StoreError> {
        Ok(self.index.count_matching(key, filter)?)
    }

    fn search(
        &self,
        key: &CollectionKey,
        query: &[f32],
        options: SearchOptions,
    ) -> Result<SearchOutcome, StoreError> {
        Ok(self.index.search(key, query, options)?)
    }
}

/// A media file operation's outcome, its failure the embedded store's.
pub(crate) fn media<T>(
    outcome: std::io::Result<T>,
    context: &'static str,
) -> Result<T, StoreError> {
    outcome.map_err(|source| Error::Media { context, source }.into())
}
