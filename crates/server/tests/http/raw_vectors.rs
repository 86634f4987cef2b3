//! The `vectors` model: the caller's own vectors indexed, searched, filtered and deleted end to
//! end; a scope's dimension and metric fixed by its first run and every disagreement a 400
//! naming the field.

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::vectors::ids_of;
use super::{Gateway, Options, Reply, assert_error, gateway};

impl Gateway {
    async fn vectors(&self, mode: &str, scope: &str, input: Value, params: Value) -> Reply {
        self.run(json!({"model": "vectors", "mode": mode, "scope": scope,
            "input": input, "params": params}))
            .await
    }
}

#[tokio::test]
async fn own_vectors_index_search_filter_and_delete() {
    let g = gateway(Options::default());
    let r = g
        .vectors(
            "index",
            "mine",
            json!({"vectors": [[0, 0, 0, 0], [1, 0, 0, 0], [5, 5, 5, 5]], "ids": ["o", "x", "far"],
                   "metadata": [{"kind": "origin"}, {"kind": "axis"}, {"kind": "far"}]}),
            json!({"metric": "l2"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["output"]["count"], 3);
    assert_eq!(r.body["output"]["collection"], "vectors");

    let near = g
        .vectors(
            "search",
            "mine",
            json!({"vector": [0.9, 0, 0, 0]}),
            json!({"top_k": 3}),
        )
        .await;
    assert_eq!(near.status, StatusCode::OK, "{:?}", near.body);
    assert_eq!(ids_of(&near), ["x", "o", "far"]);
    // l2 answers the Euclidean distance: 0.1 to x.
    let score = near.body["output"]["results"][0]["score"]
        .as_f64()
        .expect("score");
    assert!((score - 0.1).abs() < 1e-5, "{score}");
    assert_eq!(
        near.body["output"]["results"][0]["metadata"],
        json!({"kind": "axis"})
    );

    let filtered = g
        .vectors(
            "search",
            "mine",
            json!({"vector": [0.9, 0, 0, 0]}),
            json!({"filter": {"must_not": [{"key": "kind", "match": {"value": "axis"}}]}}),
        )
        .await;
    assert_eq!(ids_of(&filtered), ["o", "far"]);

    // An upsert replaces; a later run may restate the scope's own settings.
    let again = g
        .vectors(
            "index",
            "mine",
            json!({"vectors": [[0, 0, 0, 1]], "ids": ["x"]}),
            json!({"metric": "l2", "dimensions": 4}),
        )
        .await;
    assert_eq!(again.body["output"]["replaced"], 1, "{:?}", again.body);

    let deleted = g
        .vectors("delete", "mine", json!({"ids": ["o"]}), json!({}))
        .await;
    assert_eq!(deleted.body["output"]["count"], 2, "{:?}", deleted.body);

    let kbs = g.knowledge_bases(&g.key).await;
    let kb = kbs
        .iter()
        .find(|k| k["model"] == "vectors")
        .unwrap_or_else(|| panic!("{kbs:?}"));
    assert_eq!(
        (kb["dimensions"].as_u64(), kb["count"].as_u64()),
        (Some(4), Some(2))
    );

    // Cosine by default: the same direction scores 1 whatever the length.
    g.vectors(
        "index",
        "cos",
        json!({"vectors": [[3, 4]], "ids": ["a"]}),
        json!({}),
    )
    .await;
    let same = g
        .vectors("search", "cos", json!({"vector": [6, 8]}), json!({}))
        .await;
    let score = same.body["output"]["results"][0]["score"]
        .as_f64()
        .expect("score");
    assert!((score - 1.0).abs() < 1e-5, "{score}");
}

#[tokio::test]
async fn disagreements_with_the_scope_are_400s_naming_the_field() {
    let g = gateway(Options::default());
    let first = g
        .vectors(
            "index",
            "fixed",
            json!({"vectors": [[1, 2, 3]], "ids": ["a"]}),
            json!({"metric": "dot"}),
        )
        .await;
    assert_eq!(first.status, StatusCode::OK, "{:?}", first.body);
    let cases = [
        (
            json!({"vectors": [[1, 2, 3], [1, 2]], "ids": ["b", "c"]}),
            json!({}),
            "invalid_input",
            "input.vectors[1]",
        ),
        (
            json!({"vectors": [[1, 2, 3]], "ids": ["b"]}),
            json!({"metric": "cosine"}),
            "invalid_params",
            "params.metric",
        ),
        (
            json!({"vectors": [[1, 2, 3]], "ids": ["b"]}),
            json!({"dimensions": 4}),
            "invalid_params",
            "params.dimensions",
        ),
        (
            json!({"vectors": [[1, 2, 3]], "ids": ["b"]}),
            json!({"metric": "cos"}),
            "invalid_params",
            "params.metric",
        ),
        (
            json!({"vectors": [[1, 1e39, 3]], "ids": ["b"]}),
            json!({}),
            "invalid_input",
            "input.vectors[0][1]",
        ),
        (
            json!({"vectors": [[1, 2, 3]], "ids": ["b", "c"]}),
            json!({}),
            "length_mismatch",
            "input.ids",
        ),
        (
            json!({"vectors": [[1, "2", 3]], "ids": ["b"]}),
            json!({}),
            "invalid_input",
            "input.vectors[0][1]",
        ),
        (
            json!({"vectors": [[1, 2, 3]], "ids": ["b"], "metadata": [{"a.b": 1}]}),
            json!({}),
            "invalid_input",
            "input.metadata[0].a.b",
        ),
    ];
    for (input, params, code, param) in cases {
        let r = g.vectors("index", "fixed", input.clone(), params).await;
        assert_error(&r, 400, code, Some(param));
    }
    // A first run whose vectors disagree with its own params.dimensions.
    let r = g
        .vectors(
            "index",
            "new",
            json!({"vectors": [[1, 2, 3]], "ids": ["a"]}),
            json!({"dimensions": 2}),
        )
        .await;
    assert_error(&r, 400, "invalid_input", Some("input.vectors[0]"));
    // A query of another dimension.
    let r = g
        .vectors("search", "fixed", json!({"vector": [1, 2]}), json!({}))
        .await;
    assert_error(&r, 400, "invalid_input", Some("input.vector"));
    // No encoder, so no execute mode.
    let r = g
        .run(json!({"model": "vectors", "input": {"text": "hello"}}))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{:?}", r.body);
    // Nothing above was stored: the scope holds its first item only.
    let kbs = g.knowledge_bases(&g.key).await;
    let counts: Vec<(&str, u64)> = kbs
        .iter()
        .map(|k| {
            (
                k["scope"].as_str().unwrap_or(""),
                k["count"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(counts, [("fixed", 1)]);
}
