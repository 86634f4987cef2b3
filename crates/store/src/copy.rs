//! Copying everything one store holds into another, through the [`Store`] trait alone, so
//! any store can be copied into any other (`aimp store copy`): API keys, media records with
//! the bytes they name, and every collection with its parameters and items (vectors,
//! metadata and times kept).
//!
//! A copy is resumable by design rather than by bookkeeping: every step compares what the
//! destination holds with what the source holds and writes only the difference, so running
//! it again after an interruption skips what is there and finishes the rest. It refuses a
//! destination that holds anything the source does not (a key, a collection, an item, a
//! collection with other parameters): it fills an empty store, or finishes an earlier copy
//! of the same one, and never overwrites someone else's data. It ends by checking the
//! counts of both sides.
//!
//! The source is read through one [`StoreView`]: the copy holds the source as it was when the
//! copy started, whatever is written to it meanwhile (a write that lands later is brought
//! over by the next run).

use std::ops::ControlFlow;

use sha2::{Digest, Sha256};

use crate::{
    ApiKeyRecord, CollectionKey, CollectionRecord, MediaPages, MediaRecord, Store, StoreError,
    StoreView,
};

/// Items per page read and per transaction written.
pub const DEFAULT_BATCH: usize = 512;
/// Media bytes per read and append.
const CHUNK: usize = 1 << 20;
/// Media records per page.
const MEDIA_PAGE: usize = 256;

/// Which side of a copy something happened on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Source,
    Destination,
}

impl std::fmt::Display for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Side::Source => "the source",
            Side::Destination => "the destination",
        })
    }
}

/// Why a copy stopped. Whatever it had written stays, and running it again resumes.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("{side} store failed while copying {what}")]
    Store {
        side: Side,
        what: String,
        #[source]
        source: StoreError,
    },
    /// The destination holds something the source does not: it is not empty, nor an
    /// earlier copy of this source.
    #[error(
        "the destination holds {what}, which the source does not ({reason}); copy into an \
         empty store or finish an earlier copy of this same source"
    )]
    Conflict { what: String, reason: String },
    /// Bytes read from the source are not what their record says.
    #[error("media content {sha256} read from the source has SHA-256 {actual}; not copied")]
    Damaged { sha256: String, actual: String },
    /// The count check at the end found the two sides apart.
    #[error(
        "after the copy, {what}: the source holds {source_count}, the destination {destination_count}"
    )]
    Mismatch {
        what: String,
        source_count: u64,
        destination_count: u64,
    },
    /// The progress callback asked to stop; running the copy again resumes.
    #[error("stopped before the end; run the copy again to resume")]
    Interrupted,
}

/// What a copy is doing, reported after each step.
#[derive(Clone, Debug, PartialEq)]
pub struct Progress {
    /// `keys`, `media`, or the collection's `workspace/model/collection/scope`.
    pub stage: String,
    /// Records of this stage looked at so far, and how many the source holds.
    pub done: u64,
    pub total: u64,
    /// Of those, the ones written now (the rest were there already).
    pub written: u64,
}

/// How much of one kind of record a copy looked at and how much it wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub seen: u64,
    pub written: u64,
}

/// What a finished copy did; the counts of both sides agreed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CopyReport {
    pub keys: Counts,
    pub media: Counts,
    /// Distinct media contents copied now, and their bytes.
    pub contents: Counts,
    pub content_bytes: u64,
    pub collections: Vec<(CollectionKey, Counts)>,
}

impl CopyReport {
    /// Items looked at and written, over every collection.
    pub fn items(&self) -> Counts {
        self.collections
            .iter()
            .fold(Counts::default(), |a, (_, c)| Counts {
                seen: a.seen + c.seen,
                written: a.written + c.written,
            })
    }
}

/// Copies everything `from` holds into `to`, `batch` items a transaction, telling `progress`
/// after each step; it stops with [`CopyError::Interrupted`] when `progress` breaks.
pub fn copy(
    from: &dyn Store,
    to: &dyn Store,
    batch: usize,
    progress: &mut dyn FnMut(&Progress) -> ControlFlow<()>,
) -> Result<CopyReport, CopyError> {
    let view = from.view().map_err(source("a view of the store"))?;
    let mut copier = Copier {
        from: view,
        to,
        batch: batch.max(1),
        progress,
        report: CopyReport::default(),
    };
    let collections = copier.check_destination()?;
    copier.keys()?;
    copier.media()?;
    for record in &collections {
        copier.collection(record)?;
    }
    copier.verify(&collections)?;
    Ok(copier.report)
}

struct Copier<'a> {
    /// The source, at the instant the copy started.
    from: Box<dyn StoreView + 'a>,
    to: &'a dyn Store,
    batch: usize,
    progress: &'a mut dyn FnMut(&Progress) -> ControlFlow<()>,
    report: CopyReport,
}

/// A source failure, naming what was being copied.
fn source(what: impl Into<String>) -> impl FnOnce(StoreError) -> CopyError {
    let what = what.into();
    move |source| CopyError::Store {
        side: Side::Source,
        what,
        source,
    }
}

/// A destination failure, naming what was being copied.
fn destination(what: impl Into<String>) -> impl FnOnce(StoreError) -> CopyError {
    let what = what.into();
    move |source| CopyError::Store {
        side: Side::Destination,
        what,
        source,
    }
}

impl Copier<'_> {
    fn tell(&mut self, stage: &str, done: u64, total: u64, written: u64) -> Result<(), CopyError> {
        let p = Progress {
            stage: stage.to_string(),
            done,
            total,
            written,
        };
        match (self.progress)(&p) {
            ControlFlow::Continue(()) => Ok(()),
            ControlFlow::Break(()) => Err(CopyError::Interrupted),
        }
    }

    /// The source's collections, once the destination is known to hold none the source does
    /// not and no key of another id; collections both hold must have the same parameters.
    fn check_destination(&mut self) -> Result<Vec<CollectionRecord>, CopyError> {
        let ours = self.from.collections().map_err(source("the collections"))?;
        let theirs = self
            .to
            .collections()
            .map_err(destination("the collections"))?;
        for there in &theirs {
            match ours.iter().find(|c| c.key == there.key) {
                None => {
                    return Err(CopyError::Conflict {
                        what: format!("collection {}", there.key),
                        reason: "no collection of that name in the source".into(),
                    });
                }
                Some(here) if here.params != there.params => {
                    return Err(CopyError::Conflict {
                        what: format!("collection {}", there.key),
                        reason: format!(
                            "made with other parameters: {:?} in the source, {:?} there",
                            here.params, there.params
                        ),
                    });
                }
                Some(_) => {}
            }
        }
        let keys = self.from.list_keys().map_err(source("the API keys"))?;
        for there in self.to.list_keys().map_err(destination("the API keys"))? {
            if !keys
                .iter()
                .any(|k| k.id == there.id && k.hash == there.hash)
            {
                return Err(CopyError::Conflict {
                    what: format!("API key {}", there.id),
                    reason: "no key with that id and secret in the source".into(),
                });
            }
        }
        Ok(ours)
    }

    fn keys(&mut self) -> Result<(), CopyError> {
        let keys = self.from.list_keys().map_err(source("the API keys"))?;
        let total = keys.len() as u64;
        for key in keys {
            let what = format!("API key {}", key.id);
            let written = match self.to.get_key(&key.id) {
                Err(StoreError::KeyNotFound { .. }) => {
                    match self.to.insert_key(&key) {
                        Err(StoreError::KeyExists { id }) => {
                            return Err(CopyError::Conflict {
                                what: format!("API key {id}"),
                                reason: format!("it has the secret of the source's key {}", key.id),
                            });
                        }
                        other => other.map_err(destination(what))?,
                    }
                    true
                }
                Ok(there) => self.reconcile_key(&key, &there)?,
                Err(e) => return Err(destination(what)(e)),
            };
            self.report.keys.seen += 1;
            self.report.keys.written += u64::from(written);
        }
        let c = self.report.keys;
        self.tell("keys", c.seen, total, c.written)
    }

    /// Brings a key the destination has (an earlier copy's) up to the source's record:
    /// renamed, used or revoked since. Whether anything changed.
    fn reconcile_key(&self, key: &ApiKeyRecord, there: &ApiKeyRecord) -> Result<bool, CopyError> {
        if key == there {
            return Ok(false);
        }
        let what = || format!("API key {}", key.id);
        if key.hash != there.hash || key.workspace != there.workspace {
            return Err(CopyError::Conflict {
                what: what(),
                reason: "another secret or workspace under the same id".into(),
            });
        }
        if key.name != there.name {
            self.to
                .rename_key(&key.id, &key.name)
                .map_err(destination(what()))?;
        }
        if let Some(at) = key
            .last_used_at
            .filter(|at| Some(*at) != there.last_used_at)
        {
            self.to
                .touch_key(&key.id, at)
                .map_err(destination(what()))?;
        }
        match (key.revoked_at, there.revoked_at) {
            (Some(at), None) => {
                self.to
                    .revoke_key(&key.id, at)
                    .map_err(destination(what()))?;
            }
            (None, Some(_)) => {
                return Err(CopyError::Conflict {
                    what: what(),
                    reason: "revoked there, live in the source".into(),
                });
            }
            _ => {}
        }
        let now = self.to.get_key(&key.id).map_err(destination(what()))?;
        if now != *key {
            return Err(CopyError::Conflict {
                what: what(),
                reason: format!("its record cannot be brought to the source's: {now:?}"),
            });
        }
        Ok(true)
    }

    fn media(&mut self) -> Result<(), CopyError> {
        let mut pages = MediaPages::default();
        while let Some(page) = pages
            .next(|after| self.from.list_media(after, MEDIA_PAGE))
            .map_err(source("the media records"))?
        {
            for record in page {
                let written = self.medium(&record)?;
                self.report.media.seen += 1;
                self.report.media.written += u64::from(written);
            }
            let c = self.report.media;
            // The total is not known before the end: a listing has no count.
            self.tell("media", c.seen, c.seen, c.written)?;
        }
        Ok(())
    }

    /// One media record and the content it names; whether anything was written.
    fn medium(&mut self, record: &MediaRecord) -> Result<bool, CopyError> {
        let what = format!("media {}", record.media_ref);
        let there = self
            .to
            .get_media(&record.media_ref)
            .map_err(destination(what.clone()))?;
        if there.as_ref() == Some(record) {
            return Ok(false);
        }
        if let Some(there) = there.filter(|t| t.workspace != record.workspace) {
            return Err(CopyError::Conflict {
                what,
                reason: format!(
                    "it belongs to workspace {:?} there and {:?} in the source",
                    there.workspace, record.workspace
                ),
            });
        }
        self.content(&record.sha256)?;
        self.to.import_media(record).map_err(destination(what))?;
        Ok(true)
    }

    /// Makes the destination hold content `sha256` as the source does, streamed in chunks and
    /// checked against its name before it is committed.
    fn content(&mut self, sha256: &str) -> Result<(), CopyError> {
        let what = format!("media content {sha256}");
        let Some(len) = self
            .from
            .content_len(sha256)
            .map_err(source(what.clone()))?
        else {
            return Err(CopyError::Store {
                side: Side::Source,
                what: what.clone(),
                source: StoreError::CommitFailed {
                    reason: "a media record names content the source does not hold".into(),
                },
            });
        };
        if self
            .to
            .content_len(sha256)
            .map_err(destination(what.clone()))?
            == Some(len)
        {
            return Ok(());
        }
        // A part of its own: no upload id is ever this.
        let part = format!("copy-{sha256}");
        self.to
            .begin_part(&part)
            .map_err(destination(what.clone()))?;
        let mut hash = Sha256::new();
        let mut offset = 0u64;
        while offset < len {
            let chunk = self
                .from
                .read_content(sha256, offset, CHUNK)
                .map_err(source(what.clone()))?;
            if chunk.is_empty() {
                break;
            }
            hash.update(&chunk);
            self.to
                .append_part(&part, &chunk)
                .map_err(destination(what.clone()))?;
            offset += chunk.len() as u64;
        }
        let actual: String = hash.finalize().iter().map(|b| format!("{b:02x}")).collect();
        if actual != sha256 || offset != len {
            let _ = self.to.remove_part(&part);
            return Err(CopyError::Damaged {
                sha256: sha256.to_string(),
                actual,
            });
        }
        self.to
            .commit_content(&part, sha256)
            .map_err(destination(what))?;
        self.report.contents.seen += 1;
        self.report.contents.written += 1;
        self.report.content_bytes += len;
        Ok(())
    }

    /// One collection, page by page in id order: the items the destination lacks or holds
    /// otherwise are written, one transaction a page.
    fn collection(&mut self, record: &CollectionRecord) -> Result<(), CopyError> {
        let key = &record.key;
        let stage = key.to_string();
        let what = format!("collection {key}");
        let mut counts = Counts::default();
        let made = self
            .to
            .record(key)
            .map_err(destination(what.clone()))?
            .is_some();
        if !made {
            // An empty collection is copied too, with its parameters.
            self.to
                .import_items(key, record.params, Vec::new())
                .map_err(destination(what.clone()))?;
        }
        let mut after: Option<String> = None;
        loop {
            let page = self
                .from
                .export_items(key, after.as_deref(), self.batch)
                .map_err(source(what.clone()))?;
            let Some(last) = page.last() else { break };
            let last = last.record.id.clone();
            let there = self
                .to
                .export_items(key, after.as_deref(), self.batch)
                .map_err(destination(what.clone()))?;
            let mut there: std::collections::HashMap<String, crate::StoredItem> = there
                .into_iter()
                .filter(|i| i.record.id <= last)
                .map(|i| (i.record.id.clone(), i))
                .collect();
            counts.seen += page.len() as u64;
            let mut missing = Vec::new();
            for item in page {
                match there.remove(&item.record.id) {
                    Some(same) if same == item => {}
                    _ => missing.push(item),
                }
            }
            if let Some(extra) = there.keys().min() {
                return Err(CopyError::Conflict {
                    what: format!("item {extra:?} of collection {key}"),
                    reason: "no item of that id in the source's collection".into(),
                });
            }
            if !missing.is_empty() {
                counts.written += missing.len() as u64;
                self.to
                    .import_items(key, record.params, missing)
                    .map_err(destination(what.clone()))?;
            }
            after = Some(last);
            self.tell(&stage, counts.seen, record.count, counts.written)?;
        }
        self.report.collections.push((key.clone(), counts));
        Ok(())
    }

    /// Both sides hold as many keys, media records and items of each collection, and the
    /// destination every content a record names.
    fn verify(&mut self, collections: &[CollectionRecord]) -> Result<(), CopyError> {
        let mismatch = |what: String, source_count: u64, destination_count: u64| {
            if source_count == destination_count {
                Ok(())
            } else {
                Err(CopyError::Mismatch {
                    what,
                    source_count,
                    destination_count,
                })
            }
        };
        // The source's side is what the copy read from its view: one instant, read whole.
        mismatch(
            "API keys".into(),
            self.report.keys.seen,
            self.to
                .list_keys()
                .map_err(destination("the API keys"))?
                .len() as u64,
        )?;
        let (theirs, unstored) = media_count(self.to).map_err(destination("the media records"))?;
        mismatch("media records".into(), self.report.media.seen, theirs)?;
        mismatch("media records without their content".into(), 0, unstored)?;
        for record in collections {
            let what = format!("items of collection {}", record.key);
            let theirs = self
                .to
                .record(&record.key)
                .map_err(destination(what.clone()))?
                .map_or(0, |r| r.count);
            mismatch(what, record.count, theirs)?;
        }
        mismatch(
            "collections".into(),
            collections.len() as u64,
            self.to
                .collections()
                .map_err(destination("the collections"))?
                .len() as u64,
        )
    }
}

/// How many media records `store` holds, and how many of them name content it lacks.
fn media_count(store: &dyn Store) -> Result<(u64, u64), StoreError> {
    let (mut count, mut unstored) = (0, 0);
    let mut pages = MediaPages::default();
    while let Some(page) = pages.next(|after| store.list_media(after, MEDIA_PAGE))? {
        for record in &page {
            count += 1;
            if store.content_len(&record.sha256)? != Some(record.size_bytes) {
                unstored += 1;
            }
        }
    }
    Ok((count, unstored))
}
