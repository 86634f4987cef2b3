//! Snapshot archives ([`crate::snapshot`]): a store's archive restores into an empty store as
//! it was, and a damaged archive (a flipped byte, cut short, a member missing, counts that
//! disagree, a newer format, a path that leaves its folder, a link) is refused with its own
//! message before anything is written.

use std::io::Read;

use super::Subject;
use super::copy::{assert_same, fill};
use crate::Store;
use crate::snapshot::{self, FORMAT_VERSION, Manifest, SnapshotError};

/// The archive of `store`, its manifest and its SHA-256.
fn archive(store: &dyn Store) -> (Vec<u8>, Manifest, String) {
    let mut bytes = Vec::new();
    let mut view = store.view().expect("a view");
    let (manifest, sha) = snapshot::write(&mut *view, &mut bytes, "test").expect("write");
    (bytes, manifest, sha)
}

fn restore(bytes: &[u8], to: &dyn Store) -> Result<Manifest, SnapshotError> {
    snapshot::restore(|| Ok(bytes), to)
}

/// The archive's members rewritten by `change` (which may drop one), in order.
fn rebuild(bytes: &[u8], mut change: impl FnMut(&str, Vec<u8>) -> Option<Vec<u8>>) -> Vec<u8> {
    let mut out = tar::Builder::new(Vec::new());
    let mut archive = tar::Archive::new(bytes);
    for entry in archive.entries().expect("entries") {
        let mut entry = entry.expect("entry");
        let path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).expect("read");
        if let Some(data) = change(&path, data) {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            out.append_data(&mut header, &path, &data[..])
                .expect("append");
        }
    }
    out.into_inner().expect("tar")
}

/// The manifest of an archive changed by `change`.
fn with_manifest(bytes: &[u8], change: impl Fn(&mut serde_json::Value)) -> Vec<u8> {
    rebuild(bytes, |path, data| {
        if path.ends_with("manifest.json") {
            let mut m: serde_json::Value = serde_json::from_slice(&data).expect("manifest");
            change(&mut m);
            Some(serde_json::to_vec(&m).expect("json"))
        } else {
            Some(data)
        }
    })
}

/// An archive with one more member, whose header names `path` as given (the tar crate's
/// builder refuses `..`), of `kind`.
fn with_raw_member(bytes: &[u8], path: &str, kind: tar::EntryType) -> Vec<u8> {
    let mut header = tar::Header::new_old();
    header.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
    header.set_size(if kind == tar::EntryType::Regular {
        4
    } else {
        0
    });
    header.set_mode(0o644);
    header.set_entry_type(kind);
    if kind == tar::EntryType::Symlink {
        header.set_link_name("/etc/passwd").expect("link");
    }
    header.set_cksum();
    let mut out = header.as_bytes().to_vec();
    if kind == tar::EntryType::Regular {
        let mut block = [0u8; 512];
        block[..4].copy_from_slice(b"evil");
        out.extend_from_slice(&block);
    }
    out.extend_from_slice(bytes);
    out
}

pub fn an_archive_restores_everything_as_it_was(from: &dyn Subject, to: &dyn Subject) {
    let source = from.open();
    fill(&*source);
    let (bytes, manifest, sha) = archive(&*source);
    use sha2::Digest;
    let digest: String = sha2::Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(sha, digest);
    assert_eq!(manifest.format_version, FORMAT_VERSION);
    assert_eq!(
        (manifest.keys, manifest.media, manifest.contents),
        (3, 3, 2)
    );
    let counts: Vec<u64> = manifest.collections.iter().map(|c| c.count).collect();
    assert_eq!(counts.iter().sum::<u64>(), 705);
    assert_eq!(snapshot::verify(&bytes[..]).expect("verify"), manifest);
    let target = to.open();
    assert_eq!(restore(&bytes, &*target).expect("restore"), manifest);
    assert_same(&*source, &*target);
    // Not over data: a second restore is refused, and changes nothing.
    match restore(&bytes, &*target) {
        Err(SnapshotError::NotEmpty { .. }) => {}
        other => panic!("{other:?}"),
    }
    assert_same(&*source, &*target);
}

pub fn a_damaged_archive_is_refused_and_writes_nothing(from: &dyn Subject, to: &dyn Subject) {
    let source = from.open();
    fill(&*source);
    let (bytes, _, _) = archive(&*source);
    let target = to.open();
    let refused = |bytes: Vec<u8>, wanted: &str| {
        let err = restore(&bytes, &*target).expect_err("refused");
        let text = err.to_string();
        assert!(text.contains(wanted), "{wanted:?} not in {text:?}");
        assert!(target.list_keys().expect("keys").is_empty(), "{text}");
        assert!(target.collections().expect("collections").is_empty());
        assert!(target.list_media(None, 10).expect("media").is_empty());
    };
    // A byte of the first member's data (after its 512-byte header) flipped.
    let mut flipped = bytes.clone();
    flipped[512 + 10] ^= 0x20;
    refused(flipped, "keys.jsonl: its SHA-256 is");
    refused(bytes[..bytes.len() / 2].to_vec(), "truncated");
    refused(
        rebuild(&bytes, |p, d| (!p.ends_with("media.jsonl")).then_some(d)),
        "media.jsonl: the manifest lists it but the archive lacks it",
    );
    refused(
        with_manifest(&bytes, |m| m["keys"] = serde_json::json!(4)),
        "it counts 4 API keys but the archive holds 3",
    );
    refused(
        with_manifest(&bytes, |m| m["format_version"] = serde_json::json!(99)),
        &format!("format 99, newer than this build's {FORMAT_VERSION}"),
    );
    refused(
        with_raw_member(&bytes, "aimp-snapshot/../evil", tar::EntryType::Regular),
        "leaves the archive's folder",
    );
    refused(
        with_raw_member(&bytes, "/etc/evil", tar::EntryType::Regular),
        "leaves the archive's folder",
    );
    refused(
        with_raw_member(&bytes, "aimp-snapshot/link", tar::EntryType::Symlink),
        "not a plain file",
    );
    // The archive itself, untouched, still restores.
    restore(&bytes, &*target).expect("restore");
    assert_same(&*source, &*target);
}
