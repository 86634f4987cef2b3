//! Fair sharing between workspaces, against the built gateway: one workspace ("abusive")
//! saturates the gateway with writes, then with searches, then makes it build a 20,000-item
//! graph, while another ("interactive") searches and writes one item at a time. Rate limiting
//! is off, so only the fairness bounds stand between them: the encoder's per-workspace share
//! of every batch, the per-workspace store places, and graph builds on their own low-priority
//! threads. It asserts the interactive workspace's p99 stays under 1 s and its maximum under
//! 2 s in every phase, and prints the figures docs/reliability.md quotes.
//!
//! `AIMP_FAIRNESS_SECS` sets each phase's length (4 s in the test suite);
//! `AIMP_FAIRNESS_SECS=30 cargo test --test blackbox fairness -- --nocapture` is the full run.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{Server, admin, aimp, env_setting, parse, shared_models};

const DIM: usize = 64;
const BIG: usize = 20_000;

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

fn post(agent: &ureq::Agent, url: &str, key: &str, body: &Value) -> (u16, Value) {
    let response = agent
        .post(url)
        .header("X-API-Key", key)
        .header("Content-Type", "application/json")
        .send(body.to_string())
        .expect("request");
    parse(response)
}

/// A key of a new workspace, made through the admin API.
fn key_of(base: &str, workspace: &str) -> String {
    let (status, body) = admin(
        "POST",
        &format!("{base}/api/api-keys/"),
        Some(json!({"name": workspace, "workspace": workspace})),
    );
    assert_eq!(status, 201, "{body}");
    body["key"].as_str().expect("key").to_string()
}

fn vector(i: usize) -> Vec<f32> {
    (0..DIM)
        .map(|d| (((i * 31 + d * 17) % 101) as f32 / 101.0) - 0.5)
        .collect()
}

/// Indexes `n` vectors into `scope` in runs of 256, the most one run takes.
fn fill(base: &str, key: &str, scope: &str, n: usize) {
    let a = agent();
    for start in (0..n).step_by(256) {
        let end = (start + 256).min(n);
        let vectors: Vec<Vec<f32>> = (start..end).map(vector).collect();
        let ids: Vec<String> = (start..end).map(|i| format!("v{i}")).collect();
        let (status, body) = post(
            &a,
            &format!("{base}/api/runs"),
            key,
            &json!({"model": "vectors", "mode": "index", "scope": scope,
                    "input": {"vectors": vectors, "ids": ids}}),
        );
        assert_eq!(status, 200, "{body}");
    }
}

/// The abusive workspace's load, from `clients` threads until `stop`: each request is made
/// by `one`, and every answer must be a success or a refusal with Retry-After.
fn flood(
    clients: usize,
    stop: &Arc<AtomicBool>,
    refused: &Arc<AtomicUsize>,
    one: impl Fn(&ureq::Agent, usize) -> (u16, Value) + Send + Sync + 'static,
) -> Vec<thread::JoinHandle<()>> {
    let one = Arc::new(one);
    (0..clients)
        .map(|c| {
            let (stop, refused, one) = (stop.clone(), refused.clone(), one.clone());
            thread::spawn(move || {
                let a = agent();
                let mut n = c * 1_000_000;
                while !stop.load(Ordering::Relaxed) {
                    let (status, body) = one(&a, n);
                    assert!(
                        matches!(status, 200 | 429 | 503),
                        "the abusive workspace got {status}: {body}"
                    );
                    if status != 200 {
                        refused.fetch_add(1, Ordering::Relaxed);
                        thread::sleep(Duration::from_millis(50));
                    }
                    n += 1;
                }
            })
        })
        .collect()
}

/// The interactive workspace's `n`th request in the first test: a text search, a one-item
/// write and a vector search in turn.
fn mixed(n: usize) -> Value {
    match n % 3 {
        0 => json!({"model": "demo-model", "mode": "search", "scope": "mine",
                    "input": {"text": format!("a question about topic {n}")},
                    "params": {"top_k": 5}}),
        1 => json!({"model": "demo-model", "mode": "index", "scope": "mine",
                    "input": {"texts": [format!("note {n}")], "text_ids": [format!("n{n}")]}}),
        _ => json!({"model": "vectors", "mode": "search", "scope": "mine",
                    "input": {"vector": vector(n)}, "params": {"top_k": 5}}),
    }
}

/// The interactive workspace for `secs`: `request(n)` one after another with a short pause,
/// each of which must succeed. Answers each request's milliseconds.
fn interactive(base: &str, key: &str, secs: f64, request: &dyn Fn(usize) -> Value) -> Vec<f64> {
    let a = agent();
    let url = format!("{base}/api/runs");
    let started = Instant::now();
    let mut took = Vec::new();
    let mut n = 0usize;
    while started.elapsed().as_secs_f64() < secs {
        let body = request(n);
        let t = Instant::now();
        let (status, out) = post(&a, &url, key, &body);
        took.push(t.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(status, 200, "the interactive workspace was refused: {out}");
        n += 1;
        thread::sleep(Duration::from_millis(20));
    }
    took
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Runs the interactive workspace's `request`s while an attack runs; prints and answers
/// (p50, p99, max).
fn phase(
    name: &str,
    base: &str,
    key: &str,
    secs: f64,
    refused: &AtomicUsize,
    request: &dyn Fn(usize) -> Value,
) -> (f64, f64, f64) {
    let mut took = interactive(base, key, secs, request);
    took.sort_by(f64::total_cmp);
    let (p50, p99, max) = (
        percentile(&took, 0.5),
        percentile(&took, 0.99),
        took[took.len() - 1],
    );
    println!(
        "fairness, {name}: interactive {} requests p50 {p50:.0} ms p99 {p99:.0} ms max {max:.0} ms; \
         abusive refused {} times",
        took.len(),
        refused.load(Ordering::Relaxed)
    );
    (p50, p99, max)
}

#[test]
fn one_workspace_saturating_the_gateway_leaves_another_within_its_bound() {
    let _measuring = super::measuring();
    let secs: f64 = env_setting("AIMP_FAIRNESS_SECS", 4.0);
    let data = tempfile::tempdir().expect("tempdir");
    let start = || {
        let mut cmd = aimp(data.path(), &shared_models());
        cmd.env("AIMP_MODELS", "demo-model,vectors")
            .env("AIMP_RATE_LIMIT", "0")
            .env("RUST_LOG", "error");
        Server::start(cmd)
    };
    let server = start();
    let base = server.base.clone();
    let abusive = key_of(&base, "abusive");
    let mine = key_of(&base, "interactive");
    fill(&base, &abusive, "big", BIG);
    fill(&base, &mine, "mine", 200);
    // Warm both: the encoder learns its costs, the graphs are loaded.
    interactive(&base, &mine, 1.0, &mixed);
    let mut bounds = Vec::new();

    // Writes: 12 clients indexing runs of 32 texts.
    let stop = Arc::new(AtomicBool::new(false));
    let refused = Arc::new(AtomicUsize::new(0));
    let url = format!("{base}/api/runs");
    let writers = {
        let (url, key) = (url.clone(), abusive.clone());
        flood(12, &stop, &refused, move |a, n| {
            let ids: Vec<String> = (0..32)
                .map(|i| format!("w{}", (n * 32 + i) % 20_000))
                .collect();
            let texts: Vec<String> = ids.iter().map(|id| format!("abusive text {id}")).collect();
            post(
                a,
                &url,
                &key,
                &json!({"model": "demo-model", "mode": "index", "scope": "writes",
                        "input": {"texts": texts, "text_ids": ids}}),
            )
        })
    };
    thread::sleep(Duration::from_millis(500));
    bounds.push((
        "writes",
        phase("writes", &base, &mine, secs, &refused, &mixed),
    ));
    stop.store(true, Ordering::Relaxed);
    writers.into_iter().for_each(|w| w.join().expect("writer"));

    // Searches: 12 clients comparing every one of 20,000 vectors per search.
    let stop = Arc::new(AtomicBool::new(false));
    let refused = Arc::new(AtomicUsize::new(0));
    let searchers = {
        let (url, key) = (url.clone(), abusive.clone());
        flood(12, &stop, &refused, move |a, n| {
            post(
                a,
                &url,
                &key,
                &json!({"model": "vectors", "mode": "search", "scope": "big",
                        "input": {"vector": vector(n)},
                        "params": {"top_k": 100, "exact": true}}),
            )
        })
    };
    thread::sleep(Duration::from_millis(500));
    bounds.push((
        "searches",
        phase("searches", &base, &mine, secs, &refused, &mixed),
    ));
    stop.store(true, Ordering::Relaxed);
    searchers
        .into_iter()
        .for_each(|s| s.join().expect("searcher"));

    // A graph build: the gateway is killed, its graph files removed, and the abusive
    // workspace's first search after the restart builds its 20,000-item graph.
    drop(server);
    let graphs = data.path().join("graphs");
    if graphs.is_dir() {
        std::fs::remove_dir_all(&graphs).expect("remove the graph files");
    }
    let server = start();
    let base = server.base.clone();
    let url = format!("{base}/api/runs");
    interactive(&base, &mine, 0.5, &mixed);
    let refused = Arc::new(AtomicUsize::new(0));
    let builder = {
        let (url, key) = (url.clone(), abusive.clone());
        thread::spawn(move || {
            let t = Instant::now();
            let (status, body) = post(
                &agent(),
                &url,
                &key,
                &json!({"model": "vectors", "mode": "search", "scope": "big",
                        "input": {"vector": vector(7)}, "params": {"top_k": 10}}),
            );
            assert_eq!(status, 200, "{body}");
            t.elapsed().as_secs_f64()
        })
    };
    bounds.push((
        "graph build",
        phase("graph build", &base, &mine, secs.min(3.0), &refused, &mixed),
    ));
    let built = builder.join().expect("builder");
    println!(
        "fairness, graph build: the abusive workspace's first search answered after {built:.2} s"
    );

    for (name, (_, p99, max)) in bounds {
        assert!(
            p99 < 1000.0 && max < 2000.0,
            "{name}: the interactive workspace's p99 {p99:.0} ms, max {max:.0} ms"
        );
    }
}

/// Pictures: one workspace sends picture runs as fast as it can (8 clients, runs of 16 large
/// pictures to decode) while another searches by picture and by text. Decoding takes the
/// workspace's places and the encoder shares its batches, so the other's p99 stays within
/// its bound. The model is the tiny random-weight CLIP fixture: what is measured is the
/// decoding and the sharing, not a forward pass.
#[test]
fn one_workspace_saturating_picture_runs_leaves_another_within_its_bound() {
    let _measuring = super::measuring();
    let secs: f64 = env_setting("AIMP_FAIRNESS_SECS", 4.0);
    let data = tempfile::tempdir().expect("tempdir");
    let models = data.path().join("models");
    super::media::install_fixture_clipo(data.path(), &models);
    let mut cmd = aimp(data.path(), &models);
    cmd.env("AIMP_MODELS", "clipo")
        .env("AIMP_OFFLINE", "1")
        .env("AIMP_RATE_LIMIT", "0")
        .env("RUST_LOG", "error");
    let server = Server::start(cmd);
    let base = server.base.clone();
    let url = format!("{base}/api/runs");
    let abusive = key_of(&base, "abusive");
    let mine = key_of(&base, "interactive");
    let theirs: Vec<String> = (0..8)
        .map(|seed| {
            super::hostile::upload_png(&base, &abusive, &super::hostile::noise_png(900, seed))
        })
        .collect();
    let my_picture = super::hostile::upload_png(&base, &mine, &super::hostile::noise_png(200, 99));
    let index_mine = json!({"model": "clipo", "mode": "index", "scope": "mine",
        "input": {"images": [{"media_ref": my_picture}], "image_ids": ["p"]}});
    assert_eq!(post(&agent(), &url, &mine, &index_mine).0, 200);

    let stop = Arc::new(AtomicBool::new(false));
    let refused = Arc::new(AtomicUsize::new(0));
    let flooders = {
        let (url, key) = (url.clone(), abusive.clone());
        flood(8, &stop, &refused, move |a, n| {
            let images: Vec<Value> = (0..16)
                .map(|i| json!({"media_ref": theirs[(n + i) % theirs.len()]}))
                .collect();
            let ids: Vec<String> = (0..16)
                .map(|i| format!("q{}", (n * 16 + i) % 5_000))
                .collect();
            post(
                a,
                &url,
                &key,
                &json!({"model": "clipo", "mode": "index", "scope": "pictures",
                        "input": {"images": images, "image_ids": ids}}),
            )
        })
    };
    thread::sleep(Duration::from_millis(500));
    let by_picture_and_text = |n: usize| {
        if n.is_multiple_of(2) {
            json!({"model": "clipo", "mode": "search", "scope": "mine",
                   "input": {"image": {"media_ref": my_picture}}, "params": {"top_k": 5}})
        } else {
            json!({"model": "clipo", "mode": "search", "scope": "mine",
                   "input": {"text": format!("a photo of thing {n}")}, "params": {"top_k": 5}})
        }
    };
    let (_, p99, max) = phase(
        "pictures",
        &base,
        &mine,
        secs,
        &refused,
        &by_picture_and_text,
    );
    stop.store(true, Ordering::Relaxed);
    flooders
        .into_iter()
        .for_each(|f| f.join().expect("flooder"));
    assert!(
        p99 < 1000.0 && max < 2000.0,
        "pictures: the interactive workspace's p99 {p99:.0} ms, max {max:.0} ms"
    );
}
