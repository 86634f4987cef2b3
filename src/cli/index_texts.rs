//! `aimp index --texts FILE.jsonl --scope NAME`: texts indexed through the gateway's API in
//! batches, one `{"id": "...", "text": "...", "metadata": {...}}` a line (`metadata`
//! optional). Resumable: an id the scope holds already with the same text and fields is
//! skipped, so a second run sends only what is new or changed.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};

use super::client::{Client, expect_ok};
use super::index::{listing, say};

/// One line of the file.
#[derive(Debug, Clone, PartialEq)]
struct Line {
    number: usize,
    id: String,
    text: String,
    metadata: Option<Value>,
}

pub fn run(
    client: &Client,
    file: &Path,
    model: &str,
    scope: &str,
    batch: usize,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let lines = parse(&text).with_context(|| format!("in {}", file.display()))?;
    let collection = text_collection(client, model)?;
    // What the scope holds: each id's text and fields.
    let held: HashMap<String, (Value, Value)> = listing(client, model, &collection, scope)?
        .into_iter()
        .filter_map(|item| {
            let id = item["id"].as_str()?.to_string();
            Some((id, (item["text"].clone(), item["metadata"].clone())))
        })
        .collect();
    let (todo, unchanged): (Vec<Line>, Vec<Line>) = lines.into_iter().partition(|l| {
        held.get(&l.id).is_none_or(|(t, m)| {
            t.as_str() != Some(l.text.as_str()) || *m != l.metadata.clone().unwrap_or(Value::Null)
        })
    });
    let bar = ProgressBar::new(todo.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} texts  {per_sec}  eta {eta}  {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut indexed = 0usize;
    let mut failed: Vec<(usize, String)> = Vec::new();
    for chunk in todo.chunks(batch) {
        let mut chunk: Vec<&Line> = chunk.iter().collect();
        while !chunk.is_empty() {
            match client.run(&body(model, scope, &chunk))? {
                Ok(_) => {
                    bar.inc(chunk.len() as u64);
                    indexed += chunk.len();
                    break;
                }
                Err(e) if e.status == 400 => {
                    // Runs are all or nothing: the refused text is reported, the rest sent
                    // again without it.
                    let Some(i) = e
                        .param
                        .as_deref()
                        .and_then(position)
                        .filter(|i| *i < chunk.len())
                    else {
                        bail!("index run refused: {e}");
                    };
                    let bad = chunk.remove(i);
                    bar.inc(1);
                    say(
                        &bar,
                        format!("failed line {} ({}): {}", bad.number, bad.id, e.message),
                    );
                    failed.push((bad.number, e.message));
                }
                Err(e) => bail!("index run: {e}"),
            }
        }
    }
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "indexed {indexed} texts into {model}/{collection}/{scope} in {secs:.1} s ({:.1} per second)",
        indexed as f64 / secs.max(1e-9)
    );
    println!(
        "skipped {} already indexed with the same text and metadata",
        unchanged.len()
    );
    if !failed.is_empty() {
        println!("failed {}:", failed.len());
        for (line, reason) in &failed {
            println!("  line {line}: {reason}");
        }
        bail!("{} texts could not be indexed (listed above)", failed.len());
    }
    Ok(())
}

fn body(model: &str, scope: &str, chunk: &[&Line]) -> Value {
    let mut input = json!({
        "texts": chunk.iter().map(|l| l.text.as_str()).collect::<Vec<_>>(),
        "text_ids": chunk.iter().map(|l| l.id.as_str()).collect::<Vec<_>>(),
    });
    if chunk.iter().any(|l| l.metadata.is_some()) {
        input["metadata"] = chunk
            .iter()
            .map(|l| l.metadata.clone().unwrap_or_else(|| json!({})))
            .collect();
    }
    json!({"model": model, "mode": "index", "scope": scope, "input": input, "params": {}})
}

/// The collection the model's `index` mode writes, which must take texts.
fn text_collection(client: &Client, model: &str) -> anyhow::Result<String> {
    let m = expect_ok(
        &format!("model {model}"),
        client.get(&format!("/api/marketplace/models/{model}"))?,
    )?;
    let index = &m["modes"]["index"];
    if index["input_schema"]["properties"].get("texts").is_none() {
        bail!("model {model} does not index texts (its index mode takes no `texts`)");
    }
    index["collection"]
        .as_str()
        .map(str::to_string)
        .with_context(|| format!("model {model}'s index mode names no collection"))
}

/// `input.texts[3]`, `input.text_ids[3]` or `input.metadata[3].tags` → 3.
fn position(param: &str) -> Option<usize> {
    let rest = ["input.texts[", "input.text_ids[", "input.metadata["]
        .iter()
        .find_map(|p| param.strip_prefix(p))?;
    rest[..rest.find(']')?].parse().ok()
}

fn parse(text: &str) -> anyhow::Result<Vec<Line>> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    for (i, raw) in text.lines().enumerate() {
        let number = i + 1;
        if raw.trim().is_empty() {
            continue;
        }
        let Ok(Value::Object(mut row)) = serde_json::from_str::<Value>(raw) else {
            bail!("line {number}: not a JSON object");
        };
        let Some(Value::String(id)) = row.remove("id") else {
            bail!("line {number}: needs \"id\", a string");
        };
        let Some(Value::String(text)) = row.remove("text") else {
            bail!("line {number}: needs \"text\", a string");
        };
        let metadata = match row.remove("metadata") {
            None | Some(Value::Null) => None,
            Some(m @ Value::Object(_)) => Some(m),
            Some(_) => bail!("line {number}: \"metadata\" must be an object"),
        };
        if let Some(other) = row.keys().next() {
            bail!("line {number}: unknown key {other:?} (a line holds id, text and metadata)");
        }
        if id.is_empty() {
            bail!("line {number}: \"id\" is empty");
        }
        if !seen.insert(id.clone()) {
            bail!("line {number}: id {id:?} is on an earlier line too");
        }
        out.push(Line {
            number,
            id,
            text,
            metadata,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_read_and_bad_ones_named() {
        let lines = parse(
            "{\"id\": \"a\", \"text\": \"first\", \"metadata\": {\"team\": \"legal\"}}\n\n\
             {\"id\": \"b\", \"text\": \"second\"}\n",
        )
        .expect("parse");
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].metadata, Some(json!({"team": "legal"})));
        assert_eq!((lines[1].number, lines[1].metadata.clone()), (3, None));
        for (bad, says) in [
            (
                "{\"id\": \"a\", \"text\": \"x\"}\n{\"id\": \"a\", \"text\": \"y\"}",
                "line 2",
            ),
            ("{\"text\": \"x\"}", "needs \"id\""),
            ("{\"id\": \"a\"}", "needs \"text\""),
            (
                "{\"id\": \"a\", \"text\": \"x\", \"metadata\": [1]}",
                "must be an object",
            ),
            (
                "{\"id\": \"a\", \"text\": \"x\", \"tags\": 1}",
                "unknown key \"tags\"",
            ),
            ("nope", "not a JSON object"),
        ] {
            let err = parse(bad).expect_err(bad);
            assert!(err.to_string().contains(says), "{bad}: {err}");
        }
        assert_eq!(position("input.texts[4]"), Some(4));
        assert_eq!(position("input.metadata[2].tags[0]"), Some(2));
        assert_eq!(position("input.scope"), None);
    }
}
