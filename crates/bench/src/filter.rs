//! `aimp bench filter`: filtered recall@k and queries per second across selectivities, for
//! filters uncorrelated with the vectors (a label drawn at random) and correlated with them
//! (the k-means cluster labels nearest the query), through the same `Store::search` the
//! server answers with: the planner (`ours`), exact filtered search (`exact`), and the plain
//! in-walk filter (`in_walk`); hnswlib's filter functor runs on the same files from
//! `filter_hnswlib.py` (see [`write_work_files`]).
//!
//! Every item carries two fields: `u`, uniform in 0..1000, and `c`, its cluster among
//! `clusters` k-means centres. A selectivity `s` keeps `u < 1000 s` (uncorrelated), or the
//! clusters whose centres lie nearest the query until they hold `s` of the items (correlated:
//! the query's own cluster first). Recall is measured against this module's own brute force
//! over the passing items.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use aimp_index::distance;
use aimp_store::{CollectionKey, CollectionParams, Filter, Metric, NewItem, SearchOptions, Store};
use rand::seq::index::sample;
use rand::{Rng, SeedableRng, rngs::StdRng};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::formats::Matrix;
use crate::machine::{self, Machine, Versions};

/// The engines `aimp bench filter` runs itself (hnswlib runs from Python on the same files).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FilterEngine {
    /// The planner: payload indexes, exact search over few matches, the walk otherwise.
    Ours,
    /// Exact filtered search: every matching item compared.
    Exact,
    /// The filter applied inside the graph walk, whatever the matches.
    InWalk,
}

impl FilterEngine {
    pub fn name(self) -> &'static str {
        match self {
            FilterEngine::Ours => "ours",
            FilterEngine::Exact => "exact",
            FilterEngine::InWalk => "in_walk",
        }
    }
}

impl std::str::FromStr for FilterEngine {
    type Err = String;
    fn from_str(s: &str) -> Result<FilterEngine, String> {
        match s {
            "ours" => Ok(FilterEngine::Ours),
            "exact" => Ok(FilterEngine::Exact),
            "in_walk" => Ok(FilterEngine::InWalk),
            other => Err(format!("unknown engine {other:?} (ours, exact, in_walk)")),
        }
    }
}

/// Whether a filter follows the vectors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Correlation {
    /// No filter at all: the plain search, for comparison.
    Unfiltered,
    Uncorrelated,
    Correlated,
}

impl Correlation {
    pub fn as_str(self) -> &'static str {
        match self {
            Correlation::Unfiltered => "unfiltered",
            Correlation::Uncorrelated => "uncorrelated",
            Correlation::Correlated => "correlated",
        }
    }
}

/// Which items one query's filter passes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Selector {
    /// Every item, with no filter.
    All,
    /// `u < below`.
    Below(u32),
    /// `c` is one of these clusters.
    Clusters(Vec<u32>),
}

impl Selector {
    pub fn passes(&self, labels: &Labels, item: usize) -> bool {
        match self {
            Selector::All => true,
            Selector::Below(t) => labels.uniform[item] < *t,
            Selector::Clusters(cs) => cs.contains(&labels.cluster[item]),
        }
    }

    /// `passes` for many items: a cluster selector looked up in a table of every cluster.
    pub fn mask<'a>(&'a self, labels: &'a Labels) -> impl Fn(usize) -> bool + 'a {
        let allowed: Vec<bool> = match self {
            Selector::All | Selector::Below(_) => Vec::new(),
            Selector::Clusters(cs) => {
                let mut a = vec![false; labels.centres.len()];
                for &c in cs {
                    if let Some(slot) = a.get_mut(c as usize) {
                        *slot = true;
                    }
                }
                a
            }
        };
        move |item| match self {
            Selector::All => true,
            Selector::Below(t) => labels.uniform[item] < *t,
            Selector::Clusters(_) => allowed[labels.cluster[item] as usize],
        }
    }

    /// The same selection as a `params.filter`; none for every item.
    pub fn filter(&self) -> Option<serde_json::Value> {
        match self {
            Selector::All => None,
            Selector::Below(t) => Some(json!({"must": [{"key": "u", "range": {"lt": t}}]})),
            Selector::Clusters(cs) => Some(json!({"must": [{"key": "c", "match": {"any": cs}}]})),
        }
    }
}

/// One filter case: a correlation and a selectivity, with each query's selector and its true
/// `k` nearest passing items (fewer when fewer pass).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Case {
    pub correlation: Correlation,
    pub selectivity: f64,
    pub selectors: Vec<Selector>,
    pub truth: Vec<Vec<u32>>,
    /// The mean share of the items each query's filter passes.
    pub matched: f64,
}

/// Each item's fields, and the cluster sizes the correlated filters are drawn from.
#[derive(Clone, Debug)]
pub struct Labels {
    pub uniform: Vec<u32>,
    pub cluster: Vec<u32>,
    pub centres: Vec<Vec<f32>>,
    pub sizes: Vec<usize>,
}

/// Draws `u` and clusters `base` into `clusters` groups with a few rounds of Lloyd's k-means
/// (seeded centres drawn from the base, L2), all cores.
pub fn labels(base: &Matrix<f32>, clusters: usize, seed: u64) -> Labels {
    let mut rng = StdRng::seed_from_u64(seed);
    let uniform: Vec<u32> = (0..base.rows).map(|_| rng.random_range(0..1000)).collect();
    let clusters = clusters.clamp(1, base.rows);
    let mut centres: Vec<Vec<f32>> = sample(&mut rng, base.rows, clusters)
        .iter()
        .map(|i| base.row(i).to_vec())
        .collect();
    let mut cluster = vec![0u32; base.rows];
    for _ in 0..8 {
        cluster = (0..base.rows)
            .into_par_iter()
            .map(|i| nearest(&centres, base.row(i)) as u32)
            .collect();
        let mut sums = vec![vec![0f64; base.dim]; clusters];
        let mut counts = vec![0usize; clusters];
        for (i, &c) in cluster.iter().enumerate() {
            counts[c as usize] += 1;
            for (s, x) in sums[c as usize].iter_mut().zip(base.row(i)) {
                *s += f64::from(*x);
            }
        }
        for (c, centre) in centres.iter_mut().enumerate() {
            // An empty cluster keeps its centre.
            if counts[c] > 0 {
                for (x, s) in centre.iter_mut().zip(&sums[c]) {
                    *x = (s / counts[c] as f64) as f32;
                }
            }
        }
    }
    let mut sizes = vec![0usize; clusters];
    for &c in &cluster {
        sizes[c as usize] += 1;
    }
    Labels {
        uniform,
        cluster,
        centres,
        sizes,
    }
}

fn nearest(centres: &[Vec<f32>], v: &[f32]) -> usize {
    let mut best = (f32::INFINITY, 0);
    for (c, centre) in centres.iter().enumerate() {
        let d = distance::distance(Metric::L2, centre, v);
        if d < best.0 {
            best = (d, c);
        }
    }
    best.1
}

/// The selector of `query` at `selectivity`.
pub fn selector(
    labels: &Labels,
    n: usize,
    query: &[f32],
    correlation: Correlation,
    selectivity: f64,
) -> Selector {
    match correlation {
        Correlation::Unfiltered => Selector::All,
        Correlation::Uncorrelated => {
            Selector::Below(((selectivity * 1000.0).round() as u32).max(1))
        }
        Correlation::Correlated => {
            let mut order: Vec<(f32, u32)> = labels
                .centres
                .iter()
                .enumerate()
                .map(|(c, centre)| (distance::distance(Metric::L2, centre, query), c as u32))
                .collect();
            order.sort_by(|a, b| a.0.total_cmp(&b.0));
            let want = ((selectivity * n as f64).round() as usize).max(1);
            let mut picked = Vec::new();
            let mut held = 0;
            for (_, c) in order {
                if held >= want {
                    break;
                }
                if labels.sizes[c as usize] > 0 {
                    held += labels.sizes[c as usize];
                    picked.push(c);
                }
            }
            picked.sort_unstable();
            Selector::Clusters(picked)
        }
    }
}

/// Every case's selectors and exact answers (the unfiltered case first, then each
/// correlation at each selectivity): one pass over the base per query (all cores), the `k`
/// nearest passing items of each case taken from it.
pub fn cases(
    base: &Matrix<f32>,
    queries: &Matrix<f32>,
    labels: &Labels,
    selectivities: &[f64],
    k: usize,
    metric: Metric,
) -> Vec<Case> {
    let mut cases = Vec::new();
    let every = [
        (Correlation::Unfiltered, &[1.0][..]),
        (Correlation::Uncorrelated, selectivities),
        (Correlation::Correlated, selectivities),
    ];
    for (correlation, shares) in every {
        for &s in shares {
            let selectors: Vec<Selector> = (0..queries.rows)
                .map(|q| selector(labels, base.rows, queries.row(q), correlation, s))
                .collect();
            cases.push(Case {
                correlation,
                selectivity: s,
                selectors,
                truth: Vec::new(),
                matched: 0.0,
            });
        }
    }
    let base_prepared: Vec<Vec<f32>> = (0..base.rows)
        .into_par_iter()
        .map(|i| metric.prepare(base.row(i)))
        .collect();
    let per_query: Vec<Vec<(Vec<u32>, usize)>> = (0..queries.rows)
        .into_par_iter()
        .map(|q| {
            let query = metric.prepare(queries.row(q));
            let d: Vec<f32> = base_prepared
                .iter()
                .map(|v| distance::distance(metric, &query, v))
                .collect();
            cases
                .iter()
                .map(|case| {
                    let pass = case.selectors[q].mask(labels);
                    let mut passing: Vec<(f32, u32)> = (0..base.rows)
                        .filter(|&i| pass(i))
                        .map(|i| (d[i], i as u32))
                        .collect();
                    let matched = passing.len();
                    let kk = k.min(passing.len());
                    if kk > 0 && kk < passing.len() {
                        passing.select_nth_unstable_by(kk - 1, |a, b| a.0.total_cmp(&b.0));
                        passing.truncate(kk);
                    }
                    passing.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                    (passing.into_iter().map(|(_, i)| i).collect(), matched)
                })
                .collect()
        })
        .collect();
    for (c, case) in cases.iter_mut().enumerate() {
        let mut matched = 0usize;
        for answers in &per_query {
            case.truth.push(answers[c].0.clone());
            matched += answers[c].1;
        }
        case.matched = matched as f64 / (queries.rows.max(1) * base.rows.max(1)) as f64;
    }
    cases
}

/// Stores `base` with its fields in a collection of `index` at the server's default settings
/// (item `i` is id `i`), in batches of 1,000 upserts; the seconds it took.
pub fn fill(
    index: &dyn Store,
    key: &CollectionKey,
    base: &Matrix<f32>,
    labels: &Labels,
    metric: Metric,
    progress: &dyn Fn(usize),
) -> Result<f64, String> {
    let params = CollectionParams::new(base.dim, metric);
    let started = Instant::now();
    for start in (0..base.rows).step_by(1000) {
        let end = (start + 1000).min(base.rows);
        let items = (start..end)
            .map(|i| NewItem {
                id: i.to_string(),
                vector: base.row(i).to_vec(),
                filename: None,
                media_ref: None,
                system: None,
                metadata: Some(json!({"u": labels.uniform[i], "c": labels.cluster[i]})),
            })
            .collect();
        index
            .upsert(key, params, items)
            .map_err(|e| e.to_string())?;
        progress(end);
    }
    Ok(started.elapsed().as_secs_f64())
}

/// One engine at one setting on one case.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FilterRecord {
    pub engine: String,
    pub correlation: Correlation,
    pub selectivity: f64,
    /// The mean share of items the filters passed.
    pub matched: f64,
    /// `None`: the engine's default.
    pub ef: Option<usize>,
    pub queries: usize,
    pub k: usize,
    pub recall: f64,
    /// The median of `qps_rounds`.
    pub qps_single: f64,
    /// Queries/s in each round, in the order they ran.
    #[serde(default)]
    pub qps_rounds: Vec<f64>,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// The share of answers that compared every match (`exhaustive`).
    pub exhaustive: f64,
    pub n: usize,
    pub dim: usize,
    pub simd: String,
    pub machine: Option<Machine>,
    pub versions: Option<Versions>,
}

/// What `measure` runs.
#[derive(Clone, Debug)]
pub struct FilterConfig {
    pub k: usize,
    pub efs: Vec<usize>,
    pub engines: Vec<FilterEngine>,
    /// How many times each case's runs are repeated (alternating their order).
    pub rounds: usize,
}

/// Runs every engine over every case on one thread, queries in order: `ours` at its default
/// `ef` and each of `efs`, `in_walk` at each of `efs`, `exact` once. With `rounds` above one,
/// each case's runs are repeated that many times, in an order rotated by one each round (so
/// no engine always runs first, or right after a slow one); a record's queries/s is the
/// median of its rounds and its latencies are the rounds' together.
pub fn measure(
    index: &dyn Store,
    key: &CollectionKey,
    queries: &Matrix<f32>,
    cases: &[Case],
    config: &FilterConfig,
    stop: &AtomicBool,
    progress: &dyn Fn(&str),
) -> Result<Vec<FilterRecord>, String> {
    let count = index
        .record(key)
        .map_err(|e| e.to_string())?
        .map_or(0, |r| r.count) as usize;
    let runs: Vec<(FilterEngine, Option<usize>)> = config
        .engines
        .iter()
        .flat_map(|&engine| {
            let settings: Vec<Option<usize>> = match engine {
                FilterEngine::Ours => std::iter::once(None)
                    .chain(config.efs.iter().copied().map(Some))
                    .collect(),
                FilterEngine::InWalk => config.efs.iter().copied().map(Some).collect(),
                FilterEngine::Exact => vec![None],
            };
            settings.into_iter().map(move |ef| (engine, ef))
        })
        .collect();
    let rounds = config.rounds.max(1);
    let mut records = Vec::new();
    for case in cases {
        let filters: Vec<Option<Arc<Filter>>> = case
            .selectors
            .iter()
            .map(|s| {
                s.filter()
                    .map(|f| Filter::parse(&f).map(Arc::new))
                    .transpose()
            })
            .collect::<Result<_, _>>()
            .map_err(|e| format!("filter {}: {}", e.path, e.reason))?;
        let mut timed: Vec<Timed> = vec![Timed::default(); runs.len()];
        for round in 0..rounds {
            for turn in 0..runs.len() {
                let r = (turn + round) % runs.len();
                let (engine, ef) = runs[r];
                if stop.load(Ordering::Relaxed) {
                    return Ok(records);
                }
                progress(&format!(
                    "round {}/{rounds}: {} {:?} {} % ef {}",
                    round + 1,
                    engine.name(),
                    case.correlation,
                    case.selectivity * 100.0,
                    ef.map_or("default".into(), |e| e.to_string())
                ));
                let options = |f: &Option<Arc<Filter>>| SearchOptions {
                    top_k: config.k,
                    ef,
                    exact: engine == FilterEngine::Exact,
                    precision: None,
                    filter: f.clone(),
                    walk: engine == FilterEngine::InWalk,
                };
                let t = &mut timed[r];
                t.found.clear();
                t.exhaustive = 0;
                let started = Instant::now();
                for (q, f) in filters.iter().enumerate() {
                    let at = Instant::now();
                    let out = index
                        .search(key, queries.row(q), options(f))
                        .map_err(|e| e.to_string())?;
                    t.latencies.push(at.elapsed().as_secs_f64() * 1000.0);
                    t.exhaustive += usize::from(out.exhaustive());
                    t.found.push(
                        out.hits
                            .iter()
                            .filter_map(|h| h.item.id.parse::<u32>().ok())
                            .collect::<Vec<u32>>(),
                    );
                }
                t.qps
                    .push(queries.rows as f64 / started.elapsed().as_secs_f64());
            }
        }
        for (&(engine, ef), mut t) in runs.iter().zip(timed) {
            records.push(FilterRecord {
                engine: engine.name().into(),
                correlation: case.correlation,
                selectivity: case.selectivity,
                matched: case.matched,
                ef,
                queries: queries.rows,
                k: config.k,
                recall: recall(&t.found, &case.truth),
                qps_single: percentile(&mut t.qps.clone(), 0.5),
                qps_rounds: t.qps,
                p50_ms: percentile(&mut t.latencies, 0.50),
                p99_ms: percentile(&mut t.latencies, 0.99),
                exhaustive: t.exhaustive as f64 / queries.rows.max(1) as f64,
                n: count,
                dim: queries.dim,
                simd: machine::simd_path().into(),
                machine: Some(Machine::detect()),
                versions: Some(Versions::current()),
            });
        }
    }
    Ok(records)
}

/// One engine's setting on one case, over its rounds: the answers of the last round (each
/// round gives the same), its queries/s per round and every latency.
#[derive(Clone, Default)]
struct Timed {
    found: Vec<Vec<u32>>,
    exhaustive: usize,
    qps: Vec<f64>,
    latencies: Vec<f64>,
}

/// `queries` of `0..n` drawn with `seed` (in drawn order), and the rest ascending.
pub fn hold_out(n: usize, queries: usize, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let held: Vec<usize> = sample(&mut rng, n, queries.min(n)).into_vec();
    let mut taken = vec![false; n];
    for &i in &held {
        taken[i] = true;
    }
    let rest = (0..n).filter(|&i| !taken[i]).collect();
    (held, rest)
}

/// The fastest setting of `engine` on a case that reaches `recall`.
pub fn cheapest_at<'a>(
    records: &'a [FilterRecord],
    engine: &str,
    correlation: Correlation,
    selectivity: f64,
    recall: f64,
) -> Option<&'a FilterRecord> {
    records
        .iter()
        .filter(|r| {
            r.engine == engine
                && r.correlation == correlation
                && r.selectivity == selectivity
                && r.recall >= recall
        })
        .max_by(|a, b| a.qps_single.total_cmp(&b.qps_single))
}

/// The share of the true answers found (a query with fewer than `k` matches counts those).
pub fn recall(found: &[Vec<u32>], truth: &[Vec<u32>]) -> f64 {
    let (mut hit, mut wanted) = (0usize, 0usize);
    for (f, t) in found.iter().zip(truth) {
        wanted += t.len();
        hit += t.iter().filter(|i| f.contains(i)).count();
    }
    if wanted == 0 {
        1.0
    } else {
        hit as f64 / wanted as f64
    }
}

fn percentile(ms: &mut [f64], p: f64) -> f64 {
    if ms.is_empty() {
        return 0.0;
    }
    ms.sort_by(f64::total_cmp);
    ms[((ms.len() - 1) as f64 * p).round() as usize]
}

/// The hnswlib reference script, written beside the files it reads.
pub const HNSWLIB_SCRIPT: &str = include_str!("../../../benches/reference/filter_hnswlib.py");

/// Writes what `filter_hnswlib.py` reads into `dir`: base.npy and query.npy (prepared for the
/// metric), uniform.npy and cluster.npy (int32 labels), cases.json (each case's selectors and
/// truth), and the script itself.
pub fn write_work_files(
    dir: &Path,
    base: &Matrix<f32>,
    queries: &Matrix<f32>,
    labels: &Labels,
    cases: &[Case],
    metric: Metric,
) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let prepared = |m: &Matrix<f32>| {
        let mut data = Vec::with_capacity(m.rows * m.dim);
        for i in 0..m.rows {
            data.extend(metric.prepare(m.row(i)));
        }
        Matrix::new(m.rows, m.dim, data)
    };
    let ints = |v: &[u32]| Matrix::new(v.len(), 1, v.iter().map(|&x| x as i32).collect());
    let write_err = |e: crate::formats::FormatError| e.to_string();
    crate::formats::write_npy_f32(&dir.join("base.npy"), &prepared(base)).map_err(write_err)?;
    crate::formats::write_npy_f32(&dir.join("query.npy"), &prepared(queries)).map_err(write_err)?;
    crate::formats::write_npy_i32(&dir.join("uniform.npy"), &ints(&labels.uniform))
        .map_err(write_err)?;
    crate::formats::write_npy_i32(&dir.join("cluster.npy"), &ints(&labels.cluster))
        .map_err(write_err)?;
    let json = serde_json::to_string(cases).map_err(|e| e.to_string())?;
    let write = |name: &str, body: &str| {
        std::fs::write(dir.join(name), body)
            .map_err(|e| format!("writing {}: {e}", dir.join(name).display()))
    };
    write("cases.json", &json)?;
    write("filter_hnswlib.py", HNSWLIB_SCRIPT)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid(n: usize, dim: usize, seed: u64) -> Matrix<f32> {
        let mut rng = StdRng::seed_from_u64(seed);
        let data = (0..n * dim)
            .map(|_| rng.random_range(-1.0f32..1.0))
            .collect();
        Matrix::new(n, dim, data)
    }

    #[test]
    fn selectors_pass_the_share_asked_for() {
        let base = grid(4000, 8, 1);
        let labels = labels(&base, 40, 2);
        assert_eq!(labels.sizes.iter().sum::<usize>(), 4000);
        let q = base.row(7).to_vec();
        for s in [0.01, 0.1, 0.5, 0.9] {
            let sel = selector(&labels, base.rows, &q, Correlation::Uncorrelated, s);
            let passed = (0..base.rows).filter(|&i| sel.passes(&labels, i)).count();
            let share = passed as f64 / base.rows as f64;
            assert!((share - s).abs() < 0.03, "uncorrelated {s}: {share}");
            let sel = selector(&labels, base.rows, &q, Correlation::Correlated, s);
            let passed = (0..base.rows).filter(|&i| sel.passes(&labels, i)).count();
            assert!(passed >= (s * 4000.0) as usize, "correlated {s}: {passed}");
            // The query's own cluster comes first.
            let Selector::Clusters(cs) = &sel else {
                panic!("correlated selectors name clusters")
            };
            assert!(cs.contains(&labels.cluster[7]), "own cluster in {cs:?}");
        }
    }

    #[test]
    fn truth_is_the_nearest_passing_items_and_the_filter_says_the_same() {
        let base = grid(1500, 6, 3);
        let queries = grid(5, 6, 4);
        let labels = labels(&base, 15, 5);
        let cases = cases(&base, &queries, &labels, &[0.02, 0.5], 10, Metric::L2);
        assert_eq!(cases.len(), 5);
        assert_eq!(cases[0].correlation, Correlation::Unfiltered);
        assert!(cases[0].selectors.iter().all(|s| s.filter().is_none()));
        assert_eq!(cases[0].matched, 1.0);
        for case in &cases[1..] {
            for (q, sel) in case.selectors.iter().enumerate() {
                let mut all: Vec<(f32, u32)> = (0..base.rows)
                    .filter(|&i| sel.passes(&labels, i))
                    .map(|i| {
                        (
                            distance::distance(Metric::L2, queries.row(q), base.row(i)),
                            i as u32,
                        )
                    })
                    .collect();
                all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                let want: Vec<u32> = all.iter().take(10).map(|p| p.1).collect();
                assert_eq!(case.truth[q], want);
                let filter = Filter::parse(&sel.filter().expect("a filter")).expect("filter");
                for i in [0usize, 17, 300, 1499] {
                    let item: aimp_store::ItemRecord = serde_json::from_value(json!({
                        "id": i.to_string(),
                        "user": {"u": labels.uniform[i], "c": labels.cluster[i]},
                        "created_at": "2026-12-02T00:00:00Z",
                        "updated_at": "2026-12-02T00:00:00Z",
                    }))
                    .expect("item");
                    assert_eq!(
                        filter.matches(&item),
                        sel.passes(&labels, i),
                        "item {i} under {sel:?}"
                    );
                }
            }
        }
        assert_eq!(recall(&cases[0].truth, &cases[0].truth), 1.0);
    }
}
