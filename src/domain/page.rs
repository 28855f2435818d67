//! Keyset paging of the list endpoints.

/// A page request: items after `after` (a position from a previous page), at most `limit`.
#[derive(Clone, Copy, Debug)]
pub struct PageRequest {
    pub after: Option<i64>,
    pub limit: usize,
}

/// A page of items, oldest first, and the position to continue from.
#[derive(Clone, Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<i64>,
}
