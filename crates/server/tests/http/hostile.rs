//! Hostile clients, in process: each finding of the bounded-cost review as an attack at a
//! small size, asserting what the gateway holds or spends afterwards. The black-box suite
//! (`tests/blackbox/hostile.rs`) runs the ones that need a real process (resident memory,
//! connections) against the built binary.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};

use crate::filters::urlencode;
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

/// A picture's bytes were read whole (up to 20 MiB) and copied, outside any budget, for each
/// GET. Now they are streamed from the file: no frame of the body is larger than 64 KiB.
#[tokio::test]
async fn media_is_streamed_from_its_file_in_bounded_chunks() {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let g = gateway(Options::default());
    let png = crate::media::fixture("landscape_rgb.png");
    assert!(png.len() > 2 * 64 * 1024, "a picture of several chunks");
    let media = g.upload("landscape.png", "image/png", png.clone()).await;
    let media_ref = media["media_ref"].as_str().expect("media_ref");
    let response = g
        .app
        .clone()
        .oneshot(
            Request::get(format!("/api/media/{media_ref}"))
                .header("X-API-Key", &g.key)
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("infallible");
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers().clone();
    assert_eq!(headers["content-type"], "image/png");
    assert_eq!(headers["content-length"], png.len().to_string().as_str());
    let mut body = response.into_body();
    let (mut got, mut frames, mut largest) = (Vec::new(), 0, 0);
    while let Some(frame) = body.frame().await {
        let data = frame.expect("frame").into_data().expect("data");
        largest = largest.max(data.len());
        frames += 1;
        got.extend_from_slice(&data);
    }
    assert_eq!(got, png, "the bytes as uploaded");
    assert!(largest <= 64 * 1024, "a frame of {largest} bytes");
    assert!(frames >= 3, "{frames} frames");
}

/// Pictures were cached `private, max-age=86400` with no `Vary`: a browser showed them for a
/// day after the console's tab forgot the key. Now each reuse is revalidated with the key.
#[tokio::test]
async fn pictures_are_revalidated_before_each_reuse_and_vary_by_key() {
    let g = gateway(Options::default());
    let media = g
        .upload(
            "photo.jpg",
            "image/jpeg",
            crate::media::fixture("photo.jpg"),
        )
        .await;
    let media_ref = media["media_ref"].as_str().expect("media_ref");
    for uri in [
        format!("/api/media/{media_ref}"),
        format!("/api/media/{media_ref}/thumbnail?size=64"),
    ] {
        let got = crate::media_bytes::get_raw(&g, &uri, Some(&g.key), None).await;
        assert_eq!(got.status, StatusCode::OK);
        let cache = got.headers["cache-control"].to_str().expect("ascii");
        assert!(
            cache.contains("private") && cache.contains("no-cache"),
            "{cache}"
        );
        assert!(!cache.contains("max-age"), "{cache}");
        assert_eq!(got.headers["vary"], "X-API-Key");
        let etag = got.headers["etag"].to_str().expect("ascii").to_string();
        let again = crate::media_bytes::get_raw(&g, &uri, Some(&g.key), Some(&etag)).await;
        assert_eq!(again.status, StatusCode::NOT_MODIFIED);
        assert_eq!(again.headers["vary"], "X-API-Key");
    }
}

/// A waiting thumbnail took every free permit of the runs' picture budget (FIFO), so every
/// tenant's picture runs got 503 meanwhile. Thumbnails now have a budget of their own, and
/// one needing more than all of it is refused at once, naming the setting.
#[tokio::test]
async fn thumbnails_have_a_budget_of_their_own_and_refuse_past_it() {
    // The runs' budget is smaller than this thumbnail needs: it is not the one charged.
    let g = gateway(Options {
        media_in_flight: Some(64 * 1024),
        ..Options::default()
    });
    let media = g
        .upload(
            "landscape.png",
            "image/png",
            crate::media::fixture("landscape_rgb.png"),
        )
        .await;
    let media_ref = media["media_ref"].as_str().expect("media_ref");
    let uri = format!("/api/media/{media_ref}/thumbnail?size=64");
    let started = std::time::Instant::now();
    let got = crate::media_bytes::get_raw(&g, &uri, Some(&g.key), None).await;
    assert_eq!(
        got.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&got.bytes)
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(4),
        "it did not wait"
    );
    assert_eq!(
        g.state.media_budget_available(),
        64,
        "the runs' budget untouched"
    );

    let small = gateway(Options {
        thumbnail_memory: Some(100 * 1024),
        ..Options::default()
    });
    let media = small
        .upload(
            "landscape.png",
            "image/png",
            crate::media::fixture("landscape_rgb.png"),
        )
        .await;
    let media_ref = media["media_ref"].as_str().expect("media_ref");
    let r = small
        .send(
            Request::get(format!("/api/media/{media_ref}/thumbnail?size=64"))
                .header("X-API-Key", &small.key)
                .body(Body::empty())
                .expect("request"),
        )
        .await;
    assert_error(&r, 422, "image_too_large", Some("media_ref"));
    assert!(
        r.message().contains("AIMP_THUMBNAIL_MEMORY"),
        "{}",
        r.message()
    );
}

/// Sends `bytes` to `tx` `step` bytes at a time, one step every `every`, until the receiver
/// is gone; answers how many bytes went.
async fn trickle(
    tx: tokio::sync::mpsc::Sender<Vec<u8>>,
    bytes: Vec<u8>,
    step: usize,
    every: std::time::Duration,
) -> usize {
    let mut sent = 0;
    for chunk in bytes.chunks(step) {
        if tx.send(chunk.to_vec()).await.is_err() {
            break;
        }
        sent += chunk.len();
        tokio::time::sleep(every).await;
    }
    sent
}

/// Expiry was checked only after the body: a PUT trickling bytes (never idle long enough to
/// time out) went on past its URL's expiry for as long as the client liked.
#[tokio::test]
async fn an_upload_put_ends_at_its_urls_expiry_even_while_bytes_trickle_in() {
    let g = gateway(Options {
        upload_ttl: Some(std::time::Duration::from_secs(1)),
        ..Options::default()
    });
    let png = crate::media::fixture("palette.png");
    let (_, req, tx) = crate::media::streamed_put(&g, png.len()).await;
    let started = std::time::Instant::now();
    let sender = tokio::spawn(trickle(
        tx,
        png.clone(),
        16,
        std::time::Duration::from_millis(50),
    ));
    let put = g.send(req).await;
    assert_error(&put, 404, "upload_expired", Some("upload_id"));
    let took = started.elapsed();
    assert!(
        took < std::time::Duration::from_secs(5),
        "ended after {took:?}"
    );
    let sent = sender.await.expect("sender");
    assert!(sent < png.len(), "it ended before the body did");
    assert!(
        crate::media::files_in(&g, "uploads").is_empty(),
        "nothing is kept"
    );
}

/// A PUT that keeps sending, slower than the least rate, ends once it has had the time its
/// size takes at that rate (plus the idle timeout).
#[tokio::test]
async fn an_upload_put_slower_than_the_least_rate_is_408_and_keeps_nothing() {
    let g = gateway(Options {
        upload_idle: Some(std::time::Duration::from_millis(500)),
        upload_min_rate: Some(10_000),
        ..Options::default()
    });
    let png = crate::media::fixture("palette.png");
    assert!(png.len() > 10_000);
    let (upload_id, req, tx) = crate::media::streamed_put(&g, png.len()).await;
    let started = std::time::Instant::now();
    // 1,000 bytes a second: never idle for 500 ms, a tenth of the least rate.
    let sender = tokio::spawn(trickle(
        tx,
        png.clone(),
        100,
        std::time::Duration::from_millis(100),
    ));
    let put = g.send(req).await;
    assert_error(&put, 408, "upload_too_slow", None);
    assert!(
        put.message().contains("AIMP_UPLOAD_MIN_RATE"),
        "{}",
        put.message()
    );
    let took = started.elapsed();
    assert!(
        took < std::time::Duration::from_secs(8),
        "ended after {took:?}"
    );
    sender.await.expect("sender");
    assert!(
        crate::media::files_in(&g, "uploads").is_empty(),
        "nothing is kept"
    );
    assert_error(
        &g.complete(&g.key, &upload_id).await,
        409,
        "upload_failed",
        Some("upload_id"),
    );
}

/// One workspace opening many slow uploads held every connection. Now a workspace streams at
/// most `uploads_per_workspace` PUTs at once; one more is 429 and its URL stays usable.
#[tokio::test]
async fn a_workspace_streams_a_bounded_number_of_uploads_at_once() {
    use tower::ServiceExt;
    let g = gateway(Options {
        uploads_per_workspace: Some(2),
        ..Options::default()
    });
    let png = crate::media::fixture("palette.png");
    let mut held = Vec::new();
    for _ in 0..2 {
        let (_, req, tx) = crate::media::streamed_put(&g, png.len()).await;
        tx.send(png[..100].to_vec()).await.expect("a first chunk");
        let app = g.app.clone();
        held.push((tokio::spawn(async move { app.oneshot(req).await }), tx));
    }
    // Both PUTs are streaming (their first bytes were taken).
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let init = g.init(&g.key, crate::media::init_body(png.len())).await;
    let url = init.body["upload_url"].as_str().expect("url").to_string();
    let upload_id = init.body["upload_id"].as_str().expect("id").to_string();
    let third = g.put_bytes(&url, png.clone(), "image/png").await;
    assert_error(&third, 429, "too_many_uploads", None);
    assert!(third.headers.contains_key("retry-after"));
    // Another workspace is not held up.
    let other = g.key_of_workspace("bystander");
    let media = g
        .upload_as(&other, "palette.png", "image/png", png.clone())
        .await;
    assert!(media["media_ref"].is_string(), "{media}");
    // One of the two finishes: the refused URL works now.
    let (first, tx) = held.remove(0);
    tx.send(png[100..].to_vec()).await.expect("the rest");
    drop(tx);
    let done = first.await.expect("join").expect("infallible");
    assert_eq!(done.status(), StatusCode::NO_CONTENT);
    let retried = g.put_bytes(&url, png.clone(), "image/png").await;
    assert_eq!(retried.status, StatusCode::NO_CONTENT, "{:?}", retried.body);
    let done = g.complete(&g.key, &upload_id).await;
    assert_eq!(done.status, StatusCode::OK, "{:?}", done.body);
    drop(held);
}

/// `n` pseudo-random `dim`-dimensional vectors (a fixed LCG: the same every run).
fn random_vectors(n: usize, dim: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            (0..dim)
                .map(|_| {
                    state = state
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    ((state >> 40) as f32 / (1u64 << 24) as f32) - 0.5
                })
                .collect()
        })
        .collect()
}

/// Indexes `n` random vectors of `dim` into `scope` of the `vectors` model, in batches.
async fn index_random(g: &crate::Gateway, scope: &str, n: usize, dim: usize) {
    let all = random_vectors(n, dim, 7);
    for (b, batch) in all.chunks(256).enumerate() {
        let ids: Vec<String> = (0..batch.len())
            .map(|i| format!("v{}", b * 256 + i))
            .collect();
        let r = g
            .run(json!({"model": "vectors", "mode": "index", "scope": scope,
                        "input": {"vectors": batch, "ids": ids}}))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    }
}

/// The recall check ran up to 1,000 walks at ef 4,096 and 1,000 exact scans in one blocking
/// call that nothing bounded, stopped or counted. Now its work is bounded, one runs at a time
/// per workspace, it pays the rate limit by its queries, and it stops when its client goes.
/// (And it is tested where the graph is searched: the old test's 30 items were searched
/// exactly, recall 1 by construction.)
#[tokio::test]
async fn the_recall_check_is_bounded_one_at_a_time_charged_and_cancelled() {
    let g = gateway(Options {
        body_limit: 8 << 20,
        exact_below: Some(0),
        rate_limit: 600,
        ..Options::default()
    });
    index_random(&g, "big", 20_000, 128).await;
    let uri = "/api/knowledge-bases/vectors/vectors/big/recall";
    // Measured through the graph: below 1 at a small ef, higher at a large one.
    let low = g
        .post_json(uri, &g.key, json!({"queries": 50, "k": 10, "ef": 10}))
        .await;
    assert_eq!(low.status, StatusCode::OK, "{:?}", low.body);
    assert_eq!(low.body["graph_exhaustive"], 0.0, "{:?}", low.body);
    let high = g
        .post_json(uri, &g.key, json!({"queries": 50, "k": 10, "ef": 400}))
        .await;
    let (low_r, high_r) = (
        low.body["recall"].as_f64().expect("recall"),
        high.body["recall"].as_f64().expect("recall"),
    );
    assert!(
        low_r < 0.999 && low_r < high_r && high_r > 0.9,
        "{low_r} {high_r}"
    );

    // A long check holds the workspace's turn; another is 429 meanwhile.
    let long = {
        let app = g.app.clone();
        let key = g.key.clone();
        tokio::spawn(async move {
            use tower::ServiceExt;
            app.oneshot(
                Request::post(uri)
                    .header("X-API-Key", key)
                    .header("Content-Type", "application/json")
                    .body(Body::from(json!({"queries": 1000, "ef": 4096}).to_string()))
                    .expect("request"),
            )
            .await
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let second = g.post_json(uri, &g.key, json!({"queries": 10})).await;
    assert_error(&second, 429, "recall_in_progress", None);
    assert!(second.headers.contains_key("retry-after"));
    // Its client goes away: the check stops, and the turn is free again soon after.
    long.abort();
    let gone = std::time::Instant::now();
    let next = loop {
        let r = g.post_json(uri, &g.key, json!({"queries": 10})).await;
        if r.status != StatusCode::TOO_MANY_REQUESTS || gone.elapsed().as_secs() > 30 {
            break r;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(next.status, StatusCode::OK, "{:?}", next.body);
    let freed = gone.elapsed();
    assert!(
        freed < std::time::Duration::from_secs(2),
        "the abandoned check ran on for {freed:?}"
    );

    // Work past the bound is refused naming how many queries fit.
    let small = gateway(Options {
        recall_max_work: Some(10_000),
        rate_limit: 60,
        ..Options::default()
    });
    index_random(&small, "s", 2_000, 8).await;
    let uri = "/api/knowledge-bases/vectors/vectors/s/recall";
    let r = small
        .post_json(uri, &small.key, json!({"queries": 10}))
        .await;
    assert_error(&r, 400, "too_much_work", Some("queries"));
    assert!(r.message().contains("at most 5 queries"), "{}", r.message());
    assert!(
        r.message().contains("AIMP_RECALL_MAX_WORK"),
        "{}",
        r.message()
    );
    // A check worth more than the key's whole rate limit is refused; one within it spends it.
    let roomy = gateway(Options {
        rate_limit: 60,
        ..Options::default()
    });
    index_random(&roomy, "s", 100, 8).await;
    let r = roomy
        .post_json(uri, &roomy.key, json!({"queries": 1000}))
        .await;
    assert_error(&r, 400, "too_much_work", Some("queries"));
    let r = roomy
        .post_json(uri, &roomy.key, json!({"queries": 400}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let r = roomy
        .post_json(uri, &roomy.key, json!({"queries": 400}))
        .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{:?}", r.body);
    assert_eq!(r.code(), "rate_limited");
}

/// A filter nested past its bound, with every level at its list bounds, on the stack of an
/// ordinary thread: refused with a 400, never a crash.
#[tokio::test]
async fn a_deep_filter_is_refused_on_an_ordinary_stack() {
    let gw = gateway(Options {
        body_limit: 16 << 20,
        ..Options::default()
    });
    let r = gw.run(index_texts(3)).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    // The outermost filter and MAX_DEPTH (8) filters nested in it.
    for depth in [8usize, 9, 10, 64] {
        let mut f = json!({"key": "tag", "match": {"value": "t1"}});
        for _ in 0..depth {
            f = json!({"must": [f], "should": [{"key": "tag", "match": {"any": ["t0", "t1", "t2"]}}]});
        }
        let r = gw
            .run(
                json!({"model": "demo-model", "mode": "search", "scope": "hostile",
                        "input": {"text": "note"}, "params": {"filter": f}}),
            )
            .await;
        if depth <= 9 {
            assert_eq!(r.status, StatusCode::OK, "depth {depth}: {:?}", r.body);
        } else {
            assert_eq!(
                r.status,
                StatusCode::BAD_REQUEST,
                "depth {depth}: {:?}",
                r.body
            );
            // Past serde_json's own recursion limit the body itself is refused.
            assert!(
                r.message().contains("nest") || r.message().contains("recursion limit"),
                "{}",
                r.message()
            );
        }
    }
}

/// A schema refusal quoted the refused value whole: 300 vectors of 128 numbers (a 1 MiB body)
/// came back as a 1 MiB error message. Now the message is cut to a few hundred bytes.
#[tokio::test]
async fn a_refused_value_is_not_echoed_back_whole() {
    let gw = gateway(Options {
        body_limit: 8 << 20,
        ..Options::default()
    });
    let vectors = random_vectors(300, 128, 3);
    let ids: Vec<String> = (0..300).map(|i| format!("v{i}")).collect();
    let r = gw
        .run(json!({"model": "vectors", "mode": "index", "scope": "echo",
                    "input": {"vectors": vectors, "ids": ids}}))
        .await;
    assert_error(&r, 400, "invalid_input", Some("input.vectors"));
    assert!(r.message().len() < 1024, "{} bytes", r.message().len());
    assert!(
        r.message().contains("more than 256 items"),
        "{}",
        r.message()
    );
}
