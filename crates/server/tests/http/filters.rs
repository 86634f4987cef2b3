//! Metadata and filters over HTTP: metadata in with an index run and out with search hits and
//! the item listing, exactly as sent; `params.filter` on search and delete, `?filter=` on the
//! listing; every refusal a 400 naming its path; workspaces kept apart.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};

use super::vectors::ids_of;
use super::{Gateway, Options, Reply, assert_error, gateway};

/// Five notes with fields: team, year, tags, a date, a nested author.
fn notes() -> (Vec<&'static str>, Vec<&'static str>, Vec<Value>) {
    let ids = vec!["n1", "n2", "n3", "n4", "n5"];
    let texts = vec![
        "the quarterly contract review with the legal team",
        "a contract template for new suppliers",
        "minutes of the operations stand-up",
        "the holiday rota for the operations team",
        "a note with no fields at all",
    ];
    let metadata = vec![
        json!({"team": "legal", "year": 2024, "tags": ["contract", "review"],
               "signed": "2024-03-01T09:30:00Z", "author": {"name": "Ann", "level": 3},
               "price": 12.75, "urgent": true, "note": "ünïcødé ✓"}),
        json!({"team": "legal", "year": 2023, "tags": ["contract"], "urgent": false,
               "author": {"name": "Bo"}}),
        json!({"team": "ops", "year": 2024, "tags": [], "signed": null}),
        json!({"team": "ops", "year": 2025, "tags": ["rota"],
               "signed": "2025-01-15T00:00:00+01:00"}),
        json!({}),
    ];
    (ids, texts, metadata)
}

impl Gateway {
    async fn index_notes(&self, key: &str, scope: &str) -> Reply {
        let (ids, texts, metadata) = notes();
        self.post_json(
            "/api/runs",
            key,
            json!({"model": "demo-model", "mode": "index", "scope": scope,
                "input": {"texts": texts, "text_ids": ids, "metadata": metadata}}),
        )
        .await
    }

    async fn search_filtered(&self, key: &str, scope: &str, params: Value) -> Reply {
        self.post_json(
            "/api/runs",
            key,
            json!({"model": "demo-model", "mode": "search", "scope": scope,
                "input": {"text": "contracts"}, "params": params}),
        )
        .await
    }

    async fn delete_filtered(&self, key: &str, scope: &str, input: Value, params: Value) -> Reply {
        self.post_json(
            "/api/runs",
            key,
            json!({"model": "demo-model", "mode": "delete", "scope": scope,
                "input": input, "params": params}),
        )
        .await
    }

    async fn list_filtered(&self, key: &str, scope: &str, filter: Option<&Value>) -> Reply {
        let query = filter.map_or(String::new(), |f| {
            format!("?filter={}", urlencode(&f.to_string()))
        });
        let req = Request::get(format!(
            "/api/knowledge-bases/demo-model/texts/{scope}/items{query}"
        ))
        .header("X-API-Key", key)
        .body(Body::empty())
        .expect("request");
        self.send(req).await
    }
}

/// `s` percent-encoded for a query string.
pub(crate) fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The ids of a search's results, in id order.
fn result_ids(reply: &Reply) -> Vec<String> {
    let mut ids = ids_of(reply);
    ids.sort();
    ids
}

#[tokio::test]
async fn metadata_comes_back_exactly_as_sent_from_search_and_listing() {
    let g = gateway(Options::default());
    let indexed = g.index_notes(&g.key, "team").await;
    assert_eq!(indexed.status, StatusCode::OK, "{:?}", indexed.body);
    let (ids, _, metadata) = notes();
    let sent: std::collections::HashMap<&str, String> = ids
        .iter()
        .zip(&metadata)
        .map(|(id, m)| (*id, m.to_string()))
        .collect();

    let found = g
        .search_filtered(&g.key, "team", json!({"top_k": 10}))
        .await;
    assert_eq!(found.status, StatusCode::OK, "{:?}", found.body);
    let results = found.body["output"]["results"].as_array().expect("results");
    assert_eq!(results.len(), 5);
    for r in results {
        let id = r["id"].as_str().expect("id");
        // Same keys in the same order, same values: the same JSON text.
        assert_eq!(r["metadata"].to_string(), sent[id], "search hit {id}");
    }

    let listed = g.list_filtered(&g.key, "team", None).await;
    assert_eq!(listed.status, StatusCode::OK, "{:?}", listed.body);
    assert_eq!(listed.body["count"], 5, "{:?}", listed.body);
    for item in listed.body["data"].as_array().expect("data") {
        let id = item["id"].as_str().expect("id");
        assert_eq!(item["metadata"].to_string(), sent[id], "listed {id}");
    }

    // The API page's body, with no metadata, still indexes; its items have none.
    let plain = g
        .run(
            json!({"model": "demo-model", "mode": "index", "scope": "team",
            "input": {"texts": ["plain"], "text_ids": ["p1"]}}),
        )
        .await;
    assert_eq!(plain.status, StatusCode::OK, "{:?}", plain.body);
    let hit = g
        .search_filtered(
            &g.key,
            "team",
            json!({"filter": {"must": [{"has_id": ["p1"]}]}}),
        )
        .await;
    assert_eq!(hit.body["output"]["results"][0]["metadata"], Value::Null);
}

#[tokio::test]
async fn search_finds_only_what_the_filter_passes() {
    let g = gateway(Options::default());
    g.index_notes(&g.key, "team").await;
    let cases = [
        (
            json!({"must": [{"key": "team", "match": {"value": "legal"}}]}),
            vec!["n1", "n2"],
        ),
        (
            json!({"must": [{"key": "tags", "match": {"any": ["rota", "review"]}}]}),
            vec!["n1", "n4"],
        ),
        (
            json!({"must_not": [{"key": "team", "match": {"value": "legal"}}]}),
            vec!["n3", "n4", "n5"],
        ),
        (
            json!({"must": [{"key": "year", "range": {"gte": 2024}}]}),
            vec!["n1", "n3", "n4"],
        ),
        (
            json!({"must": [{"key": "signed", "range": {"gt": "2024-06-01T00:00:00Z"}}]}),
            vec!["n4"],
        ),
        (
            json!({"must": [{"key": "author.name", "match": {"value": "Bo"}}]}),
            vec!["n2"],
        ),
        (
            json!({"must": [{"is_empty": {"key": "tags"}}]}),
            vec!["n3", "n5"],
        ),
        (
            json!({"must": [{"is_null": {"key": "signed"}}]}),
            vec!["n3"],
        ),
        (
            json!({"must": [{"key": "urgent", "match": {"value": true}}]}),
            vec!["n1"],
        ),
        (
            json!({"should": [{"key": "price", "range": {"lt": 13}}, {"has_id": ["n5"]}]}),
            vec!["n1", "n5"],
        ),
        (
            json!({"must": [{"key": "team", "match": {"value": "ops"}},
                            {"must_not": [{"key": "year", "match": {"value": 2025}}]}]}),
            vec!["n3"],
        ),
        // System fields: every text item has a creation time, none a filename.
        (
            json!({"must": [{"key": "$created_at", "range": {"gt": "2000-01-01T00:00:00Z"}}]}),
            vec!["n1", "n2", "n3", "n4", "n5"],
        ),
        (
            json!({"must": [{"is_empty": {"key": "$filename"}}]}),
            vec!["n1", "n2", "n3", "n4", "n5"],
        ),
        (
            json!({"must": [{"key": "team", "match": {"value": "nobody"}}]}),
            vec![],
        ),
    ];
    for (filter, want) in cases {
        for exact in [false, true] {
            let r = g
                .search_filtered(
                    &g.key,
                    "team",
                    json!({"top_k": 10, "exact": exact, "filter": filter}),
                )
                .await;
            assert_eq!(r.status, StatusCode::OK, "{filter}: {:?}", r.body);
            assert_eq!(result_ids(&r), want, "{filter} exact={exact}");
            assert_eq!(r.body["output"]["exhaustive"], true, "{filter}");
        }
        let listed = g.list_filtered(&g.key, "team", Some(&filter)).await;
        assert_eq!(listed.status, StatusCode::OK, "{filter}: {:?}", listed.body);
        let got: Vec<&str> = listed.body["data"]
            .as_array()
            .expect("data")
            .iter()
            .map(|i| i["id"].as_str().expect("id"))
            .collect();
        assert_eq!(got, want, "listing by {filter}");
        // The first page counts the matches exactly.
        assert_eq!(listed.body["count"], want.len(), "count of {filter}");
    }
}

#[tokio::test]
async fn every_filter_refusal_is_a_400_naming_its_path() {
    let g = gateway(Options::default());
    g.index_notes(&g.key, "team").await;
    let cases = [
        // Refused by the contract's schema.
        (json!({"mst": []}), "params.filter.mst"),
        (
            json!({"must": [{"key": "a", "match": {"value": [1]}}]}),
            "params.filter.must[0].match.value",
        ),
        (
            json!({"must": [{"key": "a", "match": {"value": 1}}, {"key": "a", "range": {"gt": true}}]}),
            "params.filter.must[1].range.gt",
        ),
        (
            json!({"must": [{"key": "a", "range": {"between": 1}}]}),
            "params.filter.must[0].range.between",
        ),
        (
            json!({"should": [{"is_null": {}}]}),
            "params.filter.should[0].is_null",
        ),
        (json!("team=legal"), "params.filter"),
        // Refused by the filter's own reading.
        (
            json!({"must": [{"key": "a", "match": {"value": 1}}, {"key": "a", "range": {"gt": "soon"}}]}),
            "params.filter.must[1].range.gt",
        ),
        (
            json!({"must": [{"key": "a", "range": {"gt": 1, "lt": "2024-01-01T00:00:00Z"}}]}),
            "params.filter.must[0].range",
        ),
        (
            json!({"must": [{"key": "$nope", "match": {"value": 1}}]}),
            "params.filter.must[0].key",
        ),
        (json!({"must": [{"key": "a"}]}), "params.filter.must[0]"),
        (
            json!({"must": [{"key": "a", "match": {"value": 1}, "range": {"gt": 1}}]}),
            "params.filter.must[0]",
        ),
    ];
    for (filter, path) in cases {
        let r = g
            .search_filtered(&g.key, "team", json!({"filter": filter}))
            .await;
        assert_error(&r, 400, "invalid_params", Some(path));
        assert!(r.message().contains(path), "{filter}: {}", r.message());
        let d = g
            .delete_filtered(&g.key, "team", json!({}), json!({"filter": filter}))
            .await;
        assert_error(&d, 400, "invalid_params", Some(path));
    }
    // On the listing the filter is a query parameter, named as such.
    let bad = json!({"must": [{"key": "a", "range": {"gt": "soon"}}]});
    let r = g.list_filtered(&g.key, "team", Some(&bad)).await;
    assert_error(&r, 400, "invalid_query", Some("filter.must[0].range.gt"));
    let req = Request::get("/api/knowledge-bases/demo-model/texts/team/items?filter=%7Bnope")
        .header("X-API-Key", &g.key)
        .body(Body::empty())
        .expect("request");
    assert_error(&g.send(req).await, 400, "invalid_query", Some("filter"));
    // Nothing was deleted by any of them.
    let all = g.list_filtered(&g.key, "team", None).await;
    assert_eq!(all.body["data"].as_array().map(Vec::len), Some(5));
}

#[tokio::test]
async fn bad_metadata_is_a_400_naming_the_field_and_stores_nothing() {
    let g = gateway(Options::default());
    let index = |metadata: Value| {
        json!({"model": "demo-model", "mode": "index", "scope": "bad",
            "input": {"texts": ["one", "two"], "text_ids": ["a", "b"], "metadata": metadata}})
    };
    let cases = [
        (
            json!([{}, {"tags": ["x", ["y"]]}]),
            "input.metadata[1].tags[1]",
            "invalid_input",
        ),
        (
            json!([{"a.b": 1}, {}]),
            "input.metadata[0].a.b",
            "invalid_input",
        ),
        (
            json!([{"$width": 1}, {}]),
            "input.metadata[0].$width",
            "invalid_input",
        ),
        (
            json!([{}, {"s": "x".repeat(20_000)}]),
            "input.metadata[1]",
            "invalid_input",
        ),
        (
            json!([{}, {"c": {"d": {"e": {"f": {"g": 1}}}}}]),
            "input.metadata[1].c.d.e.f",
            "invalid_input",
        ),
        (json!([{}, 3]), "input.metadata[1]", "invalid_input"),
        (json!([{}]), "input.metadata", "length_mismatch"),
    ];
    for (metadata, path, code) in cases {
        let r = g.run(index(metadata.clone())).await;
        assert_error(&r, 400, code, Some(path));
    }
    let listed = g.list_filtered(&g.key, "bad", None).await;
    assert_eq!(listed.status, StatusCode::NOT_FOUND, "nothing was stored");
}

#[tokio::test]
async fn delete_by_filter_removes_exactly_what_it_passes() {
    let g = gateway(Options::default());
    g.index_notes(&g.key, "team").await;
    // Neither ids nor a filter says nothing to delete.
    let none = g
        .delete_filtered(&g.key, "team", json!({}), json!({}))
        .await;
    assert_error(&none, 400, "invalid_input", Some("input.ids"));

    // Ids and a filter: only the ids it passes; the others are kept and said so.
    let both = g
        .delete_filtered(
            &g.key,
            "team",
            json!({"ids": ["n1", "n3", "gone"]}),
            json!({"filter": {"must": [{"key": "team", "match": {"value": "ops"}}]}}),
        )
        .await;
    assert_eq!(both.status, StatusCode::OK, "{:?}", both.body);
    let out = &both.body["output"];
    assert_eq!(out["deleted"], 1);
    assert_eq!(out["ids"], json!(["n3"]));
    assert_eq!(out["kept"], json!(["n1"]));
    assert_eq!(out["not_found"], json!(["gone"]));
    assert_eq!(out["count"], 4);

    // A filter alone.
    let legal = g
        .delete_filtered(
            &g.key,
            "team",
            json!({}),
            json!({"filter": {"must": [{"key": "team", "match": {"value": "legal"}}]}}),
        )
        .await;
    assert_eq!(legal.status, StatusCode::OK, "{:?}", legal.body);
    let mut deleted: Vec<String> =
        serde_json::from_value(legal.body["output"]["ids"].clone()).expect("ids");
    deleted.sort();
    assert_eq!(deleted, ["n1", "n2"]);
    assert_eq!(legal.body["output"]["count"], 2);
    let left = g
        .search_filtered(&g.key, "team", json!({"exact": true}))
        .await;
    assert_eq!(result_ids(&left), ["n4", "n5"]);

    // The API page's delete body is unchanged.
    let plain = g
        .delete_filtered(&g.key, "team", json!({"ids": ["n4"]}), json!({}))
        .await;
    assert_eq!(plain.body["output"]["ids"], json!(["n4"]));
    assert!(plain.body["output"].get("kept").is_none());
}

#[tokio::test]
async fn filters_never_reach_into_another_workspace() {
    let g = gateway(Options::default());
    g.index_notes(&g.key, "team").await;
    let other = g.key_of_workspace("elsewhere");
    g.index_notes(&other, "team").await;
    let legal = json!({"must": [{"key": "team", "match": {"value": "legal"}}]});

    let gone = g
        .delete_filtered(&other, "team", json!({}), json!({"filter": legal}))
        .await;
    assert_eq!(gone.body["output"]["deleted"], 2, "{:?}", gone.body);
    // The first workspace still has both legal notes.
    let mine = g
        .search_filtered(&g.key, "team", json!({"filter": legal}))
        .await;
    assert_eq!(result_ids(&mine), ["n1", "n2"]);
    let listed = g.list_filtered(&g.key, "team", Some(&legal)).await;
    assert_eq!(listed.body["data"].as_array().map(Vec::len), Some(2));
    // And the other's listing by the same filter is empty, not the first's.
    let theirs = g.list_filtered(&other, "team", Some(&legal)).await;
    assert_eq!(theirs.body["data"], json!([]));
    // A scope only the first workspace has is not found from the other.
    g.index_notes(&g.key, "private").await;
    let none = g.list_filtered(&other, "private", Some(&legal)).await;
    assert_eq!(none.status, StatusCode::NOT_FOUND);
}
