//! `execute`: embeddings of texts or uploaded pictures, nothing stored.

use aimp_embed::EncoderHandle;
use serde_json::{Value, json};

use super::inputs;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;
use crate::validate::ValidRun;

/// Answers `(output, items)`.
pub async fn execute(
    state: &AppState,
    caller: &Caller,
    encoder: &EncoderHandle,
    run: &ValidRun,
) -> Result<(Value, usize), ApiError> {
    let mut pictures = inputs::media(run, "image");
    pictures.extend(inputs::media(run, "images"));
    let embeddings = if pictures.is_empty() {
        let texts = [inputs::strings(run, "text"), inputs::strings(run, "texts")].concat();
        encoder.embed_texts(&caller.workspace, texts).await?
    } else {
        inputs::embed_media(state, caller, encoder, &pictures)
            .await?
            .1
    };
    let items = embeddings.len();
    Ok((
        json!({
            "embeddings": embeddings,
            "dimensions": encoder.dimensions(),
            "model_revision": encoder.revision().unwrap_or(&run.manifest.revision),
            "precision": run.manifest.precision.as_str(),
        }),
        items,
    ))
}
