//! Who is calling, and the one function through which every resolver learns it.

use async_graphql::Context;

pub use crate::auth::Caller;
use crate::{
    AppState,
    auth::{Right, Scope},
    error::{AppError, AppResult},
};

/// What a resolver works with: the application state and the caller.
#[derive(Clone, Copy)]
pub struct Session<'a> {
    pub state: &'a AppState,
    pub caller: &'a Caller,
    /// The caller's scope, resolved once per operation.
    memo: Option<&'a ScopeMemo>,
}

/// The scope of one operation's caller, resolved at its first use (the rights guard puts one
/// in every operation's data), so that the fields of a page do not each read the tree.
#[derive(Default)]
pub struct ScopeMemo(tokio::sync::OnceCell<Scope>);

/// The session of the request. Every resolver starts here; the rights of each root field are
/// checked before any resolver runs (see `rights`), the entity scope by the resolvers through
/// [`Session::scope`].
pub fn session<'a>(ctx: &Context<'a>) -> Result<Session<'a>, AppError> {
    let state = ctx.data::<AppState>().map_err(|_| AppError::internal("the schema was built without state"))?;
    let caller = ctx.data::<Caller>().map_err(|_| AppError::Unauthenticated("the request carries no caller".into()))?;
    Ok(Session { state, caller, memo: ctx.data_opt::<ScopeMemo>() })
}

impl Session<'_> {
    /// The entities the caller may see and touch, resolved against the tree as it is now.
    pub async fn scope(&self) -> AppResult<Scope> {
        if Scope::is_everything(&self.caller.entities) {
            return Ok(Scope::All);
        }
        let resolve = async || {
            let index = self.state.cache.entities(&self.state.db).await?;
            Ok::<_, AppError>(Scope::of(&self.caller.entities, &index))
        };
        match self.memo {
            Some(ScopeMemo(cell)) => Ok(cell.get_or_try_init(resolve).await?.clone()),
            None => resolve().await,
        }
    }

    /// Whether the caller's token covers every entity (no scope check needs the tree).
    pub fn unscoped(&self) -> bool {
        Scope::is_everything(&self.caller.entities)
    }

    /// The entity ids to filter lists by; None: every entity.
    pub async fn scope_ids(&self) -> AppResult<Option<Vec<i64>>> {
        Ok(self.scope().await?.ids())
    }

    /// Whether the entity is in the caller's scope.
    pub async fn sees(&self, entity_id: i64) -> AppResult<bool> {
        Ok(self.scope().await?.contains(entity_id))
    }

    /// Refuses an entity outside the caller's scope, given in the input at `field`, exactly as
    /// a missing one: nothing hints that it exists.
    pub async fn entity_input(&self, entity_id: i64, field: &str) -> AppResult<()> {
        if self.sees(entity_id).await? {
            Ok(())
        } else {
            Err(AppError::invalid(field, format!("{field}: no entity with id {entity_id}")))
        }
    }

    /// Records a configuration change the caller made in the audit log. It is written once the
    /// change is committed; if it cannot be written, the change stands and the failure is
    /// logged as an error.
    pub async fn audit(&self, change: crate::service::audit::Change) {
        let what = (change.object_type, change.object_id.clone(), change.action);
        if let Err(err) = crate::service::audit::record(&self.state.db, self.caller, change).await {
            tracing::error!(?err, object = ?what, user = %self.caller.user, "cannot write an audit entry");
        }
    }

    /// Refuses with FORBIDDEN unless the caller holds `right` (for what one field does beyond
    /// the right its root field declares).
    pub fn require(&self, right: Right) -> AppResult<()> {
        if self.caller.may(right) {
            Ok(())
        } else {
            Err(AppError::Forbidden(format!("the `{}` profile may not do this", self.caller.profile)))
        }
    }
}
