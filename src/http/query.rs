//! Strict query strings: unknown parameters and repeats of single-valued ones are `400`,
//! so a misspelt filter is never silently ignored.

use super::error::ApiError;
use crate::domain::PageRequest;
use crate::domain::{Id, Presence, Status};

/// The parameters of one query string, checked against what the endpoint takes.
#[derive(Debug, Default)]
pub struct QueryParams {
    pairs: Vec<(String, String)>,
}

/// A parameter an endpoint takes, and whether it may repeat.
pub struct Param(pub &'static str, pub bool);

pub const PAGING: [Param; 2] = [Param("limit", false), Param("cursor", false)];
const CURSOR_PREFIX: &str = "p1.";

pub fn cursor(seq: i64) -> String {
    format!("{CURSOR_PREFIX}{seq:x}")
}

impl QueryParams {
    pub fn parse(raw: Option<&str>, allowed: &[&[Param]]) -> Result<Self, ApiError> {
        let pairs: Vec<(String, String)> = form_urlencoded::parse(raw.unwrap_or("").as_bytes()).into_owned().collect();
        let known = || allowed.iter().flat_map(|ps| ps.iter());
        for (i, (name, _)) in pairs.iter().enumerate() {
            let Some(param) = known().find(|p| p.0 == name) else {
                let names: Vec<&str> = known().map(|p| p.0).collect();
                return Err(ApiError::bad_request(format!(
                    "unknown query parameter `{name}` (this endpoint takes: {})",
                    names.join(", ")
                )));
            };
            if !param.1 && pairs[..i].iter().any(|(n, _)| n == name) {
                return Err(ApiError::bad_request(format!("query parameter `{name}` may appear only once")));
            }
        }
        Ok(Self { pairs })
    }

    pub fn one(&self, name: &str) -> Option<&str> {
        self.pairs.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.pairs.iter().filter(move |(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    pub fn has(&self, name: &str) -> bool {
        self.one(name).is_some()
    }

    fn invalid(name: &str, value: &str, expected: &str) -> ApiError {
        ApiError::bad_request(format!("invalid value `{value}` for query parameter `{name}` (expected {expected})"))
    }

    pub fn id(&self, name: &str) -> Result<Option<Id>, ApiError> {
        self.one(name)
            .map(|v| Id::parse(v).map_err(|e| ApiError::bad_request(format!("query parameter `{name}`: {e}"))))
            .transpose()
    }

    pub fn ids(&self, name: &str) -> Result<Vec<Id>, ApiError> {
        self.all(name)
            .map(|v| Id::parse(v).map_err(|e| ApiError::bad_request(format!("query parameter `{name}`: {e}"))))
            .collect()
    }

    pub fn text(&self, name: &str) -> Option<String> {
        self.one(name).map(str::to_lowercase)
    }

    pub fn bool(&self, name: &str) -> Result<Option<bool>, ApiError> {
        self.one(name)
            .map(|v| match v {
                "true" => Ok(true),
                "false" => Ok(false),
                _ => Err(Self::invalid(name, v, "`true` or `false`")),
            })
            .transpose()
    }

    pub fn u32(&self, name: &str) -> Result<Option<u32>, ApiError> {
        self.one(name)
            .map(|v| v.parse::<u32>().map_err(|_| Self::invalid(name, v, "a non-negative integer")))
            .transpose()
    }

    pub fn presences(&self) -> Result<Vec<Presence>, ApiError> {
        self.all("presence")
            .map(|v| {
                Presence::parse(v)
                    .ok_or_else(|| Self::invalid("presence", v, "one of available, busy, busy_dnd, away, offline"))
            })
            .collect()
    }

    pub fn statuses(&self) -> Result<Vec<Status>, ApiError> {
        self.all("status")
            .map(|v| {
                Status::parse(v)
                    .ok_or_else(|| Self::invalid("status", v, "one of open, active, waiting, wrap_up, closed"))
            })
            .collect()
    }

    /// `limit`: an integer from 1 to 1000, if given.
    pub fn limit(&self) -> Result<Option<usize>, ApiError> {
        self.one("limit")
            .map(|v| {
                v.parse::<usize>()
                    .ok()
                    .filter(|n| (1..=1000).contains(n))
                    .ok_or_else(|| Self::invalid("limit", v, "an integer from 1 to 1000"))
            })
            .transpose()
    }

    /// `limit` (1-1000, default 100) and `cursor` (from a previous page's `next_cursor`).
    pub fn page(&self) -> Result<PageRequest, ApiError> {
        let limit = self.limit()?.unwrap_or(100);
        let after = self
            .one("cursor")
            .map(|v| {
                v.strip_prefix(CURSOR_PREFIX)
                    .and_then(|hex| i64::from_str_radix(hex, 16).ok())
                    .filter(|seq| *seq > 0)
                    .ok_or_else(|| {
                        Self::invalid("cursor", v, "the `next_cursor` of a previous page, passed back unchanged")
                    })
            })
            .transpose()?;
        Ok(PageRequest { after, limit })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILTERS: [Param; 2] = [Param("status", true), Param("queue", false)];

    #[test]
    fn unknown_and_repeated_parameters_are_refused() {
        assert!(QueryParams::parse(Some("stauts=open"), &[&FILTERS]).is_err());
        assert!(QueryParams::parse(Some("queue=a&queue=b"), &[&FILTERS]).is_err());
        let q = QueryParams::parse(Some("status=open&status=active"), &[&FILTERS]).unwrap();
        assert_eq!(q.statuses().unwrap(), vec![Status::Open, Status::Active]);
    }

    #[test]
    fn paging_bounds_and_cursors() {
        let page = |s| QueryParams::parse(Some(s), &[&PAGING]).and_then(|q| q.page());
        assert_eq!(page("limit=1000").unwrap().limit, 1000);
        assert!(page("limit=0").is_err());
        assert!(page("limit=1001").is_err());
        assert!(page("cursor=garbage").is_err());
        assert_eq!(page(&format!("cursor={}", cursor(42))).unwrap().after, Some(42));
    }
}
