//! `aimp bench gateway`: the gateway end to end through HTTP, on whatever store it runs on.
//! Clients send index runs of texts, then search runs, spread over one gateway or several
//! (each run to the next gateway in turn, as a round-robin load balancer would), and it
//! reports index runs/s and texts/s, search queries/s, and the latency percentiles of each.

use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Args;
use serde_json::json;

use super::client::{Client, expect_ok};

#[derive(Args, Debug)]
pub struct GatewayArgs {
    /// A gateway's URL; give it again for each gateway the runs are spread over.
    #[arg(long = "gateway", required = true)]
    pub gateways: Vec<String>,
    /// The API key sent to every gateway (`X-API-Key`).
    #[arg(long, env = "AIMP_API_KEY", hide_env_values = true)]
    pub api_key: String,
    /// One text a line (empty lines skipped): indexed in runs, then searched for.
    #[arg(long)]
    pub texts: PathBuf,
    #[arg(long, default_value = "demo-model")]
    pub model: String,
    /// The scope the texts are indexed into (emptied first).
    #[arg(long, default_value = "bench-gateway")]
    pub scope: String,
    /// Index runs sent.
    #[arg(long, default_value_t = 200)]
    pub runs: usize,
    /// Texts per index run.
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// Search runs sent.
    #[arg(long, default_value_t = 500)]
    pub searches: usize,
    /// Clients sending at once.
    #[arg(long, default_value_t = 4)]
    pub clients: usize,
    #[arg(long, default_value_t = 10)]
    pub top_k: usize,
    /// Where the record goes (JSON).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub fn gateway(args: &GatewayArgs) -> anyhow::Result<()> {
    if args.runs == 0 || args.batch == 0 || args.clients == 0 || args.top_k == 0 {
        bail!("--runs, --batch, --clients and --top-k must be at least 1");
    }
    let text = std::fs::read_to_string(&args.texts)
        .with_context(|| format!("reading {}", args.texts.display()))?;
    let texts: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let wanted = args.runs * args.batch;
    if texts.len() < wanted {
        bail!(
            "--texts {} has {} texts; --runs {} of --batch {} need {wanted}",
            args.texts.display(),
            texts.len(),
            args.runs,
            args.batch
        );
    }
    let clients: Vec<Client> = args
        .gateways
        .iter()
        .map(|g| Client::new(g, &args.api_key))
        .collect();
    // A scope of this bench's own, empty.
    let emptied = clients[0].run(&json!({
        "model": args.model, "mode": "delete", "scope": args.scope,
        "input": {}, "params": {"filter": {}}
    }))?;
    if let Err(e) = &emptied
        && e.status != 404
    {
        bail!("emptying scope {}: {e}", args.scope);
    }

    eprintln!(
        "{} index runs of {} texts through {} gateway(s), {} clients",
        args.runs,
        args.batch,
        clients.len(),
        args.clients
    );
    let index = drive(args.runs, args.clients, |i| {
        let chunk = &texts[i * args.batch..(i + 1) * args.batch];
        let ids: Vec<String> = (0..args.batch)
            .map(|j| format!("t{}", i * args.batch + j))
            .collect();
        let body = json!({
            "model": args.model, "mode": "index", "scope": args.scope,
            "input": {"texts": chunk, "text_ids": ids}, "params": {}
        });
        expect_ok("index run", clients[i % clients.len()].run(&body)?).map(drop)
    })?;
    eprintln!(
        "{} search runs through {} gateway(s), {} clients",
        args.searches,
        clients.len(),
        args.clients
    );
    let search = drive(args.searches, args.clients, |i| {
        let query = texts[(i * 7919) % wanted];
        let body = json!({
            "model": args.model, "mode": "search", "scope": args.scope,
            "input": {"text": query}, "params": {"top_k": args.top_k}
        });
        let reply = expect_ok("search run", clients[i % clients.len()].run(&body)?)?;
        let found = reply["output"]["results"].as_array().map_or(0, Vec::len);
        if found == 0 {
            bail!("search run {i} found nothing in scope {}", args.scope);
        }
        Ok(())
    })?;

    let record = json!({
        "gateways": args.gateways.len(),
        "clients": args.clients,
        "model": args.model,
        "index": {
            "runs": args.runs,
            "texts_per_run": args.batch,
            "runs_per_s": index.per_second(),
            "texts_per_s": index.per_second() * args.batch as f64,
            "p50_ms": index.percentile(0.50),
            "p99_ms": index.percentile(0.99),
        },
        "search": {
            "runs": args.searches,
            "top_k": args.top_k,
            "queries_per_s": search.per_second(),
            "p50_ms": search.percentile(0.50),
            "p99_ms": search.percentile(0.99),
        },
        "machine": aimp_bench::machine::Machine::detect(),
    });
    println!(
        "index: {:.1} runs/s ({:.0} texts/s), p50 {:.1} ms, p99 {:.1} ms",
        index.per_second(),
        index.per_second() * args.batch as f64,
        index.percentile(0.50),
        index.percentile(0.99)
    );
    println!(
        "search: {:.1} queries/s, p50 {:.1} ms, p99 {:.1} ms",
        search.per_second(),
        search.percentile(0.50),
        search.percentile(0.99)
    );
    if let Some(out) = &args.out {
        std::fs::write(out, serde_json::to_string_pretty(&record)?)
            .with_context(|| format!("writing {}", out.display()))?;
    }
    Ok(())
}

/// What one phase measured: every run's latency and the phase's wall time.
struct Timed {
    latencies_ms: Vec<f64>,
    seconds: f64,
}

impl Timed {
    fn per_second(&self) -> f64 {
        self.latencies_ms.len() as f64 / self.seconds.max(1e-9)
    }

    fn percentile(&self, p: f64) -> f64 {
        let mut sorted = self.latencies_ms.clone();
        sorted.sort_by(f64::total_cmp);
        let at = ((sorted.len().saturating_sub(1)) as f64 * p).round() as usize;
        sorted.get(at).copied().unwrap_or(f64::NAN)
    }
}

/// Runs `work(0..n)` on `clients` threads, each taking the next number; stops at the first
/// failure and answers it.
fn drive(
    n: usize,
    clients: usize,
    work: impl Fn(usize) -> anyhow::Result<()> + Sync,
) -> anyhow::Result<Timed> {
    let next = AtomicUsize::new(0);
    let latencies = Mutex::new(Vec::with_capacity(n));
    let failure: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..clients.min(n) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n || failure.lock().map(|f| f.is_some()).unwrap_or(true) {
                        return;
                    }
                    let at = Instant::now();
                    match work(i) {
                        Ok(()) => {
                            let ms = at.elapsed().as_secs_f64() * 1000.0;
                            if let Ok(mut l) = latencies.lock() {
                                l.push(ms);
                            }
                        }
                        Err(e) => {
                            if let Ok(mut f) = failure.lock() {
                                f.get_or_insert(e);
                            }
                            return;
                        }
                    }
                }
            });
        }
    });
    let seconds = started.elapsed().as_secs_f64();
    if let Some(e) = failure.into_inner().ok().flatten() {
        return Err(e);
    }
    Ok(Timed {
        latencies_ms: latencies.into_inner().unwrap_or_default(),
        seconds,
    })
}
