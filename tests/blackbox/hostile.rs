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

/// The gateway these attacks run against: the `vectors` model only, offline, the shared key,
/// rate limiting off (so only the bounds under test stand in the attacker's way).
fn vectors_gateway(data: &std::path::Path) -> std::process::Command {
    let mut cmd = aimp(data, &shared_models());
    cmd.env("AIMP_OFFLINE", "1")
        .env("AIMP_MODELS", "vectors")
        .env("AIMP_API_KEY", ENV_KEY)
        .env("AIMP_RATE_LIMIT", "0");
    cmd
}

/// The bystander's 200 vectors, in the default workspace (the shared key's).
fn index_bystander(base: &str) {
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
}

/// 20,000 vectors of 64 dimensions in `key`'s scope "big" (searched through their graph),
/// each with a `tag` of 50 values.
fn index_big(base: &str, key: &str) {
    for start in (0..20_000).step_by(256) {
        let end = (start + 256).min(20_000);
        let vectors: Vec<Vec<f32>> = (start..end)
            .map(|i| {
                (0..64)
                    .map(|d| ((i * 7 + d * 13) % 97) as f32 / 97.0)
                    .collect()
            })
            .collect();
        let ids: Vec<String> = (start..end).map(|i| format!("v{i}")).collect();
        let metadata: Vec<Value> = (start..end)
            .map(|i| json!({"tag": format!("t{}", i % 50)}))
            .collect();
        let (status, body) = post(
            &format!("{base}/api/runs"),
            &[("X-API-Key", key)],
            &json!({"model": "vectors", "mode": "index", "scope": "big",
                    "input": {"vectors": vectors, "ids": ids, "metadata": metadata}})
            .to_string(),
        );
        assert_eq!(status, 200, "{body}");
    }
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
    let _measuring = super::measuring();
    let scale: usize = env_setting("AIMP_HOSTILE_SCALE", 1);
    let data = tempfile::tempdir().expect("tempdir");
    let mut cmd = vectors_gateway(data.path());
    cmd.env("AIMP_UPLOAD_IDLE_TIMEOUT", "2")
        .env("AIMP_UPLOADS_PER_WORKSPACE", "8");
    let server = Server::start(cmd);
    let (base, host, pid) = (
        server.base.clone(),
        host_of(&server.base),
        server.child.id(),
    );
    index_bystander(&base);
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

/// A picture of noise (it does not compress): `side` x `side`, different for each `seed`.
pub(super) fn noise_png(side: u32, seed: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(side, side, |x, y| {
        let h = (x.wrapping_mul(2_654_435_761) ^ y.wrapping_mul(40_503) ^ seed.wrapping_mul(97))
            .wrapping_mul(2_246_822_519);
        image::Rgb([(h >> 8) as u8, (h >> 16) as u8, (h >> 24) as u8])
    });
    let mut png = std::io::Cursor::new(Vec::new());
    img.write_to(&mut png, image::ImageFormat::Png)
        .expect("png");
    png.into_inner()
}

/// Uploads `bytes` as a PNG with `key`; answers its media_ref.
pub(super) fn upload_png(base: &str, key: &str, bytes: &[u8]) -> String {
    let (status, init) = post(
        &format!("{base}/api/media/upload/init"),
        &[("X-API-Key", key)],
        &json!({"filename": "noise.png", "content_type": "image/png", "media_type": "image",
                "size_bytes": bytes.len()})
        .to_string(),
    );
    assert_eq!(status, 200, "{init}");
    let put = super::agent()
        .put(init["upload_url"].as_str().expect("url"))
        .header("Content-Type", "image/png")
        .send(bytes)
        .expect("put");
    assert_eq!(put.status().as_u16(), 204);
    let (status, done) = post(
        &format!("{base}/api/media/upload/complete"),
        &[("X-API-Key", key)],
        &json!({"upload_id": init["upload_id"]}).to_string(),
    );
    assert_eq!(status, 200, "{done}");
    done["media_ref"].as_str().expect("media_ref").to_string()
}

/// A GET whose answer the client never reads: held until the gateway's write timeout.
fn unread_get(host: &str, path: &str, key: &str) -> TcpStream {
    let mut s = TcpStream::connect(host).expect("connect");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nX-API-Key: {key}\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    s
}

/// Runs `one` over and over from its own thread until `until`, counting answers by status.
fn attack(
    until: Instant,
    one: impl Fn(usize) -> u16 + Send + 'static,
) -> std::thread::JoinHandle<std::collections::BTreeMap<u16, usize>> {
    std::thread::spawn(move || {
        let mut seen = std::collections::BTreeMap::new();
        let mut n = 0;
        while Instant::now() < until {
            *seen.entry(one(n)).or_insert(0) += 1;
            n += 1;
        }
        seen
    })
}

/// The query-side attacks at once, from another workspace, while the bystander searches:
/// filters at and past their bound, recall checks at their largest (some abandoned after a
/// second), thumbnails of large noise pictures, filtered listings, deletes by filter, writes
/// with the most indexed metadata values an item may hold (and one more), and clients that
/// ask for a 7 MB picture and never read it.
#[test]
fn hostile_queries_pictures_and_readers_leave_a_bystander_within_bounds() {
    let _measuring = super::measuring();
    let scale: usize = env_setting("AIMP_HOSTILE_SCALE", 1);
    let data = tempfile::tempdir().expect("tempdir");
    let mut cmd = vectors_gateway(data.path());
    cmd.env("AIMP_WRITE_TIMEOUT", "2")
        .env("AIMP_THUMBNAIL_MEMORY", (64u64 << 20).to_string());
    let server = Server::start(cmd);
    let (base, host, pid) = (
        server.base.clone(),
        host_of(&server.base),
        server.child.id(),
    );
    let (status, made) = super::admin(
        "POST",
        &format!("{base}/api/api-keys/"),
        Some(json!({"name": "attacker", "workspace": "attacker"})),
    );
    assert_eq!(status, 201, "{made}");
    let attacker = made["key"].as_str().expect("key").to_string();
    // The attacker's 20,000 vectors (searched through their graph), the bystander's 200.
    index_big(&base, &attacker);
    index_bystander(&base);
    let pictures: Vec<String> = (0..8)
        .map(|seed| upload_png(&base, &attacker, &noise_png(1500, seed)))
        .collect();
    for _ in 0..20 {
        search_ms(&base);
    }
    let (rss_before, fds_before) = footprint(pid);

    let until = Instant::now() + Duration::from_secs(5 * scale as u64);
    let url = format!("{base}/api/runs");
    let mut attacks = Vec::new();
    // Filters: 4,096 values no item holds (the bound), and one value more (a 400).
    for past in [false, true] {
        let (url, key) = (url.clone(), attacker.clone());
        let name = if past {
            "filters past the bound"
        } else {
            "filters"
        };
        attacks.push((
            name,
            attack(until, move |n| {
                // Four lists of 1,024 (the most one list holds), and past the bound one more.
                let mut lists: Vec<Value> = (0..4)
                    .map(|l| {
                        let values: Vec<String> = (0..1_024)
                            .map(|i| format!("absent-{n}-{l}-{i:04}"))
                            .collect();
                        json!({"key": "tag", "match": {"any": values}})
                    })
                    .collect();
                if past {
                    lists.push(json!({"key": "tag", "match": {"any": ["one more"]}}));
                }
                post(
                    &url,
                    &[("X-API-Key", &key)],
                    &json!({"model": "vectors", "mode": "search", "scope": "big",
                        "input": {"vector": vec![0.5f32; 64]},
                        "params": {"top_k": 10, "filter": {"should": lists}}})
                    .to_string(),
                )
                .0
            }),
        ));
    }
    // Recall checks at their largest; every other one abandoned after a second.
    for _ in 0..2 {
        let (base, key) = (base.clone(), attacker.clone());
        attacks.push((
            "recall",
            attack(until, move |n| {
                let timeout = if n % 2 == 0 { 1 } else { 60 };
                let answer = super::agent_with_timeout(Duration::from_secs(timeout))
                    .post(&format!(
                        "{base}/api/knowledge-bases/vectors/vectors/big/recall"
                    ))
                    .header("X-API-Key", &key)
                    .header("Content-Type", "application/json")
                    .send(json!({"queries": 1000, "ef": 4096}).to_string());
                match answer {
                    Ok(r) => r.status().as_u16(),
                    Err(_) => 0, // abandoned
                }
            }),
        ));
    }
    // Thumbnails of 1500 x 1500 noise pictures, each picture at each size: each is decoded
    // once (then cached for the workspace).
    for t in 0..3 {
        let (base, key, pictures) = (base.clone(), attacker.clone(), pictures.clone());
        attacks.push((
            "thumbnails",
            attack(until, move |n| {
                let sides = aimp_embed::THUMBNAIL_SIDES;
                let i = n * 3 + t;
                let side = sides[i % sides.len()];
                let picture = &pictures[(i / sides.len()) % pictures.len()];
                match super::agent()
                    .get(&format!("{base}/api/media/{picture}/thumbnail?size={side}"))
                    .header("X-API-Key", &key)
                    .call()
                {
                    Ok(mut r) => {
                        let _ = r.body_mut().read_to_vec();
                        r.status().as_u16()
                    }
                    Err(_) => 0,
                }
            }),
        ));
    }
    // Filtered listings walking the whole collection.
    {
        let (base, key) = (base.clone(), attacker.clone());
        attacks.push((
            "listings",
            attack(until, move |n| {
                let filter =
                    json!({"must": [{"key": "tag", "match": {"value": format!("t{}", n % 50)}}]});
                super::agent()
                    .get(&format!(
                        "{base}/api/knowledge-bases/vectors/vectors/big/items"
                    ))
                    .query("limit", "100")
                    .query("filter", filter.to_string())
                    .header("X-API-Key", &key)
                    .call()
                    .map_or(0, |r| r.status().as_u16())
            }),
        ));
    }
    // Deletes by a filter no item matches (the matches are found outside the shared write),
    // and writes whose items each hold the most metadata values that are indexed (256), and
    // one value more (a 400).
    {
        let (url, key) = (url.clone(), attacker.clone());
        attacks.push((
            "deletes",
            attack(until, move |n| {
                post(
                    &url,
                    &[("X-API-Key", &key)],
                    &json!({"model": "vectors", "mode": "delete", "scope": "big", "input": {},
                        "params": {"filter": {"must": [
                            {"key": "tag", "match": {"value": format!("absent-{n}")}}]}}})
                    .to_string(),
                )
                .0
            }),
        ));
    }
    for past in [false, true] {
        let (url, key) = (url.clone(), attacker.clone());
        let name = if past {
            "metadata past the bound"
        } else {
            "metadata"
        };
        attacks.push((
            name,
            attack(until, move |n| {
                let values: Vec<String> = (0..256 + usize::from(past))
                    .map(|i| format!("v{n}-{i}"))
                    .collect();
                let ids: Vec<String> = (0..100)
                    .map(|i| format!("m{}", (n * 100 + i) % 2_000))
                    .collect();
                let vectors: Vec<Vec<f32>> = (0..100).map(|i| vec![i as f32 / 100.0; 64]).collect();
                let metadata: Vec<Value> = (0..100).map(|_| json!({"values": values})).collect();
                post(
                    &url,
                    &[("X-API-Key", &key)],
                    &json!({"model": "vectors", "mode": "index", "scope": "rows",
                        "input": {"vectors": vectors, "ids": ids, "metadata": metadata}})
                    .to_string(),
                )
                .0
            }),
        ));
    }
    // Readers that never read: 16 per scale of the 7 MB picture.
    let readers: Vec<TcpStream> = (0..16 * scale)
        .map(|i| unread_get(&host, &format!("/api/media/{}", pictures[i % 8]), &attacker))
        .collect();

    let mut latencies = Vec::new();
    while Instant::now() < until {
        latencies.push(search_ms(&base));
        std::thread::sleep(Duration::from_millis(20));
    }
    // Answers by status, per kind of attack (its threads together).
    let mut answers: std::collections::BTreeMap<&str, std::collections::BTreeMap<u16, usize>> =
        Default::default();
    for (name, a) in attacks {
        for (status, n) in a.join().expect("attack") {
            *answers.entry(name).or_default().entry(status).or_insert(0) += n;
        }
    }
    // The readers' connections are closed by the gateway (no write progress for 2 s).
    std::thread::sleep(Duration::from_secs(4));
    let closed = readers
        .into_iter()
        .filter(|s| {
            let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
            let mut out = Vec::new();
            let mut s = s;
            let _ = s.read_to_end(&mut out);
            // Closed before all of the picture was sent.
            out.len() < 7_000_000
        })
        .count();
    std::thread::sleep(Duration::from_secs(1));
    let (rss_after, fds_after) = footprint(pid);
    latencies.sort_by(f64::total_cmp);
    let p99 = latencies[(latencies.len() - 1) * 99 / 100];
    let max = latencies[latencies.len() - 1];
    println!(
        "hostile queries x{scale}: {answers:?}; {closed} of {} unread picture downloads closed; \
         bystander {} searches p50 {:.1} ms p99 {p99:.1} ms max {max:.1} ms; resident \
         {rss_before} -> {rss_after} KiB; open files {fds_before} -> {fds_after}",
        16 * scale,
        latencies.len(),
        latencies[latencies.len() / 2],
    );
    for (&name, seen) in &answers {
        for status in seen.keys() {
            assert!(
                matches!(status, 0 | 200 | 400 | 429 | 503),
                "{name} answered {status}: {seen:?}"
            );
        }
        if name.ends_with("past the bound") {
            assert_eq!(seen.keys().collect::<Vec<_>>(), [&400], "always refused");
        } else {
            assert!(
                seen.contains_key(&200),
                "{name} never got through: {seen:?}"
            );
        }
    }
    assert_eq!(closed, 16 * scale, "every unread download was closed");
    assert!(
        p99 < 1000.0 && max < 2000.0,
        "bystander p99 {p99} ms, max {max} ms"
    );
    assert!(
        rss_after < rss_before + 192 * 1024,
        "resident {rss_before} -> {rss_after} KiB"
    );
    assert!(
        fds_after <= fds_before + 8,
        "open files {fds_before} -> {fds_after}"
    );
}

/// CPU seconds a process has used (user and system), from /proc; clock ticks taken as 100 a
/// second, Linux's USER_HZ on every architecture it runs on.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let after_name = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Fields 14 and 15 of the line; the state (field 3) is the first after the name.
    let ticks = |i: usize| fields[i - 3].parse::<f64>().expect("ticks");
    (ticks(14) + ticks(15)) / 100.0
}

/// The CPU of a request is freed soon after its client goes away: a recall check of 1,000
/// queries at ef 4,096 over 20,000 vectors (seconds of work) is abandoned after half a
/// second, and from a second after that the gateway is idle again.
#[test]
fn an_abandoned_recall_check_frees_the_cpu_within_a_second() {
    let data = tempfile::tempdir().expect("tempdir");
    let cmd = vectors_gateway(data.path());
    let server = Server::start(cmd);
    let (base, pid) = (server.base.clone(), server.child.id());
    index_big(&base, ENV_KEY);
    std::thread::sleep(Duration::from_millis(500));
    let idle_before = {
        let a = cpu_seconds(pid);
        std::thread::sleep(Duration::from_secs(1));
        cpu_seconds(pid) - a
    };
    let started = cpu_seconds(pid);
    let abandoned = super::agent_with_timeout(Duration::from_millis(500))
        .post(&format!(
            "{base}/api/knowledge-bases/vectors/vectors/big/recall"
        ))
        .header("X-API-Key", ENV_KEY)
        .header("Content-Type", "application/json")
        .send(json!({"queries": 1000, "ef": 4096}).to_string());
    assert!(
        abandoned.is_err(),
        "the check takes longer than half a second"
    );
    let at_disconnect = cpu_seconds(pid);
    std::thread::sleep(Duration::from_secs(1));
    let a_second_later = cpu_seconds(pid);
    std::thread::sleep(Duration::from_secs(1));
    let used_after = cpu_seconds(pid) - a_second_later;
    println!(
        "abandoned recall check: {:.2} CPU s before the disconnect, {:.2} in the second after \
         it, {used_after:.2} in the next (idle: {idle_before:.2} a second)",
        at_disconnect - started,
        a_second_later - at_disconnect
    );
    assert!(
        at_disconnect - started > 0.2,
        "the check was running when its client left"
    );
    assert!(
        used_after < 0.1 + idle_before,
        "the gateway used {used_after:.2} CPU s in the second after the one that followed the disconnect"
    );
    // Its place is free: the next check of the workspace is not refused as one in progress.
    let (status, body) = post(
        &format!("{base}/api/knowledge-bases/vectors/vectors/big/recall"),
        &[("X-API-Key", ENV_KEY)],
        &json!({"queries": 10}).to_string(),
    );
    assert_eq!(status, 200, "{body}");
}
