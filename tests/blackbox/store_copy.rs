//! `aimp store copy`: the API page's picture, an API key and the uploaded bytes, copied from
//! one data folder into another (and through PostgreSQL where the harness runs it), are all
//! there for a gateway started on the copy; running it again writes nothing; bad locations
//! are refused with exit code 1 naming the flag.

use std::path::Path;

use aimp_store_postgres::harness;
use serde_json::{Value, json};

use super::media::{
    COMPLETE_BODY, INDEX_BODY, INIT_BODY, SEARCH_BODY, install_fixture_clipo, png_of_length, run,
};
use super::{ENV_KEY, Server, admin, agent, aimp, download, get, parse, post};

pub(crate) fn serve(data: &Path, models: &Path, store: Option<&str>) -> Server {
    let mut cmd = aimp(data, models);
    cmd.env("AIMP_API_KEY", ENV_KEY)
        .env("AIMP_MODELS", "clipo")
        .env("AIMP_OFFLINE", "1");
    if let Some(url) = store {
        cmd.env("AIMP_STORE", url);
    }
    Server::start(cmd)
}

/// Runs `aimp store copy --from FROM --to TO`: its exit code, its report (stdout) and stderr.
fn store_copy(models: &Path, from: &str, to: &str) -> (i32, Value, String) {
    let scratch = tempfile::tempdir().expect("tempdir");
    let out = aimp(scratch.path(), models)
        .args(["store", "copy", "--from", from, "--to", to, "--batch", "2"])
        .output()
        .expect("run aimp store copy");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    (
        out.status.code().unwrap_or(-1),
        serde_json::from_str(&stdout).unwrap_or(Value::String(stdout)),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// The page's sequence on a fresh embedded gateway: a key of workspace `team` made, the
/// page's picture uploaded and indexed as `image-1`. Gives the key and the picture's ref.
pub(crate) fn fill(data: &Path, models: &Path) -> (String, String) {
    let server = serve(data, models, None);
    let (status, made) = admin(
        "POST",
        &format!("{}/api/api-keys/", server.base),
        Some(json!({"name": "copied", "workspace": "team"})),
    );
    assert_eq!(status, 201, "{made}");
    let (status, init) = post(
        &format!("{}/api/media/upload/init", server.base),
        &[("X-API-Key", ENV_KEY)],
        &INIT_BODY.replace("12345", "300000"),
    );
    assert_eq!(status, 200, "{init}");
    let put = agent()
        .put(init["upload_url"].as_str().expect("upload_url"))
        .header("Content-Type", "image/png")
        .send(&png_of_length(300_000)[..])
        .expect("put");
    assert_eq!(parse(put).0, 204);
    let (status, done) = post(
        &format!("{}/api/media/upload/complete", server.base),
        &[("X-API-Key", ENV_KEY)],
        &COMPLETE_BODY.replace("studio_upload_...", init["upload_id"].as_str().expect("id")),
    );
    assert_eq!(status, 200, "{done}");
    let media_ref = done["media_ref"].as_str().expect("media_ref").to_string();
    run(&server, &INDEX_BODY.replace("media_...", &media_ref));
    server.stop();
    (made["key"].as_str().expect("key").to_string(), media_ref)
}

/// A gateway on the copy: the key works, the picture is found first, its bytes come back.
pub(crate) fn check_copy(server: &Server, key: &str, media_ref: &str) {
    let (status, listed) = get(
        &format!("{}/api/knowledge-bases", server.base),
        &[("X-API-Key", key)],
    );
    assert_eq!(status, 200, "{listed}");
    let found = run(server, &SEARCH_BODY.replace("media_...", media_ref));
    assert_eq!(found["output"]["results"][0]["id"], "image-1", "{found}");
    assert_eq!(download(&server.base, media_ref), png_of_length(300_000));
}

#[test]
fn a_copied_data_folder_serves_the_same_keys_pictures_and_bytes() {
    let root = tempfile::tempdir().expect("tempdir");
    let (a, b) = (root.path().join("a"), root.path().join("b"));
    let models = root.path().join("models");
    install_fixture_clipo(&a, &models);
    let (key, media_ref) = fill(&a, &models);
    let (from, to) = (a.to_str().expect("utf-8"), b.to_str().expect("utf-8"));

    let (code, report, stderr) = store_copy(&models, from, to);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(report["verified"], true, "{report}");
    assert_eq!(
        report["items"],
        json!({"seen": 1, "written": 1}),
        "{report}"
    );
    assert_eq!(report["media"]["written"], 1, "{report}");
    assert_eq!(report["content_bytes_written"], 300_000, "{report}");
    assert!(report["keys"]["written"].as_u64() >= Some(1), "{report}");
    assert!(stderr.contains("counts of both stores agree"), "{stderr}");

    // Again: everything is there already.
    let (code, again, stderr) = store_copy(&models, from, to);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(again["items"], json!({"seen": 1, "written": 0}), "{again}");
    assert_eq!(again["keys"]["written"], 0, "{again}");
    assert_eq!(again["media"]["written"], 0, "{again}");

    let server = serve(&b, &models, None);
    check_copy(&server, &key, &media_ref);
    server.stop();

    // Refused, exit code 1, naming the flag; nothing made where nothing was.
    let nothing = root.path().join("nothing");
    let (code, _, stderr) = store_copy(&models, nothing.to_str().expect("utf-8"), to);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("--from") && stderr.contains("holds no store"),
        "{stderr}"
    );
    assert!(!nothing.exists());
    let (code, _, stderr) = store_copy(&models, from, from);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("same store"), "{stderr}");
    let (code, _, stderr) = store_copy(&models, from, "mysql://db/aimp");
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("--to"), "{stderr}");
}

#[test]
fn a_data_folder_copied_into_postgresql_and_back_serves_the_same() {
    let Some(pg) = harness::server() else {
        return;
    };
    let url = pg.fresh_database();
    let root = tempfile::tempdir().expect("tempdir");
    let (a, b, c) = (
        root.path().join("a"),
        root.path().join("b"),
        root.path().join("c"),
    );
    let models = root.path().join("models");
    install_fixture_clipo(&a, &models);
    let (key, media_ref) = fill(&a, &models);

    let (code, report, stderr) = store_copy(&models, a.to_str().expect("utf-8"), &url);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        report["items"],
        json!({"seen": 1, "written": 1}),
        "{report}"
    );
    // A gateway on PostgreSQL (its own empty folder) serves what the folder held.
    let server = serve(&b, &models, Some(&url));
    check_copy(&server, &key, &media_ref);
    server.stop();

    // And back into a folder of its own.
    let (code, report, stderr) = store_copy(&models, &url, c.to_str().expect("utf-8"));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(report["media"]["written"], 1, "{report}");
    let server = serve(&c, &models, None);
    check_copy(&server, &key, &media_ref);
    server.stop();
}
