//! The metadata sidecar of `aimp index DIR`: each picture's own fields, keyed by its path
//! relative to the folder (`/`-separated, as the picture's id), in JSON Lines or CSV.
//!
//! - JSON Lines (`.jsonl`): one `{"path": "2024/beach.jpg", "metadata": {...}}` a line; blank
//!   lines are skipped.
//! - CSV (`.csv`): a header row with a `path` column; every other column is a field. A cell
//!   that reads as a JSON number or `true`/`false` is that, an empty cell is left out, anything
//!   else is a string.
//!
//! A path named twice, a line that is not an object, or a row without its path is refused
//! with the file's line number, before anything is sent.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde_json::{Map, Value};

/// The names `aimp index` looks for in the folder when `--metadata` is not given.
pub const DEFAULT_NAMES: [&str; 2] = ["metadata.jsonl", "metadata.csv"];

/// The sidecar to read: `given`, else the one default name present in `dir`.
pub fn locate(dir: &Path, given: Option<&Path>) -> anyhow::Result<Option<PathBuf>> {
    if let Some(p) = given {
        return Ok(Some(p.to_path_buf()));
    }
    let found: Vec<PathBuf> = DEFAULT_NAMES
        .iter()
        .map(|n| dir.join(n))
        .filter(|p| p.is_file())
        .collect();
    match found.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(one.clone())),
        _ => bail!(
            "{} holds both metadata.jsonl and metadata.csv; name one with --metadata",
            dir.display()
        ),
    }
}

/// Each path's fields.
pub fn read(path: &Path) -> anyhow::Result<HashMap<String, Value>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let csv = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    let rows = if csv {
        from_csv(&text)
    } else {
        from_jsonl(&text)
    };
    rows.with_context(|| format!("in {}", path.display()))
}

fn insert(
    out: &mut HashMap<String, Value>,
    line: usize,
    key: String,
    fields: Map<String, Value>,
) -> anyhow::Result<()> {
    let key = normalise(&key);
    if key.is_empty() {
        bail!("line {line}: empty path");
    }
    if out.insert(key.clone(), Value::Object(fields)).is_some() {
        bail!("line {line}: {key:?} is named twice");
    }
    Ok(())
}

/// `./a\b.jpg` and `a/b.jpg` name the same picture.
fn normalise(path: &str) -> String {
    let p = path.trim().replace('\\', "/");
    p.trim_start_matches("./").to_string()
}

fn from_jsonl(text: &str) -> anyhow::Result<HashMap<String, Value>> {
    let mut out = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let row: Value =
            serde_json::from_str(line).with_context(|| format!("line {n}: not a JSON object"))?;
        let Value::Object(mut row) = row else {
            bail!("line {n}: not a JSON object");
        };
        let Some(Value::String(key)) = row.remove("path") else {
            bail!("line {n}: needs \"path\", the picture's path relative to the folder");
        };
        let fields = match row.remove("metadata") {
            Some(Value::Object(m)) => m,
            None => Map::new(),
            Some(_) => bail!("line {n}: \"metadata\" must be an object"),
        };
        if let Some(other) = row.keys().next() {
            bail!("line {n}: unknown key {other:?} (a line holds \"path\" and \"metadata\")");
        }
        insert(&mut out, n, key, fields)?;
    }
    Ok(out)
}

fn from_csv(text: &str) -> anyhow::Result<HashMap<String, Value>> {
    let mut reader = csv::ReaderBuilder::new().from_reader(text.as_bytes());
    let headers = reader.headers().context("line 1: no header row")?.clone();
    let Some(path_col) = headers.iter().position(|h| h.trim() == "path") else {
        bail!("line 1: the header has no \"path\" column");
    };
    let mut out = HashMap::new();
    for record in reader.records() {
        let record = record.context("not valid CSV")?;
        let n = record.position().map_or(0, |p| p.line() as usize);
        let Some(key) = record.get(path_col) else {
            bail!("line {n}: no path");
        };
        let mut fields = Map::new();
        for (col, cell) in record.iter().enumerate() {
            if col == path_col || cell.is_empty() {
                continue;
            }
            let name = headers.get(col).unwrap_or_default().trim().to_string();
            fields.insert(name, cell_value(cell));
        }
        insert(&mut out, n, key.to_string(), fields)?;
    }
    Ok(out)
}

/// A number or boolean when the cell reads as one (as JSON), else the text itself.
fn cell_value(cell: &str) -> Value {
    match serde_json::from_str::<Value>(cell.trim()) {
        Ok(v @ (Value::Number(_) | Value::Bool(_))) => v,
        _ => Value::String(cell.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_lines_and_csv_give_the_same_fields() {
        let jsonl = from_jsonl(
            "{\"path\": \"2024/beach.jpg\", \"metadata\": {\"album\": \"Holidays\", \"year\": 2024, \"fav\": true}}\n\n\
             {\"path\": \"./b.png\"}\n",
        )
        .expect("jsonl");
        let csv =
            from_csv("path,album,year,fav\n2024/beach.jpg,Holidays,2024,true\n\"b.png\",,,\n")
                .expect("csv");
        assert_eq!(jsonl, csv);
        assert_eq!(
            jsonl["2024/beach.jpg"],
            json!({"album": "Holidays", "year": 2024, "fav": true})
        );
        assert_eq!(jsonl["b.png"], json!({}));
        // Quoted commas and text that only looks numeric in part stay strings.
        let csv = from_csv("path,title,code\na.jpg,\"Hello, world\",007x\n").expect("csv");
        assert_eq!(
            csv["a.jpg"],
            json!({"title": "Hello, world", "code": "007x"})
        );
    }

    #[test]
    fn bad_sidecars_are_refused_with_the_line() {
        let twice =
            from_jsonl("{\"path\": \"a.jpg\"}\n{\"path\": \"./a.jpg\"}\n").expect_err("twice");
        assert!(format!("{twice:#}").contains("line 2"), "{twice:#}");
        let no_path = from_jsonl("{\"metadata\": {}}\n").expect_err("no path");
        assert!(format!("{no_path:#}").contains("line 1"), "{no_path:#}");
        let not_object = from_jsonl("[1, 2]\n").expect_err("array");
        assert!(format!("{not_object:#}").contains("not a JSON object"));
        let stray = from_jsonl("{\"path\": \"a.jpg\", \"album\": \"x\"}\n").expect_err("key");
        assert!(format!("{stray:#}").contains("unknown key \"album\""));
        let header = from_csv("file,album\na.jpg,x\n").expect_err("no path column");
        assert!(format!("{header:#}").contains("\"path\" column"));
        let twice = from_csv("path,a\nx.jpg,1\nx.jpg,2\n").expect_err("twice");
        assert!(format!("{twice:#}").contains("line 3"), "{twice:#}");
    }
}
