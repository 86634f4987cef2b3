//! `aimp bench filter` and `aimp bench embed`: filtered recall and speed across selectivities
//! (ours, exact, the plain in-walk filter, hnswlib), and a text corpus embedded with an
//! installed model into the vector files those benchmarks read.

use std::path::PathBuf;
use std::sync::atomic::Ordering;

use anyhow::{Context, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use aimp_bench::filter::{self, FilterConfig, FilterEngine, FilterRecord};
use aimp_bench::filter_plot;
use aimp_bench::formats::{self, Matrix};
use aimp_store::{CollectionKey, Metric};
use aimp_store_embedded::{DEFAULT_CACHE_BYTES, EmbeddedStore};

use crate::settings::{EncoderSettings, ModelSettings};

#[derive(Args, Debug)]
pub struct FilterArgs {
    /// Base vectors (.fvecs, .bvecs or .npy).
    #[arg(long)]
    pub base: PathBuf,
    /// Query vectors (.fvecs, .bvecs or .npy).
    #[arg(long)]
    pub query: PathBuf,
    /// Use only the first this many queries.
    #[arg(long, default_value_t = 500)]
    pub queries: usize,
    #[arg(long, default_value = "l2")]
    pub metric: Metric,
    #[arg(long, default_value_t = 10)]
    pub k: usize,
    /// Shares of the items the filters pass, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "0.001,0.01,0.1,0.5,0.9")]
    pub selectivity: Vec<f64>,
    /// k-means clusters the correlated filters are made of (default: one per 100 items).
    #[arg(long)]
    pub clusters: Option<usize>,
    /// Search breadths swept for ours, the in-walk filter and hnswlib (ours also runs at
    /// the collection's default).
    #[arg(long, value_delimiter = ',', default_value = "16,32,64,128,256")]
    pub ef: Vec<usize>,
    /// Engines, comma-separated: ours, exact, in_walk.
    #[arg(long, value_delimiter = ',', default_value = "ours,exact,in_walk")]
    pub engines: Vec<FilterEngine>,
    /// Repeat each case's runs this many times, rotating their order each round; queries/s
    /// is the median of the rounds.
    #[arg(long, default_value_t = 1)]
    pub rounds: usize,
    /// Run hnswlib's filter functor too, with this Python (one with numpy and hnswlib).
    #[arg(long)]
    pub hnswlib: Option<PathBuf>,
    /// Run pgvector too: the same items stored through the PostgreSQL store into this
    /// database (`postgres://…`, pgvector's HNSW at the same M and ef_construction), searched
    /// through it at each `ef` (iterative index scans for the filters).
    #[arg(long)]
    pub pgvector: Option<String>,
    /// Where the store, the label files and the hnswlib run go (default: a temporary folder).
    #[arg(long)]
    pub work: Option<PathBuf>,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Where the results go: a JSON array, one record per engine, case and setting.
    #[arg(long)]
    pub out: PathBuf,
    /// Draw queries/s at recall ≥ 0.95 and recall at the default setting against
    /// selectivity here (SVG), and beside it as PNG.
    #[arg(long)]
    pub plot: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct EmbedArgs {
    /// The installed model whose text encoder embeds the corpus.
    #[arg(long, default_value = "demo-model")]
    pub model: String,
    /// One text a line (empty lines skipped).
    #[arg(long)]
    pub texts: PathBuf,
    /// Texts drawn out of the corpus (seeded) to be the queries.
    #[arg(long, default_value_t = 1000)]
    pub queries: usize,
    /// Embed only the first this many texts.
    #[arg(long)]
    pub limit: Option<usize>,
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Folder for base.fvecs and query.fvecs.
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub models: ModelSettings,
    #[command(flatten)]
    pub encoders: EncoderSettings,
}

pub fn filter(args: &FilterArgs) -> anyhow::Result<()> {
    if args.k == 0 || args.queries == 0 || args.rounds == 0 || args.ef.contains(&0) {
        bail!("--k, --queries, --rounds and every --ef must be at least 1");
    }
    if let Some(s) = args.selectivity.iter().find(|s| !(**s > 0.0 && **s <= 1.0)) {
        bail!("--selectivity {s}: every share must be above 0 and at most 1");
    }
    let base = formats::read_vectors(&args.base)?;
    let mut queries = formats::read_vectors(&args.query)?;
    if base.dim != queries.dim {
        bail!(
            "{} has dimension {}, {} has {}",
            args.base.display(),
            base.dim,
            args.query.display(),
            queries.dim
        );
    }
    if queries.rows > args.queries {
        queries = Matrix::new(
            args.queries,
            queries.dim,
            queries.data[..args.queries * queries.dim].to_vec(),
        );
    }
    let (work, remove_after) = match &args.work {
        Some(w) => (w.clone(), false),
        None => (
            std::env::temp_dir().join(format!("aimp-bench-filter-{}", std::process::id())),
            true,
        ),
    };
    let clusters = args.clusters.unwrap_or((base.rows / 100).max(1));
    let spinner = ProgressBar::new_spinner();
    spinner.enable_steady_tick(std::time::Duration::from_millis(200));
    spinner.set_message(format!("k-means, {clusters} clusters"));
    let labels = filter::labels(&base, clusters, args.seed);
    spinner.set_message("exact filtered answers (all cores)");
    let cases = filter::cases(
        &base,
        &queries,
        &labels,
        &args.selectivity,
        args.k,
        args.metric,
    );
    let store_dir = work.join("store");
    if store_dir.exists() {
        std::fs::remove_dir_all(&store_dir)
            .with_context(|| format!("clearing {}", store_dir.display()))?;
    }
    let index = EmbeddedStore::open(&store_dir, DEFAULT_CACHE_BYTES)?;
    let key = CollectionKey::new("bench", "vectors", "filter", "bench");
    let n = base.rows;
    let fill_s = filter::fill(&index, &key, &base, &labels, args.metric, &|done| {
        spinner.set_message(format!("storing {done} / {n} items with their fields"));
    })
    .map_err(anyhow::Error::msg)?;
    spinner.finish_and_clear();
    eprintln!("stored {n} items in {fill_s:.1} s");
    let stop = super::bench::stop_on_ctrl_c()?;
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    let config = FilterConfig {
        k: args.k,
        efs: args.ef.clone(),
        engines: args.engines.clone(),
        rounds: args.rounds,
    };
    let mut records = filter::measure(&index, &key, &queries, &cases, &config, &stop, &|m| {
        bar.set_message(m.to_string())
    })
    .map_err(anyhow::Error::msg)?;
    bar.finish_and_clear();
    if let Some(url) = &args.pgvector
        && !stop.load(Ordering::Relaxed)
    {
        records.extend(pgvector(
            url, &key, &base, &queries, &labels, &cases, args, &stop,
        )?);
    }
    if let Some(python) = &args.hnswlib
        && !stop.load(Ordering::Relaxed)
    {
        records.extend(hnswlib(
            python, &work, &base, &queries, &labels, &cases, args,
        )?);
    }
    std::fs::write(&args.out, serde_json::to_string_pretty(&records)?)
        .with_context(|| format!("writing {}", args.out.display()))?;
    if let Some(svg) = &args.plot {
        let title = format!(
            "{} ({} x {}, {}, k={})",
            super::bench::file_name(&args.base),
            base.rows,
            base.dim,
            args.metric.as_str(),
            args.k
        );
        filter_plot::draw(svg, &records, &title).map_err(anyhow::Error::msg)?;
        filter_plot::draw(&svg.with_extension("png"), &records, &title)
            .map_err(anyhow::Error::msg)?;
    }
    if remove_after {
        drop(index);
        let _ = std::fs::remove_dir_all(&work);
    }
    print_table(&records);
    println!(
        "SIMD path: {}; results: {}",
        aimp_bench::machine::simd_path(),
        args.out.display()
    );
    Ok(())
}

/// The same items stored through the PostgreSQL store at `url` (emptied of this bench's
/// collection first), then every case searched through it at each `ef`, one query at a time.
#[allow(clippy::too_many_arguments)]
fn pgvector(
    url: &str,
    key: &CollectionKey,
    base: &Matrix<f32>,
    queries: &Matrix<f32>,
    labels: &filter::Labels,
    cases: &[filter::Case],
    args: &FilterArgs,
    stop: &std::sync::atomic::AtomicBool,
) -> anyhow::Result<Vec<FilterRecord>> {
    use aimp_store::Store;
    let store =
        aimp_store_postgres::PostgresStore::open(url, aimp_store_postgres::PoolOptions::default())
            .context("--pgvector")?;
    store.drop_collection(key)?;
    let spinner = ProgressBar::new_spinner();
    spinner.enable_steady_tick(std::time::Duration::from_millis(200));
    let n = base.rows;
    let fill_s = filter::fill(&store, key, base, labels, args.metric, &|done| {
        spinner.set_message(format!("pgvector: storing {done} / {n} items"));
    })
    .map_err(anyhow::Error::msg)?;
    spinner.finish_and_clear();
    eprintln!("pgvector: stored {n} items in {fill_s:.1} s (its HNSW index built as they went in)");
    let config = FilterConfig {
        k: args.k,
        efs: args.ef.clone(),
        engines: vec![FilterEngine::Ours],
        rounds: args.rounds,
    };
    let bar = ProgressBar::new_spinner();
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    let mut records = filter::measure(&store, key, queries, cases, &config, stop, &|m| {
        bar.set_message(format!("pgvector: {m}"))
    })
    .map_err(anyhow::Error::msg)?;
    bar.finish_and_clear();
    for r in &mut records {
        r.engine = "pgvector".into();
        r.simd = "pgvector (PostgreSQL server)".into();
    }
    Ok(records)
}

fn hnswlib(
    python: &std::path::Path,
    work: &std::path::Path,
    base: &Matrix<f32>,
    queries: &Matrix<f32>,
    labels: &filter::Labels,
    cases: &[filter::Case],
    args: &FilterArgs,
) -> anyhow::Result<Vec<FilterRecord>> {
    let dir = work.join("hnswlib");
    filter::write_work_files(&dir, base, queries, labels, cases, args.metric)
        .map_err(anyhow::Error::msg)?;
    let efs: Vec<String> = args.ef.iter().map(|e| e.to_string()).collect();
    eprintln!("running hnswlib ({})", python.display());
    let status = std::process::Command::new(python)
        .arg(dir.join("filter_hnswlib.py"))
        .arg(&dir)
        .arg(efs.join(","))
        .arg(args.metric.as_str())
        .arg(args.k.to_string())
        .status()
        .with_context(|| format!("running {}", python.display()))?;
    if !status.success() {
        bail!("the hnswlib run failed ({status})");
    }
    let out = dir.join("hnswlib.json");
    let text =
        std::fs::read_to_string(&out).with_context(|| format!("reading {}", out.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", out.display()))
}

/// One line per engine and case: its default setting (the collection's `ef` 64 for the
/// engines without one), then its cheapest setting at recall ≥ 0.95, if any.
fn print_table(records: &[FilterRecord]) {
    println!(
        "{:8} {:12} {:>7} {:>7} {:>7} {:>9} {:>6} | {:>7} {:>7} {:>9}",
        "engine",
        "filter",
        "share",
        "ef",
        "recall",
        "qps(1)",
        "exact",
        "ef@0.95",
        "recall",
        "qps(1)"
    );
    let mut seen: Vec<(&str, filter::Correlation, u64)> = Vec::new();
    for r in records {
        let group = (r.engine.as_str(), r.correlation, r.selectivity.to_bits());
        if seen.contains(&group) {
            continue;
        }
        seen.push(group);
        let default =
            filter_plot::default_of(records, &r.engine, r.correlation, r.selectivity).unwrap_or(r);
        let best = filter::cheapest_at(records, &r.engine, r.correlation, r.selectivity, 0.95);
        let ef = |e: Option<usize>| e.map_or("default".to_string(), |e| e.to_string());
        println!(
            "{:8} {:12} {:>6.1}% {:>7} {:>7.3} {:>9.0} {:>5.0}% | {:>7} {:>7} {:>9}",
            r.engine,
            r.correlation.as_str(),
            r.selectivity * 100.0,
            ef(default.ef),
            default.recall,
            default.qps_single,
            default.exhaustive * 100.0,
            best.map_or("-".into(), |b| ef(b.ef)),
            best.map_or("-".into(), |b| format!("{:.3}", b.recall)),
            best.map_or("-".into(), |b| format!("{:.0}", b.qps_single)),
        );
    }
}

pub fn embed(args: &EmbedArgs) -> anyhow::Result<()> {
    if args.batch == 0 {
        bail!("--batch must be at least 1");
    }
    let text = std::fs::read_to_string(&args.texts)
        .with_context(|| format!("reading {}", args.texts.display()))?;
    let mut texts: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    if let Some(limit) = args.limit {
        texts.truncate(limit);
    }
    if texts.len() <= args.queries {
        bail!(
            "{} holds {} texts; --queries {} leaves none to index",
            args.texts.display(),
            texts.len(),
            args.queries
        );
    }
    let models = &args.models;
    let registry = super::registry(models)?;
    let manifest = registry.get(&args.model)?;
    if !registry.status(&args.model).installed {
        aimp_embed::ensure_installed(manifest, &models.models_dir, &models.install_options())?;
    }
    let handle = aimp_embed::load_encoder(
        manifest,
        &models.models_dir,
        args.encoders.device,
        args.encoders.worker_options(),
    )?;
    let (query_rows, base_rows) = filter::hold_out(texts.len(), args.queries, args.seed);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()?;
    let bar = ProgressBar::new(texts.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{msg} {bar:30} {pos}/{len} texts {per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message(format!("embedding with {}", args.model));
    let started = std::time::Instant::now();
    let embed_rows = |rows: &[usize]| -> anyhow::Result<Matrix<f32>> {
        let mut data = Vec::with_capacity(rows.len() * handle.dimensions());
        for chunk in rows.chunks(args.batch) {
            let batch: Vec<String> = chunk.iter().map(|&i| texts[i].clone()).collect();
            let vectors = runtime.block_on(handle.embed_texts("bench", batch))?;
            for v in vectors {
                data.extend(v);
            }
            bar.inc(chunk.len() as u64);
        }
        Ok(Matrix::new(rows.len(), handle.dimensions(), data))
    };
    let queries = embed_rows(&query_rows)?;
    let base = embed_rows(&base_rows)?;
    bar.finish_and_clear();
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    formats::write_fvecs(&args.out.join("base.fvecs"), &base)?;
    formats::write_fvecs(&args.out.join("query.fvecs"), &queries)?;
    println!(
        "embedded {} texts with {} in {:.0} s: {} base and {} query vectors of dimension {} in {}",
        texts.len(),
        args.model,
        started.elapsed().as_secs_f64(),
        base.rows,
        queries.rows,
        base.dim,
        args.out.display()
    );
    Ok(())
}
