//! The benchmark itself: build each engine, sweep `ef`, and measure recall@k, single-thread
//! and all-thread queries per second, latency percentiles, build time and memory.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use aimp_index::baseline::HnswRs;
use aimp_index::{Hnsw, HnswParams, Metric, dataset};
use rayon::prelude::*;
use serde::Serialize;

use crate::formats::Matrix;
use crate::machine::{self, Machine, Versions};
use crate::truth;

/// The engines `aimp bench ann` compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Engine {
    /// Our HNSW (`aimp_index::Hnsw`).
    Ours,
    /// hnsw_rs with the same M / ef_construction.
    HnswRs,
    /// Brute force: every vector compared (recall 1 by construction).
    Exact,
}

impl std::str::FromStr for Engine {
    type Err = String;
    fn from_str(s: &str) -> Result<Engine, String> {
        match s {
            "ours" => Ok(Engine::Ours),
            "hnsw_rs" => Ok(Engine::HnswRs),
            "exact" => Ok(Engine::Exact),
            other => Err(format!("unknown engine {other:?} (ours, hnsw_rs, exact)")),
        }
    }
}

impl Engine {
    pub fn name(self) -> &'static str {
        match self {
            Engine::Ours => "ours",
            Engine::HnswRs => "hnsw_rs",
            Engine::Exact => "exact",
        }
    }
}

/// What to measure.
#[derive(Clone, Debug)]
pub struct Config {
    pub dataset: String,
    pub metric: Metric,
    pub k: usize,
    pub m: usize,
    pub ef_construction: usize,
    pub efs: Vec<usize>,
    pub threads: usize,
    pub engines: Vec<Engine>,
}

/// One engine at one setting: a line of the results file.
#[derive(Clone, Debug, Serialize)]
pub struct Record {
    pub engine: &'static str,
    /// `null` for exact search.
    pub ef: Option<usize>,
    pub recall: f64,
    pub qps_single: f64,
    pub qps_threads: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub build_s: f64,
    pub bytes_per_vector: Option<f64>,
    pub peak_rss_bytes: Option<u64>,
    pub dataset: String,
    pub n: usize,
    pub dim: usize,
    pub queries: usize,
    pub k: usize,
    pub m: usize,
    pub ef_construction: usize,
    pub metric: &'static str,
    pub threads: usize,
    pub machine: Machine,
    pub versions: Versions,
}

/// What the runner reports while it works.
#[derive(Debug)]
pub enum Progress<'a> {
    Building {
        engine: &'a str,
    },
    Searching {
        engine: &'a str,
        ef: Option<usize>,
        done: usize,
        total: usize,
    },
}

/// A built engine, ready to answer.
enum Built {
    Ours(Hnsw),
    HnswRs(HnswRs),
    Exact,
}

impl Built {
    fn search(
        &self,
        base: &Matrix<f32>,
        q: &[f32],
        k: usize,
        ef: usize,
        metric: Metric,
    ) -> Vec<u32> {
        match self {
            Built::Ours(g) => g
                .search(q, k, ef, None)
                .into_iter()
                .map(|n| n.key as u32)
                .collect(),
            Built::HnswRs(h) => h.search(q, k, ef),
            Built::Exact => dataset::brute_force(&base.data, q, base.dim, k, metric)
                .pop()
                .unwrap_or_default()
                .into_iter()
                .map(|n| n.key as u32)
                .collect(),
        }
    }
}

/// Runs every engine of `config` on the set; stops early (with what it has) once `stop` is
/// set, e.g. by Ctrl-C.
pub fn run(
    base: &Matrix<f32>,
    queries: &Matrix<f32>,
    gt: &Matrix<i32>,
    config: &Config,
    stop: &AtomicBool,
    progress: &(dyn Fn(Progress<'_>) + Sync),
) -> Result<Vec<Record>, String> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(config.threads.max(1))
        .build()
        .map_err(|e| format!("cannot start {} threads: {e}", config.threads))?;
    let machine = Machine::detect();
    let versions = Versions::current();
    let mut records = Vec::new();
    for &engine in &config.engines {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        progress(Progress::Building {
            engine: engine.name(),
        });
        let before = machine::resident_bytes();
        let started = Instant::now();
        let built = pool.install(|| match engine {
            Engine::Ours => {
                let mut params = HnswParams::new(base.dim, config.metric);
                params.m = config.m;
                params.ef_construction = config.ef_construction;
                let g = Hnsw::new(params);
                let items: Vec<(u64, &[f32])> =
                    (0..base.rows).map(|i| (i as u64, base.row(i))).collect();
                g.insert(&items);
                Built::Ours(g)
            }
            Engine::HnswRs => Built::HnswRs(HnswRs::build(
                &base.data,
                base.dim,
                config.metric,
                config.m,
                config.ef_construction,
            )),
            Engine::Exact => Built::Exact,
        });
        let build_s = started.elapsed().as_secs_f64();
        let bytes_per_vector = match (engine, before, machine::resident_bytes()) {
            (Engine::Exact, _, _) => Some(0.0),
            (_, Some(b), Some(a)) => Some(a.saturating_sub(b) as f64 / base.rows.max(1) as f64),
            _ => None,
        };
        let efs: Vec<Option<usize>> = match engine {
            Engine::Exact => vec![None],
            _ => config.efs.iter().map(|&e| Some(e)).collect(),
        };
        for ef in efs {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let ef_value = ef.unwrap_or(config.k).max(config.k);
            // Single thread: each query timed on its own.
            let mut latencies = Vec::with_capacity(queries.rows);
            let mut found = Vec::with_capacity(queries.rows);
            for i in 0..queries.rows {
                if stop.load(Ordering::Relaxed) {
                    return Ok(records);
                }
                let t = Instant::now();
                let answer = built.search(base, queries.row(i), config.k, ef_value, config.metric);
                latencies.push(t.elapsed().as_secs_f64());
                found.push(answer);
                if i % 64 == 63 || i + 1 == queries.rows {
                    progress(Progress::Searching {
                        engine: engine.name(),
                        ef,
                        done: i + 1,
                        total: queries.rows,
                    });
                }
            }
            // Every thread of the pool, all queries at once.
            let t = Instant::now();
            pool.install(|| {
                (0..queries.rows).into_par_iter().for_each(|i| {
                    std::hint::black_box(built.search(
                        base,
                        queries.row(i),
                        config.k,
                        ef_value,
                        config.metric,
                    ));
                })
            });
            let threads_s = t.elapsed().as_secs_f64();
            let total: f64 = latencies.iter().sum();
            latencies.sort_by(f64::total_cmp);
            records.push(Record {
                engine: engine.name(),
                ef,
                recall: truth::recall(&found, gt, config.k),
                qps_single: queries.rows as f64 / total.max(1e-12),
                qps_threads: queries.rows as f64 / threads_s.max(1e-12),
                p50_ms: percentile(&latencies, 0.50) * 1e3,
                p95_ms: percentile(&latencies, 0.95) * 1e3,
                p99_ms: percentile(&latencies, 0.99) * 1e3,
                build_s,
                bytes_per_vector,
                peak_rss_bytes: machine::peak_resident_bytes(),
                dataset: config.dataset.clone(),
                n: base.rows,
                dim: base.dim,
                queries: queries.rows,
                k: config.k,
                m: config.m,
                ef_construction: config.ef_construction,
                metric: config.metric.as_str(),
                threads: config.threads,
                machine: machine.clone(),
                versions: versions.clone(),
            });
        }
    }
    Ok(records)
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synthetic::{Kind, generate};

    #[test]
    fn percentiles_by_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), 50.0);
        assert_eq!(percentile(&v, 0.99), 99.0);
        assert_eq!(percentile(&[3.0], 0.95), 3.0);
    }

    #[test]
    fn every_engine_on_a_small_set() {
        let (base, queries) = generate(Kind::Clustered, 2000, 50, 16, 1);
        // Ground truth from a naive f64 scan, not from the brute force the `exact` engine
        // runs, so that engine's recall is measured, not assumed.
        let mut ids = Vec::new();
        for q in queries.data.chunks_exact(queries.dim) {
            let mut all: Vec<(f64, i32)> = base
                .data
                .chunks_exact(base.dim)
                .enumerate()
                .map(|(i, v)| {
                    let d: f64 = q
                        .iter()
                        .zip(v)
                        .map(|(a, b)| (f64::from(*a) - f64::from(*b)).powi(2))
                        .sum();
                    (d, i as i32)
                })
                .collect();
            all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            ids.extend(all.iter().take(10).map(|(_, i)| *i));
        }
        let gt = crate::formats::Matrix::new(queries.rows, 10, ids);
        let config = Config {
            dataset: "test".into(),
            metric: Metric::L2,
            k: 10,
            m: 8,
            ef_construction: 64,
            efs: vec![16, 64],
            threads: 2,
            engines: vec![Engine::Ours, Engine::HnswRs, Engine::Exact],
        };
        let stop = AtomicBool::new(false);
        let records = run(&base, &queries, &gt, &config, &stop, &|_| {}).expect("run");
        assert_eq!(records.len(), 5);
        let exact = records.iter().find(|r| r.engine == "exact").expect("exact");
        // At most one neighbour in 500 may differ, by a tie that f32 and f64 order apart.
        assert!(exact.recall >= 0.998, "{exact:?}");
        assert_eq!(exact.ef, None);
        for r in &records {
            assert!(
                r.recall > 0.5 && r.qps_single > 0.0 && r.p50_ms <= r.p99_ms,
                "{r:?}"
            );
        }
        // Stopped before it starts: nothing measured, no error.
        stop.store(true, Ordering::Relaxed);
        assert!(
            run(&base, &queries, &gt, &config, &stop, &|_| {})
                .expect("run")
                .is_empty()
        );
    }
}
