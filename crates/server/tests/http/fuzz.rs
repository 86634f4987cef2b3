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
