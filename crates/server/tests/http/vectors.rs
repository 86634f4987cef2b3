//! The vector modes over HTTP: index, search and delete by scope and workspace, execute on
//! pictures, Knowledge Bases; all-or-nothing runs, restarts.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};

use super::media::{files_in, fixture};
use super::{Gateway, Options, Reply, assert_error, gateway};

fn with_clip() -> Options {
    Options {
        clipo: true,
        ..Options::default()
    }
}

impl Gateway {
    async fn run_as(&self, key: &str, body: Value) -> Reply {
        self.post_json("/api/runs", key, body).await
    }

    pub(super) async fn knowledge_bases(&self, key: &str) -> Vec<Value> {
        let req = Request::get("/api/knowledge-bases")
            .header("X-API-Key", key)
            .body(Body::empty())
            .expect("request");
        let reply = self.send(req).await;
        assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
        reply.body["data"].as_array().expect("data").clone()
    }

    async fn index_images(&self, scope: &str, refs: &[(&str, &str)]) -> Reply {
        let images: Vec<Value> = refs
            .iter()
            .map(|(r, _)| json!({"media_ref": r, "filename": "image.png"}))
            .collect();
        let ids: Vec<&str> = refs.iter().map(|(_, id)| *id).collect();
        self.run(json!({"model": "clipo", "mode": "index", "scope": scope,
            "input": {"images": images, "image_ids": ids}, "params": {}}))
            .await
    }

    async fn search_image(&self, key: &str, scope: &str, media_ref: &str) -> Reply {
        self.run_as(
            key,
            json!({"model": "clipo", "mode": "search", "scope": scope,
                "input": {"image": {"media_ref": media_ref, "filename": "query.png"}},
                "params": {}}),
        )
        .await
    }
}

/// The ids of a search's results, best first.
pub(super) fn ids_of(reply: &Reply) -> Vec<String> {
    reply.body["output"]["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| r["id"].as_str().expect("id").to_string())
        .collect()
}

/// The API page's sequence with its exact bodies: upload `image.png`, index it as `image-1`
/// in scope `test`, search with the same image.
#[tokio::test]
async fn the_page_sequence_indexes_and_finds_image_1_first() {
    let g = gateway(with_clip());
    let a = g
        .upload("image.png", "image/png", fixture("landscape_rgb.png"))
        .await;
    let b = g
        .upload("other.png", "image/png", fixture("portrait_rgba.png"))
        .await;
    let c = g
        .upload("photo.jpg", "image/jpeg", fixture("photo.jpg"))
        .await;
    let media = a["media_ref"].as_str().expect("ref");
    let reply = g
        .run(json!({
            "model": "clipo",
            "mode": "index",
            "scope": "test",
            "input": {
                "images": [{"media_ref": media, "filename": "image.png"}],
                "image_ids": ["image-1"]
            },
            "params": {}
        }))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    let out = &reply.body["output"];
    assert_eq!(out["indexed"], 1);
    assert_eq!(out["ids"], json!(["image-1"]));
    assert_eq!(out["collection"], "images");
    assert_eq!(out["scope"], "test");
    assert_eq!(out["count"], 1);
    assert_eq!(reply.body["scope"], "test");
    assert_eq!(reply.body["mode"], "index");
    let more = g
        .index_images(
            "test",
            &[
                (b["media_ref"].as_str().expect("ref"), "image-2"),
                (c["media_ref"].as_str().expect("ref"), "image-3"),
            ],
        )
        .await;
    assert_eq!(more.body["output"]["count"], 3);

    let found = g.search_image(&g.key, "test", media).await;
    assert_eq!(found.status, StatusCode::OK, "{:?}", found.body);
    let results = found.body["output"]["results"].as_array().expect("results");
    assert_eq!(results[0]["id"], "image-1");
    assert_eq!(results[0]["media_ref"], media);
    assert_eq!(results[0]["filename"], "image.png");
    assert!(results[0]["score"].as_f64().expect("score") > 0.999);
    assert_eq!(results.len(), 3);
    assert_eq!(found.body["output"]["collection"], "images");
    assert_eq!(found.body["output"]["exhaustive"], true);

    // A text query runs through the text tower into the same space.
    let text = g
        .run(json!({"model": "clipo", "mode": "search", "scope": "test",
            "input": {"text": "a photo"}, "params": {"top_k": 2}}))
        .await;
    assert_eq!(text.status, StatusCode::OK, "{:?}", text.body);
    assert_eq!(ids_of(&text).len(), 2);

    let kbs = g.knowledge_bases(&g.key).await;
    assert_eq!(kbs.len(), 1);
    assert_eq!(kbs[0]["model"], "clipo");
    assert_eq!(kbs[0]["collection"], "images");
    assert_eq!(kbs[0]["scope"], "test");
    assert_eq!(kbs[0]["count"], 3);
    assert_eq!(kbs[0]["dimensions"], 512);
}

#[tokio::test]
async fn execute_embeds_uploaded_pictures_as_the_reference_does() {
    #[derive(serde::Deserialize)]
    struct Reference {
        images: Vec<ImageRef>,
    }
    #[derive(serde::Deserialize)]
    struct ImageRef {
        file: String,
        embedding: Vec<f32>,
    }
    let reference: Reference = serde_json::from_slice(
        &std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../models/clipo/fixtures/tiny-b/reference.json"
        ))
        .expect("reference"),
    )
    .expect("json");
    let g = gateway(with_clip());
    let picked: Vec<&ImageRef> = reference
        .images
        .iter()
        .filter(|r| ["photo.jpg", "palette.png", "square.webp"].contains(&r.file.as_str()))
        .collect();
    assert_eq!(picked.len(), 3);
    let mut images = Vec::new();
    for r in &picked {
        let content_type = match r.file.rsplit('.').next() {
            Some("jpg") => "image/jpeg",
            Some("webp") => "image/webp",
            _ => "image/png",
        };
        let up = g.upload(&r.file, content_type, fixture(&r.file)).await;
        images.push(json!({"media_ref": up["media_ref"]}));
    }
    let reply = g
        .run(json!({"model": "clipo", "input": {"images": images}, "params": {}}))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    assert_eq!(reply.body["output"]["dimensions"], 512);
    let got = reply.body["output"]["embeddings"].as_array().expect("rows");
    for (row, r) in got.iter().zip(&picked) {
        let v: Vec<f32> = serde_json::from_value(row.clone()).expect("floats");
        let cos: f32 = v.iter().zip(&r.embedding).map(|(a, b)| a * b).sum::<f32>()
            / (v.iter().map(|x| x * x).sum::<f32>().sqrt()
                * r.embedding.iter().map(|x| x * x).sum::<f32>().sqrt());
        assert!(cos > 0.9999, "{}: cosine {cos}", r.file);
    }
    // One image, as `image`.
    let one = g
        .run(json!({"model": "clipo", "input": {"image": images[0]}, "params": {}}))
        .await;
    assert_eq!(one.status, StatusCode::OK);
    let single: Vec<f32> =
        serde_json::from_value(one.body["output"]["embeddings"][0].clone()).expect("floats");
    let dot: f32 = single
        .iter()
        .zip(&picked[0].embedding)
        .map(|(a, b)| a * b)
        .sum();
    assert!(dot > 0.9999, "single-image cosine {dot}");
}

/// Runs that must be refused whole: the index is unchanged after each.
#[tokio::test]
async fn a_bad_item_fails_the_whole_run_and_changes_nothing() {
    let g = gateway(with_clip());
    let other_key = g.key_of_workspace("other");
    let good = g.upload("a.png", "image/png", fixture("palette.png")).await;
    let good = good["media_ref"].as_str().expect("ref").to_string();
    // Uploads fine (the header is whole) but cannot be decoded: cut in the middle.
    let png = fixture("landscape_rgb.png");
    let cut = g
        .upload("cut.png", "image/png", png[..png.len() / 2].to_vec())
        .await;
    let cut = cut["media_ref"].as_str().expect("ref").to_string();
    let theirs = g
        .upload_as(&other_key, "x.png", "image/png", fixture("palette.png"))
        .await;
    let theirs = theirs["media_ref"].as_str().expect("ref").to_string();
    g.index_images("test", &[(&good, "kept")]).await;

    let unknown = g
        .index_images("test", &[(&good, "n1"), ("media_doesnotexist", "n2")])
        .await;
    assert_error(
        &unknown,
        404,
        "media_not_found",
        Some("input.images[1].media_ref"),
    );
    let foreign = g.index_images("test", &[(&theirs, "n1")]).await;
    assert_error(
        &foreign,
        404,
        "media_not_found",
        Some("input.images[0].media_ref"),
    );
    let broken = g
        .index_images("test", &[(&good, "n1"), (&good, "n2"), (&cut, "n3")])
        .await;
    assert_error(&broken, 400, "invalid_image", Some("input.images[2]"));
    assert!(broken.message().contains("cut.png"), "{}", broken.message());
    let mismatch = g
        .run(json!({"model": "clipo", "mode": "index", "scope": "test",
            "input": {"images": [{"media_ref": good}, {"media_ref": good}], "image_ids": ["n1"]}}))
        .await;
    assert_error(&mismatch, 400, "length_mismatch", Some("input.image_ids"));
    let duplicate = g
        .run(json!({"model": "clipo", "mode": "index", "scope": "test",
            "input": {"images": [{"media_ref": good}, {"media_ref": good}],
                      "image_ids": ["n1", "n1"]}}))
        .await;
    assert_error(&duplicate, 400, "invalid_input", Some("input.image_ids"));
    let bad_ref = g
        .run(json!({"model": "clipo", "mode": "index", "scope": "test",
            "input": {"images": [{"media_ref": "not a ref"}], "image_ids": ["n1"]}}))
        .await;
    assert_error(
        &bad_ref,
        400,
        "invalid_input",
        Some("input.images[0].media_ref"),
    );
    let search_broken = g.search_image(&g.key, "test", &cut).await;
    assert_error(&search_broken, 400, "invalid_image", Some("input.image"));

    let kbs = g.knowledge_bases(&g.key).await;
    assert_eq!(kbs.len(), 1);
    assert_eq!(kbs[0]["count"], 1, "{kbs:?}");
    let found = g.search_image(&g.key, "test", &good).await;
    assert_eq!(ids_of(&found), vec!["kept"]);
}

#[tokio::test]
async fn a_decompression_bomb_is_a_clear_400() {
    let g = gateway(Options {
        clipo: true,
        max_image_pixels: Some(1_000_000),
        ..Options::default()
    });
    // 1200 x 1000 declared: over the limit of this gateway, refused before decoding.
    let big = {
        let img = image::RgbImage::from_pixel(1200, 1000, image::Rgb([9, 9, 9]));
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png)
            .expect("png");
        out.into_inner()
    };
    let up = g.upload("big.png", "image/png", big).await;
    assert_eq!(up["width"], 1200);
    let reply = g
        .index_images("test", &[(up["media_ref"].as_str().expect("ref"), "big")])
        .await;
    assert_error(&reply, 400, "invalid_image", Some("input.images[0]"));
    assert!(
        reply.message().contains("1200000 pixels"),
        "{}",
        reply.message()
    );
    assert!(g.knowledge_bases(&g.key).await.is_empty());
}

/// Picture bytes in memory are bounded server-wide: content named many times counts (and is
/// read) once, and a run needing more than the whole budget is refused before anything runs.
#[tokio::test]
async fn picture_bytes_held_by_runs_are_bounded() {
    let png = super::media::fixture("palette.png");
    let g = gateway(Options {
        clipo: true,
        media_in_flight: Some(png.len() as u64 + 10),
        ..Options::default()
    });
    let up = g.upload("p.png", "image/png", png.clone()).await;
    let media_ref = up["media_ref"].as_str().expect("ref");
    // 64 times the same picture: one content within the budget.
    let same: Vec<(&str, String)> = (0..64).map(|i| (media_ref, format!("p{i}"))).collect();
    let same: Vec<(&str, &str)> = same.iter().map(|(r, id)| (*r, id.as_str())).collect();
    let reply = g.index_images("test", &same).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    assert_eq!(reply.body["output"]["indexed"], 64);
    // Two different pictures: more than the whole budget, the client's 400; nothing stored.
    let other = super::media::fixture("photo.jpg");
    let up2 = g.upload("q.jpg", "image/jpeg", other).await;
    let second = up2["media_ref"].as_str().expect("ref");
    let reply = g
        .index_images("other", &[(media_ref, "a"), (second, "b")])
        .await;
    assert_error(&reply, 400, "too_much_media", Some("input"));
    let kbs = g.knowledge_bases(&g.key).await;
    assert_eq!(kbs.len(), 1, "{kbs:?}");
}

#[tokio::test]
async fn scopes_and_workspaces_see_only_their_own_items() {
    let g = gateway(with_clip());
    let other_key = g.key_of_workspace("other");
    let mine = g.upload("a.png", "image/png", fixture("palette.png")).await;
    let mine = mine["media_ref"].as_str().expect("ref").to_string();
    let theirs = g
        .upload_as(&other_key, "b.png", "image/png", fixture("palette.png"))
        .await;
    let theirs = theirs["media_ref"].as_str().expect("ref").to_string();
    g.index_images("test", &[(&mine, "mine-1")]).await;
    let reply = g
        .run_as(
            &other_key,
            json!({"model": "clipo", "mode": "index", "scope": "test",
                "input": {"images": [{"media_ref": theirs}], "image_ids": ["theirs-1"]}}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);

    assert_eq!(
        ids_of(&g.search_image(&g.key, "test", &mine).await),
        vec!["mine-1"]
    );
    assert_eq!(
        ids_of(&g.search_image(&other_key, "test", &theirs).await),
        vec!["theirs-1"]
    );
    let elsewhere = g.search_image(&g.key, "another-scope", &mine).await;
    assert_eq!(elsewhere.status, StatusCode::OK);
    assert!(ids_of(&elsewhere).is_empty());
    // Their media_ref is unknown to me, even to search with.
    assert_error(
        &g.search_image(&g.key, "test", &theirs).await,
        404,
        "media_not_found",
        Some("input.image.media_ref"),
    );
    // Deleting my id in my workspace leaves theirs alone.
    let del = g
        .run(json!({"model": "clipo", "mode": "delete", "scope": "test",
            "input": {"ids": ["mine-1", "theirs-1"]}}))
        .await;
    assert_eq!(del.body["output"]["deleted"], 1, "{:?}", del.body);
    assert_eq!(del.body["output"]["not_found"], json!(["theirs-1"]));
    assert_eq!(
        ids_of(&g.search_image(&other_key, "test", &theirs).await),
        vec!["theirs-1"]
    );
    assert_eq!(g.knowledge_bases(&g.key).await.len(), 0);
    assert_eq!(g.knowledge_bases(&other_key).await.len(), 1);
}

#[tokio::test]
async fn texts_index_search_delete_and_knowledge_bases_count_exactly() {
    let g = gateway(Options::default());
    let texts = [
        "the cat sat on the mat",
        "stock markets fell sharply",
        "a kitten naps",
    ];
    let reply = g
        .run(
            json!({"model": "demo-model", "mode": "index", "scope": "notes",
            "input": {"texts": texts, "text_ids": ["t1", "t2", "t3"]}, "params": {}}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    assert_eq!(reply.body["output"]["count"], 3);
    assert_eq!(reply.body["output"]["collection"], "texts");
    let search = |q: &str| {
        json!({"model": "demo-model", "mode": "search", "scope": "notes",
            "input": {"text": q}, "params": {"top_k": 3, "exact": true}})
    };
    let found = g.run(search("the cat sat on the mat")).await;
    assert_eq!(ids_of(&found)[0], "t1");
    assert_eq!(found.body["output"]["results"][0]["text"], texts[0]);
    assert_eq!(found.body["output"]["exhaustive"], true);

    // Replace t1 (upsert), delete t2: counts stay exact.
    let replaced = g
        .run(
            json!({"model": "demo-model", "mode": "index", "scope": "notes",
            "input": {"texts": ["quarterly earnings report"], "text_ids": ["t1"]}}),
        )
        .await;
    assert_eq!(replaced.body["output"]["count"], 3);
    assert_eq!(replaced.body["output"]["replaced"], 1);
    let deleted = g
        .run(
            json!({"model": "demo-model", "mode": "delete", "scope": "notes",
            "input": {"ids": ["t2", "missing"]}}),
        )
        .await;
    assert_eq!(deleted.status, StatusCode::OK, "{:?}", deleted.body);
    assert_eq!(deleted.body["output"]["deleted"], 1);
    assert_eq!(deleted.body["output"]["ids"], json!(["t2"]));
    assert_eq!(deleted.body["output"]["count"], 2);
    let after = g.run(search("stock markets fell sharply")).await;
    assert!(!ids_of(&after).contains(&"t2".to_string()));
    assert_eq!(ids_of(&after).len(), 2);
    let kbs = g.knowledge_bases(&g.key).await;
    assert_eq!(kbs.len(), 1);
    assert_eq!(
        (
            kbs[0]["model"].as_str(),
            kbs[0]["collection"].as_str(),
            kbs[0]["count"].as_u64()
        ),
        (Some("demo-model"), Some("texts"), Some(2))
    );
    assert_eq!(kbs[0]["dimensions"], 384);

    let mismatch = g
        .run(
            json!({"model": "demo-model", "mode": "index", "scope": "notes",
            "input": {"texts": ["a", "b"], "text_ids": ["x"]}}),
        )
        .await;
    assert_error(&mismatch, 400, "length_mismatch", Some("input.text_ids"));

    // The listing pages through the live items in id order.
    let list = |q: &str| {
        Request::get(format!(
            "/api/knowledge-bases/demo-model/texts/notes/items{q}"
        ))
        .header("X-API-Key", &g.key)
        .body(Body::empty())
        .expect("request")
    };
    let first = g.send(list("?limit=1")).await;
    assert_eq!(first.body["data"][0]["id"], "t1", "{:?}", first.body);
    assert_eq!(first.body["has_more"], true);
    let rest = g.send(list("?after=t1")).await;
    assert_eq!(rest.body["data"][0]["id"], "t3");
    assert_eq!(rest.body["has_more"], false);
    assert_error(
        &g.send(list("?limit=0")).await,
        400,
        "invalid_limit",
        Some("limit"),
    );
    // A query string or path that does not parse answers in the API's error shape too.
    let not_a_number = g.send(list("?limit=abc")).await;
    assert_error(&not_a_number, 400, "invalid_query", Some("limit"));
    let bad_path = Request::get("/api/knowledge-bases/demo-model/texts/%FF%FE/items")
        .header("X-API-Key", &g.key)
        .body(Body::empty())
        .expect("request");
    assert_error(&g.send(bad_path).await, 400, "invalid_path", None);

    let drop = |g: &Gateway| {
        Request::delete("/api/knowledge-bases/demo-model/texts/notes")
            .header("X-API-Key", &g.key)
            .body(Body::empty())
            .expect("request")
    };
    let dropped = g.send(drop(&g)).await;
    assert_eq!(dropped.status, StatusCode::OK, "{:?}", dropped.body);
    assert_eq!(dropped.body["count"], 2);
    assert_error(
        &g.send(drop(&g)).await,
        404,
        "knowledge_base_not_found",
        None,
    );
    assert!(g.knowledge_bases(&g.key).await.is_empty());
    let empty = g.run(search("cat")).await;
    assert_eq!(empty.status, StatusCode::OK);
    assert!(ids_of(&empty).is_empty());
}

#[tokio::test]
async fn a_restart_between_indexing_and_searching_changes_nothing() {
    // Searched through the graph (not compared with every item), so the graph saved and read
    // back, or rebuilt, is what answers.
    let graph_searched = || Options {
        exact_below: Some(0),
        ..with_clip()
    };
    for save_graphs in [true, false] {
        let g = gateway(graph_searched());
        let mut refs = Vec::new();
        for (i, name) in [
            "palette.png",
            "photo.jpg",
            "landscape_rgb.png",
            "square.webp",
        ]
        .iter()
        .enumerate()
        {
            let ct = if name.ends_with("jpg") {
                "image/jpeg"
            } else if name.ends_with("webp") {
                "image/webp"
            } else {
                "image/png"
            };
            let up = g.upload(name, ct, fixture(name)).await;
            refs.push((
                up["media_ref"].as_str().expect("ref").to_string(),
                format!("img-{i}"),
            ));
        }
        let pairs: Vec<(&str, &str)> = refs.iter().map(|(r, i)| (r.as_str(), i.as_str())).collect();
        g.index_images("test", &pairs).await;
        g.run(json!({"model": "clipo", "mode": "delete", "scope": "test",
            "input": {"ids": ["img-3"]}}))
            .await;
        let mut before = Vec::new();
        for (r, _) in &refs {
            let reply = g.search_image(&g.key, "test", r).await;
            assert_eq!(
                reply.body["output"]["exhaustive"], false,
                "{:?}",
                reply.body
            );
            before.push(reply.body["output"]["results"].clone());
        }
        let g = g.restart(graph_searched(), save_graphs);
        for ((r, _), expected) in refs.iter().zip(&before) {
            let after = g.search_image(&g.key, "test", r).await;
            assert_eq!(
                after.body["output"]["exhaustive"], false,
                "{:?}",
                after.body
            );
            let after = after.body["output"]["results"]
                .as_array()
                .expect("results")
                .clone();
            let expected = expected.as_array().expect("results");
            // The same items in the same order; scores equal up to float noise, since the query
            // is encoded again and the shared encoder may batch it with other tests' pictures.
            assert_eq!(after.len(), expected.len(), "save_graphs {save_graphs}");
            for (a, e) in after.iter().zip(expected) {
                for field in ["id", "filename", "media_ref"] {
                    assert_eq!(a[field], e[field], "save_graphs {save_graphs}");
                }
                let (sa, se) = (
                    a["score"].as_f64().expect("score"),
                    e["score"].as_f64().expect("score"),
                );
                assert!(
                    (sa - se).abs() < 1e-5,
                    "save_graphs {save_graphs}: {sa} vs {se}"
                );
            }
        }
        assert_eq!(g.knowledge_bases(&g.key).await[0]["count"], 3);
        assert!(files_in(&g, "uploads").is_empty());
    }
}
