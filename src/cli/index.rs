//! `aimp index DIR --model clipo --scope NAME`: every picture under a folder, uploaded and
//! indexed through the gateway's API in batches, with its fields from the folder's metadata
//! sidecar (`sidecar`); the gateway adds what the picture's EXIF says. Resumable: content the
//! scope already holds (by sha256) is skipped, so a second run only sends what is new, and
//! a picture whose sidecar fields changed is indexed again from its stored upload.
//! `aimp index --texts FILE.jsonl` does the same for texts (`index_texts`).

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::client::{ApiFailure, Client, expect_ok};

/// Ids are at most this long (the contract's limit); longer relative paths use the hash.
const MAX_ID_LEN: usize = 256;

#[derive(clap::Args, Debug)]
pub struct IndexArgs {
    /// The folder of pictures to index, walked recursively.
    #[arg(required_unless_present = "texts", conflicts_with = "texts")]
    pub dir: Option<PathBuf>,
    /// Index texts instead: a JSON Lines file of `{"id", "text", "metadata"}` objects.
    #[arg(long)]
    pub texts: Option<PathBuf>,
    /// The pictures' fields: a JSON Lines or CSV file keyed by path relative to the folder
    /// (default: the folder's metadata.jsonl or metadata.csv, if there is one).
    #[arg(long, conflicts_with = "texts")]
    pub metadata: Option<PathBuf>,
    /// The model whose `index` mode takes the pictures (default clipo) or the texts (default
    /// demo-model).
    #[arg(long)]
    pub model: Option<String>,
    /// The scope to index into.
    #[arg(long)]
    pub scope: String,
    /// Pictures (or texts) per index run.
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// Batches in flight at once (uploads of one overlap the encoding of another).
    #[arg(long, default_value_t = 2)]
    pub jobs: usize,
    /// Files larger than this are skipped (the gateway's upload limit).
    #[arg(long, default_value_t = 20 * 1024 * 1024)]
    pub max_bytes: u64,
    #[command(flatten)]
    pub gateway: crate::settings::ClientSettings,
}

/// A picture found in the folder.
#[derive(Debug)]
struct Candidate {
    path: PathBuf,
    /// The id it is indexed under: its path relative to the folder, `/`-separated.
    id: String,
    content_type: &'static str,
    /// Its row of the sidecar.
    metadata: Option<Value>,
}

/// What the scope holds already of one content.
#[derive(Debug, Clone)]
struct Known {
    id: String,
    media_ref: Option<String>,
    metadata: Option<Value>,
}

/// What happened to the files, for the summary.
#[derive(Debug, Default)]
struct Tally {
    indexed: usize,
    already: usize,
    /// Indexed again from their stored upload because their sidecar fields changed.
    updated: usize,
    not_images: Vec<(PathBuf, String)>,
    failed: Vec<(PathBuf, String)>,
}

pub fn run(client: &Client, args: &IndexArgs) -> anyhow::Result<()> {
    if args.batch == 0 || args.batch > 64 {
        bail!("--batch must be between 1 and 64 (the index run's limit)");
    }
    if let Some(texts) = &args.texts {
        let model = args.model.as_deref().unwrap_or("demo-model");
        return super::index_texts::run(client, texts, model, &args.scope, args.batch);
    }
    let Some(dir) = args.dir.as_deref() else {
        bail!("give the folder to index, or --texts FILE");
    };
    let model = args.model.as_deref().unwrap_or("clipo");
    let started = Instant::now();
    let sidecar_file = super::sidecar::locate(dir, args.metadata.as_deref())?;
    let mut sidecar = match &sidecar_file {
        Some(f) => super::sidecar::read(f)?,
        None => HashMap::new(),
    };
    let collection = index_collection(client, model)?;
    let known = indexed_hashes(client, model, &collection, &args.scope)?;
    let mut tally = Tally::default();
    let mut candidates = scan(dir, args.max_bytes, sidecar_file.as_deref(), &mut tally)?;
    for c in &mut candidates {
        c.metadata = sidecar.remove(&c.id);
    }
    if let Some(f) = &sidecar_file {
        let mut unused: Vec<&String> = sidecar.keys().collect();
        unused.sort();
        if !unused.is_empty() {
            eprintln!(
                "{}: {} rows name no picture in the folder (first: {})",
                f.display(),
                unused.len(),
                unused[0]
            );
        }
    }
    let bar = ProgressBar::new(candidates.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} pictures  {per_sec}  eta {eta}  {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    for (path, reason) in &tally.not_images {
        say(&bar, format!("skipped {}: {reason}", path.display()));
    }
    let shared = Shared {
        client,
        args,
        model,
        bar: &bar,
        seen: Mutex::new(known.into_iter().map(|(h, k)| (h, Some(k))).collect()),
        tally: Mutex::new(tally),
        next: Mutex::new(candidates.into_iter()),
    };
    let jobs = args.jobs.max(1);
    let results: Vec<anyhow::Result<()>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..jobs).map(|_| s.spawn(|| shared.work())).collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("an index worker panicked")))
            })
            .collect()
    });
    bar.finish_and_clear();
    let tally = shared.tally.into_inner().unwrap_or_else(|p| p.into_inner());
    summarize(&tally, model, &collection, &args.scope, started);
    for r in results {
        r?;
    }
    if !tally.failed.is_empty() {
        bail!(
            "{} pictures could not be indexed (listed above)",
            tally.failed.len()
        );
    }
    Ok(())
}

/// The collection the model's `index` mode writes.
fn index_collection(client: &Client, model: &str) -> anyhow::Result<String> {
    let m = expect_ok(
        &format!("model {model}"),
        client.get(&format!("/api/marketplace/models/{model}"))?,
    )?;
    let index = &m["modes"]["index"];
    let takes_images = index["input_schema"]["properties"].get("images").is_some();
    if !takes_images {
        bail!("model {model} does not index images (its index mode takes no `images`)");
    }
    index["collection"]
        .as_str()
        .map(str::to_string)
        .with_context(|| format!("model {model}'s index mode names no collection"))
}

/// What the scope already holds, by content sha256.
fn indexed_hashes(
    client: &Client,
    model: &str,
    collection: &str,
    scope: &str,
) -> anyhow::Result<HashMap<String, Known>> {
    let mut hashes = HashMap::new();
    for item in listing(client, model, collection, scope)? {
        if let (Some(h), Some(id)) = (item["sha256"].as_str(), item["id"].as_str()) {
            hashes.insert(
                h.to_string(),
                Known {
                    id: id.to_string(),
                    media_ref: item["media_ref"].as_str().map(str::to_string),
                    metadata: Some(item["metadata"].clone()).filter(|m| !m.is_null()),
                },
            );
        }
    }
    Ok(hashes)
}

/// Every item the scope holds (empty when it holds none yet), a page of 1,000 at a time.
pub(super) fn listing(
    client: &Client,
    model: &str,
    collection: &str,
    scope: &str,
) -> anyhow::Result<Vec<Value>> {
    let mut items = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut path =
            format!("/api/knowledge-bases/{model}/{collection}/{scope}/items?limit=1000");
        if let Some(a) = &after {
            path.push_str(&format!("&after={}", percent_encode(a)));
        }
        let page = match client.get(&path)? {
            Ok(page) => page,
            Err(ApiFailure { status: 404, .. }) => return Ok(items), // nothing indexed yet
            Err(e) => bail!("listing what {scope} holds: {e}"),
        };
        let data = page["data"].as_array().cloned().unwrap_or_default();
        after = data
            .last()
            .and_then(|i| i["id"].as_str())
            .map(str::to_string);
        items.extend(data);
        if page["has_more"] != true || after.is_none() {
            return Ok(items);
        }
    }
}

/// The files under `dir`, sorted; what is not a picture is set aside with its reason (the
/// sidecar itself is passed over in silence).
fn scan(
    dir: &Path,
    max_bytes: u64,
    sidecar: Option<&Path>,
    tally: &mut Tally,
) -> anyhow::Result<Vec<Candidate>> {
    if !dir.is_dir() {
        bail!("{} is not a folder", dir.display());
    }
    let mut out = Vec::new();
    for entry in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let entry = entry.with_context(|| format!("walking {}", dir.display()))?;
        if !entry.file_type().is_file() {
            continue;
        }
        let path = entry.path().to_path_buf();
        if sidecar.is_some_and(|s| same_file(s, &path)) {
            continue;
        }
        let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
        let reason = if size == 0 {
            Some("empty file".to_string())
        } else if size > max_bytes {
            Some(format!(
                "{size} bytes, over the upload limit of {max_bytes}"
            ))
        } else {
            None
        };
        if let Some(reason) = reason {
            tally.not_images.push((path, reason));
            continue;
        }
        let mut head = [0u8; 16];
        let n = std::fs::File::open(&path)
            .and_then(|mut f| f.read(&mut head))
            .with_context(|| format!("reading {}", path.display()))?;
        let Some(content_type) = aimp_embed::sniff_content_type(&head[..n]) else {
            tally
                .not_images
                .push((path, "not a JPEG, PNG, WebP or GIF image".into()));
            continue;
        };
        let relative = path
            .strip_prefix(dir)
            .unwrap_or(&path)
            .components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/");
        out.push(Candidate {
            path,
            id: relative,
            content_type,
            metadata: None,
        });
    }
    Ok(out)
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

struct Shared<'a> {
    client: &'a Client,
    args: &'a IndexArgs,
    model: &'a str,
    bar: &'a ProgressBar,
    /// Contents indexed before (with what they hold) or during this run (`None`).
    seen: Mutex<HashMap<String, Option<Known>>>,
    tally: Mutex<Tally>,
    next: Mutex<std::vec::IntoIter<Candidate>>,
}

/// A picture uploaded and waiting for its index run.
struct Uploaded {
    path: PathBuf,
    id: String,
    filename: String,
    media_ref: String,
    metadata: Option<Value>,
}

impl Shared<'_> {
    fn tally(&self) -> std::sync::MutexGuard<'_, Tally> {
        self.tally.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes pictures, uploads a batch of new ones, indexes it; until none are left.
    fn work(&self) -> anyhow::Result<()> {
        loop {
            let mut batch = Vec::new();
            while batch.len() < self.args.batch {
                let next = self.next.lock().unwrap_or_else(|p| p.into_inner()).next();
                let Some(candidate) = next else { break };
                if let Some(up) = self.upload(candidate)? {
                    batch.push(up);
                }
            }
            if batch.is_empty() {
                return Ok(());
            }
            self.index(batch)?;
        }
    }

    /// Reads, hashes and uploads one picture; `None` when it is already indexed or failed.
    fn upload(&self, c: Candidate) -> anyhow::Result<Option<Uploaded>> {
        let bytes =
            std::fs::read(&c.path).with_context(|| format!("reading {}", c.path.display()))?;
        let sha256 = hex::encode(Sha256::digest(&bytes));
        {
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            match seen.get(&sha256) {
                // Indexed before this run, with other fields than its sidecar row's now:
                // indexed again from the upload the scope keeps, under the id it has.
                Some(Some(known))
                    if c.metadata.is_some()
                        && known.metadata != c.metadata
                        && known.media_ref.is_some() =>
                {
                    let known = known.clone();
                    seen.insert(sha256, None);
                    drop(seen);
                    self.tally().updated += 1;
                    let filename = c.filename_or_id();
                    return Ok(Some(Uploaded {
                        path: c.path,
                        id: known.id,
                        filename,
                        media_ref: known.media_ref.unwrap_or_default(),
                        metadata: c.metadata,
                    }));
                }
                // Known before this run, or met twice in it: either way, not sent again.
                Some(_) => {
                    drop(seen);
                    self.bar.inc(1);
                    self.tally().already += 1;
                    return Ok(None);
                }
                None => {
                    seen.insert(sha256.clone(), None);
                }
            }
        }
        let filename = c.filename_or_id();
        match self.client.upload(&filename, c.content_type, &bytes)? {
            Ok(done) => Ok(Some(Uploaded {
                id: if c.id.len() <= MAX_ID_LEN {
                    c.id
                } else {
                    sha256
                },
                path: c.path,
                filename,
                media_ref: done["media_ref"]
                    .as_str()
                    .context("complete answered no media_ref")?
                    .to_string(),
                metadata: c.metadata,
            })),
            Err(e) if e.status == 400 => {
                self.bar.inc(1);
                say(
                    self.bar,
                    format!("failed {}: {}", c.path.display(), e.message),
                );
                self.tally().failed.push((c.path, e.message));
                Ok(None)
            }
            Err(e) => bail!("uploading {}: {e}", c.path.display()),
        }
    }

    /// One index run for the batch; a picture the gateway refuses is reported and the rest
    /// of the batch is sent again without it (runs are all-or-nothing).
    fn index(&self, mut batch: Vec<Uploaded>) -> anyhow::Result<()> {
        while !batch.is_empty() {
            let images: Vec<Value> = batch
                .iter()
                .map(|u| json!({"media_ref": u.media_ref, "filename": u.filename}))
                .collect();
            let ids: Vec<&str> = batch.iter().map(|u| u.id.as_str()).collect();
            let mut input = json!({"images": images, "image_ids": ids});
            // With a sidecar, every picture has its object (an empty one without a row).
            if batch.iter().any(|u| u.metadata.is_some()) {
                input["metadata"] = batch
                    .iter()
                    .map(|u| u.metadata.clone().unwrap_or_else(|| json!({})))
                    .collect();
            }
            let body = json!({"model": self.model, "mode": "index", "scope": self.args.scope,
                "input": input, "params": {}});
            match self.client.run(&body)? {
                Ok(_) => {
                    self.bar.inc(batch.len() as u64);
                    self.tally().indexed += batch.len();
                    return Ok(());
                }
                Err(e) if e.status == 400 => {
                    let Some(i) = e.param.as_deref().and_then(item_position) else {
                        bail!("index run refused: {e}");
                    };
                    if i >= batch.len() {
                        bail!("index run refused: {e}");
                    }
                    let bad = batch.remove(i);
                    self.bar.inc(1);
                    say(
                        self.bar,
                        format!("failed {}: {}", bad.path.display(), e.message),
                    );
                    self.tally().failed.push((bad.path, e.message));
                }
                Err(e) => bail!("index run: {e}"),
            }
        }
        Ok(())
    }
}

impl Candidate {
    /// The file's name without control characters, else its id.
    fn filename_or_id(&self) -> String {
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.id.clone());
        name.chars().filter(|ch| !ch.is_control()).collect()
    }
}

/// A line above the progress bar, or on stderr when there is no bar (not a terminal).
pub(super) fn say(bar: &ProgressBar, line: String) {
    if bar.is_hidden() {
        eprintln!("{line}");
    } else {
        bar.println(line);
    }
}

/// `input.images[3]` or `input.images[3].media_ref` → 3.
fn item_position(param: &str) -> Option<usize> {
    let rest = param.strip_prefix("input.images[")?;
    rest[..rest.find(']')?].parse().ok()
}

pub(super) fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

fn summarize(t: &Tally, model: &str, collection: &str, scope: &str, started: Instant) {
    let secs = started.elapsed().as_secs_f64();
    println!(
        "indexed {} pictures into {model}/{collection}/{scope} in {secs:.1} s ({:.1} per second)",
        t.indexed,
        t.indexed as f64 / secs.max(1e-9)
    );
    println!(
        "skipped {} already indexed (same content), {} not pictures",
        t.already,
        t.not_images.len()
    );
    if t.updated > 0 {
        println!(
            "of those indexed, {} were already there and took their changed sidecar fields",
            t.updated
        );
    }
    if !t.failed.is_empty() {
        println!("failed {}:", t.failed.len());
        for (path, reason) in &t.failed {
            println!("  {}: {reason}", path.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_positions_and_ids() {
        assert_eq!(item_position("input.images[3]"), Some(3));
        assert_eq!(item_position("input.images[12].media_ref"), Some(12));
        assert_eq!(item_position("input.image_ids"), None);
        assert_eq!(percent_encode("a b/ç.jpg"), "a%20b%2F%C3%A7.jpg");
    }
}
