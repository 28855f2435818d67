//! Stored rows into domain records, the same for every backend.

use std::sync::Arc;

use super::StoreError;
use crate::domain::{Id, Queue, QueueInput, Refusal, Representative, RepresentativeInput};

pub fn decode<T: serde::de::DeserializeOwned>(doc: &str) -> Result<T, StoreError> {
    Ok(serde_json::from_str(doc)?)
}

pub fn id(text: &str) -> Result<Id, StoreError> {
    Id::parse(text).map_err(|e| StoreError::Refused(Refusal::BadRequest(e.to_string())))
}

/// A representative row's columns.
pub struct RepRow<'a> {
    pub id: &'a str,
    pub input: Arc<RepresentativeInput>,
    pub used_capacity: i64,
    pub version: i64,
    pub updated_at: String,
    pub last_assigned_ms: Option<i64>,
    pub revision: i64,
}

pub fn representative(row: RepRow<'_>) -> Result<Representative, StoreError> {
    let mut rep = Representative::with_shared_input(
        id(row.id)?,
        row.input,
        row.used_capacity,
        row.version as u64,
        row.updated_at,
    );
    rep.last_assigned_ms = row.last_assigned_ms;
    rep.revision = row.revision as u64;
    Ok(rep)
}

pub fn queue(id_: &str, doc: &str, version: i64, updated_at: String) -> Result<Queue, StoreError> {
    let input: QueueInput = decode(doc)?;
    Ok(Queue { id: id(id_)?, input, version: version as u64, updated_at })
}
