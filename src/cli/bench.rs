//! `aimp bench ann`, `gen` and `collection` (`filter` and `embed` are in `bench_filter`): ANN benchmarks on standard sets, synthetic sets and
//! the user's own vectors, with our index and hnsw_rs side by side.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use aimp_bench::formats::{self, Matrix};
use aimp_bench::run::{self, Config, Engine, Progress};
use aimp_bench::{collection, plot, synthetic, truth};
use aimp_store::{CollectionKey, Metric};

use crate::settings::{ModelSettings, StoreSettings};

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Measure recall, speed and memory of ours, hnsw_rs and exact search on a vector set.
    Ann(AnnArgs),
    /// Write a seeded synthetic set: base.fvecs, query.fvecs, gt.ivecs (and .npy).
    Gen(GenArgs),
    /// Recall and latency of a live collection against its exact search (stop `serve`
    /// first: the store is opened directly).
    Collection(CollectionArgs),
    /// Filtered recall@k and queries/s across selectivities, uncorrelated and correlated
    /// filters: ours, exact filtered search, the plain in-walk filter (and hnswlib).
    Filter(super::bench_filter::FilterArgs),
    /// Embed a text corpus (one text a line) with an installed model into base.fvecs and
    /// query.fvecs.
    Embed(super::bench_filter::EmbedArgs),
    /// The gateway end to end through HTTP (on whatever store it runs on): index runs/s and
    /// search latency, spread over one gateway or several.
    Gateway(super::bench_gateway::GatewayArgs),
}

#[derive(Args, Debug)]
pub struct CollectionArgs {
    #[arg(long)]
    pub model: String,
    #[arg(long)]
    pub scope: String,
    /// Default: the collection the model's `index` mode writes.
    #[arg(long)]
    pub collection: Option<String>,
    #[arg(long, default_value = aimp_server::keys::DEFAULT_WORKSPACE)]
    pub workspace: String,
    /// Queries sampled from the collection's own vectors.
    #[arg(long, default_value_t = 200)]
    pub queries: usize,
    /// Use these query vectors (.fvecs or .npy) instead of a sample.
    #[arg(long)]
    pub query: Option<PathBuf>,
    #[arg(long, default_value_t = 10)]
    pub k: usize,
    #[arg(long, value_delimiter = ',', default_value = "16,32,64,128")]
    pub ef: Vec<usize>,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Also write the records here (JSON).
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub store: StoreSettings,
    #[command(flatten)]
    pub models: ModelSettings,
}

#[derive(Args, Debug)]
pub struct AnnArgs {
    /// Base vectors (.fvecs, .bvecs or .npy).
    #[arg(long, required_unless_present = "hdf5", conflicts_with = "hdf5")]
    pub base: Option<PathBuf>,
    /// Query vectors (.fvecs, .bvecs or .npy).
    #[arg(long, required_unless_present = "hdf5", conflicts_with = "hdf5")]
    pub query: Option<PathBuf>,
    /// Ground truth ids (.ivecs or .npy); computed exactly (and cached beside the base) when
    /// absent.
    #[arg(long, conflicts_with = "hdf5")]
    pub gt: Option<PathBuf>,
    /// An ann-benchmarks HDF5 file (train, test, neighbors) instead of the three files.
    #[arg(long)]
    pub hdf5: Option<PathBuf>,
    /// l2, cosine or dot; default: the HDF5 file's `distance`, else l2.
    #[arg(long)]
    pub metric: Option<Metric>,
    /// Neighbours per query.
    #[arg(long, default_value_t = 10)]
    pub k: usize,
    /// HNSW links per node (2M at level 0).
    #[arg(long, default_value_t = 16)]
    pub m: usize,
    #[arg(long, default_value_t = 200)]
    pub ef_construction: usize,
    /// Search breadths to sweep, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "16,32,64,128,256")]
    pub ef: Vec<usize>,
    /// Threads for building and for the all-thread queries/s (default: every core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Engines to run, comma-separated: ours, hnsw_rs, exact.
    #[arg(long, value_delimiter = ',', default_value = "ours,hnsw_rs,exact")]
    pub engines: Vec<Engine>,
    /// Where the results go: a JSON array, one record per engine and setting.
    #[arg(long)]
    pub out: PathBuf,
    /// Draw the recall–QPS plot here (SVG), and beside it as PNG.
    #[arg(long)]
    pub plot: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct GenArgs {
    /// clustered (Gaussian clusters, decaying spectrum) or uniform.
    #[arg(long, default_value = "clustered")]
    pub kind: synthetic::Kind,
    #[arg(long)]
    pub n: usize,
    #[arg(long)]
    pub dim: usize,
    #[arg(long, default_value_t = 1000)]
    pub queries: usize,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Nearest neighbours kept per query in gt.ivecs.
    #[arg(long, default_value_t = 100)]
    pub k: usize,
    /// The metric of the ground truth.
    #[arg(long, default_value = "l2")]
    pub metric: Metric,
    /// fvecs (base.fvecs, query.fvecs, gt.ivecs) or npy (the same as .npy as well).
    #[arg(long, default_value = "fvecs")]
    pub format: String,
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Ann(args) => ann(&args),
        BenchCommand::Gen(args) => gen_set(&args),
        BenchCommand::Collection(args) => collection(&args),
        BenchCommand::Filter(args) => super::bench_filter::filter(&args),
        BenchCommand::Embed(args) => super::bench_filter::embed(&args),
        BenchCommand::Gateway(args) => super::bench_gateway::gateway(&args),
    }
}

/// Ctrl-C sets the flag (the run stops and keeps what it has); a second one quits at once.
pub(super) fn stop_on_ctrl_c() -> anyhow::Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::Relaxed) {
            std::process::exit(130);
        }
        eprintln!("stopping: the results so far are kept (Ctrl-C again to quit at once)");
    })
    .context("cannot install the Ctrl-C handler")?;
    Ok(stop)
}

fn collection(args: &CollectionArgs) -> anyhow::Result<()> {
    if args.k == 0 || args.queries == 0 || args.ef.contains(&0) {
        bail!("--k, --queries and every --ef must be at least 1");
    }
    let name = match &args.collection {
        Some(c) => c.clone(),
        None => {
            let registry = super::registry(&args.models)?;
            let manifest = registry.get(&args.model)?;
            manifest
                .modes
                .get("index")
                .and_then(|m| m.collection.clone())
                .with_context(|| {
                    format!("model {} has no index mode; give --collection", args.model)
                })?
        }
    };
    let key = CollectionKey::new(&args.workspace, &args.model, &name, &args.scope);
    let index = super::open_store(&args.store)?;
    let queries: Vec<Vec<f32>> = match &args.query {
        Some(file) => {
            let m = formats::read_vectors(file)?;
            (0..m.rows).map(|i| m.row(i).to_vec()).collect()
        }
        None => collection::sample_queries(&*index, &key, args.queries, args.seed)
            .map_err(anyhow::Error::msg)?,
    };
    let stop = stop_on_ctrl_c()?;
    eprintln!("measuring {key} with {} queries", queries.len());
    let records = collection::measure(&*index, &key, &queries, args.k, &args.ef, &stop)
        .map_err(anyhow::Error::msg)?;
    println!(
        "{:>5} {:>7} {:>10} {:>8} {:>8} {:>8}  exhaustive",
        "ef", "recall", "qps(1)", "p50 ms", "p95 ms", "p99 ms"
    );
    for r in &records {
        println!(
            "{:>5} {:>7.4} {:>10.0} {:>8.3} {:>8.3} {:>8.3}  {}",
            r.ef, r.recall, r.qps_single, r.p50_ms, r.p95_ms, r.p99_ms, r.exhaustive
        );
    }
    if let Some(first) = records.first()
        && first.exhaustive
    {
        println!(
            "(the collection holds {} items, under the exact-search threshold: the server compares every vector)",
            first.count
        );
    }
    if let Some(out) = &args.out {
        std::fs::write(out, serde_json::to_string_pretty(&records)?)
            .with_context(|| format!("writing {}", out.display()))?;
        println!("results: {}", out.display());
    }
    Ok(())
}

fn gen_set(args: &GenArgs) -> anyhow::Result<()> {
    if args.n == 0 || args.dim == 0 || args.queries == 0 {
        bail!("--n, --dim and --queries must be at least 1");
    }
    let npy = match args.format.as_str() {
        "fvecs" => false,
        "npy" => true,
        other => bail!("--format {other:?}: fvecs or npy"),
    };
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let spinner = ProgressBar::new_spinner();
    spinner.enable_steady_tick(std::time::Duration::from_millis(200));
    spinner.set_message(format!("drawing {} + {} vectors", args.n, args.queries));
    let (base, queries) = synthetic::generate(args.kind, args.n, args.queries, args.dim, args.seed);
    spinner.set_message(format!(
        "exact {} nearest of {} queries",
        args.k, args.queries
    ));
    let gt = truth::exact(&base, &queries, args.k, args.metric);
    spinner.finish_and_clear();
    let out = |name: &str| args.out.join(name);
    formats::write_fvecs(&out("base.fvecs"), &base)?;
    formats::write_fvecs(&out("query.fvecs"), &queries)?;
    formats::write_ivecs(&out("gt.ivecs"), &gt)?;
    if npy {
        formats::write_npy_f32(&out("base.npy"), &base)?;
        formats::write_npy_f32(&out("query.npy"), &queries)?;
        formats::write_npy_i32(&out("gt.npy"), &gt)?;
    }
    println!(
        "wrote {} base and {} query vectors of dimension {} and their {} nearest ({}) to {}",
        args.n,
        args.queries,
        args.dim,
        gt.dim,
        args.metric.as_str(),
        args.out.display()
    );
    Ok(())
}

/// The vectors, queries and truth of a run, from whichever files were given.
struct Set {
    name: String,
    base: Matrix<f32>,
    queries: Matrix<f32>,
    gt: Matrix<i32>,
    metric: Metric,
}

fn load(args: &AnnArgs) -> anyhow::Result<Set> {
    if let Some(path) = &args.hdf5 {
        let set = formats::read_hdf5(path)?;
        let metric = args.metric.or(set.metric).unwrap_or(Metric::L2);
        let gt = match set.neighbors {
            Some(n) if n.dim >= args.k && args.metric.is_none_or(|m| Some(m) == set.metric) => n,
            _ => {
                let cache = truth::cache_path(path, path, metric, args.k)?;
                truth::cached(&cache, &set.train, &set.test, args.k, metric)?.0
            }
        };
        return Ok(Set {
            name: file_name(path),
            base: set.train,
            queries: set.test,
            gt,
            metric,
        });
    }
    let (Some(base_file), Some(query_file)) = (&args.base, &args.query) else {
        bail!("give --base and --query, or --hdf5");
    };
    let metric = args.metric.unwrap_or(Metric::L2);
    let base = formats::read_vectors(base_file)?;
    let queries = formats::read_vectors(query_file)?;
    if base.dim != queries.dim {
        bail!(
            "{} has dimension {}, {} has {}",
            base_file.display(),
            base.dim,
            query_file.display(),
            queries.dim
        );
    }
    let gt = match &args.gt {
        Some(gt_file) => {
            let gt = formats::read_ids(gt_file)?;
            if gt.rows != queries.rows || gt.dim < args.k {
                bail!(
                    "{} holds {} rows of {} ids; {} queries need at least {} each",
                    gt_file.display(),
                    gt.rows,
                    gt.dim,
                    queries.rows,
                    args.k
                );
            }
            gt
        }
        None => {
            let cache = truth::cache_path(base_file, query_file, metric, args.k)?;
            let spinner = ProgressBar::new_spinner();
            spinner.enable_steady_tick(std::time::Duration::from_millis(200));
            spinner.set_message("ground truth (exact search, all cores)");
            let (gt, hit) = truth::cached(&cache, &base, &queries, args.k, metric)?;
            spinner.finish_and_clear();
            eprintln!(
                "ground truth {} {}",
                if hit {
                    "read from"
                } else {
                    "computed and cached in"
                },
                cache.display()
            );
            gt
        }
    };
    Ok(Set {
        name: file_name(base_file),
        base,
        queries,
        gt,
        metric,
    })
}

pub(super) fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn ann(args: &AnnArgs) -> anyhow::Result<()> {
    if args.k == 0 || args.m < 2 || args.ef_construction == 0 || args.ef.contains(&0) {
        bail!("--k, --ef-construction and every --ef must be at least 1, --m at least 2");
    }
    let set = load(args)?;
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let config = Config {
        dataset: set.name.clone(),
        metric: set.metric,
        k: args.k,
        m: args.m,
        ef_construction: args.ef_construction,
        efs: args.ef.clone(),
        threads,
        engines: args.engines.clone(),
    };
    let stop = stop_on_ctrl_c()?;
    let bar = ProgressBar::new(set.queries.rows as u64);
    bar.set_style(
        ProgressStyle::with_template("{msg:32} {bar:30} {pos}/{len} queries {per_sec}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let progress = |p: Progress<'_>| match p {
        Progress::Building { engine } => {
            bar.set_position(0);
            bar.set_message(format!("building {engine}"));
            if bar.is_hidden() {
                eprintln!("building {engine}");
            }
        }
        Progress::Searching {
            engine,
            ef,
            done,
            total,
        } => {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
            bar.set_message(match ef {
                Some(ef) => format!("{engine} ef {ef}"),
                None => engine.to_string(),
            });
        }
    };
    let records = run::run(&set.base, &set.queries, &set.gt, &config, &stop, &progress)
        .map_err(anyhow::Error::msg)?;
    bar.finish_and_clear();
    let json = serde_json::to_string_pretty(&records)?;
    std::fs::write(&args.out, json).with_context(|| format!("writing {}", args.out.display()))?;
    if let Some(svg) = &args.plot {
        let title = format!(
            "{} ({} x {}, {}, k={})",
            set.name,
            set.base.rows,
            set.base.dim,
            set.metric.as_str(),
            args.k
        );
        plot::draw(svg, &records, &title).map_err(anyhow::Error::msg)?;
        plot::draw(&svg.with_extension("png"), &records, &title).map_err(anyhow::Error::msg)?;
    }
    println!(
        "{:8} {:>5} {:>7} {:>10} {:>11} {:>8} {:>8} {:>8} {:>8}",
        "engine", "ef", "recall", "qps(1)", "qps(all)", "p50 ms", "p99 ms", "build s", "B/vec"
    );
    for r in &records {
        println!(
            "{:8} {:>5} {:>7.4} {:>10.0} {:>11.0} {:>8.3} {:>8.3} {:>8.2} {:>8.0}",
            r.engine,
            r.ef.map_or_else(|| "-".to_string(), |e| e.to_string()),
            r.recall,
            r.qps_single,
            r.qps_threads,
            r.p50_ms,
            r.p99_ms,
            r.build_s,
            r.bytes_per_vector.unwrap_or(f64::NAN)
        );
    }
    if stop.load(Ordering::Relaxed) {
        println!("(stopped early: {} records kept)", records.len());
    }
    println!("results: {}", args.out.display());
    Ok(())
}
