//! Records as the `jsonb` of their rows, and back.

use aimp_store::StoreError;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::Result;

/// The record `what` names (`api_keys/<id>`, `item <id>`) from its row's `jsonb`; a row that
/// does not decode is [`StoreError::Corrupt`].
pub fn decode<T: DeserializeOwned>(
    what: impl std::fmt::Display,
    value: serde_json::Value,
) -> Result<T> {
    serde_json::from_value(value).map_err(|source| {
        StoreError::Corrupt {
            key: what.to_string(),
            source,
        }
        .into()
    })
}

/// A record as `jsonb`: records of strings, numbers and dates always serialise.
pub fn encode<T: Serialize>(record: &T) -> serde_json::Value {
    serde_json::to_value(record).unwrap_or_default()
}
