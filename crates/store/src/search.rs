//! What writes and searches answer, and how a search runs.

use std::sync::Arc;

use crate::{Filter, ItemRecord, Precision};

/// What an upsert did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpsertOutcome {
    /// Items written (new and replaced).
    pub written: usize,
    /// Of those, ids that existed before and were replaced.
    pub replaced: usize,
    /// Live items in the collection afterwards.
    pub count: u64,
}

/// What a delete did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeleteOutcome {
    pub deleted: usize,
    /// The ids deleted.
    pub ids: Vec<String>,
    /// Ids asked for that were not in the collection.
    pub not_found: Vec<String>,
    /// Ids asked for that the filter did not pass; they are kept.
    pub kept: Vec<String>,
    pub count: u64,
}

/// One search hit with its stored metadata.
#[derive(Clone, Debug, PartialEq)]
pub struct Hit {
    pub item: ItemRecord,
    /// Cosine similarity, inner product, or Euclidean distance, by the collection's metric.
    pub score: f32,
    pub distance: f32,
}

/// A search answer.
#[derive(Clone, Debug, PartialEq)]
pub struct SearchOutcome {
    pub hits: Vec<Hit>,
    /// How it was answered.
    pub plan: Plan,
    pub count: u64,
}

impl SearchOutcome {
    /// True when every live item (passing the filter, if any) was compared: exact search.
    pub fn exhaustive(&self) -> bool {
        self.plan == Plan::Exact
    }
}

/// How a search was answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plan {
    /// Every live item (passing the filter, if any) compared.
    Exact,
    /// The graph walked, the filter (if any) asked inside the walk.
    Walk,
    /// The graph walked without the filter, then the filter asked about the nearest found.
    WalkThenFilter,
}

/// How a search runs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SearchOptions {
    pub top_k: usize,
    /// Candidates explored; the collection's `ef_search` when absent.
    pub ef: Option<usize>,
    /// Compare with every live item.
    pub exact: bool,
    /// The precision the query was encoded at; a collection built at another is refused.
    /// `None` for a raw vector of unknown origin.
    pub precision: Option<Precision>,
    /// Only items this filter passes are candidates.
    pub filter: Option<Arc<Filter>>,
    /// Apply the filter inside the graph walk whatever the planner would choose: the plain
    /// in-walk filter, the baseline `aimp bench filter` measures the planner against.
    pub walk: bool,
}
