//! `aimp index` carries metadata: a folder's sidecar (CSV here) gives each picture its fields,
//! the gateway adds what the picture's EXIF says, both filterable; a changed sidecar row is
//! taken on the next run without uploading again. `aimp index --texts FILE.jsonl` indexes
//! texts with their fields and resumes, sending only new or changed lines.

use serde_json::{Value, json};

use super::media::install_fixture_clipo;
use super::{
    ENV_KEY, Server, aimp, aimp_client as client, clip_fixtures, get, post, shared_models,
};

/// photo.jpg with an EXIF block: Make "Canon", Orientation 1, DateTime 2024-07-14 16:05:09.
fn camera_jpeg() -> Vec<u8> {
    let jpeg = std::fs::read(clip_fixtures().join("images/photo.jpg")).expect("read");
    // Big-endian TIFF: header, IFD0 at 8 with three entries, then the values they point to.
    let mut tiff = b"MM\0*\0\0\0\x08\0\x03".to_vec();
    tiff.extend_from_slice(&[0x01, 0x0F, 0, 2, 0, 0, 0, 6, 0, 0, 0, 50]); // Make
    tiff.extend_from_slice(&[0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 1, 0, 0]); // Orientation
    tiff.extend_from_slice(&[0x01, 0x32, 0, 2, 0, 0, 0, 20, 0, 0, 0, 56]); // DateTime
    tiff.extend_from_slice(&[0, 0, 0, 0]);
    tiff.extend_from_slice(b"Canon\0");
    tiff.extend_from_slice(b"2024:07:14 16:05:09\0");
    let payload = [&b"Exif\0\0"[..], &tiff].concat();
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(&payload);
    out.extend_from_slice(&jpeg[2..]);
    out
}

fn items(server: &Server, model: &str, collection: &str, scope: &str) -> Vec<Value> {
    let (status, page) = get(
        &format!(
            "{}/api/knowledge-bases/{model}/{collection}/{scope}/items",
            server.base
        ),
        &[("X-API-Key", ENV_KEY)],
    );
    assert_eq!(status, 200, "{page}");
    page["data"].as_array().cloned().expect("data")
}

/// The ids a search with `filter` finds, sorted.
fn found(server: &Server, body: Value) -> Vec<String> {
    let (status, reply) = post(
        &format!("{}/api/runs", server.base),
        &[("X-API-Key", ENV_KEY)],
        &body.to_string(),
    );
    assert_eq!(status, 200, "{reply}");
    let mut ids: Vec<String> = reply["output"]["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| r["id"].as_str().expect("id").to_string())
        .collect();
    ids.sort();
    ids
}

#[test]
fn a_folders_sidecar_and_the_pictures_exif_become_filterable_fields() {
    let data = tempfile::tempdir().expect("tempdir");
    let models = data.path().join("models");
    install_fixture_clipo(data.path(), &models);
    let mut cmd = aimp(data.path(), &models);
    cmd.env("AIMP_API_KEY", ENV_KEY)
        .env("AIMP_MODELS", "clipo")
        .env("AIMP_OFFLINE", "1");
    let server = Server::start(cmd);

    let photos = data.path().join("photos");
    std::fs::create_dir_all(photos.join("more")).expect("mkdir");
    let images = clip_fixtures().join("images");
    std::fs::write(photos.join("cam.jpg"), camera_jpeg()).expect("write");
    std::fs::copy(
        images.join("landscape_rgb.png"),
        photos.join("more/landscape.png"),
    )
    .expect("copy");
    std::fs::copy(images.join("square.webp"), photos.join("square.webp")).expect("copy");
    let sidecar = photos.join("metadata.csv");
    std::fs::write(
        &sidecar,
        "path,album,year\ncam.jpg,Holidays,2024\nmore/landscape.png,Work,2023\nghost.jpg,Nowhere,1999\n",
    )
    .expect("sidecar");
    let dir = photos.to_string_lossy().into_owned();
    let args = ["index", &dir, "--model", "clipo", "--scope", "photos"];
    let first = client(data.path(), &models, &server, &args);
    assert!(first.contains("indexed 3 pictures"), "{first}");
    // The sidecar is not a picture to skip; its row for a missing picture is reported.
    assert!(!first.contains("metadata.csv:  "), "{first}");
    assert!(first.contains("1 rows name no picture"), "{first}");

    let listed = items(&server, "clipo", "images", "photos");
    let by_id = |id: &str| {
        listed
            .iter()
            .find(|i| i["id"] == id)
            .unwrap_or_else(|| panic!("{id} in {listed:?}"))
            .clone()
    };
    assert_eq!(
        by_id("cam.jpg")["metadata"],
        json!({"album": "Holidays", "year": 2024})
    );
    assert_eq!(
        by_id("more/landscape.png")["metadata"],
        json!({"album": "Work", "year": 2023})
    );
    assert_eq!(by_id("square.webp")["metadata"], json!({}));
    let system = &by_id("cam.jpg")["system"];
    assert_eq!(system["camera_make"], "Canon", "{system}");
    assert_eq!(system["orientation"], 1, "{system}");
    assert_eq!(system["taken_at"], "2024-07-14T16:05:09+00:00", "{system}");
    assert!(by_id("square.webp")["system"].get("camera_make").is_none());

    let search = |filter: Value| {
        found(
            &server,
            json!({"model": "clipo", "mode": "search", "scope": "photos",
                "input": {"text": "a picture"}, "params": {"top_k": 10, "filter": filter}}),
        )
    };
    assert_eq!(
        search(json!({"must": [{"key": "album", "match": {"value": "Holidays"}}]})),
        ["cam.jpg"]
    );
    assert_eq!(
        search(json!({"must": [{"key": "year", "range": {"lt": 2024}}]})),
        ["more/landscape.png"]
    );
    assert_eq!(
        search(json!({"must": [{"key": "$camera_make", "match": {"value": "Canon"}}]})),
        ["cam.jpg"]
    );
    assert_eq!(
        search(json!({"must": [{"key": "$taken_at", "range": {"gte": "2024-07-01T00:00:00Z"}}]})),
        ["cam.jpg"]
    );

    // A changed row is taken on the next run, from the stored upload; the rest is skipped.
    std::fs::write(
        &sidecar,
        "path,album,year\ncam.jpg,Family,2024\nmore/landscape.png,Work,2023\n",
    )
    .expect("sidecar");
    let second = client(data.path(), &models, &server, &args);
    assert!(second.contains("indexed 1 pictures"), "{second}");
    assert!(
        second.contains("1 were already there and took their changed"),
        "{second}"
    );
    assert!(second.contains("skipped 2 already indexed"), "{second}");
    let listed = items(&server, "clipo", "images", "photos");
    assert_eq!(listed.len(), 3);
    let cam = listed.iter().find(|i| i["id"] == "cam.jpg").expect("cam");
    assert_eq!(cam["metadata"], json!({"album": "Family", "year": 2024}));
    assert_eq!(cam["system"]["camera_make"], "Canon");
    server.stop();
}

#[test]
fn texts_from_json_lines_index_with_their_fields_and_resume() {
    let data = tempfile::tempdir().expect("tempdir");
    let models = shared_models();
    let mut cmd = aimp(data.path(), &models);
    cmd.env("AIMP_API_KEY", ENV_KEY);
    let server = Server::start(cmd);
    let file = data.path().join("notes.jsonl");
    let lines = [
        json!({"id": "n1", "text": "The contract was signed in March.", "metadata": {"team": "legal", "year": 2024}}),
        json!({"id": "n2", "text": "Quarterly revenue grew by ten percent.", "metadata": {"team": "finance"}}),
    ];
    let write = |lines: &[Value]| {
        let body: Vec<String> = lines.iter().map(Value::to_string).collect();
        std::fs::write(&file, body.join("\n") + "\n").expect("write");
    };
    write(&lines);
    let path = file.to_string_lossy().into_owned();
    let args = [
        "index", "--texts", &path, "--scope", "notes", "--batch", "1",
    ];
    let first = client(data.path(), &models, &server, &args);
    assert!(first.contains("indexed 2 texts"), "{first}");

    // One changed, one new, one as before: only two are sent.
    let mut more = lines.to_vec();
    more[1]["metadata"]["team"] = json!("sales");
    more.push(json!({"id": "n3", "text": "The court hearing moved to Friday."}));
    write(&more);
    let second = client(data.path(), &models, &server, &args);
    assert!(second.contains("indexed 2 texts"), "{second}");
    assert!(second.contains("skipped 1 already indexed"), "{second}");

    let listed = items(&server, "demo-model", "texts", "notes");
    let meta: Vec<(String, Value, Value)> = listed
        .iter()
        .map(|i| {
            (
                i["id"].as_str().expect("id").to_string(),
                i["text"].clone(),
                i["metadata"].clone(),
            )
        })
        .collect();
    assert_eq!(
        meta,
        vec![
            (
                "n1".into(),
                more[0]["text"].clone(),
                more[0]["metadata"].clone()
            ),
            (
                "n2".into(),
                more[1]["text"].clone(),
                json!({"team": "sales"})
            ),
            // Sent without fields (its batch had none): it has none.
            ("n3".into(), more[2]["text"].clone(), Value::Null),
        ]
    );
    let legal = found(
        &server,
        json!({"model": "demo-model", "mode": "search", "scope": "notes",
            "input": {"text": "a signed agreement"},
            "params": {"top_k": 5, "filter": {"must": [{"key": "team", "match": {"value": "legal"}}]}}}),
    );
    assert_eq!(legal, ["n1"]);
    // A bad file is refused with its line, before anything is sent.
    std::fs::write(
        &file,
        "{\"id\": \"x\", \"text\": \"ok\"}\n{\"id\": \"x\", \"text\": \"again\"}\n",
    )
    .expect("write");
    let out = aimp(data.path(), &models)
        .env("AIMP_API_KEY", ENV_KEY)
        .env("AIMP_GATEWAY_URL", &server.base)
        .args(args)
        .output()
        .expect("run aimp");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 2") && err.contains("earlier line"),
        "{err}"
    );
    server.stop();
}
