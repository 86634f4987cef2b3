//! The API page's upload → index → search sequence against the built binary, across a
//! restart, and the `aimp index` / `aimp search` commands that drive the same API.

use std::path::Path;

use serde_json::Value;

use super::{ENV_KEY, Server, agent, aimp, checkpoint_folder, clip_fixtures, get, parse, post};

/// The page's init body, byte for byte (`size_bytes` 12345: the picture below is made that
/// long).
pub(crate) const INIT_BODY: &str = r#"{
    "filename": "image.png",
    "content_type": "image/png",
    "media_type": "image",
    "size_bytes": 12345
  }"#;
pub(crate) const COMPLETE_BODY: &str = r#"{
    "upload_id": "studio_upload_..."
  }"#;
pub(crate) const INDEX_BODY: &str = r#"{
    "model": "clipo",
    "mode": "index",
    "scope": "test",
    "input": {
      "images": [
        {
          "media_ref": "media_...",
          "filename": "image.png"
        }
      ],
      "image_ids": ["image-1"]
    },
    "params": {}
  }"#;
pub(crate) const SEARCH_BODY: &str = r#"{
    "model": "clipo",
    "mode": "search",
    "scope": "test",
    "input": {
      "image": {
        "media_ref": "media_...",
        "filename": "query.png"
      }
    },
    "params": {}
  }"#;

/// A PNG of exactly `len` bytes: a fixture picture plus a text chunk that pads it.
pub(crate) fn png_of_length(len: usize) -> Vec<u8> {
    let img = image::RgbImage::from_fn(40, 30, |x, y| {
        image::Rgb([(x * 6) as u8, (y * 8) as u8, ((x + y) * 3) as u8])
    });
    let mut png = std::io::Cursor::new(Vec::new());
    img.write_to(&mut png, image::ImageFormat::Png)
        .expect("png");
    let png = png.into_inner();
    let iend = png.len() - 12;
    let pad = len - png.len() - 12;
    let mut data = b"Comment\0".to_vec();
    data.resize(pad, b'x');
    let mut chunk = (data.len() as u32).to_be_bytes().to_vec();
    let body = [&b"tEXt"[..], &data].concat();
    chunk.extend_from_slice(&body);
    chunk.extend_from_slice(&crc32fast::hash(&body).to_be_bytes());
    let out = [&png[..iend], &chunk, &png[iend..]].concat();
    assert_eq!(out.len(), len);
    out
}

pub(crate) fn install_fixture_clipo(data: &Path, models: &Path) {
    let folder = checkpoint_folder(data, "tiny-b");
    let out = aimp(data, models)
        .args(["models", "import", "clipo", "--unverified", "--from"])
        .arg(&folder)
        .output()
        .expect("import");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn serve(data: &Path, models: &Path) -> Server {
    let mut cmd = aimp(data, models);
    cmd.env("AIMP_API_KEY", ENV_KEY)
        .env("AIMP_MODELS", "clipo")
        .env("AIMP_OFFLINE", "1");
    Server::start(cmd)
}

pub(crate) fn run(server: &Server, body: &str) -> Value {
    let (status, reply) = post(
        &format!("{}/api/runs", server.base),
        &[("X-API-Key", ENV_KEY)],
        body,
    );
    assert_eq!(status, 200, "{reply}");
    reply
}

#[test]
fn the_page_sequence_finds_image_1_first_before_and_after_a_restart() {
    let data = tempfile::tempdir().expect("tempdir");
    let models = data.path().join("models");
    install_fixture_clipo(data.path(), &models);
    let server = serve(data.path(), &models);
    let key = [("X-API-Key", ENV_KEY)];

    let (status, init) = post(
        &format!("{}/api/media/upload/init", server.base),
        &key,
        INIT_BODY,
    );
    assert_eq!(status, 200, "{init}");
    let url = init["upload_url"].as_str().expect("upload_url");
    assert!(
        url.starts_with(&server.base),
        "{url} is not on {}",
        server.base
    );
    let put = agent()
        .put(url)
        .header("Content-Type", "image/png")
        .send(&png_of_length(12345)[..])
        .expect("put");
    assert_eq!(put.status().as_u16(), 204);
    let upload_id = init["upload_id"].as_str().expect("upload_id");
    let (status, done) = post(
        &format!("{}/api/media/upload/complete", server.base),
        &key,
        &COMPLETE_BODY.replace("studio_upload_...", upload_id),
    );
    assert_eq!(status, 200, "{done}");
    let media_ref = done["media_ref"].as_str().expect("media_ref");
    assert_eq!(done["size_bytes"], 12345);

    let indexed = run(&server, &INDEX_BODY.replace("media_...", media_ref));
    assert_eq!(indexed["output"]["ids"][0], "image-1");
    let search = SEARCH_BODY.replace("media_...", media_ref);
    let before = run(&server, &search);
    assert_eq!(before["output"]["results"][0]["id"], "image-1", "{before}");
    let (status, kbs) = get(&format!("{}/api/knowledge-bases", server.base), &key);
    assert_eq!(status, 200);
    assert_eq!(kbs["data"][0]["scope"], "test");
    assert_eq!(kbs["data"][0]["count"], 1);

    // SIGTERM saves the graphs; the next start reads them back.
    let old_base = server.base.clone();
    server.stop();
    let server = serve(data.path(), &models);
    // Port 0: the new process listens elsewhere; the URL is the same otherwise.
    let url = url.replace(&old_base, &server.base);
    let after = run(&server, &search);
    assert_eq!(after["output"]["results"], before["output"]["results"]);
    // The signed URL was single-use, and stays so across the restart.
    let again = agent()
        .put(&url)
        .header("Content-Type", "image/png")
        .send(&png_of_length(12345)[..])
        .expect("put");
    assert_eq!(parse(again).0, 409);
}

#[test]
fn aimp_index_walks_a_folder_resumes_and_aimp_search_finds_a_picture() {
    let data = tempfile::tempdir().expect("tempdir");
    let models = data.path().join("models");
    install_fixture_clipo(data.path(), &models);
    let server = serve(data.path(), &models);

    let photos = data.path().join("photos");
    std::fs::create_dir_all(photos.join("more")).expect("mkdir");
    let images = clip_fixtures().join("images");
    for (from, to) in [
        ("photo.jpg", "photo.jpg"),
        ("landscape_rgb.png", "more/landscape.png"),
        ("square.webp", "square.webp"),
        ("photo.jpg", "more/copy-of-photo.jpg"),
    ] {
        std::fs::copy(images.join(from), photos.join(to)).expect("copy");
    }
    std::fs::write(photos.join("notes.txt"), "not a picture").expect("write");
    let client = |args: &[&str]| super::aimp_client(data.path(), &models, &server, args);
    let photos_arg = photos.to_string_lossy().into_owned();
    let first = client(&[
        "index",
        &photos_arg,
        "--model",
        "clipo",
        "--scope",
        "photos",
        "--batch",
        "2",
    ]);
    // The copy has the same content as photo.jpg: stored and indexed once.
    assert!(first.contains("indexed 3 pictures"), "{first}");
    assert!(
        first.contains("notes.txt") && first.contains("not a JPEG"),
        "{first}"
    );
    assert!(first.contains("skipped 1 already indexed"), "{first}");
    let second = client(&[
        "index",
        &photos_arg,
        "--model",
        "clipo",
        "--scope",
        "photos",
    ]);
    assert!(second.contains("indexed 0 pictures"), "{second}");
    assert!(second.contains("skipped 4 already indexed"), "{second}");

    let query = photos.join("photo.jpg").to_string_lossy().into_owned();
    let found = client(&[
        "search", "--model", "clipo", "--scope", "photos", "--image", &query,
    ]);
    let first_row = found
        .lines()
        .find(|l| l.trim_start().starts_with("1 "))
        .unwrap_or_else(|| panic!("no results in {found}"));
    assert!(first_row.contains("photo.jpg"), "{found}");
    let (_, kbs) = get(
        &format!("{}/api/knowledge-bases", server.base),
        &[("X-API-Key", ENV_KEY)],
    );
    assert_eq!(kbs["data"][0]["count"], 3, "{kbs}");
}
