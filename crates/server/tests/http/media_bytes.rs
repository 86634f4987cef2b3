//! `GET /api/media/{media_ref}` and its thumbnail: the bytes as uploaded, a bounded JPEG,
//! ETag revalidation, workspace isolation, and clear refusals.

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};

use super::media::fixture;
use super::{Options, assert_error, gateway};

pub(super) struct Raw {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub bytes: Vec<u8>,
}

/// A GET answered with its raw bytes, with the key when given (the console's files take
/// none) and `If-None-Match` when given.
pub(super) async fn get_raw(
    g: &super::Gateway,
    uri: &str,
    key: Option<&str>,
    if_none_match: Option<&str>,
) -> Raw {
    use tower::ServiceExt;
    let mut req = Request::get(uri);
    if let Some(key) = key {
        req = req.header("X-API-Key", key);
    }
    if let Some(tag) = if_none_match {
        req = req.header("If-None-Match", tag);
    }
    let response = g
        .app
        .clone()
        .oneshot(req.body(Body::empty()).expect("request"))
        .await
        .expect("infallible");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body")
        .to_vec();
    Raw {
        status,
        headers,
        bytes,
    }
}

impl super::Gateway {
    async fn get_json(&self, uri: &str, key: &str) -> super::Reply {
        let req = Request::get(uri)
            .header("X-API-Key", key)
            .body(Body::empty())
            .expect("request");
        self.send(req).await
    }
}

async fn get(g: &super::Gateway, uri: &str, key: &str, if_none_match: Option<&str>) -> Raw {
    get_raw(g, uri, Some(key), if_none_match).await
}

fn header<'a>(r: &'a Raw, name: &str) -> &'a str {
    r.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

#[tokio::test]
async fn the_bytes_come_back_as_uploaded_with_type_etag_and_private_caching() {
    let g = gateway(Options::default());
    let photo = fixture("photo.jpg");
    let media = g.upload("photo.jpg", "image/jpeg", photo.clone()).await;
    let media_ref = media["media_ref"].as_str().expect("media_ref");
    let uri = format!("/api/media/{media_ref}");
    let got = get(&g, &uri, &g.key, None).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.bytes, photo);
    assert_eq!(header(&got, "content-type"), "image/jpeg");
    assert!(
        header(&got, "cache-control").starts_with("private"),
        "{:?}",
        got.headers
    );
    assert_eq!(header(&got, "x-content-type-options"), "nosniff");
    let etag = header(&got, "etag").to_string();
    assert_eq!(
        etag,
        format!("\"{}\"", media["sha256"].as_str().expect("sha"))
    );

    let again = get(&g, &uri, &g.key, Some(&etag)).await;
    assert_eq!(again.status, StatusCode::NOT_MODIFIED);
    assert!(again.bytes.is_empty());
    assert_eq!(header(&again, "etag"), etag);
    let stale = get(&g, &uri, &g.key, Some("\"something-else\"")).await;
    assert_eq!(stale.status, StatusCode::OK);
    assert_eq!(stale.bytes, photo);
}

#[tokio::test]
async fn a_thumbnail_is_a_bounded_upright_jpeg_made_once_and_revalidated() {
    let g = gateway(Options::default());
    let media = g
        .upload("landscape.png", "image/png", fixture("landscape_rgb.png"))
        .await;
    let media_ref = media["media_ref"].as_str().expect("media_ref");
    let uri = format!("/api/media/{media_ref}/thumbnail?size=128");
    let got = get(&g, &uri, &g.key, None).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(header(&got, "content-type"), "image/jpeg");
    let info = aimp_embed::image_info(&got.bytes).expect("a picture");
    assert_eq!(info.content_type, "image/jpeg");
    // 320 x 240 into 128: the aspect kept.
    assert_eq!((info.width, info.height), (128, 96));
    assert!(header(&got, "cache-control").starts_with("private"));
    let etag = header(&got, "etag").to_string();
    assert!(etag.ends_with("-128\""), "{etag}");
    assert_eq!(super::media::files_in(&g, "thumbnails").len(), 1, "cached");

    // The cached copy is what later requests get: replaced on disk by another picture, the
    // replacement is served (a gateway that never read its cache would make it again).
    let cached_file = super::media::files_in(&g, "thumbnails").remove(0);
    let stand_in = aimp_embed::thumbnail(&fixture("photo.jpg"), 64, 1_000_000).expect("jpeg");
    assert_ne!(stand_in, got.bytes);
    std::fs::write(&cached_file, &stand_in).expect("replace the cached thumbnail");
    let cached = get(&g, &uri, &g.key, None).await;
    assert_eq!(cached.bytes, stand_in, "served from the cache");
    // Another workspace storing the same bytes has a cache of its own: its thumbnail is made,
    // never the first workspace's (whose speed would say that someone stored these bytes).
    let other = g.key_of_workspace("other");
    let theirs = g
        .upload_as(
            &other,
            "same.png",
            "image/png",
            fixture("landscape_rgb.png"),
        )
        .await;
    let theirs = theirs["media_ref"].as_str().expect("media_ref");
    let their_thumbnail = get(
        &g,
        &format!("/api/media/{theirs}/thumbnail?size=128"),
        &other,
        None,
    )
    .await;
    assert_eq!(their_thumbnail.status, StatusCode::OK);
    assert_eq!(
        their_thumbnail.bytes, got.bytes,
        "made from the content, not the cache"
    );
    assert_eq!(
        super::media::files_in(&g, "thumbnails").len(),
        2,
        "one per workspace"
    );
    std::fs::write(&cached_file, &got.bytes).expect("put it back");
    let again = get(&g, &uri, &g.key, Some(&format!("W/{etag}"))).await;
    assert_eq!(again.status, StatusCode::NOT_MODIFIED);

    // The default side, and a picture smaller than it keeps its size.
    let default = get(
        &g,
        &format!("/api/media/{media_ref}/thumbnail"),
        &g.key,
        None,
    )
    .await;
    let info = aimp_embed::image_info(&default.bytes).expect("a picture");
    assert_eq!((info.width, info.height), (256, 192));
    let small = g
        .upload("small.png", "image/png", fixture("small_upscaled.png"))
        .await;
    let small_ref = small["media_ref"].as_str().expect("media_ref");
    let thumb = get(
        &g,
        &format!("/api/media/{small_ref}/thumbnail?size=512"),
        &g.key,
        None,
    )
    .await;
    let info = aimp_embed::image_info(&thumb.bytes).expect("a picture");
    assert_eq!((info.width, info.height), (48, 30));
}

#[tokio::test]
async fn another_workspaces_media_is_404_and_bad_references_and_sizes_are_400() {
    let g = gateway(Options::default());
    let media = g
        .upload("photo.jpg", "image/jpeg", fixture("photo.jpg"))
        .await;
    let media_ref = media["media_ref"].as_str().expect("media_ref");
    let other = g.key_of_workspace("elsewhere");
    for uri in [
        format!("/api/media/{media_ref}"),
        format!("/api/media/{media_ref}/thumbnail"),
    ] {
        let r = g.get_json(&uri, &other).await;
        assert_error(&r, 404, "media_not_found", Some("media_ref"));
        let r = g.get_json(&uri, "no-such-key").await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    let r = g
        .get_json("/api/media/media_0123456789abcdef", &g.key)
        .await;
    assert_error(&r, 404, "media_not_found", Some("media_ref"));
    let r = g.get_json("/api/media/not%20a%20ref", &g.key).await;
    assert_error(&r, 400, "invalid_media_ref", Some("media_ref"));
    for size in ["100", "0", "4096"] {
        let r = g
            .get_json(
                &format!("/api/media/{media_ref}/thumbnail?size={size}"),
                &g.key,
            )
            .await;
        assert_error(&r, 400, "invalid_size", Some("size"));
    }
    let r = g
        .get_json(
            &format!("/api/media/{media_ref}/thumbnail?width=64"),
            &g.key,
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{:?}", r.body);
}

#[tokio::test]
async fn a_picture_over_the_pixel_limit_has_no_thumbnail_but_its_bytes_are_served() {
    // Stored pictures are checked against the limit when they are decoded, not at upload.
    let g = gateway(Options {
        max_image_pixels: Some(10_000),
        ..Options::default()
    });
    let photo = fixture("photo.jpg");
    let media = g.upload("photo.jpg", "image/jpeg", photo.clone()).await;
    let media_ref = media["media_ref"].as_str().expect("media_ref");
    let r = g
        .get_json(&format!("/api/media/{media_ref}/thumbnail"), &g.key)
        .await;
    assert_error(&r, 422, "image_too_large", Some("media_ref"));
    assert!(r.message().contains("400x300"), "{}", r.message());
    assert!(super::media::files_in(&g, "thumbnails").is_empty());
    let got = get(&g, &format!("/api/media/{media_ref}"), &g.key, None).await;
    assert_eq!(got.bytes, photo);
}
