//! Black-box tests: the built `aimp` binary on port 0 with a temporary data directory.

mod bench;
mod browser;
mod cli;
mod console;
mod disk_full;
mod failover;
mod fairness;
mod hostile;
mod index_metadata;
mod kill_loop;
mod media;
mod overload;
mod postgres;
mod snapshot;
mod store_copy;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_aimp");
const ENV_KEY: &str = "aimp_blackbox_key_0123456789abcdefghij";
const ADMIN: &str = "blackbox-admin-token-0123456789abcdef";

/// The body of the API page's curl snippet, byte for byte.
const PAGE_BODY: &str = r#"{
    "model": "demo-model",
    "mode": "execute",
    "scope": "playground",
    "input": {
      "text": "Write a one-line summary."
    },
    "params": {}
  }"#;

/// Installed weights shared by every test binary of this target directory.
/// Held for its whole run by each test that asserts a latency bound or measures a soak, so
/// no two of them load the two cores at once (the harness runs tests two at a time).
fn measuring() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn shared_models() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("models")
}

fn aimp(data: &Path, models: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", std::env::var("HOME").unwrap_or_default())
        .env("AIMP_DATA_DIR", data)
        .env("AIMP_MODELS_DIR", models)
        .env("AIMP_MANIFESTS_DIR", data.join("no-extra-manifests"))
        .env("AIMP_ADDR", "127.0.0.1:0")
        .env("AIMP_ADMIN_TOKEN", ADMIN)
        .env("RUST_LOG", "warn");
    // glibc's allocator settings pass through, so a soak can be rerun under them
    // (`MALLOC_ARENA_MAX=2 AIMP_SOAK_SECS=600 cargo test --test blackbox overload`).
    for (name, value) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("MALLOC_") {
            cmd.env(name, value);
        }
    }
    cmd
}

/// Runs `aimp ARGS` as a client of `server` (its gateway URL and the shared API key) and
/// gives its stdout and stderr; the command must succeed.
fn aimp_client(data: &Path, models: &Path, server: &Server, args: &[&str]) -> String {
    let out = aimp(data, models)
        .env("AIMP_API_KEY", ENV_KEY)
        .env("AIMP_GATEWAY_URL", &server.base)
        .args(args)
        .output()
        .expect("run aimp");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{args:?}: {text}");
    text
}

struct Server {
    child: Child,
    base: String,
}

impl Server {
    /// Starts `aimp serve` and waits until every model is ready.
    fn start(cmd: Command) -> Server {
        let server = Server::spawn(cmd);
        server.wait_ready();
        server
    }

    /// Starts `aimp serve` and returns once it listens (models may still be loading).
    fn spawn(mut cmd: Command) -> Server {
        let mut child = cmd
            .arg("serve")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn aimp serve");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the listening line");
        let base = line
            .trim()
            .strip_prefix("aimp listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        Server { child, base }
    }

    /// Waits until `/readyz` reports `slug` failed (503) and returns its error message.
    fn wait_failed(&self, slug: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (status, body) = get(&format!("{}/readyz", self.base), &[]);
            if body["models"][slug]["status"] == "failed" {
                assert_eq!(status, 503);
                return body["models"][slug]["error"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
            }
            assert!(Instant::now() < deadline, "{slug} never failed: {body}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let (status, body) = get(&format!("{}/readyz", self.base), &[]);
            if status == 200 {
                return;
            }
            let failed = body["models"]
                .as_object()
                .is_some_and(|m| m.values().any(|v| v["status"] == "failed"));
            if failed || Instant::now() > deadline {
                panic!("server never became ready: {body}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// SIGTERM, then wait: a graceful shutdown exits 0.
    fn stop(mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        let exit = self.child.wait().expect("wait");
        assert!(exit.success(), "serve exited with {exit}");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET /api/media/{media_ref}` from `base` with the shared key: the bytes of a 200 (at most
/// 1 MiB), or a failed test.
fn download(base: &str, media_ref: &str) -> Vec<u8> {
    let response = agent()
        .get(&format!("{base}/api/media/{media_ref}"))
        .header("X-API-Key", ENV_KEY)
        .call()
        .expect("download");
    assert_eq!(response.status().as_u16(), 200);
    response
        .into_body()
        .with_config()
        .limit(1 << 20)
        .read_to_vec()
        .expect("body")
}

fn agent() -> ureq::Agent {
    agent_with_timeout(Duration::from_secs(120))
}

/// A client that reads error statuses as answers and gives up after `timeout`.
fn agent_with_timeout(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .build()
        .into()
}

/// A numeric setting of a long-run test from the environment, `default` when unset.
fn env_setting<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn parse(mut response: ureq::http::Response<ureq::Body>) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn get(url: &str, headers: &[(&str, &str)]) -> (u16, Value) {
    let mut req = agent().get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    match req.call() {
        Ok(r) => parse(r),
        Err(e) => (0, Value::String(e.to_string())),
    }
}

fn post(url: &str, headers: &[(&str, &str)], body: &str) -> (u16, Value) {
    let mut req = agent().post(url).header("Content-Type", "application/json");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    parse(req.send(body).expect("post"))
}

fn admin(method: &str, url: &str, body: Option<Value>) -> (u16, Value) {
    let auth = format!("Bearer {ADMIN}");
    let a = agent();
    let response = match method {
        "POST" => a
            .post(url)
            .header("Authorization", &auth)
            .send(body.unwrap_or_default().to_string()),
        "DELETE" => a.delete(url).header("Authorization", &auth).call(),
        _ => a.get(url).header("Authorization", &auth).call(),
    };
    parse(response.expect("admin call"))
}

fn run_status(base: &str, key: &str) -> u16 {
    post(
        &format!("{base}/api/runs"),
        &[("X-API-Key", key)],
        PAGE_BODY,
    )
    .0
}

fn embed(base: &str, texts: &[&str]) -> Vec<Vec<f64>> {
    let body =
        json!({"model": "demo-model", "mode": "execute", "input": {"texts": texts}, "params": {}});
    let (status, reply) = post(
        &format!("{base}/api/runs"),
        &[("X-API-Key", ENV_KEY)],
        &body.to_string(),
    );
    assert_eq!(status, 200, "{reply}");
    serde_json::from_value(reply["output"]["embeddings"].clone()).expect("vectors")
}

/// Corrupts a file in place: one bit of its middle byte.
fn flip_middle_byte(path: &Path) {
    let mut bytes = std::fs::read(path).expect("read");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(path, bytes).expect("write");
}

fn clip_fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("models/clipo/fixtures")
}

/// A folder in the hub's layout holding the fixture checkpoint `name` and the CLIP tokenizer.
fn checkpoint_folder(data: &Path, name: &str) -> PathBuf {
    let fixtures = clip_fixtures();
    let folder = data.join(format!("checkpoint-{name}"));
    std::fs::create_dir_all(&folder).expect("mkdir");
    for file in ["config.json", "model.safetensors"] {
        std::fs::copy(fixtures.join(name).join(file), folder.join(file)).expect("copy");
    }
    std::fs::copy(
        fixtures.join("tokenizer.json"),
        folder.join("tokenizer.json"),
    )
    .expect("copy tokenizer");
    folder
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[test]
fn the_api_page_snippet_gets_a_real_sentence_embedding() {
    let data = tempfile::tempdir().expect("tempdir");
    let mut cmd = aimp(data.path(), &shared_models());
    cmd.env("AIMP_API_KEY", ENV_KEY);
    let server = Server::start(cmd);

    let (status, reply) = post(
        &format!("{}/api/runs", server.base),
        &[("X-API-Key", ENV_KEY)],
        PAGE_BODY,
    );
    assert_eq!(status, 200, "{reply}");
    let v: Vec<f64> = serde_json::from_value(reply["output"]["embeddings"][0].clone()).expect("v");
    assert_eq!(v.len(), 384);
    assert!((dot(&v, &v).sqrt() - 1.0).abs() < 1e-4);

    let e = embed(
        &server.base,
        &[
            "A man is eating food.",
            "A man is eating a piece of bread.",
            "The girl is carrying a baby.",
        ],
    );
    assert!(dot(&e[0], &e[1]) > dot(&e[0], &e[2]));
    server.stop();
}

#[test]
fn a_restart_keeps_every_key_and_revocation() {
    let data = tempfile::tempdir().expect("tempdir");
    let models = shared_models();

    // A key made on the command line before the server ever ran.
    let out = aimp(data.path(), &models)
        .args(["keys", "create", "--name", "cli"])
        .output()
        .expect("keys create");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cli_key: Value = serde_json::from_slice(&out.stdout).expect("json");
    let cli_key = cli_key["key"].as_str().expect("key").to_string();

    let mut cmd = aimp(data.path(), &models);
    cmd.env("AIMP_API_KEY", ENV_KEY);
    let server = Server::start(cmd);
    let keys_url = format!("{}/api/api-keys/", server.base);
    let (status, kept) = admin("POST", &keys_url, Some(json!({"name": "kept"})));
    assert_eq!(status, 201, "{kept}");
    let (_, gone) = admin("POST", &keys_url, Some(json!({"name": "gone"})));
    let gone_id = gone["id"].as_str().expect("id");
    let (status, _) = admin("DELETE", &format!("{keys_url}{gone_id}/"), None);
    assert_eq!(status, 200);
    let kept_key = kept["key"].as_str().expect("key");
    let gone_key = gone["key"].as_str().expect("key");
    assert_eq!(run_status(&server.base, kept_key), 200);
    assert_eq!(run_status(&server.base, gone_key), 401);
    server.stop();

    // The store is closed cleanly: the CLI can open it and sees all four keys.
    let out = aimp(data.path(), &models)
        .args(["keys", "list"])
        .output()
        .expect("keys list");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: Vec<Value> = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(listed.len(), 4);
    assert!(listed.iter().all(|k| k.get("key").is_none()));

    // Restart without AIMP_API_KEY: every key and revocation is as it was.
    let server = Server::start(aimp(data.path(), &models));
    assert_eq!(run_status(&server.base, kept_key), 200);
    assert_eq!(run_status(&server.base, &cli_key), 200);
    assert_eq!(run_status(&server.base, ENV_KEY), 200);
    assert_eq!(run_status(&server.base, gone_key), 401);
    server.stop();

    // Revoking on the command line works too, and sticks.
    let cli_id = listed
        .iter()
        .find(|k| k["name"] == "cli")
        .and_then(|k| k["id"].as_str())
        .expect("cli id")
        .to_string();
    let out = aimp(data.path(), &models)
        .args(["keys", "revoke", &cli_id])
        .output()
        .expect("keys revoke");
    assert!(out.status.success());
    let server = Server::start(aimp(data.path(), &models));
    assert_eq!(run_status(&server.base, &cli_key), 401);
    server.stop();
}

#[test]
fn corrupted_weights_are_refused_by_import_and_by_serve() {
    let data = tempfile::tempdir().expect("tempdir");
    let shared = shared_models();
    // Make sure the shared install exists (a server start installs it), then copy it.
    Server::start(aimp(data.path(), &shared)).stop();
    let models = data.path().join("models");
    let src = shared.join("demo-model");
    let dst = models.join("demo-model");
    std::fs::create_dir_all(&dst).expect("mkdir");
    for entry in std::fs::read_dir(&src).expect("read") {
        let path = entry.expect("entry").path();
        std::fs::copy(&path, dst.join(path.file_name().expect("name"))).expect("copy");
    }
    flip_middle_byte(&dst.join("model.safetensors"));

    // import refuses the corrupt folder and names the file.
    let other_models = data.path().join("other-models");
    let out = aimp(data.path(), &other_models)
        .args(["models", "import", "demo-model", "--from"])
        .arg(&dst)
        .output()
        .expect("import");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("model.safetensors") && stderr.contains("sha256"),
        "{stderr}"
    );
    assert!(!other_models.join("demo-model").exists());

    // serve refuses to load it: the model is unavailable (409), the server stays up.
    let mut cmd = aimp(data.path(), &models);
    cmd.env("AIMP_API_KEY", ENV_KEY).env("AIMP_OFFLINE", "1");
    let server = Server::spawn(cmd);
    let error = server.wait_failed("demo-model");
    assert!(
        error.contains("model.safetensors") && error.contains("sha256"),
        "{error}"
    );
    let (status, reply) = post(
        &format!("{}/api/runs", server.base),
        &[("X-API-Key", ENV_KEY)],
        PAGE_BODY,
    );
    assert_eq!(status, 409, "{reply}");
    assert_eq!(reply["error"]["code"], "model_unavailable");
    server.stop();
}

#[test]
fn offline_pull_fails_at_once_and_list_reports_installation() {
    let data = tempfile::tempdir().expect("tempdir");
    let empty_models = data.path().join("models");
    let out = aimp(data.path(), &empty_models)
        .args(["models", "pull", "demo-model", "--offline"])
        .output()
        .expect("pull");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("offline"), "{stderr}");

    let out = aimp(data.path(), &empty_models)
        .args(["models", "list"])
        .output()
        .expect("list");
    assert!(out.status.success());
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).expect("json");
    let demo = rows
        .iter()
        .find(|r| r["slug"] == "demo-model")
        .expect("demo");
    assert_eq!(demo["installed"], false);
    assert_eq!(demo["install_command"], "aimp models pull demo-model");
}

#[test]
fn sigterm_lets_an_in_flight_request_finish() {
    let data = tempfile::tempdir().expect("tempdir");
    let mut cmd = aimp(data.path(), &shared_models());
    cmd.env("AIMP_API_KEY", ENV_KEY)
        .env("AIMP_SHUTDOWN_TIMEOUT", "300");
    let server = Server::start(cmd);

    // A request heavy enough to still be encoding when the signal arrives.
    let long = "a sentence that keeps going and going ".repeat(40);
    let texts: Vec<&str> = (0..48).map(|_| long.as_str()).collect();
    let body = json!({"model": "demo-model", "input": {"texts": texts}}).to_string();
    let url = format!("{}/api/runs", server.base);
    let in_flight = std::thread::spawn(move || post(&url, &[("X-API-Key", ENV_KEY)], &body).0);

    let metrics = format!("{}/metrics", server.base);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, text) = get(&metrics, &[]);
        let busy = text.as_str().unwrap_or("").lines().any(|l| {
            l.starts_with("aimp_encoder_queue_depth{model=\"demo-model\"} ") && !l.ends_with(" 0")
        });
        if busy {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the request never reached the encoder"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    server.stop();
    assert_eq!(in_flight.join().expect("join"), 200);
}

/// A user adds a CLIP-compatible checkpoint as a new model by writing a manifest: here a
/// seeded tiny CLIP fixture under the slug `tiny-clip`, imported from a folder and served.
#[test]
fn a_user_manifest_adds_a_clip_model_that_serves_text_embeddings() {
    use sha2::{Digest, Sha256};

    let data = tempfile::tempdir().expect("tempdir");
    let fixtures = clip_fixtures();
    let folder = checkpoint_folder(data.path(), "tiny-a");
    let files: Vec<Value> = ["config.json", "model.safetensors", "tokenizer.json"]
        .iter()
        .map(|name| {
            let bytes = std::fs::read(folder.join(name)).expect("read");
            json!({"path": name, "sha256": hex::encode(Sha256::digest(&bytes)), "size": bytes.len()})
        })
        .collect();
    let mut manifest: Value =
        serde_json::from_str(include_str!("../../models/clipo/manifest.json"))
            .expect("clipo manifest");
    manifest["slug"] = json!("tiny-clip");
    manifest["name"] = json!("Tiny CLIP fixture");
    manifest["dimensions"] = json!(16);
    manifest["sources"] = json!({});
    manifest["revision"] = json!("fixture-tiny-a");
    manifest["files"] = Value::Array(files);
    let manifests = data.path().join("manifests");
    std::fs::create_dir_all(manifests.join("tiny-clip")).expect("mkdir");
    std::fs::write(
        manifests.join("tiny-clip/manifest.json"),
        serde_json::to_string_pretty(&manifest).expect("json"),
    )
    .expect("write manifest");

    let models = data.path().join("models");
    let with_manifests = |mut cmd: Command| {
        cmd.env("AIMP_MANIFESTS_DIR", &manifests);
        cmd
    };
    let out = with_manifests(aimp(data.path(), &models))
        .args(["models", "import", "tiny-clip", "--from"])
        .arg(&folder)
        .output()
        .expect("import");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut cmd = with_manifests(aimp(data.path(), &models));
    cmd.env("AIMP_API_KEY", ENV_KEY)
        .env("AIMP_MODELS", "tiny-clip");
    let server = Server::start(cmd);
    let body = json!({"model": "tiny-clip", "mode": "execute", "input": {"text": "a photo of a cat"}, "params": {}});
    let (status, reply) = post(
        &format!("{}/api/runs", server.base),
        &[("X-API-Key", ENV_KEY)],
        &body.to_string(),
    );
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["output"]["dimensions"], 16);
    let got: Vec<f64> =
        serde_json::from_value(reply["output"]["embeddings"][0].clone()).expect("v");
    let reference: Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures.join("tiny-a/reference.json")).expect("reference"),
    )
    .expect("json");
    let want: Vec<f64> =
        serde_json::from_value(reference["texts"][0]["embedding"].clone()).expect("want");
    assert_eq!(reference["texts"][0]["text"], "a photo of a cat");
    let cos = dot(&got, &want) / (dot(&got, &got).sqrt() * dot(&want, &want).sqrt());
    assert!(cos >= 0.9999, "cosine {cos}");
    let (_, listed) = get(
        &format!("{}/api/marketplace/models/tiny-clip", server.base),
        &[("X-API-Key", ENV_KEY)],
    );
    assert_eq!(listed["installed"], true);
    assert_eq!(listed["verified"], true);
    server.stop();
}

/// The API page's request shape with `model: clipo`: a CLIP checkpoint (the seeded fixture
/// `tiny-b`, 512-dimensional like ViT-B/32) installed as `clipo` from a folder with
/// `models import --unverified`, served, listed as unverified, and refused by `serve` once a
/// byte of its weights flips.
#[test]
fn a_checkpoint_imported_unverified_as_clipo_serves_the_page_request_shape() {
    let data = tempfile::tempdir().expect("tempdir");
    let fixtures = clip_fixtures();
    let folder = checkpoint_folder(data.path(), "tiny-b");
    let models = data.path().join("models");

    // A plain import checks the manifest's pins and refuses, naming the file.
    let out = aimp(data.path(), &models)
        .args(["models", "import", "clipo", "--from"])
        .arg(&folder)
        .output()
        .expect("import");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("config.json") && stderr.contains("sha256"),
        "{stderr}"
    );

    let out = aimp(data.path(), &models)
        .args(["models", "import", "clipo", "--unverified", "--from"])
        .arg(&folder)
        .output()
        .expect("import --unverified");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("UNVERIFIED"), "{stderr}");
    let receipt: Value = serde_json::from_slice(&out.stdout).expect("receipt");
    assert_eq!(receipt["verified"], false);

    let out = aimp(data.path(), &models)
        .args(["models", "list"])
        .output()
        .expect("list");
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).expect("json");
    let clipo = rows.iter().find(|r| r["slug"] == "clipo").expect("clipo");
    assert_eq!(clipo["installed"], true);
    assert_eq!(clipo["verified"], false);
    assert_eq!(clipo["revision"], receipt["revision"]);
    let size: u64 = ["config.json", "model.safetensors", "tokenizer.json"]
        .iter()
        .map(|f| std::fs::metadata(folder.join(f)).expect("meta").len())
        .sum();
    assert_eq!(clipo["size_bytes"], size);

    let serve = || {
        let mut cmd = aimp(data.path(), &models);
        cmd.env("AIMP_API_KEY", ENV_KEY)
            .env("AIMP_MODELS", "clipo")
            .env("AIMP_OFFLINE", "1");
        cmd
    };
    let server = Server::start(serve());
    let page_body = PAGE_BODY.replace("demo-model", "clipo");
    let (status, reply) = post(
        &format!("{}/api/runs", server.base),
        &[("X-API-Key", ENV_KEY)],
        &page_body,
    );
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["model"], "clipo");
    assert_eq!(reply["output"]["dimensions"], 512);
    // The run names the weights it ran: the import's `local-…` revision, not the manifest's pin.
    assert_eq!(
        reply["output"]["model_revision"], receipt["revision"],
        "{reply}"
    );
    assert!(
        receipt["revision"]
            .as_str()
            .is_some_and(|r| r.starts_with("local-")),
        "{receipt}"
    );

    let reference: Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures.join("tiny-b/reference.json")).expect("reference"),
    )
    .expect("json");
    let texts: Vec<&str> = reference["texts"]
        .as_array()
        .expect("texts")
        .iter()
        .filter_map(|t| t["text"].as_str())
        .filter(|t| !t.is_empty())
        .collect();
    let body =
        json!({"model": "clipo", "mode": "execute", "input": {"texts": texts}, "params": {}});
    let (status, reply) = post(
        &format!("{}/api/runs", server.base),
        &[("X-API-Key", ENV_KEY)],
        &body.to_string(),
    );
    assert_eq!(status, 200, "{reply}");
    let got: Vec<Vec<f64>> =
        serde_json::from_value(reply["output"]["embeddings"].clone()).expect("vectors");
    assert_eq!(got.len(), texts.len());
    for (v, text) in got.iter().zip(&texts) {
        let r = reference["texts"]
            .as_array()
            .expect("texts")
            .iter()
            .find(|r| r["text"] == *text)
            .expect("reference text");
        let want: Vec<f64> = serde_json::from_value(r["embedding"].clone()).expect("want");
        let cos = dot(v, &want) / (dot(v, v).sqrt() * dot(&want, &want).sqrt());
        assert!(cos >= 0.9999, "cosine {cos} for {text:?}");
    }
    let (_, listed) = get(
        &format!("{}/api/marketplace/models/clipo", server.base),
        &[("X-API-Key", ENV_KEY)],
    );
    assert_eq!(listed["installed"], true);
    assert_eq!(listed["verified"], false);
    server.stop();

    // One flipped byte after install: serve's start-up check refuses clipo, naming the file.
    flip_middle_byte(&models.join("clipo/model.safetensors"));
    let server = Server::spawn(serve());
    let error = server.wait_failed("clipo");
    assert!(
        error.contains("model.safetensors") && error.contains("sha256"),
        "{error}"
    );
    let (status, reply) = post(
        &format!("{}/api/runs", server.base),
        &[("X-API-Key", ENV_KEY)],
        &page_body,
    );
    assert_eq!(status, 409, "{reply}");
    assert_eq!(reply["error"]["code"], "model_unavailable");
    server.stop();
}

/// `aimp bench collection` on a collection the server filled: the same search code, measured
/// against exact search, with the server stopped.
#[test]
fn bench_collection_measures_a_live_collection() {
    let data = tempfile::tempdir().expect("tempdir");
    let mut cmd = aimp(data.path(), &shared_models());
    cmd.env("AIMP_API_KEY", ENV_KEY);
    let server = Server::start(cmd);
    let texts: Vec<String> = (0..40)
        .map(|i| format!("note number {i} about topic {}", i % 7))
        .collect();
    let ids: Vec<String> = (0..40).map(|i| format!("n{i}")).collect();
    let body = json!({"model": "demo-model", "mode": "index", "scope": "notes",
        "input": {"texts": texts, "text_ids": ids}, "params": {}});
    let (status, reply) = post(
        &format!("{}/api/runs", server.base),
        &[("X-API-Key", ENV_KEY)],
        &body.to_string(),
    );
    assert_eq!(status, 200, "{reply}");
    server.stop();
    let out_file = data.path().join("collection.json");
    let out = aimp(data.path(), &shared_models())
        .args([
            "bench",
            "collection",
            "--model",
            "demo-model",
            "--scope",
            "notes",
            "--queries",
        ])
        .args(["10", "--ef", "16,64", "--out"])
        .arg(&out_file)
        .output()
        .expect("bench collection");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let records: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(&out_file).expect("out")).expect("json");
    assert_eq!(records.len(), 2);
    assert_eq!(records[0]["collection"], "texts");
    assert_eq!(records[0]["count"], 40);
    assert_eq!(records[0]["queries"], 10);
    // 40 items are under the exact-search threshold: the server compares every vector.
    assert_eq!(records[0]["exhaustive"], true);
    assert_eq!(records[1]["recall"], 1.0);
    assert!(stdout.contains("exact-search threshold"), "{stdout}");

    // A collection created with the threshold at 0 is searched through its graph, and the
    // bench measures that graph against exact search.
    let mut cmd = aimp(data.path(), &shared_models());
    cmd.env("AIMP_API_KEY", ENV_KEY)
        .env("AIMP_EXACT_BELOW", "0");
    let server = Server::start(cmd);
    let body = json!({"model": "demo-model", "mode": "index", "scope": "graph",
        "input": {"texts": texts, "text_ids": ids}, "params": {}});
    let (status, reply) = post(
        &format!("{}/api/runs", server.base),
        &[("X-API-Key", ENV_KEY)],
        &body.to_string(),
    );
    assert_eq!(status, 200, "{reply}");
    server.stop();
    let out = aimp(data.path(), &shared_models())
        .args([
            "bench",
            "collection",
            "--model",
            "demo-model",
            "--scope",
            "graph",
        ])
        .args(["--queries", "10", "--ef", "16,64", "--out"])
        .arg(&out_file)
        .output()
        .expect("bench collection");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let records: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(&out_file).expect("out")).expect("json");
    assert_eq!(records.len(), 2);
    for r in &records {
        assert_eq!(r["exhaustive"], false, "{r}");
        let recall = r["recall"].as_f64().expect("recall");
        assert!((0.9..=1.0).contains(&recall), "{r}");
    }
}

/// Secrets given as flags show in `ps` to every user: `serve` takes them from files too,
/// and says so when one comes as a flag.
#[test]
fn serve_takes_its_secrets_from_files_and_warns_of_flags() {
    let data = tempfile::tempdir().expect("tempdir");
    let models = shared_models();
    let token_file = data.path().join("admin-token");
    let key_file = data.path().join("api-key");
    std::fs::write(&token_file, format!("{ADMIN}\n")).expect("token file");
    std::fs::write(&key_file, format!("{ENV_KEY}\n")).expect("key file");
    let mut cmd = aimp(data.path(), &models);
    cmd.env_remove("AIMP_ADMIN_TOKEN")
        .env("AIMP_OFFLINE", "1")
        .env("AIMP_MODELS", "vectors")
        .env("AIMP_API_KEY_FILE", &key_file)
        .env("AIMP_ADMIN_TOKEN_FILE", &token_file);
    let server = Server::spawn(cmd);
    let (status, body) = admin("GET", &format!("{}/api/api-keys/", server.base), None);
    assert_eq!(status, 200, "the admin token from its file: {body}");
    let (status, body) = get(
        &format!("{}/api/marketplace/models", server.base),
        &[("X-API-Key", ENV_KEY)],
    );
    assert_eq!(status, 200, "the API key from its file: {body}");
    drop(server);
    // A flag on the command line: a warning; with its file as well: refused.
    let out = aimp(data.path(), &models)
        .env_remove("AIMP_ADMIN_TOKEN")
        .env("AIMP_OFFLINE", "1")
        .args(["serve", "--admin-token", ADMIN, "--admin-token-file"])
        .arg(&token_file)
        .output()
        .expect("serve");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("shows in `ps`"), "{stderr}");
    assert!(stderr.contains("not both"), "{stderr}");
}

#[test]
fn serve_refuses_an_empty_or_weak_secret_at_start() {
    let data = tempfile::tempdir().expect("tempdir");
    let models = data.path().join("models");
    let cases = [
        ("AIMP_ADMIN_TOKEN", "", "empty"),
        ("AIMP_ADMIN_TOKEN", "admin", "32 to 256 characters"),
        (
            "AIMP_API_KEY",
            "aimp_0123456789abcdef",
            "32 to 256 characters",
        ),
    ];
    for (variable, value, says) in cases {
        let out = aimp(data.path(), &models)
            .env("AIMP_OFFLINE", "1")
            .env(variable, value)
            .arg("serve")
            .output()
            .expect("serve");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{variable}={value:?} was accepted");
        assert!(
            stderr.contains(variable) && stderr.contains(says),
            "{variable}={value:?}: {stderr}"
        );
        assert!(!stderr.contains("listening"), "{stderr}");
    }
    // Nothing was registered: the store holds no key.
    let out = aimp(data.path(), &models)
        .args(["keys", "list"])
        .output()
        .expect("keys list");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("AIMP_API_KEY"), "{stdout}");
}
