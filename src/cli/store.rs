//! `aimp store copy --from DIR|URL --to DIR|URL`: everything one store holds, copied into
//! another ([`aimp_store::copy`]), so a deployment can start embedded and move to PostgreSQL
//! later, or come back.

use std::ops::ControlFlow;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aimp_store::Store;
use aimp_store::copy::{CopyReport, Progress};
use clap::Subcommand;
use serde_json::json;

use crate::settings::{StoreSettings, redact_password};

#[derive(Subcommand, Debug)]
pub enum StoreCommand {
    /// Copy every key, media record and bytes, and collection with its items from one store
    /// into another. Stop the gateways of both first. The destination must be empty or an
    /// earlier copy of the same source: run the command again after an interruption and it
    /// resumes, writing only what is missing. It ends by checking both sides' counts.
    Copy {
        /// The store copied from: a data folder (the embedded store) or a postgres:// URL.
        #[arg(long)]
        from: String,
        /// The store copied into: a data folder (made when missing) or a postgres:// URL.
        #[arg(long)]
        to: String,
        /// Items per page read and per transaction written.
        #[arg(long, default_value_t = aimp_store::copy::DEFAULT_BATCH as u32,
              value_parser = clap::value_parser!(u32).range(1..=100_000))]
        batch: u32,
    },
}

pub fn run(settings: &StoreSettings, cmd: StoreCommand) -> anyhow::Result<()> {
    match cmd {
        StoreCommand::Copy { from, to, batch } => copy(settings, &from, &to, batch as usize),
    }
}

fn copy(settings: &StoreSettings, from: &str, to: &str, batch: usize) -> anyhow::Result<()> {
    anyhow::ensure!(
        !same_place(from, to),
        "--from and --to name the same store ({from})"
    );
    let source = open(settings, from, "--from", false)?;
    let destination = open(settings, to, "--to", true)?;
    eprintln!(
        "copying {} ({}) into {} ({})",
        shown(from),
        source.kind(),
        shown(to),
        destination.kind()
    );
    let started = Instant::now();
    let mut reporter = Reporter::default();
    let report = aimp_store::copy::copy(&*source, &*destination, batch, &mut |p| {
        reporter.tell(p);
        ControlFlow::Continue(())
    })
    .map_err(|e| anyhow::Error::new(e).context("the copy stopped (run it again to resume)"))?;
    eprintln!(
        "done in {:.1} s: the counts of both stores agree",
        started.elapsed().as_secs_f64()
    );
    println!("{}", serde_json::to_string_pretty(&summary(&report))?);
    Ok(())
}

/// The store at `location`: a postgres:// URL, or a data folder (which must hold a store
/// unless it is the destination).
fn open(
    settings: &StoreSettings,
    location: &str,
    flag: &str,
    destination: bool,
) -> anyhow::Result<Arc<dyn Store>> {
    if super::is_postgres_url(location) {
        return super::open_postgres(location, settings);
    }
    anyhow::ensure!(
        !location.contains("://"),
        "{flag} must be a data folder or a postgres:// URL, not {location}"
    );
    let dir = Path::new(location);
    if !destination && !dir.join(aimp_store_embedded::DB_FILE).is_file() {
        anyhow::bail!(
            "{flag} {location} holds no store (no {} in it)",
            aimp_store_embedded::DB_FILE
        );
    }
    super::open_embedded(dir, settings)
}

/// Two locations that are one store: the same URL, or folders that resolve alike.
fn same_place(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    match (Path::new(a).canonicalize(), Path::new(b).canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

fn shown(location: &str) -> String {
    if super::is_postgres_url(location) {
        redact_password(location)
    } else {
        location.to_string()
    }
}

/// Progress on stderr: a line per stage as it ends, and one a second while a long one runs.
#[derive(Default)]
struct Reporter {
    stage: String,
    started: Option<Instant>,
    last: Option<Instant>,
}

impl Reporter {
    fn tell(&mut self, p: &Progress) {
        let now = Instant::now();
        if p.stage != self.stage {
            self.stage = p.stage.clone();
            self.started = Some(now);
            self.last = None;
        }
        let finished = p.done >= p.total;
        if !finished && self.last.is_some_and(|t| now - t < Duration::from_secs(1)) {
            return;
        }
        self.last = Some(now);
        let secs = self
            .started
            .map_or(0.0, |t| (now - t).as_secs_f64())
            .max(1e-3);
        let what = match p.stage.as_str() {
            "keys" => "keys",
            "media" => "media records",
            _ => "items",
        };
        eprintln!(
            "  {}: {}/{} {what}, {} written ({:.0}/s)",
            p.stage,
            p.done,
            p.total,
            p.written,
            p.written as f64 / secs
        );
    }
}

fn summary(report: &CopyReport) -> serde_json::Value {
    let counts = |c: aimp_store::copy::Counts| json!({"seen": c.seen, "written": c.written});
    json!({
        "keys": counts(report.keys),
        "media": counts(report.media),
        "contents_written": report.contents.written,
        "content_bytes_written": report.content_bytes,
        "items": counts(report.items()),
        "collections": report.collections.iter().map(|(key, c)| json!({
            "workspace": key.workspace,
            "model": key.model,
            "collection": key.collection,
            "scope": key.scope,
            "seen": c.seen,
            "written": c.written,
        })).collect::<Vec<_>>(),
        "verified": true,
    })
}
