//! Killing the process (SIGKILL) in the middle of a stream of acknowledged batches loses none
//! of them: after reopening, every acknowledged id is there with its exact vector.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use aimp_store::{CollectionKey, CollectionParams, Metric, NewItem};
use aimp_store_embedded::{Redb, VectorIndex};

const WRITER_ENV: &str = "AIMP_CRASH_TEST_WRITER_DIR";
const BATCH: usize = 40;
const DIM: usize = 16;

fn key() -> CollectionKey {
    CollectionKey::new("ws", "model", "images", "crash")
}

fn vector(thread: usize, batch: usize, i: usize) -> Vec<f32> {
    (0..DIM)
        .map(|d| ((thread * 7919 + batch * 104_729 + i * 31 + d) % 1000) as f32 / 1000.0 - 0.5)
        .collect()
}

/// The child: two threads upsert batches forever, printing each acknowledgement.
fn writer(dir: &str) {
    let index = std::sync::Arc::new(VectorIndex::new(Redb::open(dir.as_ref()).expect("open")));
    let stdout = std::sync::Arc::new(std::sync::Mutex::new(std::io::stdout()));
    let threads: Vec<_> = (0..2)
        .map(|t| {
            let index = index.clone();
            let stdout = stdout.clone();
            std::thread::spawn(move || {
                for batch in 0.. {
                    let items = (0..BATCH)
                        .map(|i| NewItem {
                            id: format!("t{t}-b{batch}-{i}"),
                            vector: vector(t, batch, i),
                            filename: Some(format!("{t}-{batch}-{i}.jpg")),
                            media_ref: None,
                            system: None,
                            metadata: None,
                        })
                        .collect();
                    index
                        .upsert(&key(), CollectionParams::new(DIM, Metric::L2), items)
                        .expect("upsert");
                    let mut out = stdout.lock().expect("stdout");
                    writeln!(out, "acked {t} {batch}").expect("write");
                    out.flush().expect("flush");
                }
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
}

#[test]
fn acknowledged_batches_survive_sigkill() {
    if let Ok(dir) = std::env::var(WRITER_ENV) {
        writer(&dir);
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(std::env::current_exe().expect("exe"))
        .args([
            "--exact",
            "acknowledged_batches_survive_sigkill",
            "--nocapture",
        ])
        .env(WRITER_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn writer");
    let mut acked: Vec<(usize, usize)> = Vec::new();
    let reader = BufReader::new(child.stdout.take().expect("stdout"));
    for line in reader.lines() {
        let line = line.expect("line");
        let Some(rest) = line.strip_prefix("acked ") else {
            continue;
        };
        let mut parts = rest.split(' ').map(|p| p.parse::<usize>().expect("number"));
        acked.push((parts.next().expect("thread"), parts.next().expect("batch")));
        if acked.len() == 60 {
            child.kill().expect("SIGKILL"); // writes are still in flight
            break;
        }
    }
    child.wait().expect("wait");
    assert_eq!(acked.len(), 60, "the writer stopped early");

    let index = VectorIndex::new(Redb::open(dir.path()).expect("reopen"));
    for &(t, batch) in &acked {
        for i in 0..BATCH {
            let id = format!("t{t}-b{batch}-{i}");
            let (item, v) = index
                .get(&key(), &id)
                .expect("get")
                .unwrap_or_else(|| panic!("acknowledged {id} is lost"));
            assert_eq!(v, vector(t, batch, i), "{id}");
            assert_eq!(
                item.filename.as_deref(),
                Some(format!("{t}-{batch}-{i}.jpg").as_str())
            );
        }
    }
    let count = index.count(&key()).expect("count").expect("collection");
    assert!(count >= (acked.len() * BATCH) as u64, "{count}");
    // The reopened store takes writes and searches again.
    let hit = index
        .search(
            &key(),
            &vector(0, 0, 0),
            aimp_store::SearchOptions {
                top_k: 1,
                ef: None,
                exact: true,
                precision: None,
                filter: None,
                walk: false,
            },
        )
        .expect("search");
    assert_eq!(hit.hits[0].item.id, "t0-b0-0");
}
