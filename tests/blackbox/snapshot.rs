//! `aimp snapshot create` and `restore`: the API page's picture, a key and the bytes, archived
//! from one data folder and restored into another, serve the same; a restore over data needs
//! `--force`; a damaged archive is refused naming its member, with the data folder untouched
//! byte for byte and nothing left beside it.

use std::path::Path;

use sha2::Digest;

use super::aimp;
use super::media::install_fixture_clipo;
use super::store_copy::{check_copy, fill, serve};

fn snapshot(models: &Path, data: &Path, args: &[&str]) -> (i32, String, String) {
    let out = aimp(data, models)
        .arg("snapshot")
        .args(args)
        .output()
        .expect("run aimp snapshot");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn digest(path: &Path) -> String {
    let bytes = std::fs::read(path).expect("read");
    sha2::Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn a_snapshot_restores_into_another_folder_and_a_damaged_one_changes_nothing() {
    let root = tempfile::tempdir().expect("tempdir");
    let (a, b) = (root.path().join("a"), root.path().join("b"));
    let models = root.path().join("models");
    install_fixture_clipo(&a, &models);
    let (key, media_ref) = fill(&a, &models);
    let archive = root.path().join("backup.tar");
    let path = |p: &Path| p.to_string_lossy().into_owned();

    let (code, out, err) = snapshot(&models, &a, &["create", "--out", &path(&archive)]);
    assert_eq!(code, 0, "{err}");
    let made: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(made["sha256"], digest(&archive), "{made}");
    assert_eq!(made["collections"][0]["count"], 1, "{made}");
    assert_eq!(made["media"], 1, "{made}");
    assert!(!archive.with_extension("partial").exists());

    // Into an empty folder: no flag needed; a gateway there serves the same.
    let (code, out, err) = snapshot(&models, &b, &["restore", &path(&archive)]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\"items\": 1"), "{out}");
    let server = serve(&b, &models, None);
    check_copy(&server, &key, &media_ref);
    server.stop();

    // Over data: --force is needed.
    let held = digest(&b.join("aimp.redb"));
    let (code, _, err) = snapshot(&models, &b, &["restore", &path(&archive)]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("--force"), "{err}");
    // A damaged archive: refused naming the member, the folder untouched, nothing beside it.
    let mut bytes = std::fs::read(&archive).expect("archive");
    bytes[512 + 20] ^= 0x01;
    let damaged = root.path().join("damaged.tar");
    std::fs::write(&damaged, &bytes).expect("write");
    let (code, _, err) = snapshot(&models, &b, &["restore", "--force", &path(&damaged)]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("keys.jsonl") && err.contains("SHA-256"),
        "{err}"
    );
    assert_eq!(digest(&b.join("aimp.redb")), held);
    let beside: Vec<String> = std::fs::read_dir(root.path())
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(beside.is_empty(), "left behind: {beside:?}");
    // With --force, the good archive replaces it.
    let (code, _, err) = snapshot(&models, &b, &["restore", "--force", &path(&archive)]);
    assert_eq!(code, 0, "{err}");
    let server = serve(&b, &models, None);
    check_copy(&server, &key, &media_ref);
    server.stop();
}
