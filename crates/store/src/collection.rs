//! Collections and items as every store keeps them: where a collection lives, its parameters
//! (fixed when it is created), its record, and one item's metadata.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use aimp_index::{HnswParams, Metric};

use crate::StoreError;

/// Longest external id, in bytes.
pub const MAX_ID_BYTES: usize = 512;

/// The on-disk format of a collection's rows; stored with it, checked on open.
pub const FORMAT_VERSION: u32 = 1;

/// Where a collection lives: one HNSW graph per (workspace, model, collection, scope).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CollectionKey {
    pub workspace: String,
    pub model: String,
    pub collection: String,
    pub scope: String,
}

impl CollectionKey {
    pub fn new(workspace: &str, model: &str, collection: &str, scope: &str) -> Self {
        CollectionKey {
            workspace: workspace.into(),
            model: model.into(),
            collection: collection.into(),
            scope: scope.into(),
        }
    }

    pub fn tuple(&self) -> (&str, &str, &str, &str) {
        (&self.workspace, &self.model, &self.collection, &self.scope)
    }
}

impl std::fmt::Display for CollectionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{}/{}/{}",
            self.workspace, self.model, self.collection, self.scope
        )
    }
}

/// The number format of the encoder that produced a collection's vectors. Vectors of one
/// model at two precisions are close but not the same, so a collection holds one kind only.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Also what collections stored before precisions existed hold.
    #[default]
    Fp32,
    Int8,
}

impl Precision {
    pub fn as_str(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Int8 => "int8",
        }
    }
}

/// A collection's parameters, fixed when it is created.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CollectionParams {
    pub dim: usize,
    pub metric: Metric,
    /// The precision its vectors were encoded at.
    #[serde(default)]
    pub precision: Precision,
    pub m: usize,
    pub ef_construction: usize,
    /// The `ef` of a search that does not name one.
    pub ef_search: usize,
    /// Collections with at most this many live items are searched exactly.
    pub exact_below: usize,
    pub format_version: u32,
}

impl CollectionParams {
    pub fn new(dim: usize, metric: Metric) -> Self {
        CollectionParams {
            dim,
            metric,
            precision: Precision::Fp32,
            m: 16,
            ef_construction: 200,
            ef_search: 64,
            exact_below: 10_000,
            format_version: FORMAT_VERSION,
        }
    }

    pub fn graph(&self) -> HnswParams {
        HnswParams {
            dim: self.dim,
            metric: self.metric,
            m: self.m,
            ef_construction: self.ef_construction,
            seed: 0x5eed,
        }
    }

    /// A collection written by a newer format cannot be read by this build.
    pub fn check_format(&self, key: &CollectionKey) -> Result<(), StoreError> {
        if self.format_version > FORMAT_VERSION {
            return Err(StoreError::ParamsMismatch {
                collection: key.to_string(),
                reason: format!(
                    "stored in format {}, newer than this build's {FORMAT_VERSION}; upgrade aimp",
                    self.format_version
                ),
            });
        }
        Ok(())
    }

    /// The parameters that must agree between a stored collection and a caller.
    pub fn check_against(&self, stored: &CollectionParams) -> Result<(), String> {
        if self.dim != stored.dim {
            return Err(format!(
                "vectors have {} dimensions; the collection holds {}",
                self.dim, stored.dim
            ));
        }
        if self.metric != stored.metric {
            return Err(format!(
                "metric {} differs from the collection's {}",
                self.metric.as_str(),
                stored.metric.as_str()
            ));
        }
        check_precision(self.precision, stored.precision)
    }
}

/// A write with `given` parameters into the collection `key` stored with `stored`:
/// [`StoreError::ParamsMismatch`] saying why it may not go in.
pub fn check_write(
    key: &CollectionKey,
    given: &CollectionParams,
    stored: &CollectionParams,
) -> Result<(), StoreError> {
    stored.check_format(key)?;
    given
        .check_against(stored)
        .map_err(|reason| StoreError::ParamsMismatch {
            collection: key.to_string(),
            reason,
        })
}

/// A query for the collection `key` (stored with `params`), before it is searched: encoded
/// at the collection's precision (`None` for a raw vector of unknown origin), of its
/// dimension, and finite.
pub fn check_query(
    key: &CollectionKey,
    params: &CollectionParams,
    query: &[f32],
    precision: Option<Precision>,
) -> Result<(), StoreError> {
    if let Some(given) = precision {
        check_precision(given, params.precision).map_err(|reason| StoreError::ParamsMismatch {
            collection: key.to_string(),
            reason,
        })?;
    }
    if query.len() != params.dim {
        return Err(StoreError::InvalidInput {
            field: "vector".into(),
            reason: format!(
                "has {} dimensions; the collection holds {}",
                query.len(),
                params.dim
            ),
        });
    }
    if query.iter().any(|x| !x.is_finite()) {
        return Err(StoreError::InvalidInput {
            field: "vector".into(),
            reason: "holds a value that is not a finite number".into(),
        });
    }
    Ok(())
}

/// Vectors encoded at `given` may meet a collection built at `stored` only when they agree.
pub fn check_precision(given: Precision, stored: Precision) -> Result<(), String> {
    if given != stored {
        return Err(format!(
            "the vectors are {} but the collection was built with {} vectors, and the two are \
             never mixed; run the model at {} again (the `--precision` setting or the \
             manifest's `precision`), or index into a new collection or scope",
            given.as_str(),
            stored.as_str(),
            stored.as_str()
        ));
    }
    Ok(())
}

/// A collection as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CollectionRecord {
    pub id: u64,
    pub key: CollectionKey,
    pub params: CollectionParams,
    /// The next item number; item numbers are never reused.
    pub next_item: u64,
    /// Live items.
    pub count: u64,
    /// The next position in the deletion log.
    #[serde(default)]
    pub deletion_seq: u64,
    /// Its items are in the payload indexes (the embedded store's); false for a collection
    /// stored before they existed, until opening the store indexes it.
    #[serde(default)]
    pub payload_indexed: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What a caller sends for one item.
#[derive(Clone, Debug, PartialEq)]
pub struct NewItem {
    pub id: String,
    pub vector: Vec<f32>,
    pub filename: Option<String>,
    pub media_ref: Option<String>,
    /// What the gateway records for the item (a picture's sha256 and size, a text).
    pub system: Option<serde_json::Value>,
    /// The caller's own fields, a JSON object checked by [`crate::metadata::check`].
    pub metadata: Option<serde_json::Value>,
}

/// One item's metadata as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ItemRecord {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_ref: Option<String>,
    /// What the gateway records for the item (a picture's sha256, width, height and content
    /// type; a text). Stored as `metadata`, its name before items had their own.
    #[serde(default, rename = "metadata", skip_serializing_if = "Option::is_none")]
    pub system: Option<serde_json::Value>,
    /// The caller's own fields.
    #[serde(default, rename = "user", skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Value>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// An item as a store keeps it: its record, timestamps included, and its vector. What
/// [`crate::Store::export_items`] reads and [`crate::Store::import_items`] writes, so an item
/// moves between stores unchanged.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredItem {
    pub record: ItemRecord,
    pub vector: Vec<f32>,
}

impl StoredItem {
    /// Items as another store kept them, checked like an upsert's ([`check_items`]): each as
    /// a caller would have sent it, with its (created, updated) times.
    #[allow(clippy::type_complexity)]
    pub fn checked(
        params: &CollectionParams,
        items: Vec<StoredItem>,
    ) -> Result<Vec<(NewItem, (DateTime<Utc>, DateTime<Utc>))>, StoreError> {
        let (plain, stamps): (Vec<NewItem>, Vec<_>) =
            items.into_iter().map(StoredItem::into_new).unzip();
        check_items(params, &plain)?;
        Ok(plain.into_iter().zip(stamps).collect())
    }

    /// The item as a caller would have sent it, and its (created, updated) times.
    pub fn into_new(self) -> (NewItem, (DateTime<Utc>, DateTime<Utc>)) {
        let r = self.record;
        let item = NewItem {
            id: r.id,
            vector: self.vector,
            filename: r.filename,
            media_ref: r.media_ref,
            system: r.system,
            metadata: r.metadata,
        };
        (item, (r.created_at, r.updated_at))
    }
}

/// Checks a batch before it reaches a transaction: ids, dimensions, finite values, no id
/// twice.
pub fn check_items(params: &CollectionParams, items: &[NewItem]) -> Result<(), StoreError> {
    let mut seen = HashMap::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let field = |name: &str| format!("items[{i}].{name}");
        if item.id.is_empty() || item.id.len() > MAX_ID_BYTES {
            return Err(StoreError::InvalidInput {
                field: field("id"),
                reason: format!("must be 1 to {MAX_ID_BYTES} bytes"),
            });
        }
        if let Some(first) = seen.insert(item.id.as_str(), i) {
            return Err(StoreError::InvalidInput {
                field: field("id"),
                reason: format!("{:?} is also items[{first}].id", item.id),
            });
        }
        if item.vector.len() != params.dim {
            return Err(StoreError::InvalidInput {
                field: field("vector"),
                reason: format!(
                    "has {} dimensions; the collection holds {}",
                    item.vector.len(),
                    params.dim
                ),
            });
        }
        if item.vector.iter().any(|x| !x.is_finite()) {
            return Err(StoreError::InvalidInput {
                field: field("vector"),
                reason: "holds a value that is not a finite number".into(),
            });
        }
        if let Some(meta) = &item.metadata {
            crate::metadata::check(meta).map_err(|e| StoreError::InvalidInput {
                field: if e.path.is_empty() {
                    field("metadata")
                } else {
                    format!("{}.{}", field("metadata"), e.path)
                },
                reason: e.reason,
            })?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_are_checked_against_the_stored_collection() {
        let key = CollectionKey::new("w", "m", "c", "s");
        let stored = CollectionParams::new(4, Metric::Cosine);
        assert!(stored.check_format(&key).is_ok());
        let newer = CollectionParams {
            format_version: FORMAT_VERSION + 1,
            ..stored
        };
        let err = newer.check_format(&key).expect_err("newer format");
        assert!(err.to_string().contains("upgrade aimp"), "{err}");
        let other_dim = CollectionParams::new(8, Metric::Cosine);
        assert!(other_dim.check_against(&stored).is_err());
        let other_metric = CollectionParams::new(4, Metric::L2);
        assert!(other_metric.check_against(&stored).is_err());
        let mut int8 = stored;
        int8.precision = Precision::Int8;
        let err = int8.check_against(&stored).expect_err("int8 into fp32");
        assert!(err.contains("int8") && err.contains("fp32"), "{err}");
        assert!(stored.check_against(&stored).is_ok());
    }
}
