//! In-process HTTP tests of the gateway through `router(state)`: every status of API.md.

mod console;
mod filters;
mod fuzz;
mod hostile;
mod media;
mod media_bytes;
mod precision;
mod raw_vectors;
mod storage;
mod vectors;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use aimp_embed::{
    DeviceChoice, EmbedError, Encoder, EncoderHandle, InstallOptions, Precision, Registry,
    WorkerOptions, ensure_installed, load_encoder,
};
use aimp_server::{AppState, ModelSet, ModelState, ServerConfig, keys, router};
use aimp_store::Store;
use aimp_store_embedded::{EmbeddedStore, Redb};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};
use tower::ServiceExt;

const ADMIN: &str = "admin-token-for-tests";

fn models_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("models")
}

/// The registry the gateways use: demo-model at `precision`.
fn registry_at(precision: Precision) -> Registry {
    let mut reg = Registry::load(None, &models_dir()).expect("registry");
    reg.set_precision("demo-model", precision)
        .expect("demo-model");
    reg
}

/// The real demo-model, installed once and loaded once for the whole test binary.
fn demo_model() -> EncoderHandle {
    static HANDLE: OnceLock<EncoderHandle> = OnceLock::new();
    HANDLE.get_or_init(|| load_demo(Precision::Fp32)).clone()
}

/// demo-model at int8, loaded once.
fn demo_model_int8() -> EncoderHandle {
    static HANDLE: OnceLock<EncoderHandle> = OnceLock::new();
    HANDLE.get_or_init(|| load_demo(Precision::Int8)).clone()
}

/// The options of the encoders every test shares: tests run in parallel on few cores, so the
/// queue may be long; admission by expected wait has tests of its own.
fn shared_worker() -> WorkerOptions {
    WorkerOptions {
        max_wait: std::time::Duration::from_secs(600),
        ..WorkerOptions::default()
    }
}

fn load_demo(precision: Precision) -> EncoderHandle {
    let reg = registry_at(precision);
    let manifest = reg.get("demo-model").expect("manifest");
    ensure_installed(manifest, &models_dir(), &InstallOptions::default())
        .expect("install demo-model");
    load_encoder(manifest, &models_dir(), DeviceChoice::Cpu, shared_worker())
        .expect("load demo-model")
}

struct Gateway {
    state: AppState,
    app: axum::Router,
    key: String,
    dir: tempfile::TempDir,
}

/// The fixture CLIP (tiny-b: random weights, 512-dimensional projection) installed as
/// clipo with `--unverified` into its own models folder, loaded once for the test binary.
fn fixture_clipo() -> EncoderHandle {
    static HANDLE: OnceLock<EncoderHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let models = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("clip-models");
            let fixtures =
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/clipo/fixtures");
            let staged = tempfile::tempdir().expect("tempdir");
            for file in ["config.json", "model.safetensors"] {
                std::fs::copy(fixtures.join("tiny-b").join(file), staged.path().join(file))
                    .expect("copy");
            }
            std::fs::copy(
                fixtures.join("tokenizer.json"),
                staged.path().join("tokenizer.json"),
            )
            .expect("copy tokenizer");
            let reg = Registry::load(None, &models).expect("registry");
            let manifest = reg.get("clipo").expect("manifest");
            let options = InstallOptions::default();
            aimp_embed::Installer::new(manifest, &models, &options)
                .import_unverified(staged.path())
                .expect("import fixture clipo");
            load_encoder(manifest, &models, DeviceChoice::Cpu, shared_worker())
                .expect("load fixture clipo")
        })
        .clone()
}

struct Options {
    body_limit: usize,
    rate_limit: u32,
    demo: Option<ModelState>,
    clipo: bool,
    max_image_pixels: Option<u64>,
    upload_ttl: Option<std::time::Duration>,
    /// demo-model at int8 instead of fp32.
    int8: bool,
    media_in_flight: Option<u64>,
    exact_below: Option<usize>,
    upload_idle: Option<std::time::Duration>,
    body_read: Option<std::time::Duration>,
    /// The store behind its fault point.
    faults: Option<Arc<aimp_store_embedded::faults::Faults>>,
    console: bool,
    thumbnail_memory: Option<u64>,
    upload_min_rate: Option<u64>,
    recall_max_work: Option<u64>,
    uploads_per_workspace: Option<usize>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            body_limit: 64 * 1024,
            rate_limit: 0,
            demo: None,
            clipo: false,
            max_image_pixels: None,
            upload_ttl: None,
            int8: false,
            media_in_flight: None,
            exact_below: None,
            upload_idle: None,
            body_read: None,
            faults: None,
            console: true,
            thumbnail_memory: None,
            upload_min_rate: None,
            recall_max_work: None,
            uploads_per_workspace: None,
        }
    }
}

fn gateway(opts: Options) -> Gateway {
    let dir = tempfile::tempdir().expect("tempdir");
    gateway_in(dir, opts)
}

/// A gateway on an existing data folder (a restart, when the folder was used before).
fn gateway_in(dir: tempfile::TempDir, opts: Options) -> Gateway {
    let redb = match &opts.faults {
        Some(faults) => Redb::open_with_faults(dir.path(), faults.clone()),
        None => Redb::open(dir.path()),
    }
    .expect("store");
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::on(redb).expect("the store"));
    let created = keys::create_key(&*store, "tests", "default").expect("key");
    let precision = if opts.int8 {
        Precision::Int8
    } else {
        Precision::Fp32
    };
    let registry = Arc::new(registry_at(precision));
    let models = Arc::new(ModelSet::default());
    let demo = || match precision {
        Precision::Fp32 => demo_model(),
        Precision::Int8 => demo_model_int8(),
    };
    models.set(
        "demo-model",
        opts.demo.unwrap_or_else(|| ModelState::Ready(demo())),
    );
    if opts.clipo {
        models.set("clipo", ModelState::Ready(fixture_clipo()));
    }
    let mut config = ServerConfig::new(opts.body_limit, opts.rate_limit, Some(ADMIN.to_string()));
    if let Some(max) = opts.max_image_pixels {
        config.decode.max_pixels = max;
    }
    if let Some(ttl) = opts.upload_ttl {
        config.upload_ttl = ttl;
    }
    if let Some(bytes) = opts.media_in_flight {
        config.media_bytes_in_flight = bytes;
    }
    if let Some(n) = opts.exact_below {
        config.exact_below = n;
    }
    if let Some(idle) = opts.upload_idle {
        config.upload_idle_timeout = idle;
    }
    if let Some(deadline) = opts.body_read {
        config.body_read_timeout = deadline;
    }
    config.console = opts.console;
    if let Some(bytes) = opts.thumbnail_memory {
        config.thumbnail_memory = bytes;
    }
    if let Some(work) = opts.recall_max_work {
        config.recall_max_work = work;
    }
    if let Some(rate) = opts.upload_min_rate {
        config.upload_min_rate = rate;
    }
    if let Some(n) = opts.uploads_per_workspace {
        config.uploads_per_workspace = n;
    }
    let state = AppState::new(config, store, dir.path(), registry, models).expect("state");
    Gateway {
        state: state.clone(),
        app: router(state),
        key: created.key,
        dir,
    }
}

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Value,
}

impl Reply {
    fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
    fn param(&self) -> &str {
        self.body["error"]["param"].as_str().unwrap_or("")
    }
    fn message(&self) -> &str {
        self.body["error"]["message"].as_str().unwrap_or("")
    }
}

impl Gateway {
    /// Stops this gateway as `serve` does (graphs saved when `save_graphs`) and starts a new
    /// one on the same data folder, with a fresh key of the same workspace.
    fn restart(self, opts: Options, save_graphs: bool) -> Gateway {
        if save_graphs {
            self.state.store.checkpoint().expect("save graphs");
        }
        let Gateway {
            dir, state, app, ..
        } = self;
        drop(app);
        drop(state);
        gateway_in(dir, opts)
    }

    /// A key of another workspace.
    fn key_of_workspace(&self, workspace: &str) -> String {
        keys::create_key(&*self.state.store, workspace, workspace)
            .expect("key")
            .key
    }

    async fn send(&self, req: Request<Body>) -> Reply {
        let response = self.app.clone().oneshot(req).await.expect("infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        let body = serde_json::from_slice(&bytes)
            .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        Reply {
            status,
            headers,
            body,
        }
    }

    async fn run_raw(&self, body: impl Into<Body>) -> Reply {
        let req = Request::post("/api/runs")
            .header("X-API-Key", &self.key)
            .header("Content-Type", "application/json")
            .body(body.into())
            .expect("request");
        self.send(req).await
    }

    async fn run(&self, body: Value) -> Reply {
        self.run_raw(body.to_string()).await
    }

    async fn admin(&self, method: &str, uri: &str, body: Option<Value>) -> Reply {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .header("Authorization", format!("Bearer {ADMIN}"))
            .header("Content-Type", "application/json")
            .body(body.map(|b| Body::from(b.to_string())).unwrap_or_default())
            .expect("request");
        self.send(req).await
    }
}

fn page_body() -> Value {
    json!({
        "model": "demo-model",
        "mode": "execute",
        "scope": "playground",
        "input": {"text": "Write a one-line summary."},
        "params": {}
    })
}

fn assert_error(reply: &Reply, status: u16, code: &str, param: Option<&str>) {
    assert_eq!(reply.status.as_u16(), status, "{:?}", reply.body);
    assert_eq!(reply.code(), code, "{:?}", reply.body);
    assert!(!reply.message().is_empty());
    match param {
        Some(p) => assert_eq!(reply.param(), p, "{:?}", reply.body),
        None => assert!(
            reply.body["error"].get("param").is_none(),
            "{:?}",
            reply.body
        ),
    }
}

// ---- 200 ----

#[tokio::test]
async fn the_api_page_request_returns_a_normalised_embedding() {
    let gw = gateway(Options::default());
    let r = gw.run(page_body()).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert!(r.body["id"].as_str().expect("id").starts_with("run_"));
    assert_eq!(r.body["object"], "run");
    assert_eq!(r.body["model"], "demo-model");
    assert_eq!(r.body["mode"], "execute");
    assert_eq!(r.body["scope"], "playground");
    assert_eq!(r.body["status"], "succeeded");
    assert!(r.body["created_at"].as_str().expect("time").ends_with('Z'));
    assert_eq!(r.body["usage"]["items"], 1);
    let out = &r.body["output"];
    assert_eq!(out["dimensions"], 384);
    assert_eq!(
        out["model_revision"],
        "c9745ed1d9f207416be6d2e6f8de32d1f16199bf"
    );
    let v: Vec<f64> = serde_json::from_value(out["embeddings"][0].clone()).expect("vector");
    assert_eq!(v.len(), 384);
    let norm: f64 = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    assert!((norm - 1.0).abs() < 1e-4);
}

#[tokio::test]
async fn texts_give_one_vector_each_in_order() {
    let gw = gateway(Options::default());
    let r = gw
        .run(json!({"model": "demo-model", "input": {"texts": ["one", "two", "three"]}}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(
        r.body["output"]["embeddings"]
            .as_array()
            .expect("array")
            .len(),
        3
    );
    assert_eq!(r.body["usage"]["items"], 3);
    assert_eq!(r.body["scope"], Value::Null);
    let single = gw
        .run(json!({"model": "demo-model", "input": {"text": "two"}}))
        .await;
    let a: Vec<f64> = serde_json::from_value(r.body["output"]["embeddings"][1].clone()).expect("a");
    let b: Vec<f64> =
        serde_json::from_value(single.body["output"]["embeddings"][0].clone()).expect("b");
    let dot: f64 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
    assert!(dot > 0.9999);
}

// ---- 400 ----

#[tokio::test]
async fn missing_model_is_400() {
    let gw = gateway(Options::default());
    let r = gw.run(json!({"input": {"text": "x"}})).await;
    assert_error(&r, 400, "missing_field", Some("model"));
}

#[tokio::test]
async fn missing_input_is_400() {
    let gw = gateway(Options::default());
    let r = gw.run(json!({"model": "demo-model"})).await;
    assert_error(&r, 400, "missing_field", Some("input"));
}

#[tokio::test]
async fn input_params_options_not_objects_are_400() {
    let gw = gateway(Options::default());
    let r = gw.run(json!({"model": "demo-model", "input": ["x"]})).await;
    assert_error(&r, 400, "invalid_field", Some("input"));
    let r = gw
        .run(json!({"model": "demo-model", "input": {"text": "x"}, "params": "none"}))
        .await;
    assert_error(&r, 400, "invalid_field", Some("params"));
    let r = gw
        .run(json!({"model": "demo-model", "input": {"text": "x"}, "options": null}))
        .await;
    assert_error(&r, 400, "invalid_field", Some("options"));
}

#[tokio::test]
async fn a_mode_outside_the_contract_is_400() {
    let gw = gateway(Options::default());
    let r = gw
        .run(json!({"model": "demo-model", "mode": "generate", "input": {"text": "x"}}))
        .await;
    assert_error(&r, 400, "unsupported_mode", Some("mode"));
    assert!(r.message().contains("execute"));
}

#[tokio::test]
async fn input_against_the_schema_names_the_path() {
    let gw = gateway(Options::default());
    let r = gw
        .run(json!({"model": "demo-model", "input": {"texts": ["fine", 42]}}))
        .await;
    assert_error(&r, 400, "invalid_input", Some("input.texts[1]"));
    assert!(r.message().starts_with("input.texts[1]"), "{}", r.message());
    let r = gw
        .run(json!({"model": "demo-model", "input": {"text": ""}}))
        .await;
    assert_error(&r, 400, "invalid_input", Some("input.text"));
    let r = gw
        .run(json!({"model": "demo-model", "input": {"text": "a", "texts": ["b"]}}))
        .await;
    assert_error(&r, 400, "invalid_input", Some("input"));
}

#[tokio::test]
async fn params_against_the_schema_names_the_path() {
    let gw = gateway(Options::default());
    let r = gw
        .run(
            json!({"model": "demo-model", "mode": "search", "scope": "test",
            "input": {"text": "q"}, "params": {"top_k": 5000}}),
        )
        .await;
    assert_error(&r, 400, "invalid_params", Some("params.top_k"));
    let r = gw
        .run(json!({"model": "demo-model", "input": {"text": "q"}, "params": {"temperature": 1}}))
        .await;
    assert_error(&r, 400, "invalid_params", Some("params.temperature"));
}

#[tokio::test]
async fn parameters_instead_of_params_is_400() {
    let gw = gateway(Options::default());
    let r = gw
        .run(json!({"model": "demo-model", "input": {"text": "x"}, "parameters": {}}))
        .await;
    assert_error(&r, 400, "use_params", Some("parameters"));
    assert!(r.message().contains("params"));
}

#[tokio::test]
async fn hardware_tier_in_options_is_400() {
    let gw = gateway(Options::default());
    let r = gw
        .run(json!({"model": "demo-model", "input": {"text": "x"},
            "options": {"hardware_tier": "a100"}}))
        .await;
    assert_error(&r, 400, "unsupported_option", Some("options.hardware_tier"));
}

#[tokio::test]
async fn platform_managed_fields_are_400() {
    let gw = gateway(Options::default());
    for field in ["resources", "alias", "collection", "namespace"] {
        let mut body = page_body();
        body[field] = json!("mine");
        let r = gw.run(body).await;
        assert_error(&r, 400, "platform_managed_field", Some(field));
    }
}

#[tokio::test]
async fn unknown_top_level_field_is_400() {
    let gw = gateway(Options::default());
    let mut body = page_body();
    body["stream"] = json!(true);
    let r = gw.run(body).await;
    assert_error(&r, 400, "unknown_field", Some("stream"));
}

#[tokio::test]
async fn missing_scope_on_index_and_search_is_400() {
    let gw = gateway(Options::default());
    let r = gw
        .run(json!({"model": "demo-model", "mode": "index",
            "input": {"texts": ["a"], "text_ids": ["t1"]}}))
        .await;
    assert_error(&r, 400, "missing_scope", Some("scope"));
    let r = gw
        .run(json!({"model": "demo-model", "mode": "search", "input": {"text": "a"}}))
        .await;
    assert_error(&r, 400, "missing_scope", Some("scope"));
}

#[tokio::test]
async fn invalid_scope_is_400() {
    let gw = gateway(Options::default());
    for scope in [
        json!("_leading"),
        json!("white space"),
        json!("x".repeat(65)),
        json!(1),
    ] {
        let r = gw
            .run(
                json!({"model": "demo-model", "mode": "search", "scope": scope,
                "input": {"text": "a"}}),
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert_eq!(r.param(), "scope");
    }
}

#[tokio::test]
async fn malformed_json_and_non_object_bodies_are_400() {
    let gw = gateway(Options::default());
    let r = gw.run_raw("{\"model\": ").await;
    assert_error(&r, 400, "invalid_json", None);
    let r = gw.run_raw("[1,2]").await;
    assert_error(&r, 400, "invalid_body", None);
}

// ---- 401 / 403 ----

#[tokio::test]
async fn no_key_is_401() {
    let gw = gateway(Options::default());
    let req = Request::post("/api/runs")
        .header("Content-Type", "application/json")
        .body(Body::from(page_body().to_string()))
        .expect("request");
    let r = gw.send(req).await;
    assert_error(&r, 401, "missing_api_key", None);
    assert!(r.message().contains("X-API-Key"));
}

#[tokio::test]
async fn unknown_key_is_401() {
    let gw = gateway(Options::default());
    let req = Request::post("/api/runs")
        .header("X-API-Key", keys::generate_key())
        .body(Body::from(page_body().to_string()))
        .expect("request");
    assert_error(&gw.send(req).await, 401, "invalid_api_key", None);
}

#[tokio::test]
async fn api_key_as_bearer_is_401_saying_use_x_api_key() {
    let gw = gateway(Options::default());
    let req = Request::post("/api/runs")
        .header("Authorization", format!("Bearer {}", gw.key))
        .body(Body::from(page_body().to_string()))
        .expect("request");
    let r = gw.send(req).await;
    assert_error(&r, 401, "use_x_api_key", None);
    assert!(r.message().contains("X-API-Key"));
    // The same on the admin endpoints.
    let req = Request::get("/api/api-keys/")
        .header("Authorization", format!("Bearer {}", gw.key))
        .body(Body::empty())
        .expect("request");
    assert_error(&gw.send(req).await, 401, "use_x_api_key", None);
}

#[tokio::test]
async fn an_api_key_cannot_manage_keys_403() {
    let gw = gateway(Options::default());
    let req = Request::get("/api/api-keys/")
        .header("X-API-Key", &gw.key)
        .body(Body::empty())
        .expect("request");
    assert_error(&gw.send(req).await, 403, "admin_required", None);
    let req = Request::get("/api/api-keys/")
        .header("Authorization", "Bearer wrong-token")
        .body(Body::empty())
        .expect("request");
    assert_error(&gw.send(req).await, 401, "invalid_admin_token", None);
}

#[tokio::test]
async fn key_management_and_immediate_revocation() {
    let gw = gateway(Options::default());
    let r = gw
        .admin("POST", "/api/api-keys/", Some(json!({"name": "laptop"})))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let key = r.body["key"].as_str().expect("key").to_string();
    let id = r.body["id"].as_str().expect("id").to_string();
    assert_eq!(r.body["workspace"], "default");
    assert_eq!(r.body["prefix"], key[..12]);

    let list = gw.admin("GET", "/api/api-keys/", None).await;
    let listed = list.body["data"].as_array().expect("data");
    assert_eq!(listed.len(), 2);
    assert!(
        listed
            .iter()
            .all(|k| k.get("key").is_none() && k.get("hash").is_none())
    );

    let renamed = gw
        .admin(
            "PATCH",
            &format!("/api/api-keys/{id}/"),
            Some(json!({"name": "desk"})),
        )
        .await;
    assert_eq!(renamed.body["name"], "desk");

    let run = |key: String| {
        Request::post("/api/runs")
            .header("X-API-Key", key)
            .body(Body::from(page_body().to_string()))
            .expect("request")
    };
    assert_eq!(gw.send(run(key.clone())).await.status, StatusCode::OK);
    // Use is recorded (off the request path, so allow it a moment).
    let mut used = Value::Null;
    for _ in 0..100 {
        let list = gw.admin("GET", "/api/api-keys/", None).await;
        let entry = list.body["data"]
            .as_array()
            .and_then(|d| d.iter().find(|k| k["id"] == id.as_str()).cloned())
            .expect("listed");
        used = entry["last_used_at"].clone();
        if used.is_string() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(used.is_string(), "last_used_at was never recorded");
    let revoked = gw
        .admin("DELETE", &format!("/api/api-keys/{id}/"), None)
        .await;
    assert_eq!(revoked.status, StatusCode::OK);
    assert!(revoked.body["revoked_at"].is_string());
    assert_error(&gw.send(run(key)).await, 401, "invalid_api_key", None);
    // The record stays.
    let list = gw.admin("GET", "/api/api-keys/", None).await;
    assert_eq!(list.body["data"].as_array().expect("data").len(), 2);
}

#[tokio::test]
async fn key_management_validates_and_404s() {
    let gw = gateway(Options::default());
    let r = gw.admin("POST", "/api/api-keys/", Some(json!({}))).await;
    assert_error(&r, 400, "missing_field", Some("name"));
    let r = gw
        .admin(
            "POST",
            "/api/api-keys/",
            Some(json!({"name": "x", "workspace": "bad space"})),
        )
        .await;
    assert_error(&r, 400, "invalid_field", Some("workspace"));
    let r = gw
        .admin(
            "POST",
            "/api/api-keys/",
            Some(json!({"name": "x", "role": "root"})),
        )
        .await;
    assert_error(&r, 400, "unknown_field", Some("role"));
    let r = gw.admin("DELETE", "/api/api-keys/key_nope/", None).await;
    assert_error(&r, 404, "api_key_not_found", Some("id"));
    let r = gw
        .admin(
            "PATCH",
            "/api/api-keys/key_nope/",
            Some(json!({"name": "x"})),
        )
        .await;
    assert_error(&r, 404, "api_key_not_found", Some("id"));
}

// ---- 404 / 409 ----

#[tokio::test]
async fn unknown_model_is_404() {
    let gw = gateway(Options::default());
    let r = gw
        .run(json!({"model": "gpt-17", "input": {"text": "x"}}))
        .await;
    assert_error(&r, 404, "model_not_found", Some("model"));
    let req = Request::get("/api/marketplace/models/gpt-17")
        .header("X-API-Key", &gw.key)
        .body(Body::empty())
        .expect("request");
    assert_error(&gw.send(req).await, 404, "model_not_found", Some("model"));
}

#[tokio::test]
async fn a_model_without_weights_is_409_naming_the_install_command() {
    let gw = gateway(Options::default());
    let r = gw
        .run(json!({"model": "clipo", "input": {"text": "a photo of a cat"}}))
        .await;
    assert_error(&r, 409, "model_not_installed", Some("model"));
    assert!(
        r.message().contains("aimp models pull clipo"),
        "{}",
        r.message()
    );
}

#[tokio::test]
async fn a_model_that_failed_to_load_is_409_and_loading_is_503() {
    let gw = gateway(Options {
        demo: Some(ModelState::Failed(
            "model.safetensors: sha256 mismatch".into(),
        )),
        ..Options::default()
    });
    let r = gw.run(page_body()).await;
    assert_error(&r, 409, "model_unavailable", Some("model"));
    assert!(r.message().contains("sha256 mismatch"));

    let gw = gateway(Options {
        demo: Some(ModelState::Loading),
        ..Options::default()
    });
    let r = gw.run(page_body()).await;
    assert_error(&r, 503, "model_loading", None);
    assert!(r.headers.contains_key("retry-after"));
    let ready = gw
        .send(
            Request::get("/readyz")
                .body(Body::empty())
                .expect("request"),
        )
        .await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.body["models"]["demo-model"]["status"], "loading");
}

/// A JSON body that stops arriving half-way is 408 `body_timeout` once the deadline passes,
/// and the connection is closed (its unread rest cannot start another request); without the
/// deadline the request would hold its connection and handler forever.
#[tokio::test]
async fn a_json_body_that_stalls_is_408_and_closes_the_connection() {
    let gw = gateway(Options {
        body_read: Some(std::time::Duration::from_millis(300)),
        ..Options::default()
    });
    let body = serde_json::to_vec(&page_body()).expect("json");
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(1);
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|chunk| (Ok::<_, std::io::Error>(chunk), rx))
    });
    tx.send(body[..body.len() / 2].to_vec())
        .await
        .expect("half");
    let req = Request::post("/api/runs")
        .header("X-API-Key", &gw.key)
        .header("Content-Type", "application/json")
        .body(Body::from_stream(stream))
        .expect("request");
    let r = tokio::time::timeout(std::time::Duration::from_secs(20), gw.send(req))
        .await
        .expect("a stalled body is answered, not waited for forever");
    assert_error(&r, 408, "body_timeout", None);
    assert_eq!(r.headers["connection"], "close");
    drop(tx);
    // A body that arrives in time is served as usual.
    assert_eq!(gw.run(page_body()).await.status, StatusCode::OK);
}

// ---- 413 / 429 / 503 ----

#[tokio::test]
async fn an_oversized_body_is_413() {
    let gw = gateway(Options {
        body_limit: 1024,
        ..Options::default()
    });
    let mut body = page_body();
    body["input"]["text"] = json!("x".repeat(4096));
    let r = gw.run(body).await;
    assert_error(&r, 413, "payload_too_large", None);
}

#[tokio::test]
async fn over_the_rate_limit_is_429_with_headers() {
    let gw = gateway(Options {
        rate_limit: 2,
        ..Options::default()
    });
    let bad = json!({"input": {}});
    let first = gw.run(bad.clone()).await;
    assert_eq!(first.headers["x-ratelimit-limit"], "2");
    assert_eq!(first.headers["x-ratelimit-remaining"], "1");
    assert!(first.headers.contains_key("x-ratelimit-reset"));
    let second = gw.run(bad.clone()).await;
    assert_eq!(second.headers["x-ratelimit-remaining"], "0");
    let third = gw.run(bad).await;
    assert_error(&third, 429, "rate_limited", None);
    let retry: u64 = third.headers["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!(retry >= 1);
    assert_eq!(third.headers["x-ratelimit-remaining"], "0");
}

/// An encoder held on a gate, to fill the queue deterministically.
struct Held {
    gate: Arc<Mutex<()>>,
    entered: Arc<std::sync::atomic::AtomicUsize>,
}

impl Encoder for Held {
    fn slug(&self) -> &str {
        "demo-model"
    }
    fn dimensions(&self) -> usize {
        384
    }
    fn embed_texts(&mut self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        self.entered
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let _g = self.gate.lock().expect("gate");
        Ok(texts.iter().map(|_| vec![0.0; 384]).collect())
    }
}

// The test holds the gate across awaits on purpose: it stalls the encoder thread, not a task.
#[allow(clippy::await_holding_lock)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_encoder_queue_is_503_with_retry_after() {
    let gate = Arc::new(Mutex::new(()));
    let entered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let handle = EncoderHandle::spawn(
        Held {
            gate: gate.clone(),
            entered: entered.clone(),
        },
        WorkerOptions {
            queue_capacity: 1,
            max_batch: 1,
            ..WorkerOptions::default()
        },
    );
    let gw = Arc::new(gateway(Options {
        demo: Some(ModelState::Ready(handle.clone())),
        ..Options::default()
    }));
    let held = gate.lock().expect("gate");
    let first = tokio::spawn({
        let gw = gw.clone();
        async move { gw.run(page_body()).await.status }
    });
    while entered.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        tokio::task::yield_now().await;
    }
    let second = tokio::spawn({
        let gw = gw.clone();
        async move { gw.run(page_body()).await.status }
    });
    while handle.queue_depth() < 2 {
        tokio::task::yield_now().await;
    }
    let r = gw.run(page_body()).await;
    assert_error(&r, 503, "overloaded", None);
    assert_eq!(r.headers["retry-after"], "1");
    let metrics = gw
        .send(
            Request::get("/metrics")
                .body(Body::empty())
                .expect("request"),
        )
        .await;
    let text = metrics.body.as_str().expect("text").to_string();
    assert!(
        text.contains("aimp_encoder_queue_depth{model=\"demo-model\"} 2"),
        "{text}"
    );
    drop(held);
    assert_eq!(first.await.expect("join"), StatusCode::OK);
    assert_eq!(second.await.expect("join"), StatusCode::OK);
}

// ---- models, operations ----

#[tokio::test]
async fn models_list_their_contracts_and_installation() {
    let gw = gateway(Options::default());
    let req = Request::get("/api/marketplace/models")
        .header("X-API-Key", &gw.key)
        .body(Body::empty())
        .expect("request");
    let r = gw.send(req).await;
    assert_eq!(r.status, StatusCode::OK);
    let data = r.body["data"].as_array().expect("data");
    let demo = data
        .iter()
        .find(|m| m["slug"] == "demo-model")
        .expect("demo");
    assert_eq!(demo["installed"], true);
    assert_eq!(demo["verified"], true);
    assert_eq!(demo["dimensions"], 384);
    assert_eq!(demo["distance"], "cosine");
    assert_eq!(demo["modes"]["index"]["collection"], "texts");
    assert_eq!(
        demo["modes"]["search"]["params_schema"]["properties"]["top_k"]["default"],
        10
    );
    assert!(demo["modes"]["execute"]["input_schema"].is_object());
    let clipo = data.iter().find(|m| m["slug"] == "clipo").expect("clipo");
    assert_eq!(clipo["installed"], false);
    assert_eq!(clipo["dimensions"], 512);
    assert_eq!(clipo["modes"]["index"]["collection"], "images");
    let req = Request::get("/api/marketplace/models/clipo")
        .header("X-API-Key", &gw.key)
        .body(Body::empty())
        .expect("request");
    assert_eq!(gw.send(req).await.body["slug"], "clipo");
}

#[tokio::test]
async fn health_ready_and_metrics_need_no_credential() {
    let gw = gateway(Options::default());
    let get = |uri: &str| Request::get(uri).body(Body::empty()).expect("request");
    assert_eq!(gw.send(get("/healthz")).await.status, StatusCode::OK);
    let ready = gw.send(get("/readyz")).await;
    assert_eq!(ready.status, StatusCode::OK);
    assert_eq!(ready.body["store"], "open");
    gw.run(page_body()).await;
    gw.run(json!({"model": "demo-model"})).await;
    let metrics = gw.send(get("/metrics")).await;
    assert_eq!(metrics.status, StatusCode::OK);
    let text = metrics.body.as_str().expect("text");
    for needle in [
        "aimp_http_requests_total{method=\"POST\",route=\"/api/runs\",status=\"200\"} 1",
        "aimp_http_requests_total{method=\"POST\",route=\"/api/runs\",status=\"400\"} 1",
        "aimp_http_request_duration_seconds_bucket",
        "aimp_runs_total{model=\"demo-model\",mode=\"execute\",status=\"200\"} 1",
        "aimp_run_duration_seconds_count{model=\"demo-model\"} 1",
        // The encoder is shared with tests running in parallel: its depth varies.
        "aimp_encoder_queue_depth{model=\"demo-model\"} ",
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
}

#[tokio::test]
async fn unknown_paths_are_404_in_the_error_shape() {
    let gw = gateway(Options::default());
    let r = gw
        .send(
            Request::get("/api/nothing")
                .body(Body::empty())
                .expect("request"),
        )
        .await;
    assert_error(&r, 404, "not_found", None);
}

#[tokio::test]
async fn a_wrong_method_is_405_in_the_error_shape() {
    let gw = gateway(Options::default());
    let r = gw
        .send(
            Request::get("/api/runs")
                .header("X-API-Key", &gw.key)
                .body(Body::empty())
                .expect("request"),
        )
        .await;
    assert_error(&r, 405, "method_not_allowed", None);
}
