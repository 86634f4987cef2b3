//! A view ([`crate::Store::view`]) reads one instant: keys, media records and bytes,
//! collections and items written, changed or deleted after it opened are not seen through it,
//! and a view opened afterwards sees them.

use chrono::Utc;
use serde_json::json;

use super::Subject;
use crate::{
    ApiKeyRecord, CollectionKey, CollectionParams, MediaRecord, Metric, NewItem, StoredItem,
};

fn item(id: &str, x: f32) -> NewItem {
    NewItem {
        id: id.into(),
        vector: vec![x, 1.0],
        filename: None,
        media_ref: None,
        system: None,
        metadata: Some(json!({"x": x})),
    }
}

fn key(id: &str, byte: u8) -> ApiKeyRecord {
    ApiKeyRecord {
        id: id.into(),
        name: id.into(),
        workspace: "w".into(),
        prefix: "aimp_0000000".into(),
        hash: [byte; 32],
        created_at: Utc::now(),
        last_used_at: None,
        revoked_at: None,
    }
}

fn medium(n: u8, sha256: &str) -> MediaRecord {
    MediaRecord {
        media_ref: format!("med_{n}"),
        workspace: "w".into(),
        filename: "p.png".into(),
        content_type: "image/png".into(),
        size_bytes: 3,
        sha256: sha256.into(),
        width: 1,
        height: 1,
        exif: None,
        created_at: Utc::now(),
    }
}

pub fn a_view_reads_one_instant(subject: &dyn Subject) {
    let store = subject.open();
    let c = CollectionKey::new("w", "m", "c", "s");
    let d = CollectionKey::new("w", "m", "d", "s");
    let params = CollectionParams::new(2, Metric::L2);
    store.insert_key(&key("k1", 1)).expect("key");
    let first = "aa".repeat(32);
    store.begin_part("p1").expect("part");
    store.append_part("p1", b"one").expect("append");
    store.commit_content("p1", &first).expect("content");
    store.import_media(&medium(1, &first)).expect("media");
    let five: Vec<NewItem> = (0..5).map(|i| item(&format!("i{i}"), i as f32)).collect();
    store.upsert(&c, params, five).expect("upsert");
    let before: Vec<StoredItem> = store.export_items(&c, None, 100).expect("export");

    let mut view = store.view().expect("a view");
    // Everything changes after the view opened.
    store.insert_key(&key("k2", 2)).expect("key");
    store.revoke_key("k1", Utc::now()).expect("revoke");
    let second = "bb".repeat(32);
    store.begin_part("p2").expect("part");
    store.append_part("p2", b"two").expect("append");
    store.commit_content("p2", &second).expect("content");
    store.import_media(&medium(2, &second)).expect("media");
    store
        .upsert(&c, params, vec![item("i1", 10.0), item("i9", 9.0)])
        .expect("upsert");
    store
        .delete_where(&c, Some(vec!["i0".into()]), None)
        .expect("delete");
    store
        .upsert(&d, params, vec![item("x", 1.0)])
        .expect("upsert");

    let keys = view.list_keys().expect("keys");
    assert_eq!(keys.len(), 1);
    assert_eq!((keys[0].id.as_str(), keys[0].revoked_at), ("k1", None));
    let media = view.list_media(None, 10).expect("media");
    assert_eq!(media.len(), 1);
    assert_eq!(media[0].media_ref, "med_1");
    assert_eq!(view.content_len(&first).expect("len"), Some(3));
    assert_eq!(view.read_content(&first, 0, 10).expect("bytes"), b"one");
    let collections = view.collections().expect("collections");
    assert_eq!(collections.len(), 1);
    assert_eq!((&collections[0].key, collections[0].count), (&c, 5));
    assert_eq!(view.export_items(&c, None, 100).expect("export"), before);
    assert_eq!(
        view.export_items(&c, Some("i2"), 1).expect("page"),
        before[3..4]
    );
    assert!(view.export_items(&d, None, 100).expect("export").is_empty());
    drop(view);

    // A view opened now sees it all.
    let mut now = store.view().expect("a view");
    assert_eq!(now.list_keys().expect("keys").len(), 2);
    assert_eq!(now.list_media(None, 10).expect("media").len(), 2);
    assert_eq!(now.collections().expect("collections").len(), 2);
    let ids: Vec<String> = now
        .export_items(&c, None, 100)
        .expect("export")
        .into_iter()
        .map(|i| i.record.id)
        .collect();
    assert_eq!(ids, ["i1", "i2", "i3", "i4", "i9"]);
}
