//! Hostile clients against the built gateway: attacks of the bounded-cost review run at once
//! from raw sockets (invented methods without a key, trickling upload PUTs past the
//! workspace's cap) while a bystander searches. What it holds: the bystander's searches stay
//! fast, resident memory and `/metrics` stay bounded, and the attackers' connections are
//! closed by the gateway's own timeouts. In-process attacks are in
//! `crates/server/tests/http/hostile.rs`.
//!
//! `AIMP_HOSTILE_SCALE` multiplies the attacks (1 in the test suite);
//! `AIMP_HOSTILE_SCALE=10 cargo test --test blackbox hostile -- --nocapture` is the full size.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{ENV_KEY, Server, aimp, env_setting, get, post, shared_models};

/// Resident memory of a process in KiB and its open files, from /proc.
fn footprint(pid: u32) -> (u64, usize) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS");
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("fd")
        .count();
    (rss, fds)
}

fn host_of(base: &str) -> String {
    base.trim_start_matches("http://").to_string()
}

/// One request with an invented method, on its own connection.
fn invented(host: &str, i: usize) {
    let Ok(mut s) = TcpStream::connect(host) else {
        return;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = write!(
        s,
        "BREW{i} /api/runs HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    );
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
}

/// An upload PUT that sends its headers and a few bytes, then nothing: held open until the
/// gateway gives up on it (or refuses it at once past the workspace's cap).
fn trickling_put(base: &str, host: &str) -> TcpStream {
    let (status, init) = post(
        &format!("{base}/api/media/upload/init"),
        &[("X-API-Key", ENV_KEY)],
        &json!({"filename": "x.png", "content_type": "image/png", "media_type": "image",
                "size_bytes": 100_000})
        .to_string(),
    );
    assert_eq!(status, 200, "{init}");
    let url = init["upload_url"].as_str().expect("url");
    let path = &url[url.find("/api/").expect("path")..];
    let mut s = TcpStream::connect(host).expect("connect");
    write!(
        s,
        "PUT {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: image/png\r\n\
         Content-Length: 100000\r\n\r\n"
    )
    .expect("headers");
    s.write_all(b"\x89PNG\r\n\x1a\n").expect("the first bytes");
    s
}

fn search_ms(base: &str) -> f64 {
    let started = Instant::now();
    let (status, body) = post(
        &format!("{base}/api/runs"),
        &[("X-API-Key", ENV_KEY)],
        &json!({"model": "vectors", "mode": "search", "scope": "bystander",
                "input": {"vector": [0.5, 0.5, 0.5, 0.5]}, "params": {"top_k": 5}})
        .to_string(),
    );
    assert_eq!(status, 200, "{body}");
    started.elapsed().as_secs_f64() * 1000.0
}

#[test]
fn hostile_clients_leave_memory_connections_and_a_bystander_within_bounds() {
    let scale: usize = env_setting("AIMP_HOSTILE_SCALE", 1);
    let data = tempfile::tempdir().expect("tempdir");
    let mut cmd = aimp(data.path(), &shared_models());
    cmd.env("AIMP_OFFLINE", "1")
        .env("AIMP_MODELS", "vectors")
        .env("AIMP_API_KEY", ENV_KEY)
        .env("AIMP_RATE_LIMIT", "0")
        .env("AIMP_UPLOAD_IDLE_TIMEOUT", "2")
        .env("AIMP_UPLOADS_PER_WORKSPACE", "8");
    let server = Server::start(cmd);
    let (base, host, pid) = (
        server.base.clone(),
        host_of(&server.base),
        server.child.id(),
    );
    let vectors: Vec<Vec<f32>> = (0..200)
        .map(|i| vec![(i % 7) as f32, 1.0, 0.5, i as f32 / 200.0])
        .collect();
    let ids: Vec<String> = (0..200).map(|i| format!("b{i}")).collect();
    let (status, body) = post(
        &format!("{base}/api/runs"),
        &[("X-API-Key", ENV_KEY)],
        &json!({"model": "vectors", "mode": "index", "scope": "bystander",
                "input": {"vectors": vectors, "ids": ids}})
        .to_string(),
    );
    assert_eq!(status, 200, "{body}");
    for _ in 0..20 {
        search_ms(&base);
    }
    let (rss_before, fds_before) = footprint(pid);
    let metrics_before = metrics_len(&base);

    // The attacks, at once.
    let flood = {
        let host = host.clone();
        std::thread::spawn(move || {
            for i in 0..2_000 * scale {
                invented(&host, i);
            }
        })
    };
    let puts: Vec<TcpStream> = (0..24 * scale)
        .map(|_| trickling_put(&base, &host))
        .collect();
    // The bystander meanwhile.
    let mut latencies = Vec::new();
    while !flood.is_finished() || latencies.len() < 50 {
        latencies.push(search_ms(&base));
        std::thread::sleep(Duration::from_millis(20));
    }
    flood.join().expect("flood");
    // The trickling PUTs are given up on (idle 2 s) or were refused at once.
    std::thread::sleep(Duration::from_secs(4));
    let refused_or_closed = puts
        .into_iter()
        .filter_map(|mut s| {
            s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
            let mut out = Vec::new();
            let _ = s.read_to_end(&mut out);
            Some(String::from_utf8_lossy(&out).into_owned())
        })
        .collect::<Vec<_>>();
    let too_many = refused_or_closed
        .iter()
        .filter(|r| r.starts_with("HTTP/1.1 429"))
        .count();
    let stalled = refused_or_closed
        .iter()
        .filter(|r| r.starts_with("HTTP/1.1 408"))
        .count();
    let (rss_after, fds_after) = footprint(pid);
    let metrics_after = metrics_len(&base);
    latencies.sort_by(f64::total_cmp);
    let p99 = latencies[(latencies.len() - 1) * 99 / 100];
    let max = latencies[latencies.len() - 1];
    println!(
        "hostile x{scale}: {} invented methods, {} trickling PUTs ({too_many} refused 429, \
         {stalled} timed out 408); bystander {} searches p50 {:.1} ms p99 {p99:.1} ms max \
         {max:.1} ms; resident {rss_before} -> {rss_after} KiB; open files {fds_before} -> \
         {fds_after}; /metrics {metrics_before} -> {metrics_after} bytes",
        2_000 * scale,
        24 * scale,
        latencies.len(),
        latencies[latencies.len() / 2],
    );
    assert_eq!(too_many + stalled, 24 * scale, "{refused_or_closed:?}");
    assert!(too_many >= 24 * scale - 8, "past the cap of 8: 429 at once");
    assert!(
        p99 < 1000.0 && max < 2000.0,
        "bystander p99 {p99} ms, max {max} ms"
    );
    assert!(
        rss_after < rss_before + 64 * 1024,
        "resident {rss_before} -> {rss_after} KiB"
    );
    assert!(
        fds_after <= fds_before + 8,
        "open files {fds_before} -> {fds_after}"
    );
    assert!(
        metrics_after < metrics_before + 8 * 1024,
        "/metrics {metrics_before} -> {metrics_after}"
    );
}

fn metrics_len(base: &str) -> usize {
    let (status, body) = get(&format!("{base}/metrics"), &[]);
    assert_eq!(status, 200);
    match body {
        Value::String(s) => s.len(),
        other => other.to_string().len(),
    }
}
