//! Relay-style connections over the services' keyset pages.

use async_graphql::{
    OutputType, SimpleObject,
    connection::{
        Connection, ConnectionNameType, DefaultConnectionName, DefaultEdgeName, Edge, EdgeNameType, EmptyFields,
    },
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD as B64};

use crate::{
    error::{AppError, AppResult},
    service::paging::{DEFAULT_PAGE, MAX_PAGE, Page, PageRequest},
};

/// Fields every connection carries besides its edges.
#[derive(SimpleObject)]
pub struct Totals {
    /// How many rows the whole list holds, over all pages.
    pub total_count: u64,
}

/// A connection whose type names are given (`C`, `E`).
pub type PagedAs<N, C, E> = Connection<String, N, Totals, EmptyFields, C, E>;
/// A connection named after its node (`WebhookConnection`, `WebhookEdge`).
pub type Paged<N> = PagedAs<N, DefaultConnectionName, DefaultEdgeName>;

/// What a page costs in the query's complexity (`HOOKLINE_MAX_QUERY_COMPLEXITY`): the rows it
/// may hold times what each row asks for, so that nested pages multiply.
pub fn page_cost(first: Option<i32>, child_complexity: usize) -> usize {
    let rows = first.map_or(DEFAULT_PAGE, |n| n.clamp(0, MAX_PAGE as i32) as u64) as usize;
    rows.max(1).saturating_mul(child_complexity).saturating_add(1)
}

/// What a list of one result per input costs (the batch mutations): the inputs times what
/// each result asks for.
pub fn list_cost(inputs: usize, child_complexity: usize) -> usize {
    inputs.max(1).saturating_mul(child_complexity).saturating_add(1)
}

/// What reading a whole itemtype to match criteria costs (`items(criteria:)`,
/// `filterPreview`): a page is cheap, the scan behind it is not.
pub const SCAN_COST: usize = 1000;

pub fn scan_cost(scans: bool) -> usize {
    if scans { SCAN_COST } else { 0 }
}

/// Reads `first`: the default page when absent, refused beyond the largest.
pub fn page_size(first: Option<i32>) -> AppResult<u64> {
    match first {
        None => Ok(DEFAULT_PAGE),
        Some(n) if n >= 0 && (n as u64) <= MAX_PAGE => Ok(n as u64),
        Some(n) => Err(AppError::validation(format!("first: must be between 0 and {MAX_PAGE}, not {n}"))),
    }
}

/// Reads `first` and `after` into a page request.
pub fn page_request(first: Option<i32>, after: Option<String>) -> AppResult<PageRequest> {
    let first = page_size(first)?;
    let after = match after {
        None => None,
        Some(cursor) => Some(decode(&cursor)?),
    };
    Ok(PageRequest { first, after })
}

/// Builds the connection, mapping each row to its node.
pub fn connection<T, N: OutputType, C: ConnectionNameType, E: EdgeNameType>(
    page: Page<T>,
    has_previous: bool,
    node: impl Fn(T) -> N,
) -> PagedAs<N, C, E> {
    let mut connection =
        Connection::with_additional_fields(has_previous, page.has_next, Totals { total_count: page.total });
    connection.edges.extend(page.rows.into_iter().map(|(key, row)| Edge::new(encode(key), node(row))));
    connection
}

fn encode(key: i64) -> String {
    B64.encode(format!("k{key}"))
}

fn decode(cursor: &str) -> AppResult<i64> {
    B64.decode(cursor)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| text.strip_prefix('k').and_then(|n| n.parse().ok()))
        .ok_or_else(|| {
            AppError::validation("after: not a cursor of this list; use an edge's `cursor` or `pageInfo.endCursor`")
        })
}

/// Reads a numeric `ID` argument; `field` names it in the error.
pub fn numeric_id(id: &async_graphql::ID, field: &str) -> AppResult<i64> {
    id.parse::<i64>().map_err(|_| {
        AppError::validation(format!("{field}: `{}` is not a valid id (a number is expected)", id.as_str()))
    })
}
