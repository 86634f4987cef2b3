//! Failover under load: two gateways on a three-member Patroni cluster (synchronous
//! replication), clients streaming acknowledged index runs through both, and `kill -9` of the
//! leader (its Patroni and PostgreSQL at once). The gateways answer 503 while the cluster
//! elects, then resume by themselves; afterwards every run answered 200 is there with its
//! vector and metadata, and found by a search. The time without writes is printed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aimp_store::{CollectionKey, Store};
use aimp_store_postgres::{PoolOptions, PostgresStore, cluster};
use serde_json::json;

use super::{ENV_KEY, Server, agent_with_timeout, aimp, parse, shared_models};

const CLIENTS: usize = 4;

fn vector(i: usize) -> Vec<f32> {
    vec![i as f32, (i % 7) as f32, 1.0, -1.0]
}

/// Runs wherever the harness can start a Patroni cluster (`.ci/run` installs etcd and
/// Patroni), and says why it skipped where it cannot; with `AIMP_REQUIRE_POSTGRES=1` a cluster
/// that cannot start fails it.
#[test]
fn killing_the_patroni_leader_loses_no_acknowledged_run() {
    let _measuring = super::measuring();
    let Some(mut cluster) = cluster::cluster() else {
        return;
    };
    cluster.create_database("aimp");
    let url = cluster.url("aimp");
    let folders = [
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    ];
    let gateways: Vec<Server> = folders
        .iter()
        .map(|dir| {
            let mut cmd = aimp(dir.path(), &shared_models());
            cmd.env("AIMP_API_KEY", ENV_KEY)
                .env("AIMP_STORE", &url)
                .env("AIMP_MODELS", "vectors")
                .env("AIMP_OFFLINE", "1")
                .env("AIMP_RATE_LIMIT", "0")
                .env("RUST_LOG", "error");
            Server::start(cmd)
        })
        .collect();
    let bases: Vec<String> = gateways.iter().map(|g| g.base.clone()).collect();

    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    // (id number, when answered 200), and every other answer's status.
    let acknowledged = Arc::new(Mutex::new(Vec::<(usize, Instant)>::new()));
    let others = Arc::new(Mutex::new(Vec::<u16>::new()));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (stop, acknowledged, others) = (stop.clone(), acknowledged.clone(), others.clone());
            let bases = bases.clone();
            std::thread::spawn(move || {
                let agent = agent_with_timeout(Duration::from_secs(30));
                let mut n = c;
                while !stop.load(Ordering::Relaxed) {
                    let base = &bases[n % bases.len()];
                    let body = json!({"model": "vectors", "mode": "index", "scope": "failover",
                        "input": {"vectors": [vector(n)], "ids": [format!("item-{n:06}")],
                                  "metadata": [{"n": n, "client": c}]}});
                    let answer = agent
                        .post(&format!("{base}/api/runs"))
                        .header("X-API-Key", ENV_KEY)
                        .header("Content-Type", "application/json")
                        .send(body.to_string());
                    match answer.map(parse) {
                        Ok((200, _)) => {
                            acknowledged.lock().expect("lock").push((n, Instant::now()))
                        }
                        Ok((status, _)) => {
                            others.lock().expect("lock").push(status);
                            std::thread::sleep(Duration::from_millis(200));
                        }
                        Err(e) => panic!("no answer from {base}: {e}"),
                    }
                    n += CLIENTS;
                }
            })
        })
        .collect();

    let wait_for = |count: usize, within: Duration| {
        let deadline = Instant::now() + within;
        while acknowledged.lock().expect("lock").len() < count {
            assert!(Instant::now() < deadline, "runs stopped being acknowledged");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    wait_for(200, Duration::from_secs(60));
    let before = acknowledged.lock().expect("lock").len();
    let killed_at = Instant::now();
    let old = cluster.kill_leader();
    // Writes resume once a standby leads; then a while more of them.
    let deadline = Instant::now() + Duration::from_secs(120);
    while acknowledged.lock().expect("lock").len() < before + 200 {
        assert!(
            Instant::now() < deadline,
            "writes never resumed after the failover"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.join().expect("client");
    }
    let new = cluster.leader().map(|m| m.name.clone());
    let acknowledged = acknowledged.lock().expect("lock").clone();
    // The time without writes: the longest wait between two acknowledgements.
    let mut times: Vec<Instant> = acknowledged.iter().map(|(_, at)| *at).collect();
    times.sort();
    let without = times
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default();
    let others = others.lock().expect("lock").clone();
    eprintln!(
        "failover under load: {old} killed, {new:?} leads; {:.1} s without an acknowledged \
         write (the kill at {:.1} s); {} runs acknowledged, {} refused ({:?})",
        without.as_secs_f64(),
        (killed_at - started).as_secs_f64(),
        acknowledged.len(),
        others.len(),
        others.iter().collect::<std::collections::BTreeSet<_>>()
    );
    assert_ne!(new.as_deref(), Some(old.as_str()));
    assert!(
        others.iter().all(|&s| s == 503),
        "while the cluster elects, only 503: {others:?}"
    );

    // Every acknowledged run is there, exactly as sent.
    let store = PostgresStore::open(&url, PoolOptions::default()).expect("open");
    let key = CollectionKey::new("default", "vectors", "vectors", "failover");
    for &(n, _) in &acknowledged {
        let (record, stored) = store
            .get(&key, &format!("item-{n:06}"))
            .expect("read")
            .unwrap_or_else(|| panic!("item-{n:06} was answered 200 and is gone"));
        assert_eq!(stored, vector(n));
        assert_eq!(
            record.metadata.as_ref().and_then(|m| m.get("n")),
            Some(&json!(n))
        );
    }
    // And found through a gateway.
    let agent = agent_with_timeout(Duration::from_secs(30));
    for &(n, _) in acknowledged.iter().step_by(37) {
        let body = json!({"model": "vectors", "mode": "search", "scope": "failover",
            "input": {"vector": vector(n)}, "params": {"top_k": 1, "exact": true}});
        let (status, reply) = agent
            .post(&format!("{}/api/runs", bases[n % 2]))
            .header("X-API-Key", ENV_KEY)
            .header("Content-Type", "application/json")
            .send(body.to_string())
            .map(parse)
            .expect("search");
        assert_eq!(status, 200, "{reply}");
        assert_eq!(reply["output"]["results"][0]["id"], format!("item-{n:06}"));
    }
    drop(gateways);
}
