//! [`PostgresStore`]: a bounded pool of connections to one database (or to whichever host of
//! a multi-host URL accepts writes), the schema checked when it opens.

use std::time::Duration;

use aimp_store::{
    ApiKeyRecord, CollectionKey, CollectionParams, CollectionRecord, DeleteOutcome, Filter,
    ItemRecord, KeyHash, MediaRecord, NewItem, SearchOptions, SearchOutcome, Store, StoreError,
    StoreView, StoredItem, Transition, UploadRecord, UploadState, UpsertOutcome,
};
use chrono::{DateTime, Utc};
use postgres::NoTls;
use r2d2_postgres::PostgresConnectionManager;

use crate::error::{Error, Result};

pub(crate) type Pool = r2d2::Pool<PostgresConnectionManager<NoTls>>;
pub(crate) type Connection = r2d2::PooledConnection<PostgresConnectionManager<NoTls>>;

/// How many connections a gateway holds, and how long it waits for one.
#[derive(Clone, Copy, Debug)]
pub struct PoolOptions {
    /// Most connections open at once.
    pub max_connections: u32,
    /// Longest a request waits for a free connection, or for a new one to open, before it is
    /// answered that the store cannot be reached (503 with `Retry-After`).
    pub wait: Duration,
}

impl Default for PoolOptions {
    fn default() -> Self {
        PoolOptions {
            max_connections: 16,
            wait: Duration::from_secs(5),
        }
    }
}

/// The store on a PostgreSQL database.
pub struct PostgresStore {
    /// Always `Some` but in `drop`.
    pool: Option<Pool>,
    /// What the pool connects with; a view opens a connection of its own with it.
    config: postgres::Config,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.pool().state();
        f.debug_struct("PostgresStore")
            .field("connections", &state.connections)
            .field("idle", &state.idle_connections)
            .finish()
    }
}

impl PostgresStore {
    /// Connects to `url` (`postgres://user@host:port/db`, several hosts allowed, with
    /// `target_session_attrs=read-write` to follow the primary) and brings its schema to this
    /// build's version. The database must be reachable now: a gateway does not start on one
    /// it has never seen.
    pub fn open(url: &str, options: PoolOptions) -> Result<PostgresStore, StoreError> {
        Ok(PostgresStore::connect(url, options)?)
    }

    fn connect(url: &str, options: PoolOptions) -> Result<PostgresStore> {
        let mut config: postgres::Config = url.parse().map_err(Error::Url)?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(options.wait);
        }
        config.keepalives(true);
        config.keepalives_idle(Duration::from_secs(10));
        config.application_name("aimp");
        let manager = PostgresConnectionManager::new(config.clone(), NoTls);
        let pool = r2d2::Pool::builder()
            .max_size(options.max_connections)
            .min_idle(Some(0))
            .connection_timeout(options.wait)
            .test_on_check_out(true)
            // A failed connection reaches the caller as `StoreError::Unavailable`, logged there.
            .error_handler(Box::new(r2d2::NopErrorHandler))
            .build_unchecked(manager);
        let store = PostgresStore {
            pool: Some(pool),
            config,
        };
        crate::schema::migrate(&mut *store.connection()?)?;
        Ok(store)
    }

    fn pool(&self) -> &Pool {
        self.pool.as_ref().expect("the pool lives until drop")
    }

    pub(crate) fn connection(&self) -> Result<Connection> {
        Ok(self.pool().get()?)
    }
}

impl Drop for PostgresStore {
    /// Closing a connection blocks on the client's own runtime, which tokio refuses on its
    /// async threads, and the last handle on the store may go there: the pool is closed on a
    /// thread of its own.
    fn drop(&mut self) {
        if let Some(pool) = self.pool.take() {
            if tokio::runtime::Handle::try_current().is_ok() {
                let _ = std::thread::Builder::new()
                    .name("aimp-pg-close".into())
                    .spawn(move || drop(pool));
            } else {
                drop(pool);
            }
        }
    }
}

impl Store for PostgresStore {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    fn is_ready(&self) -> bool {
        self.connection()
            .and_then(|mut c| Ok(c.simple_query("SELECT 1")?))
            .is_ok()
    }

    fn view(&self) -> Result<Box<dyn StoreView + '_>, StoreError> {
        Ok(Box::new(crate::view::PostgresView::open(&self.config)?))
    }

    fn checkpoint(&self) -> Result<usize, StoreError> {
        Ok(0) // the database keeps its own indexes
    }

    fn insert_key(&self, record: &ApiKeyRecord) -> Result<(), StoreError> {
        Ok(crate::keys::insert(&mut *self.connection()?, record)?)
    }

    fn find_key_by_hash(&self, hash: &KeyHash) -> Result<Option<ApiKeyRecord>, StoreError> {
        Ok(crate::keys::find_by_hash(&mut *self.connection()?, hash)?)
    }

    fn get_key(&self, id: &str) -> Result<ApiKeyRecord, StoreError> {
        Ok(crate::keys::get(&mut *self.connection()?, id)?)
    }

    fn list_keys(&self) -> Result<Vec<ApiKeyRecord>, StoreError> {
        Ok(crate::keys::list(&mut *self.connection()?)?)
    }

    fn rename_key(&self, id: &str, name: &str) -> Result<ApiKeyRecord, StoreError> {
        let name = name.to_string();
        Ok(crate::keys::update(&mut *self.connection()?, id, |r| {
            r.name = name
        })?)
    }

    fn revoke_key(&self, id: &str, at: DateTime<Utc>) -> Result<ApiKeyRecord, StoreError> {
        Ok(crate::keys::update(&mut *self.connection()?, id, |r| {
            r.revoked_at = r.revoked_at.or(Some(at))
        })?)
    }

    fn touch_key(&self, id: &str, at: DateTime<Utc>) -> Result<ApiKeyRecord, StoreError> {
        Ok(crate::keys::update(&mut *self.connection()?, id, |r| {
            r.last_used_at = Some(at)
        })?)
    }

    fn insert_upload(&self, record: &UploadRecord) -> Result<(), StoreError> {
        Ok(crate::uploads::insert(&mut *self.connection()?, record)?)
    }

    fn get_upload(&self, id: &str) -> Result<Option<UploadRecord>, StoreError> {
        Ok(crate::uploads::get(&mut *self.connection()?, id)?)
    }

    fn transition_upload(
        &self,
        id: &str,
        from: &dyn Fn(&UploadState) -> bool,
        to: UploadState,
    ) -> Result<Transition, StoreError> {
        Ok(crate::uploads::transition(
            &mut *self.connection()?,
            id,
            from,
            to,
        )?)
    }

    fn complete_upload(
        &self,
        id: &str,
        media: &MediaRecord,
    ) -> Result<Transition<MediaRecord, UploadRecord>, StoreError> {
        Ok(crate::uploads::complete(
            &mut *self.connection()?,
            id,
            media,
        )?)
    }

    fn stale_uploads(
        &self,
        now: DateTime<Utc>,
        keep_completed: chrono::Duration,
    ) -> Result<Vec<UploadRecord>, StoreError> {
        Ok(crate::uploads::stale(
            &mut *self.connection()?,
            now,
            keep_completed,
        )?)
    }

    fn remove_upload(&self, id: &str) -> Result<(), StoreError> {
        Ok(crate::uploads::remove(&mut *self.connection()?, id)?)
    }

    fn get_media(&self, media_ref: &str) -> Result<Option<MediaRecord>, StoreError> {
        Ok(crate::uploads::media(&mut *self.connection()?, media_ref)?)
    }

    fn list_media(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<MediaRecord>, StoreError> {
        Ok(crate::uploads::list_media(
            &mut *self.connection()?,
            after,
            limit,
        )?)
    }

    fn import_media(&self, record: &MediaRecord) -> Result<(), StoreError> {
        Ok(crate::uploads::put_media(&mut *self.connection()?, record)?)
    }

    fn upload_secret(&self) -> Result<[u8; 32], StoreError> {
        Ok(crate::media::upload_secret(&mut *self.connection()?)?)
    }

    fn begin_part(&self, upload_id: &str) -> Result<(), StoreError> {
        Ok(crate::media::drop_part(
            &mut *self.connection()?,
            upload_id,
        )?)
    }

    fn append_part(&self, upload_id: &str, bytes: &[u8]) -> Result<(), StoreError> {
        Ok(crate::media::append_part(
            &mut *self.connection()?,
            upload_id,
            bytes,
        )?)
    }

    fn read_part(&self, upload_id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(crate::media::read_part(
            &mut *self.connection()?,
            upload_id,
        )?)
    }

    fn commit_content(&self, upload_id: &str, sha256: &str) -> Result<(), StoreError> {
        Ok(crate::media::commit_content(
            &mut *self.connection()?,
            upload_id,
            sha256,
        )?)
    }

    fn remove_part(&self, upload_id: &str) -> Result<(), StoreError> {
        Ok(crate::media::drop_part(
            &mut *self.connection()?,
            upload_id,
        )?)
    }

    fn part_ids(&self) -> Result<Vec<String>, StoreError> {
        Ok(crate::media::part_ids(&mut *self.connection()?)?)
    }

    fn content_len(&self, sha256: &str) -> Result<Option<u64>, StoreError> {
        Ok(crate::media::content_len(&mut *self.connection()?, sha256)?)
    }

    fn read_content(&self, sha256: &str, offset: u64, len: usize) -> Result<Vec<u8>, StoreError> {
        Ok(crate::media::read_content(
            &mut *self.connection()?,
            sha256,
            offset,
            len,
        )?)
    }

    fn upsert(
        &self,
        key: &CollectionKey,
        params: CollectionParams,
        items: Vec<NewItem>,
    ) -> Result<UpsertOutcome, StoreError> {
        aimp_store::check_items(&params, &items)?;
        Ok(crate::collections::upsert(
            &mut *self.connection()?,
            key,
            &params,
            items,
        )?)
    }

    fn delete_where(
        &self,
        key: &CollectionKey,
        ids: Option<Vec<String>>,
        filter: Option<Filter>,
    ) -> Result<DeleteOutcome, StoreError> {
        Ok(crate::collections::delete_where(
            &mut *self.connection()?,
            key,
            ids,
            filter.as_ref(),
        )?)
    }

    fn drop_collection(&self, key: &CollectionKey) -> Result<bool, StoreError> {
        Ok(crate::collections::drop(&mut *self.connection()?, key)?)
    }

    fn record(&self, key: &CollectionKey) -> Result<Option<CollectionRecord>, StoreError> {
        Ok(crate::collections::record(&mut *self.connection()?, key)?)
    }

    fn collections(&self) -> Result<Vec<CollectionRecord>, StoreError> {
        Ok(crate::collections::all(&mut *self.connection()?)?)
    }

    fn get(
        &self,
        key: &CollectionKey,
        id: &str,
    ) -> Result<Option<(ItemRecord, Vec<f32>)>, StoreError> {
        Ok(crate::collections::get(&mut *self.connection()?, key, id)?)
    }

    fn export_items(
        &self,
        key: &CollectionKey,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<StoredItem>, StoreError> {
        Ok(crate::collections::export(
            &mut *self.connection()?,
            key,
            after,
            limit,
        )?)
    }

    fn import_items(
        &self,
        key: &CollectionKey,
        params: CollectionParams,
        items: Vec<StoredItem>,
    ) -> Result<UpsertOutcome, StoreError> {
        let items = StoredItem::checked(&params, items)?;
        Ok(crate::collections::import(
            &mut *self.connection()?,
            key,
            &params,
            items,
        )?)
    }

    fn sample_vectors(
        &self,
        key: &CollectionKey,
        n: usize,
        seed: u64,
    ) -> Result<Vec<Vec<f32>>, StoreError> {
        Ok(crate::collections::sample(
            &mut *self.connection()?,
            key,
            n,
            seed,
        )?)
    }

    fn list_items(
        &self,
        key: &CollectionKey,
        after: Option<&str>,
        limit: usize,
        filter: Option<&Filter>,
    ) -> Result<Vec<ItemRecord>, StoreError> {
        Ok(crate::collections::list(
            &mut *self.connection()?,
            key,
            after,
            limit,
            filter,
        )?)
    }

    fn count_matching(
        &self,
        key: &CollectionKey,
        filter: &Filter,
    ) -> Result<Option<u64>, StoreError> {
        Ok(crate::collections::count_matching(
            &mut *self.connection()?,
            key,
            filter,
        )?)
    }

    fn search(
        &self,
        key: &CollectionKey,
        query: &[f32],
        options: SearchOptions,
    ) -> Result<SearchOutcome, StoreError> {
        Ok(crate::collections::search(
            &mut *self.connection()?,
            key,
            query,
            &options,
        )?)
    }
}
