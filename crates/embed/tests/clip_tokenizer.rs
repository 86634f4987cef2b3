//! Token-for-token parity of our CLIP tokenizer with transformers' CLIPTokenizer on 211 varied
//! strings (unicode, emoji, long text, punctuation, special-token look-alikes), built from the
//! real CLIP BPE vocabulary by `scripts/reference/clip_tokenizer.py`.

use std::path::Path;

use aimp_embed::ClipTokenizer;
use serde::Deserialize;

#[derive(Deserialize)]
struct Reference {
    max_length: usize,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    text: String,
    ids: Vec<u32>,
}

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../models/clipo/fixtures");

fn reference() -> Reference {
    let text = std::fs::read_to_string(Path::new(FIXTURES).join("tokenizer_reference.json"))
        .expect("read reference");
    serde_json::from_str(&text).expect("parse reference")
}

fn tokenizer(max_len: usize) -> ClipTokenizer {
    ClipTokenizer::from_file(
        "clipo",
        &Path::new(FIXTURES).join("tokenizer.json"),
        max_len,
    )
    .expect("load tokenizer")
}

#[test]
fn matches_transformers_token_for_token() {
    let reference = reference();
    assert!(reference.cases.len() >= 200);
    let tok = tokenizer(reference.max_length);
    let texts: Vec<String> = reference.cases.iter().map(|c| c.text.clone()).collect();
    let got = tok.encode(&texts).expect("encode");
    let mut mismatches = Vec::new();
    for (case, ids) in reference.cases.iter().zip(&got) {
        if &case.ids != ids {
            mismatches.push(format!(
                "{:?}: want {:?} got {:?}",
                case.text, case.ids, ids
            ));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[test]
fn truncation_keeps_start_and_end_tokens() {
    let reference = reference();
    let tok = tokenizer(reference.max_length);
    let ids = &tok.encode(&["word ".repeat(200)]).expect("encode")[0];
    assert_eq!(ids.len(), 77);
    assert_eq!(ids[0], 49406);
    assert_eq!(ids[76], tok.end_id());
    assert_eq!(tok.feature_position(ids), 76);
    let short = &tok
        .encode(&["a photo of a cat".to_string()])
        .expect("encode")[0];
    assert_eq!(short, &[49406, 320, 1125, 539, 320, 2368, 49407]);
    assert_eq!(tok.feature_position(short), 6);
}
