//! CLIP's byte-level BPE tokenizer: lower-cased, whitespace-collapsed text, a start token, at
//! most `max_len` tokens in all (the 77 of CLIP's context), and an end token whose position
//! carries the text feature.
//!
//! Reference: `transformers.CLIPTokenizer`, and OpenAI's `simple_tokenizer.py`
//! (<https://github.com/openai/CLIP>). The `tokenizer.json` is the Hugging Face layout.

use std::path::Path;

use tokenizers::{Tokenizer, TruncationParams};

use crate::EmbedError;

const END_OF_TEXT: &str = "<|endoftext|>";

/// A loaded CLIP tokenizer.
pub struct ClipTokenizer {
    slug: String,
    inner: Tokenizer,
    end_id: u32,
    max_len: usize,
}

impl std::fmt::Debug for ClipTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClipTokenizer")
            .field("slug", &self.slug)
            .field("end_id", &self.end_id)
            .finish_non_exhaustive()
    }
}

impl ClipTokenizer {
    /// Loads `tokenizer.json`; every encoding is truncated to `max_len` tokens, special tokens
    /// included.
    pub fn from_file(slug: &str, path: &Path, max_len: usize) -> Result<Self, EmbedError> {
        let err = |reason: String| EmbedError::Tokenizer {
            slug: slug.to_string(),
            reason,
        };
        let mut inner = Tokenizer::from_file(path).map_err(|e| err(e.to_string()))?;
        inner
            .with_truncation(Some(TruncationParams {
                max_length: max_len,
                ..TruncationParams::default()
            }))
            .map_err(|e| err(e.to_string()))?;
        inner.with_padding(None);
        let end_id = inner
            .token_to_id(END_OF_TEXT)
            .ok_or_else(|| err(format!("{END_OF_TEXT} is not in the vocabulary")))?;
        Ok(ClipTokenizer {
            slug: slug.to_string(),
            inner,
            end_id,
            max_len,
        })
    }

    /// The most tokens an encoding has, start and end tokens included.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// The id of `<|endoftext|>`.
    pub fn end_id(&self) -> u32 {
        self.end_id
    }

    /// Token ids of each text, unpadded: start token, text, end token.
    pub fn encode(&self, texts: &[String]) -> Result<Vec<Vec<u32>>, EmbedError> {
        let encodings =
            self.inner
                .encode_batch(texts.to_vec(), true)
                .map_err(|e| EmbedError::Tokenizer {
                    slug: self.slug.clone(),
                    reason: e.to_string(),
                })?;
        Ok(encodings.iter().map(|e| e.get_ids().to_vec()).collect())
    }

    /// Where the text feature is read: the first end token (as transformers' CLIPTextModel
    /// pools), or the last position when truncation left none.
    pub fn feature_position(&self, ids: &[u32]) -> usize {
        ids.iter()
            .position(|&id| id == self.end_id)
            .unwrap_or(ids.len().saturating_sub(1))
    }
}
