//! Item numbers: a new item's number is known before its write (its payload carries it).

use entity::itemtypes;
use sea_orm::{
    ColumnTrait, ConnectionTrait,
    sea_query::{Expr, ExprTrait, Query},
};

use crate::{
    error::{AppError, AppResult},
    writer::Writer,
};

/// Item numbers handed out in blocks reserved from the itemtype's counter: the number of a
/// new item is known before its write (its payload carries it), and taking one costs no
/// statement but once a block. A reservation commits on its own, so a number is never handed
/// out twice (a stop leaves a gap).
#[derive(Default)]
pub struct ItemNumbers {
    blocks: tokio::sync::Mutex<std::collections::HashMap<String, std::ops::Range<i64>>>,
}

impl std::fmt::Debug for ItemNumbers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ItemNumbers")
    }
}

/// Numbers per block.
const NUMBER_BLOCK: i64 = 64;

/// Item numbers stay below 2^53, the integers a JSON client (a double) holds exactly. A
/// numeric id a caller gives from there up does not move the counter.
pub const NUMBER_LIMIT: i64 = 1 << 53;

/// Whether a caller's id is a number the counter must stay above.
pub fn counted(id: &str) -> Option<i64> {
    id.parse::<i64>().ok().filter(|n| (0..NUMBER_LIMIT).contains(n))
}

/// CONFLICT: the itemtype's counter has no number left below [`NUMBER_LIMIT`].
pub fn exhausted(itemtype: &str) -> AppError {
    AppError::conflict(format!(
        "the item numbers of {itemtype} are used up (they stay below 2^53, and an id given up to there moves them \
         past it); give each new {itemtype} its own id"
    ))
}

impl ItemNumbers {
    /// The next number of the itemtype, reserving a new block (through the writer) when this
    /// process has none left. Never call it from a write job.
    pub async fn next(&self, writer: &Writer, itemtype: &str) -> AppResult<i64> {
        let mut blocks = self.blocks.lock().await;
        if let Some(n) = blocks.get_mut(itemtype).and_then(Iterator::next) {
            return Ok(n);
        }
        let name = itemtype.to_owned();
        let end = writer
            .write(move |txn, _| {
                Box::pin(async move {
                    let stmt = Query::update()
                        .table(itemtypes::Entity)
                        .value(
                            itemtypes::Column::NextItemId,
                            Expr::col(itemtypes::Column::NextItemId).add(NUMBER_BLOCK),
                        )
                        .and_where(itemtypes::Column::Name.eq(&name))
                        .and_where(itemtypes::Column::NextItemId.lte(NUMBER_LIMIT - NUMBER_BLOCK))
                        .returning_col(itemtypes::Column::NextItemId)
                        .to_owned();
                    // The itemtype exists (the caller found it), so no row means no block left.
                    let row = txn.query_one(&stmt).await?.ok_or_else(|| exhausted(&name))?;
                    Ok(row.try_get::<i64>("", "next_item_id")?)
                })
            })
            .await?;
        let first = end.checked_sub(NUMBER_BLOCK).ok_or_else(|| exhausted(itemtype))?;
        blocks.insert(itemtype.to_owned(), first.saturating_add(1)..end);
        Ok(first)
    }

    /// A caller used `id` as its own id: numbers handed out here stay above it.
    pub async fn skip_past(&self, itemtype: &str, id: &str) {
        let Some(n) = counted(id) else { return };
        let mut blocks = self.blocks.lock().await;
        if let Some(block) = blocks.get_mut(itemtype)
            && block.start <= n
        {
            block.start = Ord::min(n.saturating_add(1), block.end);
        }
    }
}
