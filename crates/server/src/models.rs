//! Which models are loaded and ready to encode.

use std::collections::HashMap;
use std::sync::RwLock;

use aimp_embed::EncoderHandle;

/// The state of one model in this process.
#[derive(Clone, Debug)]
pub enum ModelState {
    /// Being installed or loaded; runs answer 503 until it is ready.
    Loading,
    Ready(EncoderHandle),
    /// Loading failed (for example a weight file that no longer matches its sha256).
    Failed(String),
}

/// The models of this process, by slug. A model absent here was never asked to load.
#[derive(Debug, Default)]
pub struct ModelSet {
    states: RwLock<HashMap<String, ModelState>>,
}

impl ModelSet {
    pub fn set(&self, slug: &str, state: ModelState) {
        let mut states = self.states.write().unwrap_or_else(|p| p.into_inner());
        states.insert(slug.to_string(), state);
    }

    pub fn get(&self, slug: &str) -> Option<ModelState> {
        let states = self.states.read().unwrap_or_else(|p| p.into_inner());
        states.get(slug).cloned()
    }

    /// Every model's state, sorted by slug.
    pub fn all(&self) -> Vec<(String, ModelState)> {
        let states = self.states.read().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<_> = states.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}
