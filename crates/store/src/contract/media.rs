//! Media bytes: a part appended in chunks and read whole, committed as content stored once
//! whatever names it, read back by ranges, and the upload signing secret kept.

use super::Subject;

/// Bytes that are not all alike, so a range read from the wrong place shows.
fn bytes(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

pub fn a_part_is_appended_in_chunks_and_committed_once(subject: &dyn Subject) {
    let store = subject.open();
    let sha = "ab".repeat(32);
    let data = bytes(300_000, 7);
    store.begin_part("u1").expect("begin");
    for chunk in data.chunks(65_536) {
        store.append_part("u1", chunk).expect("append");
    }
    assert_eq!(
        store.read_part("u1").expect("read").as_deref(),
        Some(&data[..])
    );
    assert_eq!(store.part_ids().expect("parts"), ["u1"]);
    // A PUT that starts again starts from nothing.
    store.begin_part("u2").expect("begin");
    store.append_part("u2", b"stale").expect("append");
    store.begin_part("u2").expect("begin again");
    store.append_part("u2", &data).expect("append");
    assert_eq!(
        store.read_part("u2").expect("read").as_deref(),
        Some(&data[..])
    );

    assert_eq!(store.content_len(&sha).expect("len"), None);
    store.commit_content("u1", &sha).expect("commit");
    assert_eq!(
        store.read_part("u1").expect("read"),
        None,
        "the part is gone"
    );
    assert_eq!(
        store.content_len(&sha).expect("len"),
        Some(data.len() as u64)
    );
    // Equal bytes of another upload: stored once, the copy dropped.
    store
        .commit_content("u2", &sha)
        .expect("commit the same bytes");
    store.commit_content("u2", &sha).expect("idempotent");
    assert!(store.part_ids().expect("parts").is_empty());
    assert_eq!(
        store.content_len(&sha).expect("len"),
        Some(data.len() as u64)
    );
    // Neither a part nor the content: an error, not a success.
    assert!(store.commit_content("u3", &"cd".repeat(32)).is_err());
    // Dropping a part that is not there is no error.
    store.remove_part("u9").expect("remove nothing");
}

pub fn content_is_read_by_ranges_and_survives_reopen(subject: &dyn Subject) {
    let sha = "ef".repeat(32);
    let data = bytes(200_001, 3);
    {
        let store = subject.open();
        store.begin_part("u1").expect("begin");
        for chunk in data.chunks(70_000) {
            store.append_part("u1", chunk).expect("append");
        }
        store.commit_content("u1", &sha).expect("commit");
        store.begin_part("left").expect("a part left behind");
        store.append_part("left", b"half").expect("append");
    }
    let store = subject.open();
    assert_eq!(store.read_content(&sha, 0, usize::MAX).expect("all"), data);
    for (offset, len) in [
        (0, 10),
        (69_990, 20),
        (70_000, 70_000),
        (199_990, 100),
        (5, 0),
    ] {
        let end = (offset + len).min(data.len());
        assert_eq!(
            store.read_content(&sha, offset as u64, len).expect("range"),
            &data[offset..end],
            "{offset}+{len}"
        );
    }
    assert!(
        store
            .read_content(&sha, data.len() as u64 + 5, 10)
            .expect("past the end")
            .is_empty()
    );
    assert_eq!(store.part_ids().expect("parts"), ["left"]);
    store.remove_part("left").expect("remove");
    assert!(store.part_ids().expect("parts").is_empty());
}

pub fn the_upload_secret_is_made_once_and_kept(subject: &dyn Subject) {
    let first = subject.open().upload_secret().expect("secret");
    assert_ne!(first, [0u8; 32]);
    let store = subject.open();
    assert_eq!(store.upload_secret().expect("again"), first);
    assert_eq!(store.upload_secret().expect("and again"), first);
}

pub fn media_records_list_in_pages_and_import_as_given(subject: &dyn Subject) {
    let store = subject.open();
    assert!(store.list_media(None, 10).expect("list").is_empty());
    let record = |n: usize, workspace: &str| crate::MediaRecord {
        media_ref: format!("med_{n:02}"),
        workspace: workspace.into(),
        filename: format!("p{n}.png"),
        content_type: "image/png".into(),
        size_bytes: 10 + n as u64,
        sha256: format!("{n:02}").repeat(32),
        width: 4,
        height: 3,
        exif: n
            .is_multiple_of(2)
            .then(|| serde_json::json!({"camera_make": "Acme"})),
        created_at: chrono::DateTime::from_timestamp(1_700_000_000 + n as i64, 7).expect("time"),
    };
    let all: Vec<_> = (0..7)
        .map(|n| record(n, if n < 4 { "a" } else { "b" }))
        .collect();
    for r in all.iter().rev() {
        store.import_media(r).expect("import");
    }
    let mut listed = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store.list_media(after.as_deref(), 3).expect("list");
        let Some(last) = page.last() else { break };
        after = Some(last.media_ref.clone());
        listed.extend(page);
    }
    assert_eq!(
        listed, all,
        "every workspace's, in media_ref order, as given"
    );
    // Importing again replaces: a changed record is the one kept, nothing doubled.
    let mut changed = all[3].clone();
    changed.filename = "renamed.png".into();
    store.import_media(&changed).expect("replace");
    assert_eq!(store.get_media("med_03").expect("get"), Some(changed));
    assert_eq!(store.list_media(None, 100).expect("list").len(), 7);
    drop(store);
    let store = subject.open();
    assert_eq!(
        store.list_media(Some("med_05"), 100).expect("list"),
        all[6..]
    );
}
