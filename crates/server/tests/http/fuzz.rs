//! Fuzzing the request path (property-based, stable Rust): run bodies that are near the
//! contract (real models, modes and fields with wrong types, missing parts, extra keys) or
//! arbitrary JSON or bytes, and upload flows with random declarations and damaged fixture
//! pictures. Whatever arrives, the answer is a success or a 4xx in the one error shape
//! (`{"error": {"code", "message"}}`); never a 500, a panic or a hang.
//!
//! `PROPTEST_CASES` sets the cases per target (256 unless set); failures are kept in
//! `proptest-regressions/` beside this file and replayed first on every run.

use proptest::prelude::*;
use serde_json::{Map, Value, json};

use super::media::fixture;
use super::{Gateway, Options, Reply, gateway};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Short strings, weighted towards the words the contract uses.
fn word() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "demo-model", "clipo", "execute", "index", "search", "delete", "text", "texts",
            "text_ids", "ids", "image", "images", "image_ids", "media_ref", "filename",
            "top_k", "ef", "exact", "playground", "test", "", " ", "media_x", "ünï",
        ]).prop_map(str::to_string),
        1 => "[ -~]{0,12}",
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (-1e6f64..1e6).prop_map(Value::from),
        prop::sample::select(vec![0i64, -1, 1, 1000, 1001, 10_000]).prop_map(Value::from),
        word().prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::vec((word(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// A run body: the contract's top-level fields, each present or not, each well-formed or not.
fn run_body() -> impl Strategy<Value = Value> {
    let model = prop_oneof![
        4 => Just(json!("demo-model")),
        2 => Just(json!("clipo")),
        1 => json_value()
    ];
    let mode = prop_oneof![
        6 => prop::sample::select(vec!["execute", "index", "search", "delete"])
            .prop_map(Value::from),
        1 => json_value()
    ];
    let scope = prop_oneof![
        6 => prop::sample::select(vec!["playground", "test", "s-1"]).prop_map(Value::from),
        1 => word().prop_map(Value::from),
        1 => json_value(),
    ];
    let texts = prop::collection::vec("[a-z ]{0,20}", 0..4);
    let ids = prop::collection::vec("[a-z0-9]{1,6}", 1..4);
    let input = prop_oneof![
        2 => texts.clone().prop_map(|t| json!({"texts": t})),
        2 => "[a-z ]{0,20}".prop_map(|t| json!({"text": t})),
        2 => (texts, ids.clone()).prop_map(|(t, ids)| json!({"texts": t, "text_ids": ids})),
        1 => ids.prop_map(|ids| json!({"ids": ids})),
        1 => json_value(),
    ];
    let params = prop_oneof![
        4 => Just(json!({})),
        2 => (1u64..50, prop::option::of(1u64..200), any::<bool>())
            .prop_map(|(k, ef, exact)| json!({"top_k": k, "ef": ef, "exact": exact})),
        1 => (json_value(), json_value(), json_value())
            .prop_map(|(k, ef, exact)| json!({"top_k": k, "ef": ef, "exact": exact})),
        1 => json_value(),
    ];
    (
        prop::option::weighted(0.95, model),
        prop::option::weighted(0.9, mode),
        prop::option::weighted(0.8, scope),
        prop::option::weighted(0.95, input),
        prop::option::weighted(0.8, params),
        prop::option::weighted(0.1, (word(), json_value())),
    )
        .prop_map(|(model, mode, scope, input, params, extra)| {
            let mut body = Map::new();
            for (k, v) in [
                ("model", model),
                ("mode", mode),
                ("scope", scope),
                ("input", input),
                ("params", params),
            ] {
                if let Some(v) = v {
                    body.insert(k.into(), v);
                }
            }
            if let Some((k, v)) = extra {
                body.insert(k, v);
            }
            Value::Object(body)
        })
}

/// Success, or a 4xx (or a 503 that says when to retry) in the one error shape.
fn clear(reply: &Reply) -> Result<(), TestCaseError> {
    let status = reply.status.as_u16();
    if status < 300 {
        return Ok(());
    }
    prop_assert!(
        (400..500).contains(&status) || status == 503,
        "answered {status}: {:?}",
        reply.body
    );
    if status == 503 {
        prop_assert!(reply.headers.contains_key("retry-after"));
    }
    prop_assert!(reply.body["error"]["code"].is_string(), "{:?}", reply.body);
    prop_assert!(
        reply.body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{:?}",
        reply.body
    );
    Ok(())
}

#[test]
fn run_bodies_near_the_contract_get_a_clear_answer() {
    let rt = runtime();
    let gw = gateway(Options {
        clipo: true,
        ..Options::default()
    });
    let statuses = std::sync::Mutex::new(std::collections::BTreeMap::<u16, usize>::new());
    proptest!(|(body in run_body())| {
        let reply = rt.block_on(gw.run(body));
        *statuses.lock().expect("statuses").entry(reply.status.as_u16()).or_default() += 1;
        clear(&reply)?;
    });
    // The generator reaches past the first checks: some runs succeed, some are refused.
    let statuses = statuses.into_inner().expect("statuses");
    println!("run bodies answered: {statuses:?}");
    assert!(statuses.get(&200).is_some_and(|n| *n > 0), "{statuses:?}");
    assert!(statuses.get(&400).is_some_and(|n| *n > 0), "{statuses:?}");
}

#[test]
fn arbitrary_bytes_as_a_run_body_get_a_clear_answer() {
    let rt = runtime();
    let gw = gateway(Options::default());
    proptest!(|(bytes in prop_oneof![
        prop::collection::vec(any::<u8>(), 0..256),
        json_value().prop_map(|v| v.to_string().into_bytes()),
    ])| {
        let reply = rt.block_on(gw.run_raw(bytes));
        clear(&reply)?;
    });
}

/// Init with random declarations, then a PUT of a (maybe damaged, maybe mislabelled)
/// fixture picture, then complete.
#[test]
fn upload_flows_with_random_declarations_and_bytes_get_clear_answers() {
    let rt = runtime();
    let gw = gateway(Options::default());
    // Each fixture with its true content type.
    let pictures = [
        ("photo.jpg", "image/jpeg"),
        ("palette.png", "image/png"),
        ("square.webp", "image/webp"),
        ("frame.gif", "image/gif"),
    ]
    .map(|(name, kind)| (fixture(name).to_vec(), kind));
    let types = vec![
        "image/png",
        "image/jpeg",
        "image/webp",
        "image/gif",
        "image/tiff",
        "text/plain",
        "",
    ];
    let completed = std::sync::atomic::AtomicUsize::new(0);
    proptest!(|(
        (picture, kind) in prop::sample::select(pictures.to_vec()),
        // A third of the flows are honest (true type, exact size, intact bytes) and must
        // complete; the rest damage or misdeclare something.
        honest in prop::bool::weighted(0.33),
        declared in prop::sample::select(types.clone()),
        sent in prop::sample::select(types.clone()),
        size_delta in prop_oneof![Just(0i64), -3i64..3, Just(i64::MIN / 2)],
        filename in prop_oneof![Just("p.png".to_string()), word(), Just("../x".to_string())],
        media_type in prop_oneof![Just(json!("image")), json_value()],
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
    )| {
        let mut bytes = picture.clone();
        let (declared, sent, size_delta, filename, media_type) = if honest {
            (kind, kind, 0, "p.png".to_string(), json!("image"))
        } else {
            for (at, byte) in flips {
                let i = at.index(bytes.len());
                bytes[i] ^= byte;
            }
            (declared, sent, size_delta, filename, media_type)
        };
        let size = (bytes.len() as i64).saturating_add(size_delta);
        let done = rt.block_on(async {
            flow(&gw, &bytes, declared, sent, size, &filename, media_type).await
        })?;
        prop_assert!(done || !honest, "an honest upload of a {kind} did not complete");
        if done {
            completed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    });
    // Some flows get all the way through complete.
    assert!(completed.into_inner() > 0, "no upload ever completed");
}

async fn flow(
    gw: &Gateway,
    bytes: &[u8],
    declared: &str,
    sent: &str,
    size: i64,
    filename: &str,
    media_type: Value,
) -> Result<bool, TestCaseError> {
    let key = gw.key.clone();
    let init = gw
        .init(
            &key,
            json!({"filename": filename, "content_type": declared,
            "media_type": media_type, "size_bytes": size}),
        )
        .await;
    clear(&init)?;
    if init.status.as_u16() != 200 {
        return Ok(false);
    }
    let url = init.body["upload_url"].as_str().expect("upload_url");
    let put = gw.put_bytes(url, bytes.to_vec(), sent).await;
    clear(&put)?;
    let upload_id = init.body["upload_id"].as_str().expect("upload_id");
    let done = gw.complete(&key, upload_id).await;
    clear(&done)?;
    if done.status.as_u16() == 200 {
        prop_assert_eq!(put.status.as_u16(), 204);
        prop_assert_eq!(done.body["size_bytes"].as_u64(), Some(bytes.len() as u64));
    }
    Ok(done.status.as_u16() == 200)
}

/// One filter condition, near the bounds: lists at and past their length, strings at and
/// past the value bytes, keys of system fields, dotted paths and long keys, ranges of numbers
/// and of datetimes, nested filters.
fn condition(depth: u32) -> BoxedStrategy<Value> {
    let key = prop_oneof![
        4 => prop::sample::select(vec!["tag", "n", "a.b", "tags", "$created_at", "$filename",
            "$nope", "", "a..b", "x[]"]).prop_map(str::to_string),
        1 => (1usize..1100).prop_map(|n| "k".repeat(n)),
    ];
    let text = prop_oneof![
        4 => "[a-z]{0,6}",
        1 => prop::sample::select(vec![1023usize, 1024, 1025, 4000]).prop_map(|n| "v".repeat(n)),
    ];
    let scalar = prop_oneof![
        3 => text.clone().prop_map(Value::from),
        1 => (-1e9f64..1e9).prop_map(Value::from),
        1 => any::<bool>().prop_map(Value::from),
        1 => json_value(),
    ];
    let length = prop_oneof![
        6 => 0usize..6,
        1 => prop::sample::select(vec![1023usize, 1024, 1025]),
    ];
    let list = (length, scalar.clone()).prop_map(|(n, v)| {
        Value::Array(
            (0..n)
                .map(|i| match &v {
                    Value::String(s) => Value::from(format!("{s}{i}")),
                    other => other.clone(),
                })
                .collect(),
        )
    });
    let bound = prop_oneof![
        (-1e6f64..1e6).prop_map(Value::from),
        prop::sample::select(vec!["2024-01-01T00:00:00Z", "2024-13-01", "yesterday"])
            .prop_map(Value::from),
        json_value(),
    ];
    let leaf = prop_oneof![
        3 => (key.clone(), scalar).prop_map(|(k, v)| json!({"key": k, "match": {"value": v}})),
        2 => (key.clone(), list.clone()).prop_map(|(k, l)| json!({"key": k, "match": {"any": l}})),
        1 => (key.clone(), list.clone()).prop_map(|(k, l)| json!({"key": k, "match": {"except": l}})),
        2 => (key.clone(), prop::sample::select(vec!["gt", "gte", "lt", "lte", "eq"]), bound)
            .prop_map(|(k, op, b)| json!({"key": k, "range": {op: b}})),
        1 => key.clone().prop_map(|k| json!({"is_empty": {"key": k}})),
        1 => key.prop_map(|k| json!({"is_null": {"key": k}})),
        1 => list.prop_map(|l| json!({"has_id": l})),
        1 => json_value(),
    ];
    if depth == 0 {
        return leaf.boxed();
    }
    // Nesting as a chain (one condition a level), so a deep filter stays small.
    let nested = (
        prop::sample::select(vec!["must", "should", "must_not"]),
        condition(depth - 1),
    )
        .prop_map(|(clause, c)| json!({ clause: [c] }));
    prop_oneof![4 => leaf, 1 => nested].boxed()
}

/// A filter of must / should / must_not lists, up to `depth` more levels of nesting.
fn filter(depth: u32) -> BoxedStrategy<Value> {
    let count = prop_oneof![8 => 0usize..4, 1 => prop::sample::select(vec![64usize, 257])];
    let clause = (count, condition(depth)).prop_map(|(n, c)| Value::Array(vec![c; n]));
    (
        prop::option::of(clause.clone()),
        prop::option::of(clause.clone()),
        prop::option::of(clause),
        prop::option::weighted(0.05, (word(), json_value())),
    )
        .prop_map(|(must, should, must_not, extra)| {
            let mut f = Map::new();
            for (name, c) in [("must", must), ("should", should), ("must_not", must_not)] {
                if let Some(c) = c {
                    f.insert(name.into(), c);
                }
            }
            if let Some((k, v)) = extra {
                f.insert(k, v);
            }
            Value::Object(f)
        })
        .boxed()
}

/// Filters near their bounds on search, delete and the listing: an answer or a clear 4xx,
/// never a 500, and soon.
#[test]
fn filters_near_their_bounds_get_a_clear_answer_in_time() {
    // Nine levels of strategies and of parsing, in a debug build: more than a test thread's
    // default stack.
    std::thread::Builder::new()
        .stack_size(256 << 20)
        .spawn(filters_near_their_bounds)
        .expect("thread")
        .join()
        .expect("the filter fuzz target");
}

fn filters_near_their_bounds() {
    let rt = runtime();
    let gw = gateway(Options {
        body_limit: 16 << 20,
        ..Options::default()
    });
    let vectors: Vec<Vec<f32>> = (0..50).map(|i| vec![i as f32, 1.0, 0.5]).collect();
    let ids: Vec<String> = (0..50).map(|i| format!("i{i}")).collect();
    let metadata: Vec<Value> = (0..50)
        .map(|i| json!({"tag": format!("t{}", i % 5), "n": i, "tags": ["a", i % 3], "a": {"b": i % 2 == 0}}))
        .collect();
    let r = rt.block_on(
        gw.run(json!({"model": "vectors", "mode": "index", "scope": "f",
        "input": {"vectors": vectors, "ids": ids, "metadata": metadata}})),
    );
    assert_eq!(r.status.as_u16(), 200, "{:?}", r.body);
    let statuses = std::sync::Mutex::new(std::collections::BTreeMap::<u16, usize>::new());
    proptest!(|(f in filter(9), how in 0u8..3)| {
        let started = std::time::Instant::now();
        let reply = rt.block_on(async {
            match how {
                0 => Some(gw.run(json!({"model": "vectors", "mode": "search", "scope": "f",
                    "input": {"vector": [3.0, 1.0, 0.5]}, "params": {"filter": f, "top_k": 5}})).await),
                1 => {
                    let encoded = super::filters::urlencode(&f.to_string());
                    let uri = format!("/api/knowledge-bases/vectors/vectors/f/items?filter={encoded}");
                    match axum::http::Request::get(uri)
                        .header("X-API-Key", &gw.key)
                        .body(axum::body::Body::empty())
                    {
                        Ok(req) => Some(gw.send(req).await),
                        // Too long for a URI at all: the client cannot send it.
                        Err(_) => None,
                    }
                }
                // Ids no item has: a delete that passes the filter removes nothing.
                _ => Some(gw.run(json!({"model": "vectors", "mode": "delete", "scope": "f",
                    "input": {"ids": ["nobody"]}, "params": {"filter": f}})).await),
            }
        });
        let Some(reply) = reply else { return Ok(()); };
        prop_assert!(started.elapsed() < std::time::Duration::from_secs(10), "took {:?}", started.elapsed());
        *statuses.lock().expect("statuses").entry(reply.status.as_u16()).or_default() += 1;
        clear(&reply)?;
    });
    let statuses = statuses.into_inner().expect("statuses");
    println!("filters answered: {statuses:?}");
    assert!(statuses.get(&200).is_some_and(|n| *n > 0), "{statuses:?}");
    assert!(statuses.get(&400).is_some_and(|n| *n > 0), "{statuses:?}");
}
