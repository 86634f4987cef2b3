//! API keys: stored by hash, found by hash, renamed, revoked once, and kept across a reopen.

use chrono::Utc;

use super::Subject;
use crate::{ApiKeyRecord, StoreError};

fn record(id: &str, hash_byte: u8) -> ApiKeyRecord {
    ApiKeyRecord {
        id: id.to_string(),
        name: "ci".to_string(),
        workspace: "default".to_string(),
        prefix: "aimp_abcdefg".to_string(),
        hash: [hash_byte; 32],
        created_at: Utc::now(),
        last_used_at: None,
        revoked_at: None,
    }
}

pub fn keys_and_revocations_survive_reopen(subject: &dyn Subject) {
    {
        let store = subject.open();
        store.insert_key(&record("key_a", 1)).expect("insert a");
        store.insert_key(&record("key_b", 2)).expect("insert b");
        store.revoke_key("key_b", Utc::now()).expect("revoke");
        store.rename_key("key_a", "renamed").expect("rename");
        let used = store.touch_key("key_a", Utc::now()).expect("touch");
        assert!(used.last_used_at.is_some());
    }
    let store = subject.open();
    let a = store.find_key_by_hash(&[1; 32]).expect("find").expect("a");
    assert_eq!(a.name, "renamed");
    assert!(!a.is_revoked());
    assert!(a.last_used_at.is_some());
    assert_eq!(store.get_key("key_a").expect("get"), a);
    let b = store.find_key_by_hash(&[2; 32]).expect("find").expect("b");
    assert!(b.is_revoked());
    let listed: Vec<String> = store
        .list_keys()
        .expect("list")
        .into_iter()
        .map(|k| k.id)
        .collect();
    assert_eq!(listed.len(), 2);
    assert!(listed.contains(&"key_a".to_string()) && listed.contains(&"key_b".to_string()));
    assert!(store.find_key_by_hash(&[3; 32]).expect("find").is_none());
}

pub fn a_duplicate_hash_is_refused_and_an_unknown_id_is_not_found(subject: &dyn Subject) {
    let store = subject.open();
    store.insert_key(&record("key_a", 1)).expect("insert");
    assert!(matches!(
        store.insert_key(&record("key_c", 1)),
        Err(StoreError::KeyExists { id }) if id == "key_a"
    ));
    assert!(store.find_key_by_hash(&[1; 32]).expect("find").is_some());
    assert!(matches!(
        store.get_key("key_c"),
        Err(StoreError::KeyNotFound { .. })
    ));
    assert!(matches!(
        store.revoke_key("nope", Utc::now()),
        Err(StoreError::KeyNotFound { .. })
    ));
    assert!(matches!(
        store.rename_key("nope", "x"),
        Err(StoreError::KeyNotFound { .. })
    ));
}

pub fn revocation_keeps_its_first_time(subject: &dyn Subject) {
    let store = subject.open();
    store.insert_key(&record("key_a", 1)).expect("insert");
    let first = store.revoke_key("key_a", Utc::now()).expect("revoke");
    let later = Utc::now() + chrono::Duration::seconds(60);
    let second = store.revoke_key("key_a", later).expect("revoke again");
    assert_eq!(first.revoked_at, second.revoked_at);
}
