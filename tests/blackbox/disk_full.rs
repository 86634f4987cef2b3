//! A real full disk: the data folder on a small tmpfs that fills while pictures are uploaded
//! and indexed. Every answer is a success or a clear 507 naming the cause (never a 500 or a
//! hang), searches keep answering, nothing acknowledged is lost, and once space is freed the
//! next upload and index run succeed without a restart.
//!
//! Mounting needs root (CAP_SYS_ADMIN); without it the test prints why and skips.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use super::media::install_fixture_clipo;
use super::{ENV_KEY, Server, agent, aimp, parse, post};

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(at).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        Ok(Tmpfs(at.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn png(seed: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(48, 48, |x, y| {
        let v = seed.wrapping_mul(2_654_435_761) ^ (x * 7919 + y * 104_729);
        image::Rgb([v as u8, (v >> 8) as u8, (v >> 16) as u8])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)
        .expect("png");
    out.into_inner()
}

/// What one attempt to store a picture came to.
enum Outcome {
    /// Uploaded and indexed under this id.
    Stored(String),
    /// Refused with 507 at this step.
    Full(&'static str),
}

/// Uploads a picture and indexes it; any answer but success or 507 fails the test.
fn store_picture(server: &Server, seed: u32) -> Outcome {
    let key = [("X-API-Key", ENV_KEY)];
    let bytes = png(seed);
    let refused = |step: &'static str, status: u16, body: &Value| {
        assert_eq!(status, 507, "{step} answered {status}: {body}");
        assert_eq!(body["error"]["code"], "insufficient_storage", "{body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("full"), "{message}");
        Outcome::Full(step)
    };
    let init = json!({"filename": "p.png", "content_type": "image/png", "media_type": "image",
        "size_bytes": bytes.len()});
    let (status, init) = post(
        &format!("{}/api/media/upload/init", server.base),
        &key,
        &init.to_string(),
    );
    if status != 200 {
        return refused("init", status, &init);
    }
    let put = agent()
        .put(init["upload_url"].as_str().expect("url"))
        .header("Content-Type", "image/png")
        .send(&bytes[..])
        .expect("put");
    let (status, body) = parse(put);
    if status != 204 {
        return refused("put", status, &body);
    }
    let (status, done) = post(
        &format!("{}/api/media/upload/complete", server.base),
        &key,
        &json!({"upload_id": init["upload_id"]}).to_string(),
    );
    if status != 200 {
        return refused("complete", status, &done);
    }
    let id = format!("p{seed}");
    let run = json!({"model": "clipo", "mode": "index", "scope": "full",
        "input": {"images": [{"media_ref": done["media_ref"], "filename": "p.png"}],
                  "image_ids": [id]}, "params": {}});
    let (status, reply) = post(&format!("{}/api/runs", server.base), &key, &run.to_string());
    if status != 200 {
        return refused("index", status, &reply);
    }
    Outcome::Stored(id)
}

fn count(server: &Server) -> u64 {
    let (status, kbs) = super::get(
        &format!("{}/api/knowledge-bases", server.base),
        &[("X-API-Key", ENV_KEY)],
    );
    assert_eq!(status, 200, "{kbs}");
    kbs["data"][0]["count"].as_u64().unwrap_or(0)
}

fn search_works(server: &Server) {
    let run = json!({"model": "clipo", "mode": "search", "scope": "full",
        "input": {"text": "a picture"}, "params": {"top_k": 5}});
    let (status, reply) = post(
        &format!("{}/api/runs", server.base),
        &[("X-API-Key", ENV_KEY)],
        &run.to_string(),
    );
    assert_eq!(status, 200, "searches keep working on a full disk: {reply}");
    assert!(
        !reply["output"]["results"]
            .as_array()
            .expect("results")
            .is_empty()
    );
}

#[test]
fn a_full_data_folder_is_507_keeps_searches_and_recovers_once_space_is_freed() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let work = tmp.path().join("work");
    let models = work.join("models");
    let mount_point = tmp.path().join("data");
    let tmpfs = match Tmpfs::mount(&mount_point, "16m") {
        Ok(t) => t,
        Err(why) => {
            println!("SKIPPED: cannot mount a small tmpfs for the data folder ({why})");
            return;
        }
    };
    install_fixture_clipo(&work, &models);
    let serve = || {
        let mut cmd = aimp(&mount_point, &models);
        cmd.env("AIMP_API_KEY", ENV_KEY)
            .env("AIMP_MODELS", "clipo")
            .env("AIMP_OFFLINE", "1")
            .env("AIMP_EXACT_BELOW", "0")
            .env("RUST_LOG", "error");
        Server::start(cmd)
    };
    let server = serve();
    let mut stored = Vec::new();
    for seed in 0..10 {
        match store_picture(&server, seed) {
            Outcome::Stored(id) => stored.push(id),
            Outcome::Full(step) => panic!("full before filling, at {step}"),
        }
    }

    // Fill what is left with a file, then keep storing pictures.
    let filler = mount_point.join("filler");
    {
        let mut file = std::fs::File::create(&filler).expect("filler");
        let block = vec![0u8; 64 * 1024];
        while file.write_all(&block).is_ok() {}
        let _ = file.sync_all();
    }
    let mut refused = std::collections::BTreeMap::new();
    for seed in 10..60 {
        match store_picture(&server, seed) {
            Outcome::Stored(id) => stored.push(id),
            Outcome::Full(step) => *refused.entry(step).or_insert(0) += 1,
        }
        search_works(&server);
    }
    assert!(!refused.is_empty(), "the disk never filled");
    assert_eq!(count(&server), stored.len() as u64);

    // Space comes back: the next picture goes in without a restart.
    std::fs::remove_file(&filler).expect("free space");
    match store_picture(&server, 1000) {
        Outcome::Stored(id) => stored.push(id),
        Outcome::Full(step) => panic!("still full at {step} after space was freed"),
    }
    assert_eq!(count(&server), stored.len() as u64);
    server.stop();

    let server = serve();
    assert_eq!(
        count(&server),
        stored.len() as u64,
        "every acknowledged picture"
    );
    search_works(&server);
    server.stop();
    println!(
        "disk full: {} pictures stored, refused with 507 at {refused:?}",
        stored.len()
    );
    drop(tmpfs);
}
