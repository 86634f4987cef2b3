//! The kill loop: clients stream index, delete and upload runs through the API while the
//! gateway is SIGKILLed at random moments and restarted on the same data folder. Afterwards the
//! store is checked against what the clients were told: every acknowledged item is there with
//! the vector and metadata of what it was last acknowledged as (or of a later run whose answer
//! the kill cut off) and is found by a filter on that metadata, every acknowledged delete stays
//! deleted, and every upload is complete or absent.
//!
//! `AIMP_KILLS` sets the number of kills: 10 in the test suite, and
//! `AIMP_KILLS=100 cargo test --test blackbox kill_loop -- --nocapture` for the full run. The
//! summary line (kills, acknowledged runs, cut-off runs, reopen times) is printed either way.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::thread;
use std::time::{Duration, Instant};

use aimp_store::{CollectionKey, Filter, Store};
use aimp_store_embedded::{DEFAULT_CACHE_BYTES, EmbeddedStore};
use rand::{Rng, SeedableRng, rngs::StdRng};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::media::install_fixture_clipo;
use super::{ENV_KEY, Server, agent_with_timeout, aimp, env_setting, parse, shared_models};

const TEXT_CLIENTS: usize = 2;
/// Ids a text client draws from: small enough that ids are replaced and deleted again and again.
const TEXT_IDS: usize = 120;
const SCOPE: &str = "kills";

/// What one run was answered.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Answer {
    /// 200: the run is committed.
    Acknowledged,
    /// 503 (models still loading, or overloaded): the server refused it before any write.
    Refused,
    /// The connection broke before an answer (the kill): it may or may not have committed.
    CutOff,
}

/// What a run would leave an id as, were it applied.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum State {
    Absent,
    /// A text item holding this text's embedding.
    Text(String),
    /// A picture item holding the embedding of this upload's picture.
    Picture(String),
}

/// One client's runs on its own ids, in the order it sent them.
#[derive(Debug, Default)]
struct Log {
    runs: Vec<(Vec<(String, State)>, Answer)>,
    uploads: Vec<Upload>,
}

#[derive(Debug)]
struct Upload {
    upload_id: String,
    sha256: String,
    size: usize,
    /// The PUT's answer (None: never sent).
    put: Option<Answer>,
    /// The `media_ref` complete returned, if it answered.
    media_ref: Option<String>,
}

/// The gateway's current base URL; each restart listens on a new port.
#[derive(Clone)]
struct Base(Arc<RwLock<String>>);

impl Base {
    fn get(&self) -> String {
        self.0.read().expect("base").clone()
    }
}

fn agent() -> ureq::Agent {
    agent_with_timeout(Duration::from_secs(60))
}

/// POSTs a body with the key: the status and JSON reply, or None when the connection broke.
fn send(agent: &ureq::Agent, base: &Base, path: &str, body: &Value) -> Option<(u16, Value)> {
    agent
        .post(&format!("{}{path}", base.get()))
        .header("X-API-Key", ENV_KEY)
        .header("Content-Type", "application/json")
        .send(body.to_string())
        .ok()
        .map(parse)
}

/// Classifies an answer; any status but 200 and 503 fails the test (a kill is no excuse for a
/// 500 or a 4xx).
fn answer(reply: &Option<(u16, Value)>, what: &str) -> Answer {
    match reply {
        None => Answer::CutOff,
        Some((200, _)) => Answer::Acknowledged,
        Some((503, _)) => Answer::Refused,
        Some((status, body)) => panic!("{what} answered {status}: {body}"),
    }
}

fn text_client(client: usize, base: Base, stop: Arc<AtomicBool>) -> Log {
    let agent = agent();
    let mut rng = StdRng::seed_from_u64(client as u64);
    let mut log = Log::default();
    let mut run = 0usize;
    while !stop.load(Ordering::Relaxed) {
        run += 1;
        let mut ids: Vec<String> = (0..rng.random_range(1..=6))
            .map(|_| format!("t{client}-{}", rng.random_range(0..TEXT_IDS)))
            .collect();
        ids.sort();
        ids.dedup();
        let (body, states) = if rng.random_bool(0.75) {
            let texts: Vec<String> = ids
                .iter()
                .map(|id| format!("client {client} run {run} writes {id}"))
                .collect();
            let metadata: Vec<Value> = texts.iter().map(|t| text_metadata(t)).collect();
            let body = json!({"model": "demo-model", "mode": "index", "scope": SCOPE,
                "input": {"texts": texts, "text_ids": ids, "metadata": metadata}, "params": {}});
            let states = texts.into_iter().map(State::Text).collect::<Vec<_>>();
            (body, states)
        } else {
            let body = json!({"model": "demo-model", "mode": "delete", "scope": SCOPE,
                "input": {"ids": ids}, "params": {}});
            (body, vec![State::Absent; ids.len()])
        };
        let reply = send(&agent, &base, "/api/runs", &body);
        let got = answer(&reply, "a text run");
        log.runs.push((ids.into_iter().zip(states).collect(), got));
        if got != Answer::Acknowledged {
            thread::sleep(Duration::from_millis(50)); // the gateway is restarting
        }
    }
    log
}

/// The metadata a text item is indexed with: a function of its text alone, so the check knows
/// what each allowed state holds.
fn text_metadata(text: &str) -> Value {
    json!({"text": text, "length": text.len(), "tags": ["kill-loop", "text"],
           "written": {"by": "kill loop"}})
}

/// A small picture no other upload has: random pixels.
fn random_png(rng: &mut StdRng) -> Vec<u8> {
    let img = image::RgbImage::from_fn(24, 24, |_, _| image::Rgb(rng.random::<[u8; 3]>()));
    let mut png = std::io::Cursor::new(Vec::new());
    img.write_to(&mut png, image::ImageFormat::Png)
        .expect("png");
    png.into_inner()
}

/// Uploads pictures (init, PUT, complete) and indexes or deletes them under its own ids.
fn picture_client(base: Base, stop: Arc<AtomicBool>) -> Log {
    let agent = agent();
    let mut rng = StdRng::seed_from_u64(99);
    let mut log = Log::default();
    while !stop.load(Ordering::Relaxed) {
        let id = format!("p-{}", rng.random_range(0..40));
        if rng.random_bool(0.2) {
            let body = json!({"model": "clipo", "mode": "delete", "scope": SCOPE,
                "input": {"ids": [id]}, "params": {}});
            let got = answer(&send(&agent, &base, "/api/runs", &body), "a picture delete");
            log.runs.push((vec![(id, State::Absent)], got));
            continue;
        }
        let png = random_png(&mut rng);
        let init = json!({"filename": format!("{id}.png"), "content_type": "image/png",
            "media_type": "image", "size_bytes": png.len()});
        let reply = send(&agent, &base, "/api/media/upload/init", &init);
        let Some((200, init)) = reply else {
            answer(&reply, "upload init");
            thread::sleep(Duration::from_millis(50));
            continue;
        };
        let upload_id = init["upload_id"].as_str().expect("upload_id").to_string();
        let url = init["upload_url"].as_str().expect("upload_url");
        // The signed path outlives the port: a restart listens elsewhere.
        let path = &url[url.find("/api/").expect("path")..];
        let mut upload = Upload {
            upload_id: upload_id.clone(),
            sha256: hex::encode(Sha256::digest(&png)),
            size: png.len(),
            put: None,
            media_ref: None,
        };
        let put = agent
            .put(&format!("{}{path}", base.get()))
            .header("Content-Type", "image/png")
            .send(&png[..])
            .ok()
            .map(|r| r.status().as_u16());
        upload.put = Some(match put {
            None => Answer::CutOff,
            Some(204) => Answer::Acknowledged,
            Some(status) => panic!("upload PUT answered {status}"),
        });
        if upload.put == Some(Answer::Acknowledged) {
            let reply = send(
                &agent,
                &base,
                "/api/media/upload/complete",
                &json!({"upload_id": upload_id}),
            );
            if let Some((200, done)) = &reply {
                upload.media_ref = done["media_ref"].as_str().map(str::to_string);
            } else {
                answer(&reply, "upload complete");
            }
        }
        let media_ref = upload.media_ref.clone();
        log.uploads.push(upload);
        let Some(media_ref) = media_ref else {
            thread::sleep(Duration::from_millis(50));
            continue;
        };
        let body = json!({"model": "clipo", "mode": "index", "scope": SCOPE,
            "input": {"images": [{"media_ref": media_ref, "filename": format!("{id}.png")}],
                      "image_ids": [id]},
            "params": {}});
        let got = answer(
            &send(&agent, &base, "/api/runs", &body),
            "a picture index run",
        );
        log.runs.push((vec![(id, State::Picture(media_ref))], got));
    }
    log
}

/// The states an id may be in after the log: what its last acknowledged run left, or what any
/// later cut-off run would have left.
fn allowed(log: &Log) -> BTreeMap<String, Vec<State>> {
    let mut out: BTreeMap<String, Vec<State>> = BTreeMap::new();
    for (items, got) in &log.runs {
        for (id, state) in items {
            let states = out.entry(id.clone()).or_insert_with(|| vec![State::Absent]);
            match got {
                Answer::Acknowledged => *states = vec![state.clone()],
                Answer::CutOff => states.push(state.clone()),
                Answer::Refused => {}
            }
        }
    }
    out
}

fn serve(data: &Path, models: &Path) -> Command {
    let mut cmd = aimp(data, models);
    cmd.env("AIMP_API_KEY", ENV_KEY)
        .env("AIMP_MODELS", "demo-model,clipo")
        .env("AIMP_OFFLINE", "1")
        .env("RUST_LOG", "error")
        // Durability, not one key's quota: the clients and the final check send more than
        // the default 600 runs a minute.
        .env("AIMP_RATE_LIMIT", "0")
        // The graph, not exact search, answers: it is what a kill can leave behind.
        .env("AIMP_EXACT_BELOW", "0");
    cmd
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// Embeddings by an `execute` run: one per input item.
fn embeddings(base: &Base, model: &str, input: Value) -> Vec<Vec<f32>> {
    let body = json!({"model": model, "mode": "execute", "input": input, "params": {}});
    let (status, reply) = send(&agent(), base, "/api/runs", &body).expect("execute");
    assert_eq!(status, 200, "{reply}");
    serde_json::from_value(reply["output"]["embeddings"].clone()).expect("embeddings")
}

#[test]
fn acknowledged_runs_survive_sigkill_after_sigkill() {
    let kills: usize = env_setting("AIMP_KILLS", 10);
    let data = tempfile::tempdir().expect("tempdir");
    let models = data.path().join("models");
    // demo-model's real weights, once for every test, then into this test's own models folder
    // beside the fixture CLIP installed as clipo.
    let mut cmd = aimp(data.path(), &shared_models());
    cmd.env("AIMP_API_KEY", ENV_KEY)
        .env("AIMP_MODELS", "demo-model");
    Server::start(cmd).stop(); // serve installs what is missing, under the folder's lock
    let out = aimp(data.path(), &models)
        .args(["models", "import", "demo-model", "--from"])
        .arg(shared_models().join("demo-model"))
        .output()
        .expect("import");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    install_fixture_clipo(data.path(), &models);

    let mut rng = StdRng::seed_from_u64(7);
    let mut server = Server::start(serve(data.path(), &models));
    let base = Base(Arc::new(RwLock::new(server.base.clone())));
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients: Vec<_> = (0..TEXT_CLIENTS)
        .map(|c| {
            let (base, stop) = (base.clone(), stop.clone());
            thread::spawn(move || text_client(c, base, stop))
        })
        .collect();
    {
        let (base, stop) = (base.clone(), stop.clone());
        clients.push(thread::spawn(move || picture_client(base, stop)));
    }

    let (mut to_listen, mut to_ready) = (Vec::new(), Vec::new());
    for _ in 0..kills {
        thread::sleep(Duration::from_millis(rng.random_range(300..1500)));
        server.child.kill().expect("SIGKILL");
        server.child.wait().expect("wait");
        let started = Instant::now();
        server = Server::spawn(serve(data.path(), &models));
        to_listen.push(started.elapsed().as_secs_f64());
        *base.0.write().expect("base") = server.base.clone();
        server.wait_ready();
        to_ready.push(started.elapsed().as_secs_f64());
    }
    thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let logs: Vec<Log> = clients
        .into_iter()
        .map(|c| c.join().expect("client"))
        .collect();

    // One more kill with nothing in flight, then the check on a fresh start.
    server.child.kill().expect("SIGKILL");
    server.child.wait().expect("wait");
    let server = Server::start(serve(data.path(), &models));
    *base.0.write().expect("base") = server.base.clone();

    let mut expected: BTreeMap<(&str, &str), BTreeMap<String, Vec<State>>> = BTreeMap::new();
    for (i, log) in logs.iter().enumerate() {
        let key = if i < TEXT_CLIENTS {
            ("demo-model", "texts")
        } else {
            ("clipo", "images")
        };
        expected.entry(key).or_default().extend(allowed(log));
    }

    // Every upload is complete or absent: completing again gives the same picture, or says
    // its bytes never arrived (409); never a different or partial picture.
    let mut uploads = (0, 0);
    for upload in logs.iter().flat_map(|l| &l.uploads) {
        let reply = send(
            &agent(),
            &base,
            "/api/media/upload/complete",
            &json!({"upload_id": upload.upload_id}),
        )
        .expect("complete");
        match reply {
            (200, done) => {
                assert_eq!(done["sha256"], upload.sha256.as_str(), "{upload:?}");
                assert_eq!(done["size_bytes"], upload.size, "{upload:?}");
                if let Some(media_ref) = &upload.media_ref {
                    assert_eq!(done["media_ref"], media_ref.as_str(), "{upload:?}");
                }
                uploads.0 += 1;
            }
            (409, _) => {
                assert_ne!(upload.put, Some(Answer::Acknowledged), "{upload:?}");
                uploads.1 += 1;
            }
            (status, body) => panic!("completing {upload:?} again answered {status}: {body}"),
        }
    }

    // The vector each allowed state would hold, by the same models.
    let texts: BTreeSet<&str> = expected
        .values()
        .flat_map(|ids| ids.values().flatten())
        .filter_map(|s| match s {
            State::Text(t) => Some(t.as_str()),
            _ => None,
        })
        .collect();
    let pictures: BTreeSet<&str> = expected
        .values()
        .flat_map(|ids| ids.values().flatten())
        .filter_map(|s| match s {
            State::Picture(m) => Some(m.as_str()),
            _ => None,
        })
        .collect();
    let mut vector_of: BTreeMap<State, Vec<f32>> = BTreeMap::new();
    for chunk in texts.iter().collect::<Vec<_>>().chunks(32) {
        let vs = embeddings(&base, "demo-model", json!({"texts": chunk}));
        for (t, v) in chunk.iter().zip(vs) {
            vector_of.insert(State::Text(t.to_string()), v);
        }
    }
    for m in &pictures {
        let input = json!({"image": {"media_ref": m, "filename": "p.png"}});
        let v = embeddings(&base, "clipo", input).remove(0);
        vector_of.insert(State::Picture(m.to_string()), v);
    }
    server.stop();

    // The store itself, read as the next start would read it.
    let index = EmbeddedStore::open(data.path(), DEFAULT_CACHE_BYTES).expect("open store");
    let (mut present, mut absent, mut worst, mut filtered) = (0, 0, 0.0f32, 0);
    for ((model, collection), ids) in &expected {
        let key = CollectionKey::new("default", model, collection, SCOPE);
        for (id, states) in ids {
            let got = index.get(&key, id).expect("get");
            let matched = match &got {
                None => states.contains(&State::Absent),
                Some((record, stored)) => states.iter().any(|s| {
                    let metadata_ok = match s {
                        State::Text(t) => record.metadata == Some(text_metadata(t)),
                        _ => true,
                    };
                    metadata_ok
                        && vector_of.get(s).is_some_and(|want| {
                            let diff = max_diff(want, stored);
                            worst = if diff < 1e-4 { worst.max(diff) } else { worst };
                            diff < 1e-4
                        })
                }),
            };
            assert!(
                matched,
                "{model}/{id}: stored {:?}, allowed {states:?}",
                got.map(|(record, _)| record)
            );
            // A filter on the metadata it was acknowledged with finds it.
            if let Some((record, _)) = &got
                && let Some(text) = record.metadata.as_ref().and_then(|m| m.get("text"))
            {
                let filter = Filter::parse(&json!({"must": [
                    {"key": "text", "match": {"value": text}},
                    {"key": "tags", "match": {"value": "kill-loop"}},
                    {"key": "written.by", "match": {"any": ["kill loop"]}}]}))
                .expect("filter");
                let found = index
                    .list_items(&key, None, 10, Some(&filter))
                    .expect("filtered listing");
                assert!(
                    found.iter().any(|i| i.id == *id),
                    "{model}/{id}: not found by a filter on its metadata"
                );
                filtered += 1;
            }
            if got.is_some() {
                present += 1;
            } else {
                absent += 1;
            }
        }
        // Nothing the clients never wrote.
        let listed = index.list_items(&key, None, 10_000, None).expect("list");
        for item in listed {
            assert!(
                ids.contains_key(&item.id),
                "{model}/{} was never written",
                item.id
            );
        }
    }

    let runs: Vec<Answer> = logs
        .iter()
        .flat_map(|l| l.runs.iter().map(|(_, a)| *a))
        .collect();
    let count = |a: Answer| runs.iter().filter(|x| **x == a).count();
    println!(
        "kill loop: {kills} kills; {} runs acknowledged, {} cut off, {} refused while loading; \
         {present} ids present and {absent} absent as acknowledged (largest vector difference \
         {worst:.1e}; {filtered} found by a filter on their metadata); uploads {} complete, {} never received; reopen to listening p50 {:.2} s \
         max {:.2} s, to ready p50 {:.2} s max {:.2} s",
        count(Answer::Acknowledged),
        count(Answer::CutOff),
        count(Answer::Refused),
        uploads.0,
        uploads.1,
        median(to_listen.clone()),
        to_listen.iter().copied().fold(0.0, f64::max),
        median(to_ready.clone()),
        to_ready.iter().copied().fold(0.0, f64::max),
    );
    assert!(
        count(Answer::Acknowledged) > kills,
        "too few runs to prove anything"
    );
    assert!(present > 0 && absent > 0 && filtered > 0);
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    if a.len() != b.len() {
        return f32::INFINITY;
    }
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}
