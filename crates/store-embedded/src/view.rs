//! [`EmbeddedView`]: one redb read transaction (a snapshot of every table, kept while writes
//! commit beside it), and the media folder. Content files are named by their hash and never
//! removed, so the content a record names at the view's instant stays readable.

use aimp_store::{
    ApiKeyRecord, CollectionKey, CollectionRecord, MediaRecord, StoreError, StoreView, StoredItem,
};
use redb::ReadTransaction;

use crate::embedded::media;
use crate::media_files::MediaFiles;

pub(crate) struct EmbeddedView<'a> {
    pub(crate) txn: ReadTransaction,
    pub(crate) files: &'a MediaFiles,
}

impl StoreView for EmbeddedView<'_> {
    fn list_keys(&mut self) -> Result<Vec<ApiKeyRecord>, StoreError> {
        Ok(crate::keys::list_in(&self.txn)?)
    }

    fn list_media(
        &mut self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<MediaRecord>, StoreError> {
        Ok(crate::media::list_media_in(&self.txn, after, limit)?)
    }

    fn content_len(&mut self, sha256: &str) -> Result<Option<u64>, StoreError> {
        media(self.files.content_len(sha256), "media content")
    }

    fn read_content(
        &mut self,
        sha256: &str,
        offset: u64,
        len: usize,
    ) -> Result<Vec<u8>, StoreError> {
        media(
            self.files.read_content(sha256, offset, len),
            "media content",
        )
    }

    fn collections(&mut self) -> Result<Vec<CollectionRecord>, StoreError> {
        Ok(crate::collection::all(&self.txn)?)
    }

    fn export_items(
        &mut self,
        key: &CollectionKey,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<StoredItem>, StoreError> {
        Ok(crate::vectors::export_in(&self.txn, key, after, limit)?)
    }
}
