//! The upload flow: init → PUT → complete, and every way it refuses bad input while keeping
//! nothing.

use std::path::Path;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};

use super::{Gateway, Options, Reply, assert_error, gateway};

pub const FIXTURE_IMAGES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../models/clipo/fixtures/images"
);

pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(Path::new(FIXTURE_IMAGES).join(name)).expect("fixture image")
}

/// Files under `data/<folder>` (recursively).
pub fn files_in(g: &Gateway, folder: &str) -> Vec<String> {
    fn walk(dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else {
                out.push(p.display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(&g.dir.path().join(folder), &mut out);
    out
}

impl Gateway {
    pub async fn post_json(&self, uri: &str, key: &str, body: Value) -> Reply {
        let req = Request::post(uri)
            .header("X-API-Key", key)
            .header("Content-Type", "application/json")
            .header("Host", "gateway.test:8080")
            .body(Body::from(body.to_string()))
            .expect("request");
        self.send(req).await
    }

    pub async fn init(&self, key: &str, body: Value) -> Reply {
        self.post_json("/api/media/upload/init", key, body).await
    }

    /// PUTs `bytes` to an upload URL as returned by init.
    pub async fn put_bytes(&self, url: &str, bytes: Vec<u8>, content_type: &str) -> Reply {
        let path = url
            .strip_prefix("http://gateway.test:8080")
            .expect("upload_url points at this gateway");
        let req = Request::put(path)
            .header("Content-Type", content_type)
            .body(Body::from(bytes))
            .expect("request");
        self.send(req).await
    }

    pub async fn complete(&self, key: &str, upload_id: &str) -> Reply {
        self.post_json(
            "/api/media/upload/complete",
            key,
            json!({ "upload_id": upload_id }),
        )
        .await
    }

    /// The whole flow with the default key; answers the complete reply's body.
    pub async fn upload(&self, filename: &str, content_type: &str, bytes: Vec<u8>) -> Value {
        let key = self.key.clone();
        self.upload_as(&key, filename, content_type, bytes).await
    }

    pub async fn upload_as(
        &self,
        key: &str,
        filename: &str,
        content_type: &str,
        bytes: Vec<u8>,
    ) -> Value {
        let init = self
            .init(
                key,
                json!({"filename": filename, "content_type": content_type,
                       "media_type": "image", "size_bytes": bytes.len()}),
            )
            .await;
        assert_eq!(init.status, StatusCode::OK, "{:?}", init.body);
        let url = init.body["upload_url"].as_str().expect("url").to_string();
        let put = self.put_bytes(&url, bytes, content_type).await;
        assert_eq!(put.status, StatusCode::NO_CONTENT, "{:?}", put.body);
        let done = self
            .complete(key, init.body["upload_id"].as_str().expect("id"))
            .await;
        assert_eq!(done.status, StatusCode::OK, "{:?}", done.body);
        done.body
    }
}

pub(crate) fn init_body(size: usize) -> Value {
    json!({"filename": "image.png", "content_type": "image/png",
           "media_type": "image", "size_bytes": size})
}

#[tokio::test]
async fn the_page_sequence_gives_a_media_ref_and_complete_is_idempotent() {
    let g = gateway(Options::default());
    let png = fixture("landscape_rgb.png");
    let init = g.init(&g.key, init_body(png.len())).await;
    assert_eq!(init.status, StatusCode::OK, "{:?}", init.body);
    let upload_id = init.body["upload_id"].as_str().expect("id");
    assert!(upload_id.starts_with("studio_upload_"), "{upload_id}");
    assert_eq!(init.body["method"], "PUT");
    assert_eq!(init.body["headers"]["Content-Type"], "image/png");
    let url = init.body["upload_url"].as_str().expect("url");
    assert!(
        url.starts_with(&format!(
            "http://gateway.test:8080/api/media/upload/{upload_id}?"
        )),
        "{url}"
    );
    assert!(init.body["expires_at"].is_string());

    // Complete before the bytes arrived is 409.
    let early = g.complete(&g.key, upload_id).await;
    assert_error(&early, 409, "upload_incomplete", Some("upload_id"));

    let put = g.put_bytes(url, png.clone(), "image/png").await;
    assert_eq!(put.status, StatusCode::NO_CONTENT, "{:?}", put.body);
    // Single use.
    let again = g.put_bytes(url, png.clone(), "image/png").await;
    assert_error(&again, 409, "upload_url_used", None);

    let done = g.complete(&g.key, upload_id).await;
    assert_eq!(done.status, StatusCode::OK, "{:?}", done.body);
    let media_ref = done.body["media_ref"].as_str().expect("media_ref");
    assert!(media_ref.starts_with("media_"));
    assert_eq!(done.body["filename"], "image.png");
    assert_eq!(done.body["content_type"], "image/png");
    assert_eq!(done.body["size_bytes"], png.len());
    let img = image::load_from_memory(&png).expect("png");
    assert_eq!(done.body["width"], img.width());
    assert_eq!(done.body["height"], img.height());
    use sha2::Digest;
    assert_eq!(done.body["sha256"], hex::encode(sha2::Sha256::digest(&png)));
    let twice = g.complete(&g.key, upload_id).await;
    assert_eq!(twice.status, StatusCode::OK);
    assert_eq!(twice.body["media_ref"], media_ref);

    // Durable: the content file holds exactly the bytes; nothing is left in flight.
    let stored = files_in(&g, "media");
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(std::fs::read(&stored[0]).expect("read"), png);
    assert!(files_in(&g, "uploads").is_empty());
}

#[tokio::test]
async fn init_refuses_bad_fields_naming_them() {
    let g = gateway(Options::default());
    let cases = [
        (
            json!({"media_type": "video"}),
            "unsupported_media_type",
            "media_type",
        ),
        (
            json!({"content_type": "image/bmp"}),
            "unsupported_content_type",
            "content_type",
        ),
        (json!({"size_bytes": 0}), "invalid_size", "size_bytes"),
        (
            json!({"size_bytes": 20 * 1024 * 1024 + 1}),
            "invalid_size",
            "size_bytes",
        ),
        (json!({"size_bytes": -5}), "invalid_field", "size_bytes"),
        (json!({"size_bytes": "12"}), "invalid_field", "size_bytes"),
        (
            json!({"filename": "../etc/passwd"}),
            "invalid_filename",
            "filename",
        ),
        (
            json!({"filename": "a\\b.png"}),
            "invalid_filename",
            "filename",
        ),
        (
            json!({"filename": "bad\nname.png"}),
            "invalid_filename",
            "filename",
        ),
        (json!({"filename": ""}), "invalid_field", "filename"),
        (json!({"extra": 1}), "unknown_field", "extra"),
    ];
    for (change, code, param) in cases {
        let mut body = init_body(100);
        for (k, v) in change.as_object().expect("object") {
            body[k] = v.clone();
        }
        let reply = g.init(&g.key, body).await;
        assert_error(&reply, 400, code, Some(param));
    }
    for field in ["filename", "content_type", "media_type", "size_bytes"] {
        let mut body = init_body(100);
        body.as_object_mut().expect("object").remove(field);
        assert_error(
            &g.init(&g.key, body).await,
            400,
            "missing_field",
            Some(field),
        );
    }
    // Without a key: 401, as every integration endpoint.
    let req = Request::post("/api/media/upload/init")
        .header("Content-Type", "application/json")
        .body(Body::from(init_body(100).to_string()))
        .expect("request");
    assert_eq!(g.send(req).await.status, StatusCode::UNAUTHORIZED);
    assert!(files_in(&g, "uploads").is_empty());
}

/// Starts an upload of `declared` bytes and PUTs `body`; answers the PUT's reply and the id.
async fn put_case(
    g: &Gateway,
    content_type: &str,
    declared: usize,
    body: Vec<u8>,
) -> (Reply, String) {
    let mut init = init_body(declared);
    init["content_type"] = json!(content_type);
    let init = g.init(&g.key, init).await;
    assert_eq!(init.status, StatusCode::OK, "{:?}", init.body);
    let url = init.body["upload_url"].as_str().expect("url").to_string();
    let id = init.body["upload_id"].as_str().expect("id").to_string();
    (g.put_bytes(&url, body, content_type).await, id)
}

#[tokio::test]
async fn a_body_that_does_not_match_init_is_400_and_nothing_is_kept() {
    let g = gateway(Options::default());
    let png = fixture("palette.png");
    let jpeg = fixture("photo.jpg");
    // Longer, shorter, and bytes of another type than declared.
    let (longer, a) = put_case(&g, "image/png", png.len() - 1, png.clone()).await;
    assert_error(&longer, 400, "size_mismatch", Some("size_bytes"));
    let (shorter, b) = put_case(&g, "image/png", png.len() + 1, png.clone()).await;
    assert_error(&shorter, 400, "size_mismatch", Some("size_bytes"));
    let (lying, c) = put_case(&g, "image/png", jpeg.len(), jpeg.clone()).await;
    assert_error(&lying, 400, "content_type_mismatch", Some("content_type"));
    let (text, d) = put_case(&g, "image/gif", 5, b"hello".to_vec()).await;
    assert_error(&text, 400, "content_type_mismatch", Some("content_type"));
    for id in [a, b, c, d] {
        // The failed upload cannot be completed, says why, and its URL is spent.
        let reply = g.complete(&g.key, &id).await;
        assert_error(&reply, 409, "upload_failed", Some("upload_id"));
        assert!(
            reply.message().contains("nothing was kept"),
            "{}",
            reply.message()
        );
    }
    assert!(
        files_in(&g, "uploads").is_empty(),
        "{:?}",
        files_in(&g, "uploads")
    );
    assert!(files_in(&g, "media").is_empty());
}

#[tokio::test]
async fn a_bad_or_tampered_signature_is_403_and_unknown_uploads_404() {
    let g = gateway(Options::default());
    let png = fixture("palette.png");
    let init = g.init(&g.key, init_body(png.len())).await;
    let url = init.body["upload_url"].as_str().expect("url").to_string();
    let id = init.body["upload_id"].as_str().expect("id").to_string();
    let (base, query) = url.split_once('?').expect("query");
    let expires: i64 = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("expires="))
        .expect("expires")
        .parse()
        .expect("number");
    let signature = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("signature="))
        .expect("signature");
    for bad in [
        format!("{base}?expires={}&signature={signature}", expires + 3600),
        format!("{base}?expires={expires}&signature={}", "0".repeat(64)),
        format!("{base}?expires={expires}"),
        base.to_string(),
    ] {
        let reply = g.put_bytes(&bad, png.clone(), "image/png").await;
        assert_error(&reply, 403, "invalid_signature", None);
    }
    // Another upload's signature does not open this one.
    let other = g.init(&g.key, init_body(png.len())).await;
    let other_sig = other.body["upload_url"]
        .as_str()
        .and_then(|u| u.split("signature=").nth(1))
        .expect("sig")
        .to_string();
    let swapped = format!("{base}?expires={expires}&signature={other_sig}");
    let reply = g.put_bytes(&swapped, png.clone(), "image/png").await;
    assert_error(&reply, 403, "invalid_signature", None);

    let unknown = format!(
        "http://gateway.test:8080/api/media/upload/studio_upload_nope?expires={expires}&signature={signature}"
    );
    assert_error(
        &g.put_bytes(&unknown, png.clone(), "image/png").await,
        404,
        "upload_not_found",
        Some("upload_id"),
    );
    assert_error(
        &g.complete(&g.key, "studio_upload_nope").await,
        404,
        "upload_not_found",
        Some("upload_id"),
    );
    // The genuine URL still works: the refused attempts spent nothing.
    let ok = g.put_bytes(&url, png.clone(), "image/png").await;
    assert_eq!(ok.status, StatusCode::NO_CONTENT, "{:?}", ok.body);
    // A different image type in the PUT's Content-Type conflicts with init.
    let (reply, _) = {
        let init = g.init(&g.key, init_body(png.len())).await;
        let url = init.body["upload_url"].as_str().expect("url").to_string();
        (g.put_bytes(&url, png.clone(), "image/jpeg").await, ())
    };
    assert_error(&reply, 400, "content_type_mismatch", Some("Content-Type"));
    assert_eq!(g.complete(&g.key, &id).await.status, StatusCode::OK);
}

#[tokio::test]
async fn another_workspace_cannot_complete_an_upload() {
    let g = gateway(Options::default());
    let other = g.key_of_workspace("other");
    let png = fixture("palette.png");
    let (put, id) = put_case(&g, "image/png", png.len(), png).await;
    assert_eq!(put.status, StatusCode::NO_CONTENT);
    assert_error(
        &g.complete(&other, &id).await,
        404,
        "upload_not_found",
        Some("upload_id"),
    );
    assert!(files_in(&g, "media").is_empty());
    assert_eq!(g.complete(&g.key, &id).await.status, StatusCode::OK);
}

#[tokio::test]
async fn bytes_that_only_look_like_an_image_are_refused_at_complete() {
    let g = gateway(Options::default());
    // A PNG signature followed by garbage: the magic number matches, the header does not.
    let mut fake = b"\x89PNG\r\n\x1a\n".to_vec();
    fake.extend_from_slice(&[0u8; 64]);
    let (put, id) = put_case(&g, "image/png", fake.len(), fake).await;
    assert_eq!(put.status, StatusCode::NO_CONTENT, "{:?}", put.body);
    assert_error(
        &g.complete(&g.key, &id).await,
        400,
        "invalid_image",
        Some("upload_id"),
    );
    assert!(files_in(&g, "uploads").is_empty());
    assert!(files_in(&g, "media").is_empty());
    assert_error(
        &g.complete(&g.key, &id).await,
        409,
        "upload_failed",
        Some("upload_id"),
    );
}

#[tokio::test]
async fn identical_bytes_are_stored_once() {
    let g = gateway(Options::default());
    let png = fixture("palette.png");
    let a = g.upload("a.png", "image/png", png.clone()).await;
    let b = g.upload("b.png", "image/png", png.clone()).await;
    assert_ne!(a["media_ref"], b["media_ref"]);
    assert_eq!(a["sha256"], b["sha256"]);
    assert_eq!(b["filename"], "b.png");
    assert_eq!(files_in(&g, "media").len(), 1);
}

#[tokio::test]
async fn expired_and_abandoned_uploads_are_swept() {
    let g = gateway(Options {
        upload_ttl: Some(std::time::Duration::from_secs(1)),
        ..Options::default()
    });
    let png = fixture("palette.png");
    let pending = g.init(&g.key, init_body(png.len())).await;
    let (put, received) = put_case(&g, "image/png", png.len(), png.clone()).await;
    assert_eq!(put.status, StatusCode::NO_CONTENT);
    assert_eq!(files_in(&g, "uploads").len(), 1);
    // A part file that no upload names (left by a crash).
    std::fs::write(g.dir.path().join("uploads/studio_upload_orphan.part"), b"x").expect("write");
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let url = pending.body["upload_url"].as_str().expect("url");
    assert_error(
        &g.put_bytes(url, png.clone(), "image/png").await,
        404,
        "upload_expired",
        Some("upload_id"),
    );
    assert_error(
        &g.complete(&g.key, &received).await,
        404,
        "upload_expired",
        Some("upload_id"),
    );
    let removed = aimp_server::sweep_uploads(&g.state).expect("sweep");
    assert_eq!(removed, 2);
    assert!(files_in(&g, "uploads").is_empty());
    assert_error(
        &g.complete(&g.key, &received).await,
        404,
        "upload_not_found",
        Some("upload_id"),
    );
}

/// Starts an upload of `size` PNG bytes and answers its id, a PUT whose body is whatever the
/// sender sends (it ends when the sender is dropped), and that sender.
pub(crate) async fn streamed_put(
    g: &Gateway,
    size: usize,
) -> (String, Request<Body>, tokio::sync::mpsc::Sender<Vec<u8>>) {
    let init = g.init(&g.key, init_body(size)).await;
    let upload_id = init.body["upload_id"].as_str().expect("id").to_string();
    let url = init.body["upload_url"].as_str().expect("url");
    let path = url
        .strip_prefix("http://gateway.test:8080")
        .expect("own url");
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(1);
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|chunk| (Ok::<_, std::io::Error>(chunk), rx))
    });
    let req = Request::put(path)
        .header("Content-Type", "image/png")
        .body(Body::from_stream(stream))
        .expect("request");
    (upload_id, req, tx)
}

/// An upload that expires, and is swept, while its PUT is still streaming in: the PUT must not
/// answer 204 for bytes that were thrown away.
#[tokio::test]
async fn an_upload_swept_in_the_middle_of_its_put_is_not_acknowledged() {
    let g = gateway(Options {
        upload_ttl: Some(std::time::Duration::from_secs(1)),
        ..Options::default()
    });
    let png = fixture("palette.png");
    let (upload_id, req, tx) = streamed_put(&g, png.len()).await;
    let (half, rest) = png.split_at(png.len() / 2);
    let (put, ()) = tokio::join!(g.send(req), async {
        tx.send(half.to_vec()).await.expect("first half");
        // The upload expires and the sweep removes it, its part file too, mid-PUT.
        tokio::time::sleep(std::time::Duration::from_millis(1300)).await;
        let state = g.state.clone();
        let removed = tokio::task::spawn_blocking(move || aimp_server::sweep_uploads(&state))
            .await
            .expect("join")
            .expect("sweep");
        assert_eq!(removed, 1);
        // The PUT may have ended at the expiry already, its body dropped.
        let _ = tx.send(rest.to_vec()).await;
        drop(tx);
    });
    assert_error(&put, 404, "upload_expired", Some("upload_id"));
    assert!(files_in(&g, "uploads").is_empty(), "nothing is kept");
    assert_error(
        &g.complete(&g.key, &upload_id).await,
        404,
        "upload_not_found",
        Some("upload_id"),
    );
}

/// A PUT whose body stops arriving is answered 408 once it has been idle for the configured
/// time, keeps nothing, and the upload is failed (so its URL cannot be retried half-way).
#[tokio::test]
async fn a_stalled_upload_put_times_out_and_keeps_nothing() {
    let g = gateway(Options {
        upload_idle: Some(std::time::Duration::from_millis(500)),
        ..Options::default()
    });
    let png = fixture("palette.png");
    let (upload_id, req, tx) = streamed_put(&g, png.len()).await;
    tx.send(png[..png.len() / 2].to_vec()).await.expect("half");
    // The sender stays open and silent: the client stalled.
    let put = g.send(req).await;
    assert_error(&put, 408, "upload_stalled", None);
    drop(tx);
    assert!(files_in(&g, "uploads").is_empty(), "nothing is kept");
    assert_error(
        &g.complete(&g.key, &upload_id).await,
        409,
        "upload_failed",
        Some("upload_id"),
    );
}
