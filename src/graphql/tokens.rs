//! API tokens: issued (shown once), listed and revoked, each within the caller's rights and
//! entity scope.

use async_graphql::{
    Context, ID, InputObject, Object, Result, SimpleObject,
    connection::{Connection, Edge, EmptyFields},
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD as B64};
use chrono::{Duration, Utc};
use entity::api_tokens;

use super::{
    context::{Session, session},
    paging::{Totals, numeric_id, page_size},
};
use crate::{
    auth::{EntityScope as Scoped, Profile, Scope, store},
    domain::item::rfc3339,
    error::{AppError, AppResult},
    service::{audit, tree::EntityIndex},
};

/// Longest lifetime a token may be given (ten years).
const MAX_TTL_SECONDS: i64 = 10 * 366 * 86_400;
/// Rows read at once when a list is filtered by scope.
const SCAN_CHUNK: u64 = 500;

/// An entity a token covers.
#[derive(SimpleObject)]
pub struct EntityScope {
    /// The entity.
    pub id: ID,
    /// Whether the entity's descendants are covered too.
    pub recursive: bool,
}

/// An entity to cover.
#[derive(InputObject)]
pub struct EntityScopeInput {
    /// The entity.
    pub id: ID,
    /// Whether its descendants are covered too.
    pub recursive: bool,
}

/// What a new token grants.
#[derive(InputObject)]
pub struct ApiTokenInput {
    /// The user the token stands for (its `sub`), as the actor of what it changes.
    pub user: String,
    /// `super-admin`, `admin`, `operator`, `viewer` or `event-writer`.
    pub profile: String,
    /// The entities it covers; none: the root entity and everything below it.
    pub entities: Option<Vec<EntityScopeInput>>,
    /// Seconds until it expires; absent: it never expires.
    pub ttl_seconds: Option<i64>,
}

/// A token hookline issued, as recorded (the token itself is not kept).
pub struct ApiToken(api_tokens::Model);

#[Object]
impl ApiToken {
    /// The token's id (its `jti`).
    async fn id(&self) -> ID {
        ID(self.0.id.clone())
    }

    /// The user it stands for (its `sub`).
    async fn user(&self) -> &str {
        &self.0.user
    }

    /// `super-admin`, `admin`, `operator`, `viewer` or `event-writer`.
    async fn profile(&self) -> &str {
        &self.0.profile
    }

    /// The entities it covers.
    async fn entities(&self) -> Vec<EntityScope> {
        entities_of(&self.0)
            .into_iter()
            .map(|e| EntityScope { id: ID(e.id.to_string()), recursive: e.recursive })
            .collect()
    }

    /// The user whose token issued it; null when issued by `hookline token` or at the first
    /// start.
    async fn issued_by(&self) -> Option<&str> {
        self.0.issued_by.as_deref()
    }

    /// RFC 3339, UTC.
    async fn created_at(&self) -> String {
        rfc3339(self.0.created_at)
    }

    /// RFC 3339, UTC; null: never expires.
    async fn expires_at(&self) -> Option<String> {
        self.0.expires_at.map(rfc3339)
    }

    /// RFC 3339, UTC; null: not revoked.
    async fn revoked_at(&self) -> Option<String> {
        self.0.revoked_at.map(rfc3339)
    }
}

/// A token just issued: the token is shown here only.
#[derive(SimpleObject)]
pub struct CreatedApiToken {
    /// The token (a JWT), for `Authorization: Bearer <token>`. It is not stored: keep it now.
    pub token: String,
    pub api_token: ApiToken,
}

type TokenPage = Connection<String, ApiToken, Totals, EmptyFields>;

fn entities_of(record: &api_tokens::Model) -> Vec<Scoped> {
    serde_json::from_value(record.entities.clone()).unwrap_or_default()
}

/// Whether the caller may see and revoke a token: every entity the token covers is in the
/// caller's scope (`index`: the entity tree, None when the caller's scope is everything).
fn in_scope(scope: &Scope, index: Option<&EntityIndex>, record: &api_tokens::Model) -> bool {
    match index {
        Some(index) if *scope != Scope::All => scope.covers(&Scope::of(&entities_of(record), index)),
        _ => true,
    }
}

/// The entity tree, when the caller's scope needs it to judge tokens.
async fn tree_for(s: &Session<'_>, scope: &Scope) -> AppResult<Option<std::sync::Arc<EntityIndex>>> {
    Ok(match scope {
        Scope::All => None,
        Scope::Entities(_) => Some(s.state.cache.entities(&s.state.db).await?),
    })
}

/// A token's record as the audit log compares it (never the token).
fn token_view(record: &api_tokens::Model) -> serde_json::Map<String, serde_json::Value> {
    audit::view(serde_json::json!({
        "user": record.user, "profile": record.profile, "entities": record.entities,
        "expiresAt": record.expires_at.map(rfc3339), "revokedAt": record.revoked_at.map(rfc3339),
    }))
}

/// The audit entry of a token, kept with the first entity it covers.
fn token_change(record: &api_tokens::Model, action: &'static str) -> audit::Change {
    let change = audit::Change::new("ApiToken", &record.id, action);
    match entities_of(record).first() {
        Some(entity) => change.in_entity(entity.id),
        None => change,
    }
}

fn cursor(id: &str) -> String {
    B64.encode(format!("t{id}"))
}

fn after_id(after: Option<String>) -> AppResult<Option<String>> {
    after
        .map(|cursor| {
            B64.decode(&cursor)
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .and_then(|text| text.strip_prefix('t').map(str::to_owned))
                .ok_or_else(|| AppError::validation("after: not a cursor of this list; use an edge's `cursor`"))
        })
        .transpose()
}

#[derive(Default)]
pub struct TokenQuery;

#[Object]
impl TokenQuery {
    /// The tokens hookline issued, newest first: those within the caller's scope.
    #[graphql(complexity = "super::paging::page_cost(first, child_complexity)")]
    async fn api_tokens(&self, ctx: &Context<'_>, first: Option<i32>, after: Option<String>) -> Result<TokenPage> {
        let s = session(ctx)?;
        let first = page_size(first)?;
        let after = after_id(after)?;
        let scope = s.scope().await?;
        let index = tree_for(&s, &scope).await?;
        // Every record is read in chunks and filtered by scope (tokens are few; the
        // entities they cover are a JSON list).
        let (mut rows, mut total, mut before) = (Vec::new(), 0u64, None::<String>);
        loop {
            let chunk = store::list(&s.state.db, SCAN_CHUNK, before.as_deref()).await?;
            let done = (chunk.len() as u64) < SCAN_CHUNK;
            before = chunk.last().map(|r| r.id.clone());
            for record in chunk {
                if !in_scope(&scope, index.as_deref(), &record) {
                    continue;
                }
                total += 1;
                let past_cursor = after.as_deref().is_none_or(|after| record.id.as_str() < after);
                if past_cursor && (rows.len() as u64) <= first {
                    rows.push(record);
                }
            }
            if done {
                break;
            }
        }
        let has_next = rows.len() as u64 > first;
        rows.truncate(first as usize);
        let mut page = Connection::with_additional_fields(after.is_some(), has_next, Totals { total_count: total });
        page.edges.extend(rows.into_iter().map(|r| Edge::new(cursor(&r.id), ApiToken(r))));
        Ok(page)
    }
}

#[derive(Default)]
pub struct TokenMutation;

#[Object]
impl TokenMutation {
    /// Issues a token within the caller's rights and scope. The token is in the answer only.
    async fn create_api_token(&self, ctx: &Context<'_>, input: ApiTokenInput) -> Result<CreatedApiToken> {
        let s = session(ctx)?;
        let profile = Profile::parse(input.profile.trim()).ok_or_else(|| {
            AppError::invalid(
                "profile",
                format!(
                    "profile: `{}` is not a profile; use one of super-admin, admin, operator, viewer, event-writer",
                    input.profile
                ),
            )
        })?;
        if !s.caller.profile.may_issue(profile) {
            return Err(AppError::Forbidden(format!(
                "the `{}` profile may not issue a `{profile}` token (only within its own rights)",
                s.caller.profile
            ))
            .into());
        }
        let mut entities = Vec::new();
        for (index, entity) in input.entities.unwrap_or_default().into_iter().enumerate() {
            let id = numeric_id(&entity.id, &format!("entities[{index}].id"))?;
            entities.push(Scoped { id, recursive: entity.recursive });
        }
        let index = s.state.cache.entities(&s.state.db).await?;
        if let Some(missing) = entities.iter().find(|e| !index.contains(e.id)) {
            return Err(AppError::invalid("entities", format!("entities: no entity with id {}", missing.id)).into());
        }
        let granted = if entities.is_empty() { Scope::All } else { Scope::of(&entities, &index) };
        let scope = s.scope().await?;
        if !scope.covers(&granted) {
            return Err(AppError::Forbidden(
                "entities: a token may cover only entities within the issuer's own scope".into(),
            )
            .into());
        }
        let ttl = match input.ttl_seconds {
            None => None,
            Some(seconds) if (1..=MAX_TTL_SECONDS).contains(&seconds) => Some(Duration::seconds(seconds)),
            Some(seconds) => {
                return Err(AppError::invalid(
                    "ttlSeconds",
                    format!(
                        "ttlSeconds: must be from 1 to {MAX_TTL_SECONDS} (or absent: never expires), not {seconds}"
                    ),
                )
                .into());
            }
        };
        let request = store::TokenRequest { user: input.user, profile, entities, ttl };
        let (token, record) =
            store::issue(&s.state.db, &s.state.auth.tokens, request, Some(&s.caller.user), Utc::now()).await?;
        s.audit(token_change(&record, "create").fields(&serde_json::Map::new(), &token_view(&record))).await;
        Ok(CreatedApiToken { token, api_token: ApiToken(record) })
    }

    /// Revokes a token: it is refused from now on, on this process before this returns and on
    /// every other within a second. Revoking it again changes nothing.
    async fn revoke_api_token(&self, ctx: &Context<'_>, id: ID) -> Result<ApiToken> {
        let s = session(ctx)?;
        let not_found = || AppError::not_found(format!("no API token with id {}", id.as_str()));
        let record = store::find(&s.state.db, id.as_str()).await?.ok_or_else(not_found)?;
        let scope = s.scope().await?;
        if !in_scope(&scope, tree_for(&s, &scope).await?.as_deref(), &record) {
            return Err(not_found().into());
        }
        let before = token_view(&record);
        let record = store::revoke(&s.state.db, &record.id, Utc::now()).await?;
        s.state.auth.revoked.insert(record.id.clone());
        s.audit(token_change(&record, "revoke").fields(&before, &token_view(&record))).await;
        Ok(ApiToken(record))
    }
}
