//! Snapshot archives: everything a [`StoreView`] holds (one instant of a store) as one tar,
//! and that tar verified and restored into a store.
//!
//! The tar holds, under `aimp-snapshot/`, in this order:
//! - `keys.jsonl`: every API key record (hashes only; keys are never stored);
//! - `content/<sha256>`: each media content once, as stored;
//! - `media.jsonl`: every media record;
//! - `collections/<n>/collection.json`: a collection's key, parameters, count and times;
//! - `collections/<n>/items-<k>.jsonl`: its items' records, [`ITEMS_PER_MEMBER`] a member,
//!   in id order, each followed by `vectors-<k>.f32`: their vectors in the same order, `dim`
//!   little-endian `f32`s each (binary, so an archive is not larger than the data);
//! - `manifest.json`, last: the format version, the writing aimp version, when, the counts
//!   and dimensions of every collection, and the size and SHA-256 of every other member.
//!
//! Derived data (graphs, payload counts, thumbnails) is left out: a restore rebuilds it.
//! Reading verifies before anything is written: every member's path stays inside the
//! archive's folder and is a plain file, every member the manifest lists is there with its
//! size and SHA-256 and nothing else is, and the manifest's format is one this build reads.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::path::{Component, Path};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{
    ApiKeyRecord, CollectionKey, CollectionParams, MediaPages, MediaRecord, Store, StoreError,
    StoreView, StoredItem,
};

/// The archive format this build writes; it reads this one and every older one.
pub const FORMAT_VERSION: u32 = 1;
/// The folder every member lives in.
const ROOT: &str = "aimp-snapshot";
/// Items per `items-<k>.jsonl` member: bounded, so no member is held whole beyond that.
pub const ITEMS_PER_MEMBER: usize = 2_000;
/// Bytes per read of media content.
const CHUNK: usize = 1 << 20;

/// What an archive says of itself: its last member.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    /// The aimp that wrote it.
    pub aimp_version: String,
    pub created_at: DateTime<Utc>,
    pub keys: u64,
    pub media: u64,
    pub contents: u64,
    pub collections: Vec<CollectionEntry>,
    /// Every member but the manifest, in archive order.
    pub members: Vec<Member>,
}

/// One collection as the manifest records it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CollectionEntry {
    pub key: CollectionKey,
    pub params: CollectionParams,
    pub dim: usize,
    pub count: u64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One member: its path, size and SHA-256 (lowercase hex).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Member {
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

/// Why an archive could not be written, read or restored.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("the store failed while {what}")]
    Store {
        what: String,
        #[source]
        source: StoreError,
    },
    #[error("the archive could not be {what}")]
    Io {
        what: &'static str,
        #[source]
        source: io::Error,
    },
    /// The archive is not what its manifest says: the member and why.
    #[error("archive member {member}: {reason}")]
    Damaged { member: String, reason: String },
    #[error(
        "the archive is in snapshot format {archive}, newer than this build's {build}; restore \
         it with a newer aimp"
    )]
    NewerFormat { archive: u32, build: u32 },
    /// A restore goes into an empty store only.
    #[error("the store restored into is not empty: it holds {what}")]
    NotEmpty { what: String },
}

fn store(what: impl Into<String>) -> impl FnOnce(StoreError) -> SnapshotError {
    let what = what.into();
    move |source| SnapshotError::Store { what, source }
}

fn io_err(what: &'static str) -> impl FnOnce(io::Error) -> SnapshotError {
    move |source| SnapshotError::Io { what, source }
}

fn damaged(member: &str, reason: impl Into<String>) -> SnapshotError {
    SnapshotError::Damaged {
        member: member.to_string(),
        reason: reason.into(),
    }
}

fn hex(digest: impl AsRef<[u8]>) -> String {
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// A writer that hashes what passes through it.
struct Hashing<W> {
    inner: W,
    hash: Sha256,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Writes the archive of `view` to `out`; its manifest and the archive's own SHA-256.
pub fn write(
    view: &mut dyn StoreView,
    out: &mut dyn Write,
    aimp_version: &str,
) -> Result<(Manifest, String), SnapshotError> {
    let mut tar = tar::Builder::new(Hashing {
        inner: out,
        hash: Sha256::new(),
    });
    let mut members = Vec::new();
    let keys = view.list_keys().map_err(store("reading the API keys"))?;
    add(
        &mut tar,
        &mut members,
        format!("{ROOT}/keys.jsonl"),
        &jsonl(&keys),
    )?;

    // Every media record, then each content they name, once.
    let mut media: Vec<MediaRecord> = Vec::new();
    let mut pages = MediaPages::default();
    while let Some(page) = pages
        .next(|after| view.list_media(after, 1_000))
        .map_err(store("reading the media records"))?
    {
        media.extend(page);
    }
    let mut contents: BTreeMap<&str, u64> = BTreeMap::new();
    for m in &media {
        contents.insert(&m.sha256, m.size_bytes);
    }
    for sha in contents.keys() {
        let what = || format!("reading media content {sha}");
        let len = view
            .content_len(sha)
            .map_err(store(what()))?
            .ok_or_else(|| SnapshotError::Store {
                what: what(),
                source: StoreError::CommitFailed {
                    reason: "a media record names content the store does not hold".into(),
                },
            })?;
        let path = format!("{ROOT}/content/{sha}");
        let mut reader = ContentReader {
            view: &mut *view,
            sha,
            offset: 0,
            len,
            buffer: Vec::new(),
            at: 0,
            hash: Sha256::new(),
            failure: None,
        };
        let appended = append(&mut tar, &path, len, &mut reader);
        if let Some(e) = reader.failure.take() {
            return Err(store(what())(e));
        }
        appended?;
        let digest = hex(reader.hash.finalize());
        if digest != **sha {
            return Err(damaged(
                &path,
                format!("the store's bytes hash to {digest}"),
            ));
        }
        members.push(Member {
            path,
            size: len,
            sha256: digest,
        });
    }
    add(
        &mut tar,
        &mut members,
        format!("{ROOT}/media.jsonl"),
        &jsonl(&media),
    )?;

    let mut entries = Vec::new();
    let collections = view
        .collections()
        .map_err(store("reading the collections"))?;
    for (n, record) in collections.iter().enumerate() {
        let entry = CollectionEntry {
            key: record.key.clone(),
            params: record.params,
            dim: record.params.dim,
            count: record.count,
            created_at: record.created_at,
            updated_at: record.updated_at,
        };
        add(
            &mut tar,
            &mut members,
            format!("{ROOT}/collections/{n}/collection.json"),
            &serde_json::to_vec(&entry).unwrap_or_default(),
        )?;
        let mut after: Option<String> = None;
        let mut written = 0u64;
        for k in 0.. {
            let page = view
                .export_items(&record.key, after.as_deref(), ITEMS_PER_MEMBER)
                .map_err(store(format!("reading collection {}", record.key)))?;
            let Some(last) = page.last() else { break };
            after = Some(last.record.id.clone());
            written += page.len() as u64;
            let mut vectors = Vec::with_capacity(page.len() * record.params.dim * 4);
            let mut records = Vec::with_capacity(page.len());
            for item in page {
                for x in &item.vector {
                    vectors.extend_from_slice(&x.to_le_bytes());
                }
                records.push(item.record);
            }
            add(
                &mut tar,
                &mut members,
                format!("{ROOT}/collections/{n}/items-{k}.jsonl"),
                &jsonl(&records),
            )?;
            add(
                &mut tar,
                &mut members,
                format!("{ROOT}/collections/{n}/vectors-{k}.f32"),
                &vectors,
            )?;
        }
        if written != record.count {
            return Err(damaged(
                &format!("{ROOT}/collections/{n}"),
                format!(
                    "the store's collection {} counts {} items but {written} were read",
                    record.key, record.count
                ),
            ));
        }
        entries.push(entry);
    }

    let manifest = Manifest {
        format_version: FORMAT_VERSION,
        aimp_version: aimp_version.to_string(),
        created_at: Utc::now(),
        keys: keys.len() as u64,
        media: media.len() as u64,
        contents: contents.len() as u64,
        collections: entries,
        members,
    };
    let bytes = serde_json::to_vec_pretty(&manifest).unwrap_or_default();
    append(
        &mut tar,
        &format!("{ROOT}/manifest.json"),
        bytes.len() as u64,
        &bytes[..],
    )?;
    let mut hashing = tar.into_inner().map_err(io_err("written"))?;
    hashing.flush().map_err(io_err("written"))?;
    Ok((manifest, hex(hashing.hash.finalize())))
}

/// Appends a member held whole, and lists it.
fn add<W: Write>(
    tar: &mut tar::Builder<W>,
    members: &mut Vec<Member>,
    path: String,
    bytes: &[u8],
) -> Result<(), SnapshotError> {
    append(tar, &path, bytes.len() as u64, bytes)?;
    members.push(Member {
        path,
        size: bytes.len() as u64,
        sha256: hex(Sha256::digest(bytes)),
    });
    Ok(())
}

fn append<W: Write>(
    tar: &mut tar::Builder<W>,
    path: &str,
    size: u64,
    data: impl Read,
) -> Result<(), SnapshotError> {
    let mut header = tar::Header::new_gnu();
    header.set_size(size);
    header.set_mode(0o644);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_mtime(0);
    tar.append_data(&mut header, path, data)
        .map_err(io_err("written"))
}

fn jsonl<T: Serialize>(rows: &[T]) -> Vec<u8> {
    let mut out = Vec::new();
    for row in rows {
        // Records of strings, numbers and dates always serialise.
        out.extend(serde_json::to_vec(row).unwrap_or_default());
        out.push(b'\n');
    }
    out
}

/// Media content read from a view a chunk at a time, for the tar; a store failure is kept
/// for the caller (the tar sees an I/O error).
struct ContentReader<'a, 'v> {
    view: &'a mut (dyn StoreView + 'v),
    sha: &'a str,
    offset: u64,
    len: u64,
    buffer: Vec<u8>,
    at: usize,
    hash: Sha256,
    failure: Option<StoreError>,
}

impl Read for ContentReader<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.at == self.buffer.len() {
            if self.offset >= self.len {
                return Ok(0);
            }
            match self.view.read_content(self.sha, self.offset, CHUNK) {
                Ok(chunk) if chunk.is_empty() => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "media content shorter than its length",
                    ));
                }
                Ok(chunk) => {
                    self.offset += chunk.len() as u64;
                    self.hash.update(&chunk);
                    self.buffer = chunk;
                    self.at = 0;
                }
                Err(e) => {
                    let message = e.to_string();
                    self.failure = Some(e);
                    return Err(io::Error::other(message));
                }
            }
        }
        let n = buf.len().min(self.buffer.len() - self.at);
        buf[..n].copy_from_slice(&self.buffer[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// The member's path when it is a plain file inside the archive's folder.
fn safe_path(entry: &tar::Entry<'_, impl Read>) -> Result<String, SnapshotError> {
    let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
    let path = Path::new(&raw);
    let inside =
        path.starts_with(ROOT) && path.components().all(|c| matches!(c, Component::Normal(_)));
    if !inside {
        return Err(damaged(&raw, "its path leaves the archive's folder"));
    }
    if entry.header().entry_type() != tar::EntryType::Regular {
        return Err(damaged(&raw, "it is not a plain file (a link or a folder)"));
    }
    Ok(raw)
}

/// The group a `.jsonl` member's records count toward: `keys`, `media`, `collections/<n>`.
fn record_group(path: &str) -> String {
    let rest = path.strip_prefix(&format!("{ROOT}/")).unwrap_or(path);
    match rest.rsplit_once('/') {
        Some((folder, _)) => folder.to_string(),
        None => rest.trim_end_matches(".jsonl").to_string(),
    }
}

/// Reads the whole archive and checks it against its manifest; the manifest. Nothing is
/// written anywhere.
pub fn verify(archive: impl Read) -> Result<Manifest, SnapshotError> {
    let mut seen: Vec<Member> = Vec::new();
    let mut manifest: Option<Manifest> = None;
    // Records per group: `keys`, `media`, or a collection's folder.
    let mut records: BTreeMap<String, u64> = BTreeMap::new();
    // Each items member's records and each member's size, to check the vectors against.
    let mut item_lines: BTreeMap<String, u64> = BTreeMap::new();
    let mut tar = tar::Archive::new(archive);
    let entries = tar
        .entries()
        .map_err(|e| damaged("(the archive)", e.to_string()))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| damaged("(the archive)", format!("unreadable: {e}")))?;
        let path = safe_path(&entry)?;
        let declared = entry.header().size().unwrap_or(0);
        let mut hash = Sha256::new();
        let mut size = 0u64;
        let mut bytes = Vec::new();
        let is_manifest = path == format!("{ROOT}/manifest.json");
        let counts_lines = path.ends_with(".jsonl");
        let mut lines = 0u64;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = entry
                .read(&mut buf)
                .map_err(|e| damaged(&path, format!("unreadable: {e}")))?;
            if n == 0 {
                break;
            }
            hash.update(&buf[..n]);
            size += n as u64;
            if counts_lines {
                lines += buf[..n].iter().filter(|b| **b == b'\n').count() as u64;
            }
            if is_manifest {
                bytes.extend_from_slice(&buf[..n]);
            }
        }
        if size != declared {
            return Err(damaged(&path, "cut short (the archive is truncated)"));
        }
        if is_manifest {
            let m: Manifest = serde_json::from_slice(&bytes)
                .map_err(|e| damaged(&path, format!("not a manifest: {e}")))?;
            if m.format_version > FORMAT_VERSION {
                return Err(SnapshotError::NewerFormat {
                    archive: m.format_version,
                    build: FORMAT_VERSION,
                });
            }
            manifest = Some(m);
        } else {
            if manifest.is_some() {
                return Err(damaged(&path, "it follows the manifest"));
            }
            if counts_lines {
                *records.entry(record_group(&path)).or_default() += lines;
                item_lines.insert(path.clone(), lines);
            }
            seen.push(Member {
                path,
                size,
                sha256: hex(hash.finalize()),
            });
        }
    }
    let manifest = manifest.ok_or_else(|| {
        damaged(
            &format!("{ROOT}/manifest.json"),
            "missing (the archive is truncated or not a snapshot)",
        )
    })?;
    let mut listed: BTreeMap<&str, &Member> = BTreeMap::new();
    for m in &manifest.members {
        listed.insert(&m.path, m);
    }
    for member in &seen {
        match listed.remove(member.path.as_str()) {
            None => return Err(damaged(&member.path, "the manifest does not list it")),
            Some(m) if m.size != member.size || m.sha256 != member.sha256 => {
                return Err(damaged(
                    &member.path,
                    format!(
                        "its SHA-256 is {} ({} bytes); the manifest says {} ({} bytes)",
                        member.sha256, member.size, m.sha256, m.size
                    ),
                ));
            }
            Some(_) => {}
        }
    }
    if let Some(path) = listed.keys().next() {
        return Err(damaged(
            path,
            "the manifest lists it but the archive lacks it",
        ));
    }
    // The manifest's counts are the members' records.
    let manifest_path = format!("{ROOT}/manifest.json");
    let mut expect = vec![
        ("keys".to_string(), "API keys".to_string(), manifest.keys),
        (
            "media".to_string(),
            "media records".to_string(),
            manifest.media,
        ),
    ];
    for (n, c) in manifest.collections.iter().enumerate() {
        expect.push((
            format!("collections/{n}"),
            format!("items in {}", c.key),
            c.count,
        ));
    }
    for (group, what, want) in expect {
        let got = records.remove(&group).unwrap_or(0);
        if got != want {
            return Err(damaged(
                &manifest_path,
                format!("it counts {want} {what} but the archive holds {got}"),
            ));
        }
    }
    if let Some(group) = records.keys().next() {
        return Err(damaged(
            &format!("{ROOT}/{group}"),
            "records the manifest does not count",
        ));
    }
    // Each items member is followed by its vectors: `dim` f32s for each of its records.
    let sizes: BTreeMap<&str, u64> = seen.iter().map(|m| (m.path.as_str(), m.size)).collect();
    for (n, c) in manifest.collections.iter().enumerate() {
        let folder = format!("{ROOT}/collections/{n}/");
        for (path, lines) in item_lines.range(folder.clone()..) {
            let Some(name) = path.strip_prefix(&folder) else {
                break;
            };
            let Some(k) = name
                .strip_prefix("items-")
                .and_then(|r| r.strip_suffix(".jsonl"))
            else {
                continue;
            };
            let vectors = format!("{folder}vectors-{k}.f32");
            let want = lines * c.dim as u64 * 4;
            match sizes.get(vectors.as_str()) {
                Some(size) if *size == want => {}
                Some(size) => {
                    return Err(damaged(
                        &vectors,
                        format!(
                            "{size} bytes; {lines} vectors of {} dimensions are {want}",
                            c.dim
                        ),
                    ));
                }
                None => return Err(damaged(&vectors, "missing beside its items")),
            }
        }
    }
    Ok(manifest)
}

/// Restores a verified archive into `to`, which must be empty: keys, content, media records,
/// collections and items (their times kept), then checks `to`'s counts against the
/// manifest. Verifies first: a damaged archive writes nothing. `open` gives the archive from
/// its start each time it is called (it is read twice).
pub fn restore<R: Read>(
    mut open: impl FnMut() -> io::Result<R>,
    to: &dyn Store,
) -> Result<Manifest, SnapshotError> {
    let manifest = verify(open().map_err(io_err("opened"))?)?;
    if let Some(c) = to
        .collections()
        .map_err(store("reading the collections"))?
        .first()
    {
        return Err(SnapshotError::NotEmpty {
            what: format!("collection {}", c.key),
        });
    }
    if let Some(k) = to
        .list_keys()
        .map_err(store("reading the API keys"))?
        .first()
    {
        return Err(SnapshotError::NotEmpty {
            what: format!("API key {}", k.id),
        });
    }
    let mut tar = tar::Archive::new(open().map_err(io_err("opened"))?);
    let entries = tar.entries().map_err(io_err("read"))?;
    let mut current: Option<CollectionEntry> = None;
    // An items member's records, until its vectors member follows.
    let mut pending: Option<(String, Vec<crate::ItemRecord>)> = None;
    for entry in entries {
        let mut entry = entry.map_err(io_err("read"))?;
        let path = safe_path(&entry)?;
        let rest = path.strip_prefix(&format!("{ROOT}/")).unwrap_or(&path);
        let lines = |bytes: &[u8]| -> Vec<Vec<u8>> {
            bytes
                .split(|b| *b == b'\n')
                .filter(|l| !l.is_empty())
                .map(<[u8]>::to_vec)
                .collect()
        };
        let parse = |what: &str, line: &[u8]| -> Result<serde_json::Value, SnapshotError> {
            serde_json::from_slice(line).map_err(|e| damaged(what, e.to_string()))
        };
        if let Some(sha) = rest.strip_prefix("content/") {
            let part = format!("restore-{sha}");
            to.begin_part(&part)
                .map_err(store("writing media content"))?;
            let mut buf = vec![0u8; CHUNK];
            loop {
                let n = entry.read(&mut buf).map_err(io_err("read"))?;
                if n == 0 {
                    break;
                }
                to.append_part(&part, &buf[..n])
                    .map_err(store("writing media content"))?;
            }
            to.commit_content(&part, sha)
                .map_err(store("writing media content"))?;
            continue;
        }
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).map_err(io_err("read"))?;
        if rest == "keys.jsonl" {
            for line in lines(&bytes) {
                let key: ApiKeyRecord = serde_json::from_value(parse(&path, &line)?)
                    .map_err(|e| damaged(&path, e.to_string()))?;
                to.insert_key(&key).map_err(store("writing the API keys"))?;
            }
        } else if rest == "media.jsonl" {
            for line in lines(&bytes) {
                let record: MediaRecord = serde_json::from_value(parse(&path, &line)?)
                    .map_err(|e| damaged(&path, e.to_string()))?;
                to.import_media(&record)
                    .map_err(store("writing the media records"))?;
            }
        } else if rest.ends_with("/collection.json") {
            let entry: CollectionEntry =
                serde_json::from_slice(&bytes).map_err(|e| damaged(&path, e.to_string()))?;
            to.import_items(&entry.key, entry.params, Vec::new())
                .map_err(store(format!("making collection {}", entry.key)))?;
            current = Some(entry);
        } else if rest.contains("/items-") {
            let mut records = Vec::new();
            for line in lines(&bytes) {
                let record: crate::ItemRecord =
                    serde_json::from_slice(&line).map_err(|e| damaged(&path, e.to_string()))?;
                records.push(record);
            }
            pending = Some((path.clone(), records));
        } else if rest.contains("/vectors-") {
            let (Some(c), Some((items_path, records))) = (&current, pending.take()) else {
                return Err(damaged(&path, "vectors before their collection and items"));
            };
            let dim = c.params.dim;
            if bytes.len() != records.len() * dim * 4 {
                return Err(damaged(
                    &path,
                    format!(
                        "{} bytes for the {} items of {items_path} of {dim} dimensions",
                        bytes.len(),
                        records.len()
                    ),
                ));
            }
            let items = records
                .into_iter()
                .zip(bytes.chunks_exact(dim * 4))
                .map(|(record, raw)| StoredItem {
                    record,
                    vector: raw
                        .chunks_exact(4)
                        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                        .collect(),
                })
                .collect();
            to.import_items(&c.key, c.params, items)
                .map_err(store(format!("writing collection {}", c.key)))?;
        }
    }
    if let Some((path, _)) = pending {
        return Err(damaged(&path, "items without their vectors"));
    }
    // The counts the manifest promised.
    let counted = |what: String, want: u64, got: u64| {
        if want == got {
            Ok(())
        } else {
            Err(damaged(
                &format!("{ROOT}/manifest.json"),
                format!("it counts {want} {what}; {got} were restored"),
            ))
        }
    };
    counted(
        "API keys".into(),
        manifest.keys,
        to.list_keys().map_err(store("counting"))?.len() as u64,
    )?;
    for c in &manifest.collections {
        let got = to
            .record(&c.key)
            .map_err(store("counting"))?
            .map_or(0, |r| r.count);
        counted(format!("items in {}", c.key), c.count, got)?;
    }
    Ok(manifest)
}
