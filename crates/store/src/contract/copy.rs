//! Copying between two stores ([`crate::copy`]): everything arrives as it was, an
//! interrupted copy resumes where it stopped, and a destination holding data of its own is
//! refused untouched. Each store's tests run these with itself on one side or both.

use std::ops::ControlFlow;

use chrono::{DateTime, Utc};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::Subject;
use crate::copy::{CopyError, Progress, copy};
use crate::{
    ApiKeyRecord, CollectionKey, CollectionParams, MediaRecord, Metric, NewItem, SearchOptions,
    Store,
};

fn at(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000 + seconds, 123_456_789).expect("a time")
}

fn key_record(id: &str, hash_byte: u8) -> ApiKeyRecord {
    ApiKeyRecord {
        id: id.into(),
        name: format!("{id} name"),
        workspace: if hash_byte.is_multiple_of(2) {
            "a"
        } else {
            "b"
        }
        .into(),
        prefix: "aimp_0123456".into(),
        hash: [hash_byte; 32],
        created_at: at(i64::from(hash_byte)),
        last_used_at: None,
        revoked_at: None,
    }
}

/// Stores `bytes` as content and answers its SHA-256.
fn put_content(store: &dyn Store, bytes: &[u8]) -> String {
    let sha: String = Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    store.begin_part("fill").expect("begin");
    for chunk in bytes.chunks(100_000) {
        store.append_part("fill", chunk).expect("append");
    }
    store.commit_content("fill", &sha).expect("commit");
    sha
}

fn media_record(n: u8, sha: &str, size: usize) -> MediaRecord {
    MediaRecord {
        media_ref: format!("med_{n}"),
        workspace: "a".into(),
        filename: format!("{n}.jpg"),
        content_type: "image/jpeg".into(),
        size_bytes: size as u64,
        sha256: sha.into(),
        width: 640,
        height: 480,
        exif: Some(json!({"camera_make": "Acme", "gps_latitude": 52.5})),
        created_at: at(i64::from(n)),
    }
}

fn collections() -> [(CollectionKey, CollectionParams, usize); 3] {
    let mut big = CollectionParams::new(8, Metric::Cosine);
    big.m = 8;
    big.ef_construction = 40;
    big.exact_below = 100;
    let mut dot = CollectionParams::new(3, Metric::Dot);
    dot.ef_search = 33;
    [
        (
            CollectionKey::new("a", "demo-model", "docs", "main"),
            big,
            700,
        ),
        (CollectionKey::new("b", "clipo", "photos", "x"), dot, 5),
        (CollectionKey::new("b", "clipo", "empty", "x"), dot, 0),
    ]
}

/// A source with keys (renamed, used, revoked), media (two records sharing one content, one
/// larger than a read), and collections (one of 700 items written twice so times differ, a
/// small one, an empty one).
pub(crate) fn fill(store: &dyn Store) {
    for (n, id) in ["key_a", "key_b", "key_c"].iter().enumerate() {
        store
            .insert_key(&key_record(id, n as u8 + 1))
            .expect("insert key");
    }
    store.rename_key("key_a", "renamed").expect("rename");
    store.touch_key("key_a", at(500)).expect("touch");
    store.revoke_key("key_b", at(600)).expect("revoke");

    let small: Vec<u8> = (0..5_000u32).map(|i| (i * 7) as u8).collect();
    let large: Vec<u8> = (0..2_500_000u32)
        .map(|i| (i * 13 + i / 977) as u8)
        .collect();
    let small_sha = put_content(store, &small);
    let large_sha = put_content(store, &large);
    for (n, sha, size) in [
        (1, &small_sha, small.len()),
        (2, &small_sha, small.len()),
        (3, &large_sha, large.len()),
    ] {
        store
            .import_media(&media_record(n, sha, size))
            .expect("media");
    }

    for (key, params, n) in collections() {
        let items: Vec<NewItem> = (0..n)
            .map(|i| NewItem {
                id: format!("doc-{i:04}"),
                vector: (0..params.dim)
                    .map(|d| (i as f32 * 0.37 + d as f32 * 1.3).sin())
                    .collect(),
                filename: (i % 3 == 0).then(|| format!("{i}.txt")),
                media_ref: (i % 5 == 0).then(|| "med_1".to_string()),
                system: Some(json!({"text": format!("text {i}")})),
                metadata: Some(
                    json!({"n": i, "tags": [format!("t{}", i % 4)], "score": i as f64 / 3.0}),
                ),
            })
            .collect();
        store
            .import_items(&key, params, Vec::new())
            .expect("create");
        for chunk in items.chunks(250) {
            store.upsert(&key, params, chunk.to_vec()).expect("upsert");
        }
        // Some written again later: their times differ from the others'.
        if n > 10 {
            store
                .upsert(&key, params, items[..10].to_vec())
                .expect("replace");
        }
    }
}

/// Every record of `from` is in `to`, equal; both hold the same counts.
pub(crate) fn assert_same(from: &dyn Store, to: &dyn Store) {
    assert_eq!(
        from.list_keys().expect("keys"),
        to.list_keys().expect("keys")
    );
    let media = from.list_media(None, 100).expect("media");
    assert_eq!(media.len(), 3);
    assert_eq!(media, to.list_media(None, 100).expect("media"));
    for m in &media {
        let there = to
            .read_content(&m.sha256, 0, 3_000_000)
            .expect("content there");
        assert_eq!(
            there,
            from.read_content(&m.sha256, 0, 3_000_000).expect("content")
        );
        assert_eq!(there.len() as u64, m.size_bytes);
    }
    for (key, params, n) in collections() {
        let ours = from.export_items(&key, None, 10_000).expect("export");
        let theirs = to.export_items(&key, None, 10_000).expect("export");
        assert_eq!(ours.len(), n);
        assert!(ours == theirs, "the items of {key} differ");
        let record = to.record(&key).expect("record").expect("made");
        assert_eq!((record.params, record.count), (params, n as u64));
    }
}

pub fn a_copy_holds_everything_and_an_interrupted_one_resumes(
    from: &dyn Subject,
    to: &dyn Subject,
) {
    let source = from.open();
    fill(&*source);
    let target = to.open();
    // Stopped partway through the big collection.
    let mut seen: Vec<Progress> = Vec::new();
    let stopped = copy(&*source, &*target, 100, &mut |p| {
        seen.push(p.clone());
        if p.stage.ends_with("docs/main") && p.done >= 300 {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    });
    assert!(
        matches!(stopped, Err(CopyError::Interrupted)),
        "{stopped:?}"
    );
    let stages: Vec<&str> = seen.iter().map(|p| p.stage.as_str()).collect();
    assert_eq!(stages[..2], ["keys", "media"]);
    let last = seen.last().expect("progress");
    assert_eq!((last.done, last.total, last.written), (300, 700, 300));
    let big = &collections()[0].0;
    assert_eq!(
        target.record(big).expect("record").expect("made").count,
        300
    );
    drop(target);

    // Again, reopened: what is there is skipped, the rest written.
    let target = to.open();
    let report = copy(&*source, &*target, 100, &mut |_| ControlFlow::Continue(()))
        .expect("the copy resumes");
    assert_eq!((report.keys.seen, report.keys.written), (3, 0));
    assert_eq!((report.media.seen, report.media.written), (3, 0));
    assert_eq!(report.contents.written, 0);
    let items = report.items();
    assert_eq!((items.seen, items.written), (705, 405));
    assert_same(&*source, &*target);

    // The copy searches like the source.
    let (key, _, _) = &collections()[0];
    let query: Vec<f32> = source.get(key, "doc-0042").expect("get").expect("item").1;
    let options = || SearchOptions {
        top_k: 5,
        exact: true,
        ..SearchOptions::default()
    };
    let ids = |s: &dyn Store| -> Vec<String> {
        s.search(key, &query, options())
            .expect("search")
            .hits
            .into_iter()
            .map(|h| h.item.id)
            .collect()
    };
    assert_eq!(ids(&*source), ids(&*target));

    // Changed since (a key used, an item replaced): a third run brings just that over.
    source.touch_key("key_c", at(900)).expect("touch");
    let mut replaced = source.get(key, "doc-0500").expect("get").expect("item");
    replaced.0.metadata = Some(json!({"changed": true}));
    source
        .upsert(
            key,
            collections()[0].1,
            vec![NewItem {
                id: "doc-0500".into(),
                vector: replaced.1,
                filename: None,
                media_ref: None,
                system: None,
                metadata: replaced.0.metadata,
            }],
        )
        .expect("replace");
    let report =
        copy(&*source, &*target, 100, &mut |_| ControlFlow::Continue(())).expect("copy again");
    assert_eq!(report.keys.written, 1);
    assert_eq!((report.items().seen, report.items().written), (705, 1));
    assert_same(&*source, &*target);
}

pub fn a_destination_with_data_of_its_own_is_refused_untouched(
    from: &dyn Subject,
    to: &dyn Subject,
) {
    let source = from.open();
    fill(&*source);
    let target = to.open();
    let (key, params, _) = &collections()[1];
    let other = CollectionKey::new("z", "demo-model", "mine", "s");
    target
        .upsert(
            &other,
            *params,
            vec![NewItem {
                id: "mine".into(),
                vector: vec![1.0, 2.0, 3.0],
                filename: None,
                media_ref: None,
                system: None,
                metadata: None,
            }],
        )
        .expect("own data");
    match copy(&*source, &*target, 100, &mut |_| ControlFlow::Continue(())) {
        Err(CopyError::Conflict { what, .. }) => assert!(what.contains("z/demo-model/mine/s")),
        other => panic!("{other:?}"),
    }
    assert!(
        target.list_keys().expect("keys").is_empty(),
        "nothing was copied"
    );
    assert!(target.list_media(None, 10).expect("media").is_empty());
    target.drop_collection(&other).expect("drop");

    // An item the source's collection lacks: refused, naming it; the item stays.
    target
        .upsert(
            key,
            *params,
            vec![NewItem {
                id: "doc-0001x".into(),
                vector: vec![1.0, 0.0, 0.0],
                filename: None,
                media_ref: None,
                system: None,
                metadata: None,
            }],
        )
        .expect("own item");
    match copy(&*source, &*target, 100, &mut |_| ControlFlow::Continue(())) {
        Err(CopyError::Conflict { what, .. }) => assert!(what.contains("doc-0001x"), "{what}"),
        other => panic!("{other:?}"),
    }
    assert!(target.get(key, "doc-0001x").expect("get").is_some());
}

pub fn a_copy_holds_the_source_as_it_was_when_it_started(from: &dyn Subject, to: &dyn Subject) {
    let source = from.open();
    fill(&*source);
    let keys = source.list_keys().expect("keys");
    let media = source.list_media(None, 100).expect("media");
    let items: Vec<_> = collections()
        .iter()
        .map(|(key, _, _)| source.export_items(key, None, 10_000).expect("export"))
        .collect();
    let target = to.open();
    let (big, params, _) = &collections()[0];
    let mut wrote = false;
    copy(&*source, &*target, 100, &mut |p| {
        // Partway through: the source is written to, everywhere.
        if !wrote && p.stage.ends_with("docs/main") {
            wrote = true;
            source
                .upsert(
                    big,
                    *params,
                    vec![NewItem {
                        id: "doc-9999".into(),
                        vector: vec![0.5; 8],
                        filename: None,
                        media_ref: None,
                        system: None,
                        metadata: None,
                    }],
                )
                .expect("a later item");
            source
                .delete_where(big, Some(vec!["doc-0650".into()]), None)
                .expect("a later delete");
            source
                .insert_key(&key_record("key_z", 26))
                .expect("a later key");
            source
                .revoke_key("key_c", at(999))
                .expect("a later revocation");
            let sha = put_content(&*source, b"later bytes");
            source
                .import_media(&media_record(9, &sha, 11))
                .expect("a later medium");
        }
        ControlFlow::Continue(())
    })
    .expect("the copy ends, its counts those of its start");
    assert!(wrote);
    assert_eq!(target.list_keys().expect("keys"), keys);
    assert_eq!(target.list_media(None, 100).expect("media"), media);
    for ((key, _, _), before) in collections().iter().zip(&items) {
        let copied = target.export_items(key, None, 10_000).expect("export");
        assert!(
            copied == *before,
            "{key} is not as it was when the copy started"
        );
    }
}
