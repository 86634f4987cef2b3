//! What the PostgreSQL store promises beyond the contract: its schema is checked when it
//! opens, and a database that goes away is answered as unavailable (never a hang) until it
//! returns, when the same store works again by itself.

use std::time::{Duration, Instant};

use aimp_store::{ApiKeyRecord, Store, StoreError};
use aimp_store_postgres::{PoolOptions, PostgresStore, SCHEMA_VERSION, harness};
use chrono::Utc;

fn key(id: &str, byte: u8) -> ApiKeyRecord {
    ApiKeyRecord {
        id: id.into(),
        name: id.into(),
        workspace: "default".into(),
        prefix: "aimp_0123456".into(),
        hash: [byte; 32],
        created_at: Utc::now(),
        last_used_at: None,
        revoked_at: None,
    }
}

#[test]
fn a_database_from_a_newer_version_is_refused_naming_both_versions() {
    let Some(server) = harness::server() else {
        return;
    };
    let url = server.fresh_database();
    let store = PostgresStore::open(&url, PoolOptions::default()).expect("open");
    store.insert_key(&key("k1", 1)).expect("a key");
    drop(store);
    let mut client = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
    let newer = SCHEMA_VERSION + 1;
    client
        .execute("UPDATE aimp_schema SET version = $1", &[&newer])
        .expect("pretend a newer build wrote it");
    let err = PostgresStore::open(&url, PoolOptions::default()).expect_err("refused");
    let message = format!(
        "{err}: {}",
        std::error::Error::source(&err).map_or(String::new(), |s| s.to_string())
    );
    assert!(
        message.contains(&format!("version {newer}"))
            && message.contains(&SCHEMA_VERSION.to_string()),
        "{message}"
    );
    // Nothing was changed by the refusal.
    let rows = client.query("SELECT id FROM api_keys", &[]).expect("keys");
    assert_eq!(rows.len(), 1);
}

#[test]
fn opening_again_applies_nothing_twice() {
    let Some(server) = harness::server() else {
        return;
    };
    let url = server.fresh_database();
    for _ in 0..3 {
        let store = PostgresStore::open(&url, PoolOptions::default()).expect("open");
        assert!(store.is_ready());
    }
    let mut client = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
    let version: i32 = client
        .query_one("SELECT version FROM aimp_schema", &[])
        .expect("version")
        .get(0);
    assert_eq!(version, SCHEMA_VERSION);
}

#[test]
fn a_lost_database_is_unavailable_and_the_store_recovers_by_itself() {
    let Some(server) = harness::own_server() else {
        return;
    };
    let url = server.fresh_database();
    let options = PoolOptions {
        max_connections: 4,
        wait: Duration::from_secs(2),
    };
    let store = PostgresStore::open(&url, options).expect("open");
    store.insert_key(&key("before", 1)).expect("a key");
    assert!(store.is_ready());

    server.stop();
    let asked = Instant::now();
    match store.list_keys() {
        Err(StoreError::Unavailable { .. }) => {}
        other => panic!("expected the store to be unavailable, got {other:?}"),
    }
    match store.insert_key(&key("during", 2)) {
        Err(StoreError::Unavailable { .. }) => {}
        other => panic!("expected the store to be unavailable, got {other:?}"),
    }
    assert!(!store.is_ready());
    // An answer, not a hang: bounded by the pool's wait and the connect timeout.
    assert!(
        asked.elapsed() < Duration::from_secs(30),
        "{:?}",
        asked.elapsed()
    );

    server.start_again();
    let deadline = Instant::now() + Duration::from_secs(30);
    let keys = loop {
        match store.list_keys() {
            Ok(keys) => break keys,
            Err(StoreError::Unavailable { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(200))
            }
            Err(e) => panic!("the store did not recover: {e:?}"),
        }
    };
    let ids: Vec<&str> = keys.iter().map(|k| k.id.as_str()).collect();
    assert_eq!(
        ids,
        ["before"],
        "what was acknowledged is there; the refused write is not"
    );
    store
        .insert_key(&key("after", 3))
        .expect("writes work again");
}
