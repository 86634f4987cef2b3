//! Two gateways, each with its own empty data folder, on one PostgreSQL (`--store`): a key
//! made on one works on the other, texts indexed through one are found through the other
//! with the same filter, and a database that stops is answered 503 with `Retry-After` until
//! it starts again, when the same gateways answer 200 without a restart.

use std::time::{Duration, Instant};

use aimp_store_postgres::harness;
use serde_json::{Value, json};

use super::{ENV_KEY, Server, admin, agent, aimp, download, get, parse, post, shared_models};

fn gateway(data: &std::path::Path, url: &str) -> Server {
    let mut cmd = aimp(data, &shared_models());
    cmd.env("AIMP_API_KEY", ENV_KEY)
        .env("AIMP_STORE", url)
        .env("AIMP_OFFLINE", "1");
    Server::start(cmd)
}

fn found(base: &str, key: &str, filter: Value) -> Vec<String> {
    let (status, reply) = post(
        &format!("{base}/api/runs"),
        &[("X-API-Key", key)],
        &json!({"model": "demo-model", "mode": "search", "scope": "notes",
                "input": {"text": "a signed agreement"},
                "params": {"top_k": 5, "filter": filter}})
        .to_string(),
    );
    assert_eq!(status, 200, "{reply}");
    reply["output"]["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| r["id"].as_str().expect("id").to_string())
        .collect()
}

#[test]
fn two_gateways_share_one_postgresql_and_ride_out_its_restart() {
    let Some(pg) = harness::own_server() else {
        return;
    };
    let url = pg.fresh_database();
    let (data_a, data_b) = (
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    );
    let a = gateway(data_a.path(), &url);
    let b = gateway(data_b.path(), &url);

    // A key made on A works on B.
    let (status, made) = admin(
        "POST",
        &format!("{}/api/api-keys/", a.base),
        Some(json!({"name": "shared", "workspace": "team"})),
    );
    assert_eq!(status, 201, "{made}");
    let key = made["key"].as_str().expect("key").to_string();
    let (status, listed) = get(
        &format!("{}/api/knowledge-bases", b.base),
        &[("X-API-Key", &key)],
    );
    assert_eq!(status, 200, "{listed}");

    // Texts indexed through A are found through B, with the same filter.
    let texts = [
        "The contract was signed by both parties on Monday.",
        "The lawyers asked for more time to review the documents.",
        "Profit margins improved after the supplier lowered prices.",
    ];
    let (status, reply) = post(
        &format!("{}/api/runs", a.base),
        &[("X-API-Key", &key)],
        &json!({"model": "demo-model", "mode": "index", "scope": "notes",
                "input": {"texts": texts, "text_ids": ["n1", "n2", "n3"],
                          "metadata": [{"team": "legal"}, {"team": "legal"}, {"team": "sales"}]}})
        .to_string(),
    );
    assert_eq!(status, 200, "{reply}");
    let legal = json!({"must": [{"key": "team", "match": {"value": "legal"}}]});
    let through_a = found(&a.base, &key, legal.clone());
    let through_b = found(&b.base, &key, legal);
    assert_eq!(through_b, through_a);
    assert_eq!(through_b[0], "n1", "{through_b:?}");
    assert_eq!(through_b.len(), 2, "only the legal notes: {through_b:?}");
    // Another workspace sees none of them, on either gateway.
    let (status, kbs) = get(
        &format!("{}/api/knowledge-bases", a.base),
        &[("X-API-Key", ENV_KEY)],
    );
    assert_eq!(status, 200);
    assert!(kbs["data"].as_array().is_some_and(Vec::is_empty), "{kbs}");

    // The database stops: both answer 503 with Retry-After, in the gateway's error shape.
    pg.stop();
    for gateway in [&a, &b] {
        let asked = Instant::now();
        let response = agent()
            .get(&format!("{}/api/knowledge-bases", gateway.base))
            .header("X-API-Key", &key)
            .call()
            .expect("an answer");
        let retry_after = response.headers().get("retry-after").cloned();
        let (status, body) = parse(response);
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["error"]["code"], "store_unavailable", "{body}");
        assert!(retry_after.is_some(), "no Retry-After");
        assert!(
            asked.elapsed() < Duration::from_secs(20),
            "{:?}",
            asked.elapsed()
        );
    }
    // Started again: 200, without restarting either gateway.
    pg.start_again();
    for gateway in [&a, &b] {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (status, body) = get(
                &format!("{}/api/knowledge-bases", gateway.base),
                &[("X-API-Key", &key)],
            );
            if status == 200 {
                assert_eq!(body["data"][0]["count"], 3, "{body}");
                break;
            }
            assert_eq!(status, 503, "{body}");
            assert!(Instant::now() < deadline, "never recovered: {body}");
            std::thread::sleep(Duration::from_millis(250));
        }
    }
    assert_eq!(found(&b.base, &key, json!({})).len(), 3);
    a.stop();
    b.stop();
}

/// The API page's upload → index → search sequence with each step sent to another of three
/// gateways on one PostgreSQL: the bytes, the upload's state and the URL's signature are the
/// store's, so any gateway serves any step.
#[test]
fn the_page_sequence_across_three_gateways_finds_image_1_first() {
    use super::media::{
        COMPLETE_BODY, INDEX_BODY, INIT_BODY, SEARCH_BODY, install_fixture_clipo, png_of_length,
        run,
    };
    let Some(pg) = harness::server() else {
        return;
    };
    let url = pg.fresh_database();
    let shared = tempfile::tempdir().expect("tempdir");
    let models = shared.path().join("models");
    install_fixture_clipo(shared.path(), &models);
    let folders: Vec<tempfile::TempDir> = (0..3)
        .map(|_| tempfile::tempdir().expect("tempdir"))
        .collect();
    let gateways: Vec<Server> = folders
        .iter()
        .map(|dir| {
            let mut cmd = aimp(dir.path(), &models);
            cmd.env("AIMP_API_KEY", ENV_KEY)
                .env("AIMP_STORE", &url)
                .env("AIMP_MODELS", "clipo")
                .env("AIMP_OFFLINE", "1");
            Server::start(cmd)
        })
        .collect();
    let [a, b, c] = [&gateways[0], &gateways[1], &gateways[2]];
    let key = [("X-API-Key", ENV_KEY)];

    // Larger than the page's picture, so its bytes go to the store in several chunks.
    let (status, init) = post(
        &format!("{}/api/media/upload/init", a.base),
        &key,
        &INIT_BODY.replace("12345", "600000"),
    );
    assert_eq!(status, 200, "{init}");
    // Signed by A, sent to B.
    let upload_url = init["upload_url"]
        .as_str()
        .expect("upload_url")
        .replace(&a.base, &b.base);
    let put = agent()
        .put(&upload_url)
        .header("Content-Type", "image/png")
        .send(&png_of_length(600_000)[..])
        .expect("put");
    let (status, body) = parse(put);
    assert_eq!(status, 204, "{body}");
    let upload_id = init["upload_id"].as_str().expect("upload_id");
    let (status, done) = post(
        &format!("{}/api/media/upload/complete", c.base),
        &key,
        &COMPLETE_BODY.replace("studio_upload_...", upload_id),
    );
    assert_eq!(status, 200, "{done}");
    let media_ref = done["media_ref"].as_str().expect("media_ref");
    assert_eq!(done["size_bytes"], 600_000);

    let indexed = run(a, &INDEX_BODY.replace("media_...", media_ref));
    assert_eq!(indexed["output"]["ids"][0], "image-1");
    let found = run(b, &SEARCH_BODY.replace("media_...", media_ref));
    assert_eq!(found["output"]["results"][0]["id"], "image-1", "{found}");
    // The bytes come back whole from a gateway that never saw them.
    assert_eq!(download(&c.base, media_ref), png_of_length(600_000));
}

/// `aimp bench gateway` over two gateways on one PostgreSQL: every run answered, the
/// scope holds every text once, and the record has both phases' rates and percentiles.
#[test]
fn the_gateway_bench_spreads_runs_over_two_gateways_on_postgresql() {
    let Some(pg) = harness::server() else {
        return;
    };
    let url = pg.fresh_database();
    let (data_a, data_b) = (
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    );
    let a = gateway(data_a.path(), &url);
    let b = gateway(data_b.path(), &url);
    let work = tempfile::tempdir().expect("tempdir");
    let texts = work.path().join("texts.txt");
    let lines: Vec<String> = (0..40)
        .map(|i| format!("Sentence number {i} is about topic {}.", i % 7))
        .collect();
    std::fs::write(&texts, lines.join("\n")).expect("texts");
    let out = work.path().join("gateway.json");
    let run = aimp(work.path(), &shared_models())
        .env("AIMP_API_KEY", ENV_KEY)
        .args([
            "bench",
            "gateway",
            "--gateway",
            &a.base,
            "--gateway",
            &b.base,
        ])
        .args([
            "--runs",
            "10",
            "--batch",
            "4",
            "--searches",
            "12",
            "--clients",
            "3",
        ])
        .arg("--texts")
        .arg(&texts)
        .arg("--out")
        .arg(&out)
        .output()
        .expect("run the bench");
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let record: Value =
        serde_json::from_str(&std::fs::read_to_string(&out).expect("record")).expect("json");
    assert_eq!(record["gateways"], 2, "{record}");
    assert_eq!(record["index"]["runs"], 10, "{record}");
    for phase in ["index", "search"] {
        let p50 = record[phase]["p50_ms"].as_f64().expect("p50");
        let p99 = record[phase]["p99_ms"].as_f64().expect("p99");
        assert!(p50 > 0.0 && p99 >= p50, "{record}");
    }
    assert!(record["search"]["queries_per_s"].as_f64() > Some(0.0));
    // Through either gateway: the 40 texts, once each.
    let (status, kbs) = get(
        &format!("{}/api/knowledge-bases", b.base),
        &[("X-API-Key", ENV_KEY)],
    );
    assert_eq!(status, 200, "{kbs}");
    assert_eq!(kbs["data"][0]["scope"], "bench-gateway", "{kbs}");
    assert_eq!(kbs["data"][0]["count"], 40, "{kbs}");
    a.stop();
    b.stop();
}
