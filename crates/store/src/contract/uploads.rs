//! Uploads: each state entered once, in order; completion names the media once and answers
//! the same media when repeated; stale uploads are found for clean-up.

use chrono::Utc;

use super::Subject;
use crate::{MediaRecord, Transition, UploadRecord, UploadState};

fn upload(id: &str, expires_in: i64) -> UploadRecord {
    let now = Utc::now();
    UploadRecord {
        id: id.into(),
        workspace: "default".into(),
        filename: "image.png".into(),
        content_type: "image/png".into(),
        size_bytes: 10,
        created_at: now,
        expires_at: now + chrono::Duration::seconds(expires_in),
        state: UploadState::Pending,
    }
}

fn media(r: &str) -> MediaRecord {
    MediaRecord {
        media_ref: r.into(),
        workspace: "default".into(),
        filename: "image.png".into(),
        content_type: "image/png".into(),
        size_bytes: 10,
        sha256: "ab".repeat(32),
        width: 1,
        height: 1,
        exif: Some(serde_json::json!({"camera_make": "Acme"})),
        created_at: Utc::now(),
    }
}

pub fn an_upload_moves_forward_once_and_completes_idempotently(subject: &dyn Subject) {
    let store = subject.open();
    store.insert_upload(&upload("u1", 60)).expect("insert");
    let pending = |s: &UploadState| *s == UploadState::Pending;
    assert!(matches!(
        store.transition_upload("u1", &pending, UploadState::Receiving),
        Ok(Transition::Done(_))
    ));
    // Single use: a second claim is refused and says what state the upload is in.
    match store.transition_upload("u1", &pending, UploadState::Receiving) {
        Ok(Transition::Refused(r)) => assert_eq!(r.state, UploadState::Receiving),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        store.transition_upload("nope", &pending, UploadState::Receiving),
        Ok(Transition::NotFound)
    ));
    // Not received yet: complete is refused.
    assert!(matches!(
        store.complete_upload("u1", &media("media_a")),
        Ok(Transition::Refused(_))
    ));
    let received = UploadState::Received {
        sha256: "ab".repeat(32),
    };
    store
        .transition_upload("u1", &|s| *s == UploadState::Receiving, received)
        .expect("received");
    let first = match store.complete_upload("u1", &media("media_a")) {
        Ok(Transition::Done(m)) => m,
        other => panic!("{other:?}"),
    };
    // A second complete (even with another proposed name) answers the first media.
    let again = match store.complete_upload("u1", &media("media_b")) {
        Ok(Transition::Done(m)) => m,
        other => panic!("{other:?}"),
    };
    assert_eq!(first, again);
    assert_eq!(store.get_media("media_a").expect("get"), Some(first));
    assert!(store.get_media("media_b").expect("get").is_none());
    let completed = store.get_upload("u1").expect("get").expect("the upload");
    assert_eq!(
        completed.state,
        UploadState::Completed {
            media_ref: "media_a".into()
        }
    );
    assert!(matches!(
        store.complete_upload("nope", &media("media_c")),
        Ok(Transition::NotFound)
    ));
}

pub fn stale_uploads_are_the_expired_and_long_completed(subject: &dyn Subject) {
    let store = subject.open();
    store.insert_upload(&upload("fresh", 60)).expect("insert");
    store.insert_upload(&upload("old", -1)).expect("insert");
    let mut done = upload("done", -1);
    done.state = UploadState::Completed {
        media_ref: "media_x".into(),
    };
    store.insert_upload(&done).expect("insert");
    let stale = store
        .stale_uploads(Utc::now(), chrono::Duration::hours(24))
        .expect("stale");
    let ids: Vec<&str> = stale.iter().map(|u| u.id.as_str()).collect();
    assert_eq!(ids, vec!["old"]);
    store.remove_upload("old").expect("remove");
    assert!(store.get_upload("old").expect("get").is_none());
    drop(store);
    let store = subject.open();
    assert_eq!(store.get_upload("done").expect("get"), Some(done));
    assert!(store.get_upload("fresh").expect("get").is_some());
}
