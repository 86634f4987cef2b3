//! Hostile clients, in process: each finding of the bounded-cost review as an attack at a
//! small size, asserting what the gateway holds or spends afterwards. The black-box suite
//! (`tests/blackbox/hostile.rs`) runs the ones that need a real process (resident memory,
//! connections) against the built binary.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};

use crate::{Options, assert_error, gateway};

async fn metrics_text(gw: &crate::Gateway) -> String {
    let r = gw
        .send(
            Request::get("/metrics")
                .body(Body::empty())
                .expect("request"),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    r.body.as_str().expect("text").to_string()
}

/// Invented methods, without a key, used to become labels of their own: 20,000 of them grew
/// `/metrics` from 2 KB to 36 MB. Now every method the gateway does not serve is `other`.
#[tokio::test]
async fn invented_methods_do_not_grow_the_metrics() {
    let gw = gateway(Options::default());
    let send = |method: String, uri: String| {
        let req = Request::builder()
            .method(method.as_str())
            .uri(uri)
            .body(Body::empty())
            .expect("request");
        gw.send(req)
    };
    send("XGET0".into(), "/api/runs".into()).await;
    let before = metrics_text(&gw).await.len();
    for i in 0..500 {
        let r = send(format!("XGET{i}"), "/api/runs".into()).await;
        assert!(r.status.is_client_error(), "{:?}", r.status);
        send(format!("BREW{i}"), format!("/nowhere/{i}")).await;
    }
    let text = metrics_text(&gw).await;
    assert!(!text.contains("XGET") && !text.contains("BREW"), "{text}");
    assert!(text.contains("method=\"other\""), "{text}");
    assert!(
        text.len() < before + 4096,
        "/metrics grew from {before} to {} bytes",
        text.len()
    );
}

fn index_texts(n: usize) -> Value {
    let texts: Vec<String> = (0..n).map(|i| format!("note number {i}")).collect();
    let ids: Vec<String> = (0..n).map(|i| format!("n{i}")).collect();
    let metadata: Vec<Value> = (0..n)
        .map(|i| json!({"tag": format!("t{}", i % 3)}))
        .collect();
    json!({"model": "demo-model", "mode": "index", "scope": "hostile",
           "input": {"texts": texts, "text_ids": ids, "metadata": metadata}})
}

/// A filter of 256 conditions × 1,024 values no item holds was answered, and each such
/// search left ~12 MiB in the planner's memo. Now a filter lists at most 4,096 values and
/// each string at most 1,024 bytes (settings), refused 400 naming where it went past.
#[tokio::test]
async fn filters_past_their_cost_bound_are_refused_naming_it() {
    let gw = gateway(Options {
        body_limit: 16 << 20,
        ..Options::default()
    });
    let r = gw.run(index_texts(3)).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let any = |c: usize| -> Value {
        let values: Vec<String> = (0..1024).map(|i| format!("absent-{c}-{i}")).collect();
        json!({"key": "tag", "match": {"any": values}})
    };
    let search = |filter: Value| {
        json!({"model": "demo-model", "mode": "search", "scope": "hostile",
               "input": {"text": "note"}, "params": {"filter": filter}})
    };
    // At the bound: answered (nothing matches).
    let at: Vec<Value> = (0..4).map(any).collect();
    let r = gw.run(search(json!({"should": at}))).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    // The review's filter.
    let past: Vec<Value> = (0..256).map(any).collect();
    let r = gw.run(search(json!({"should": past}))).await;
    assert_error(
        &r,
        400,
        "invalid_params",
        Some("params.filter.should[4].match.any"),
    );
    assert!(r.message().contains("4096 values"), "{}", r.message());
    // A string value of 100 KB.
    let long = "x".repeat(100 * 1024);
    let r = gw
        .run(search(
            json!({"must": [{"key": "tag", "match": {"value": long}}]}),
        ))
        .await;
    assert_error(
        &r,
        400,
        "invalid_params",
        Some("params.filter.must[0].match.value"),
    );
    assert!(r.message().contains("at most 1024"), "{}", r.message());
    // The listing and delete-by-filter take the same bound; delete removes nothing then.
    let filter =
        json!({"must": [{"key": "tag", "match": {"value": "x".repeat(1025)}}]}).to_string();
    let uri = format!(
        "/api/knowledge-bases/demo-model/default/hostile/items?filter={}",
        urlencode(&filter)
    );
    let r = gw
        .send(
            Request::get(uri)
                .header("X-API-Key", &gw.key)
                .body(Body::empty())
                .expect("request"),
        )
        .await;
    assert_error(&r, 400, "invalid_query", Some("filter.must[0].match.value"));
    let r = gw
        .run(json!({"model": "demo-model", "mode": "delete", "scope": "hostile",
                    "input": {}, "params": {"filter": {"should": (0..5).map(any).collect::<Vec<_>>()}}}))
        .await;
    assert_error(
        &r,
        400,
        "invalid_params",
        Some("params.filter.should[4].match.any"),
    );
    let r = gw
        .run(
            json!({"model": "demo-model", "mode": "search", "scope": "hostile",
                    "input": {"text": "note"}, "params": {"top_k": 10}}),
        )
        .await;
    assert_eq!(
        r.body["output"]["results"].as_array().map(Vec::len),
        Some(3)
    );
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
