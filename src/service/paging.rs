//! Keyset paging over an increasing integer key.

/// A request for one page: at most `first` rows that come after the row keyed `after` in the
/// list's order.
#[derive(Debug, Clone, Copy)]
pub struct PageRequest {
    pub first: u64,
    pub after: Option<i64>,
}

/// The largest page a client may ask for.
pub const MAX_PAGE: u64 = 500;
/// The page size when the client gives none.
pub const DEFAULT_PAGE: u64 = 50;

/// One page of rows, each with its key, and whether more follow.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub rows: Vec<(i64, T)>,
    pub has_next: bool,
    pub total: u64,
}

impl<T> Page<T> {
    /// Builds a page from up to `first + 1` fetched rows (the extra one tells that more follow).
    pub fn from_fetched(mut rows: Vec<(i64, T)>, request: PageRequest, total: u64) -> Self {
        let has_next = rows.len() as u64 > request.first;
        rows.truncate(request.first as usize);
        Self { rows, has_next, total }
    }
}
