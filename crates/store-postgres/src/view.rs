//! [`PostgresView`]: a connection of its own (not the pool's, so no half-finished transaction
//! can ever go back to the pool) holding one `REPEATABLE READ READ ONLY` transaction: every read
//! sees the database as it was at the transaction's first statement, media bytes included,
//! while writes go on. Closing the connection ends the transaction.

use aimp_store::{
    ApiKeyRecord, CollectionKey, CollectionRecord, MediaRecord, StoreError, StoreView, StoredItem,
};
use postgres::{Client, NoTls};

use crate::error::Result;

pub(crate) struct PostgresView {
    client: Client,
}

impl PostgresView {
    pub(crate) fn open(config: &postgres::Config) -> Result<PostgresView> {
        let mut client = config.connect(NoTls)?;
        // The snapshot is taken at the first statement after BEGIN: one read that every later
        // read shares.
        client.batch_execute(
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SELECT 1 FROM aimp_schema LIMIT 1",
        )?;
        Ok(PostgresView { client })
    }
}

impl StoreView for PostgresView {
    fn list_keys(&mut self) -> Result<Vec<ApiKeyRecord>, StoreError> {
        Ok(crate::keys::list(&mut self.client)?)
    }

    fn list_media(
        &mut self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<MediaRecord>, StoreError> {
        Ok(crate::uploads::list_media(&mut self.client, after, limit)?)
    }

    fn content_len(&mut self, sha256: &str) -> Result<Option<u64>, StoreError> {
        Ok(crate::media::content_len(&mut self.client, sha256)?)
    }

    fn read_content(
        &mut self,
        sha256: &str,
        offset: u64,
        len: usize,
    ) -> Result<Vec<u8>, StoreError> {
        Ok(crate::media::read_content(
            &mut self.client,
            sha256,
            offset,
            len,
        )?)
    }

    fn collections(&mut self) -> Result<Vec<CollectionRecord>, StoreError> {
        Ok(crate::collections::all(&mut self.client)?)
    }

    fn export_items(
        &mut self,
        key: &CollectionKey,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<StoredItem>, StoreError> {
        Ok(crate::collections::export(
            &mut self.client,
            key,
            after,
            limit,
        )?)
    }
}
