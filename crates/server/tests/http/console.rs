//! The console's files: served under `/console/` with a strict Content-Security-Policy and
//! ETags, nothing in them pointing outside the gateway or at an absolute path (so it works
//! under a proxy's sub-path), and the recall check it calls.

use axum::http::StatusCode;
use serde_json::json;

use super::{Options, assert_error, gateway};

async fn get(
    g: &super::Gateway,
    uri: &str,
    etag: Option<&str>,
) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let r = super::media_bytes::get_raw(g, uri, None, etag).await;
    (r.status, r.headers, r.bytes)
}

#[tokio::test]
async fn the_console_is_served_with_a_strict_policy_and_revalidates() {
    let g = gateway(Options::default());
    let (status, headers, _) = get(&g, "/console", None).await;
    assert_eq!(status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(
        headers["location"], "console/",
        "relative, so a proxy's prefix stays"
    );

    let (status, headers, page) = get(&g, "/console/", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers["content-type"]
            .to_str()
            .expect("a text header")
            .starts_with("text/html")
    );
    let csp = headers["content-security-policy"]
        .to_str()
        .expect("a text header");
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(directive), "{csp}");
    }
    assert!(!csp.contains("unsafe"), "{csp}");
    assert!(String::from_utf8(page).expect("utf-8").contains("app.js"));

    let (status, headers, _) = get(&g, "/console/app.js", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers["content-type"]
            .to_str()
            .expect("a text header")
            .starts_with("text/javascript")
    );
    assert_eq!(headers["x-content-type-options"], "nosniff");
    let etag = headers["etag"].to_str().expect("a text header").to_string();
    let (status, _, body) = get(&g, "/console/app.js", Some(&etag)).await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);
    assert!(body.is_empty());

    let (status, _, _) = get(&g, "/console/no-such-file.js", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = get(&g, "/console/../Cargo.toml", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn no_embedded_file_names_another_origin_or_an_absolute_path() {
    let files = aimp_server::console::files();
    assert!(files.iter().any(|(p, _)| *p == "index.html"));
    assert!(
        files.len() >= 10,
        "{:?}",
        files.iter().map(|f| f.0).collect::<Vec<_>>()
    );
    for (path, bytes) in files {
        let text = std::str::from_utf8(bytes).expect("text files");
        for bad in [
            "http://", "https://", "//cdn", "@import", "url(/", "src=\"/", "href=\"/",
        ] {
            assert!(!text.contains(bad), "{path} contains {bad:?}");
        }
        // Every request is relative to /console/ ("../api/..."), never from the root.
        for quote in ["\"/api", "'/api", "`/api"] {
            assert!(
                !text.contains(quote),
                "{path} requests {quote}… from the root"
            );
        }
        // No inline script or style attribute, which the policy would refuse.
        if path.ends_with(".html") {
            assert!(
                !text.contains("<script>") && !text.contains("style="),
                "{path}"
            );
        }
    }
}

#[tokio::test]
async fn a_gateway_can_turn_the_console_off() {
    let g = gateway(Options {
        console: false,
        ..Options::default()
    });
    let (status, _, _) = get(&g, "/console/", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_recall_check_compares_the_graph_with_exact_search_on_the_scopes_own_data() {
    let g = gateway(Options::default());
    let texts: Vec<String> = (0..30)
        .map(|i| format!("note number {i} about topic {}", i % 7))
        .collect();
    let ids: Vec<String> = (0..30).map(|i| format!("n{i}")).collect();
    let r = g
        .post_json(
            "/api/runs",
            &g.key.clone(),
            json!({"model": "demo-model", "mode": "index", "scope": "notes",
                   "input": {"texts": texts, "text_ids": ids}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let uri = "/api/knowledge-bases/demo-model/texts/notes/recall";
    let r = g
        .post_json(uri, &g.key.clone(), json!({"queries": 12, "k": 5}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["queries"], 12);
    assert_eq!(r.body["k"], 5);
    assert_eq!(r.body["count"], 30);
    // Thirty items are searched exactly either way: recall 1, every answer exhaustive.
    assert_eq!(r.body["recall"], 1.0);
    assert_eq!(r.body["graph_exhaustive"], 1.0);
    assert!(
        r.body["graph_ms"]["p50"]
            .as_f64()
            .is_some_and(|ms| ms >= 0.0)
    );
    assert!(r.body["exact_ms"]["p95"].as_f64().is_some());

    for (body, param) in [
        (json!({"queries": 0}), "queries"),
        (json!({"queries": 5000}), "queries"),
        (json!({"k": "ten"}), "k"),
        (json!({"ef": 0}), "ef"),
        (json!({"sample": 3}), "sample"),
    ] {
        let r = g.post_json(uri, &g.key.clone(), body).await;
        assert_error(
            &r,
            400,
            if param == "sample" {
                "unknown_field"
            } else {
                "invalid_field"
            },
            Some(param),
        );
    }
    // Another workspace does not see the scope.
    let other = g.key_of_workspace("elsewhere");
    let r = g.post_json(uri, &other, json!({})).await;
    assert_error(&r, 404, "knowledge_base_not_found", None);
}
