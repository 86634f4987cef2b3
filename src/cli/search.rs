//! `aimp search --model clipo --scope NAME (--text "..." | --image FILE)`: the top results
//! of a scope, through the gateway's API.

use std::path::PathBuf;

use anyhow::{Context, bail};
use serde_json::json;

use super::client::{Client, expect_ok};

#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("query").required(true).args(["text", "image"])))]
pub struct SearchArgs {
    /// The model whose `search` mode to run.
    #[arg(long, default_value = "clipo")]
    pub model: String,
    /// The scope to search.
    #[arg(long)]
    pub scope: String,
    /// Search by this text.
    #[arg(long)]
    pub text: Option<String>,
    /// Search by this picture (uploaded first).
    #[arg(long)]
    pub image: Option<PathBuf>,
    /// How many results.
    #[arg(long, default_value_t = 10)]
    pub top_k: usize,
    /// Compare with every vector instead of walking the graph.
    #[arg(long)]
    pub exact: bool,
    #[command(flatten)]
    pub gateway: crate::settings::ClientSettings,
}

pub fn run(client: &Client, args: &SearchArgs) -> anyhow::Result<()> {
    let input = match (&args.text, &args.image) {
        (Some(text), _) => json!({ "text": text }),
        (None, Some(path)) => {
            let bytes =
                std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            let Some(content_type) = aimp_embed::sniff_content_type(&bytes) else {
                bail!("{} is not a JPEG, PNG, WebP or GIF image", path.display());
            };
            let filename = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "query".into());
            let done = expect_ok(
                &format!("uploading {}", path.display()),
                client.upload(&filename, content_type, &bytes)?,
            )?;
            json!({"image": {"media_ref": done["media_ref"], "filename": filename}})
        }
        (None, None) => bail!("give --text or --image"),
    };
    let body = json!({"model": args.model, "mode": "search", "scope": args.scope,
        "input": input, "params": {"top_k": args.top_k, "exact": args.exact}});
    let reply = expect_ok("search", client.run(&body)?)?;
    let output = &reply["output"];
    let results = output["results"].as_array().cloned().unwrap_or_default();
    if results.is_empty() {
        println!(
            "no results: scope {} of {} holds nothing",
            args.scope, args.model
        );
        return Ok(());
    }
    println!("{:>4}  {:>7}  {:<40}  filename", "rank", "score", "id");
    for (i, r) in results.iter().enumerate() {
        println!(
            "{:>4}  {:>7.4}  {:<40}  {}",
            i + 1,
            r["score"].as_f64().unwrap_or(f64::NAN),
            r["id"].as_str().unwrap_or(""),
            r["filename"]
                .as_str()
                .or_else(|| r["text"].as_str())
                .unwrap_or(""),
        );
    }
    if output["exhaustive"] == true {
        println!("(exhaustive: every vector of the scope was compared)");
    }
    Ok(())
}
