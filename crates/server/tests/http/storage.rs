//! A failing or full disk under the store (its fault point): the run is refused with a clear
//! 503 or 507 and stores nothing, searches keep answering, and writes work again by themselves
//! once the disk does.

use std::sync::Arc;

use aimp_store_embedded::faults::Faults;
use serde_json::{Value, json};

use super::{Gateway, Options, assert_error, gateway};

fn faulty() -> (Gateway, Arc<Faults>) {
    let faults = Arc::new(Faults::default());
    let gw = gateway(Options {
        faults: Some(faults.clone()),
        exact_below: Some(0),
        ..Options::default()
    });
    (gw, faults)
}

fn index(ids: &[String]) -> Value {
    let texts: Vec<String> = ids.iter().map(|id| format!("a note called {id}")).collect();
    json!({"model": "demo-model", "mode": "index", "scope": "disk",
        "input": {"texts": texts, "text_ids": ids}, "params": {}})
}

fn one(id: &str) -> Value {
    index(&[id.to_string()])
}

impl Gateway {
    async fn found(&self) -> Vec<String> {
        let reply = self
            .run(
                json!({"model": "demo-model", "mode": "search", "scope": "disk",
                "input": {"text": "a note"}, "params": {"top_k": 1000}}),
            )
            .await;
        assert_eq!(
            reply.status.as_u16(),
            200,
            "searches keep working: {:?}",
            reply.body
        );
        let mut ids: Vec<String> = reply.body["output"]["results"]
            .as_array()
            .expect("results")
            .iter()
            .map(|r| r["id"].as_str().expect("id").to_string())
            .collect();
        ids.sort();
        ids
    }
}

#[tokio::test]
async fn a_failed_fsync_is_503_stores_nothing_and_the_next_run_succeeds() {
    let (gw, faults) = faulty();
    assert_eq!(gw.run(one("a")).await.status.as_u16(), 200);

    faults.fail_syncs(1);
    let reply = gw.run(one("b")).await;
    assert_error(&reply, 503, "storage_unavailable", None);
    assert!(
        reply.headers.contains_key("retry-after"),
        "{:?}",
        reply.headers
    );
    assert!(
        reply
            .message()
            .contains("nothing of this request was stored")
    );
    assert_eq!(gw.found().await, ["a"]);

    faults.fail_writes(1);
    let delete = json!({"model": "demo-model", "mode": "delete", "scope": "disk",
        "input": {"ids": ["a"]}, "params": {}});
    assert_error(&gw.run(delete).await, 503, "storage_unavailable", None);
    assert_eq!(gw.found().await, ["a"], "the failed delete deleted nothing");

    assert_eq!(gw.run(one("c")).await.status.as_u16(), 200);
    assert_eq!(gw.found().await, ["a", "c"]);
    let kbs = gw.knowledge_bases(&gw.key).await;
    assert_eq!(kbs[0]["count"], 2, "{kbs:?}");
}

#[tokio::test]
async fn a_full_disk_is_507_keeps_searches_and_recovers_once_there_is_room() {
    let (gw, faults) = faulty();
    let mut stored = Vec::new();
    for i in 0..10 {
        let id = format!("before-{i:02}");
        assert_eq!(gw.run(one(&id)).await.status.as_u16(), 200);
        stored.push(id);
    }

    faults.set_full(true);
    let mut refused = None;
    for round in 0..400 {
        let ids: Vec<String> = (0..8).map(|i| format!("full-{round:03}-{i}")).collect();
        let reply = gw.run(index(&ids)).await;
        match reply.status.as_u16() {
            200 => stored.extend(ids),
            507 => {
                assert_error(&reply, 507, "insufficient_storage", None);
                assert!(reply.message().contains("full"), "{}", reply.message());
                refused = Some(ids);
                break;
            }
            other => panic!("a full disk answered {other}: {:?}", reply.body),
        }
    }
    let refused = refused.expect("the disk never filled");
    stored.sort();
    let found = gw.found().await;
    assert_eq!(found.len(), stored.len().min(1000));
    assert!(
        refused.iter().all(|id| !found.contains(id)),
        "nothing of a refused run"
    );

    faults.set_full(false);
    assert_eq!(gw.run(one("after")).await.status.as_u16(), 200);
    let kbs = gw.knowledge_bases(&gw.key).await;
    assert_eq!(kbs[0]["count"], stored.len() + 1, "{kbs:?}");
}
