//! A collection records the precision its vectors were encoded at; runs from a model at
//! another precision are refused and change nothing.

use serde_json::json;

use super::{Options, assert_error, gateway};

fn int8() -> Options {
    Options {
        int8: true,
        ..Options::default()
    }
}

#[tokio::test]
async fn a_collection_built_at_fp32_refuses_int8_vectors_and_keeps_its_own() {
    let g = gateway(Options::default());
    let index = |texts: &[&str], ids: &[&str]| {
        json!({"model": "demo-model", "mode": "index", "scope": "docs",
            "input": {"texts": texts, "text_ids": ids}})
    };
    let search = json!({"model": "demo-model", "mode": "search", "scope": "docs",
        "input": {"text": "a cat on a mat"}, "params": {"top_k": 2}});
    let reply = g
        .run(index(
            &["a cat sat on the mat", "stock prices fell"],
            &["cat", "stocks"],
        ))
        .await;
    assert_eq!(reply.status.as_u16(), 200, "{:?}", reply.body);
    let before = g.run(search.clone()).await;
    assert_eq!(before.body["output"]["results"][0]["id"], "cat");
    let listed = g.knowledge_bases(&g.key).await;
    assert_eq!(listed[0]["precision"], "fp32", "{listed:?}");

    // The same data folder, demo-model now at int8.
    let g = g.restart(int8(), false);
    let executed = g
        .run(
            json!({"model": "demo-model", "mode": "execute", "scope": "x",
            "input": {"text": "a cat on a mat"}}),
        )
        .await;
    assert_eq!(
        executed.body["output"]["precision"], "int8",
        "{:?}",
        executed.body
    );
    for refused in [
        g.run(search.clone()).await,
        g.run(index(&["a dog"], &["dog"])).await,
    ] {
        assert_error(&refused, 409, "collection_mismatch", None);
        let message = refused.message();
        assert!(
            message.contains("int8") && message.contains("fp32"),
            "{message}"
        );
    }
    // int8 collections of their own work.
    let other = json!({"model": "demo-model", "mode": "index", "scope": "int8-docs",
        "input": {"texts": ["a cat sat on the mat"], "text_ids": ["cat"]}});
    assert_eq!(g.run(other).await.status.as_u16(), 200);

    // Back at fp32: the collection is as it was.
    let g = g.restart(Options::default(), false);
    let after = g.run(search).await;
    assert_eq!(after.status.as_u16(), 200, "{:?}", after.body);
    assert_eq!(
        after.body["output"]["results"],
        before.body["output"]["results"]
    );
    let listed = g.knowledge_bases(&g.key).await;
    let docs = listed
        .iter()
        .find(|kb| kb["scope"] == "docs")
        .expect("docs");
    assert_eq!(docs["count"], 2);
    let int8_docs = listed
        .iter()
        .find(|kb| kb["scope"] == "int8-docs")
        .expect("int8");
    assert_eq!(int8_docs["precision"], "int8");
}
