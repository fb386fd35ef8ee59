//! The record of the tokens hookline issued: made when a token is issued, listed, revoked.

use chrono::{DateTime, Duration, TimeZone, Utc};
use entity::api_tokens;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect, sea_query::ExprTrait,
};

use super::{Auth, Claims, EntityScope, Profile, Tokens};
use crate::error::{AppError, AppResult};

/// The file the first super-admin token is written to, in the data directory.
pub const BOOTSTRAP_FILE: &str = "admin.token";
/// How often the revoked tokens are read again (every process learns of a revocation made by
/// another within this time, without NOTIFY: on SQLite, or while PostgreSQL's LISTEN
/// connection is away).
const REVOCATION_REFRESH: std::time::Duration = std::time::Duration::from_millis(500);
/// The PostgreSQL channel a revocation is announced on, so that other processes read the
/// revoked tokens at once.
const REVOCATIONS_CHANNEL: &str = "hookline_token_revocations";

/// What a new token grants.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    pub user: String,
    pub profile: Profile,
    /// Empty: the root entity and everything below it.
    pub entities: Vec<EntityScope>,
    /// None: the token never expires.
    pub ttl: Option<Duration>,
}

/// Longest user name a token may carry.
const MAX_USER: usize = 255;
/// Most entities one token may name.
const MAX_ENTITIES: usize = 100;

/// Signs a token for the request and records it; returns the token and its record.
pub async fn issue(
    conn: &impl ConnectionTrait,
    tokens: &Tokens,
    request: TokenRequest,
    issued_by: Option<&str>,
    now: DateTime<Utc>,
) -> AppResult<(String, api_tokens::Model)> {
    let user = request.user.trim();
    if user.is_empty() || user.len() > MAX_USER || user.chars().any(char::is_control) {
        return Err(AppError::invalid(
            "user",
            format!("user: must be 1 to {MAX_USER} characters, without control characters"),
        ));
    }
    if request.entities.len() > MAX_ENTITIES {
        return Err(AppError::invalid("entities", format!("entities: at most {MAX_ENTITIES} per token")));
    }
    let entities = if request.entities.is_empty() {
        vec![EntityScope { id: crate::service::tree::ROOT_ENTITY_ID, recursive: true }]
    } else {
        request.entities
    };
    let expires_at = match request.ttl {
        None => None,
        Some(ttl) if ttl > Duration::zero() => Some(
            now.checked_add_signed(ttl)
                .ok_or_else(|| AppError::invalid("ttlSeconds", "ttlSeconds: too far in the future"))?,
        ),
        Some(_) => {
            return Err(AppError::invalid("ttlSeconds", "ttlSeconds: must be more than 0, or absent for no expiry"));
        }
    };
    let claims = Claims {
        sub: user.to_owned(),
        profile: request.profile.as_str().to_owned(),
        entities: entities.clone(),
        iat: now.timestamp(),
        exp: expires_at.map(|at| at.timestamp()),
        nbf: None,
        jti: uuid::Uuid::now_v7().simple().to_string(),
    };
    let token = tokens.sign(&claims).map_err(AppError::internal)?;
    let record = api_tokens::ActiveModel {
        id: Set(claims.jti.clone()),
        user: Set(claims.sub.clone()),
        profile: Set(claims.profile.clone()),
        entities: Set(serde_json::to_value(&entities).map_err(|e| AppError::internal(e.to_string()))?),
        issued_by: Set(issued_by.map(str::to_owned)),
        created_at: Set(Utc.timestamp_opt(claims.iat, 0).single().unwrap_or(now)),
        expires_at: Set(expires_at),
        revoked_at: Set(None),
    }
    .insert(conn)
    .await?;
    Ok((token, record))
}

/// The record of a token, if it was issued here.
pub async fn find(conn: &impl ConnectionTrait, id: &str) -> AppResult<Option<api_tokens::Model>> {
    Ok(api_tokens::Entity::find_by_id(id.to_owned()).one(conn).await?)
}

/// Marks a token revoked (once: a second revocation keeps the first time).
pub async fn revoke(conn: &impl ConnectionTrait, id: &str, now: DateTime<Utc>) -> AppResult<api_tokens::Model> {
    let record = api_tokens::Entity::find_by_id(id.to_owned())
        .one(conn)
        .await?
        .ok_or_else(|| AppError::not_found(format!("no API token with id {id}")))?;
    if record.revoked_at.is_some() {
        return Ok(record);
    }
    let mut active: api_tokens::ActiveModel = record.into();
    active.revoked_at = Set(Some(now));
    let revoked = active.update(conn).await?;
    if conn.get_database_backend() == sea_orm::DbBackend::Postgres {
        let notify = sea_orm::Statement::from_sql_and_values(
            sea_orm::DbBackend::Postgres,
            "SELECT pg_notify($1, $2)",
            [REVOCATIONS_CHANNEL.into(), revoked.id.clone().into()],
        );
        conn.execute_raw(notify).await?;
    }
    Ok(revoked)
}

/// The ids of every revoked token that has not expired yet (an expired one is refused anyway).
pub async fn revoked_ids(conn: &impl ConnectionTrait, now: DateTime<Utc>) -> AppResult<Vec<String>> {
    Ok(api_tokens::Entity::find()
        .select_only()
        .column(api_tokens::Column::Id)
        .filter(api_tokens::Column::RevokedAt.is_not_null())
        .filter(api_tokens::Column::ExpiresAt.is_null().or(api_tokens::Column::ExpiresAt.gt(now)))
        .into_tuple()
        .all(conn)
        .await?)
}

/// Whether any token was ever recorded (a new database has none: the bootstrap token is made).
pub async fn any_recorded(conn: &impl ConnectionTrait) -> AppResult<bool> {
    Ok(api_tokens::Entity::find().count(conn).await? > 0)
}

/// The records, newest first, `first` after the one created at `after` (a page).
pub async fn list(
    conn: &impl ConnectionTrait,
    first: u64,
    before_id: Option<&str>,
) -> AppResult<Vec<api_tokens::Model>> {
    let mut query = api_tokens::Entity::find().order_by_desc(api_tokens::Column::Id);
    if let Some(id) = before_id {
        query = query.filter(api_tokens::Column::Id.lt(id));
    }
    Ok(query.limit(first).all(conn).await?)
}

/// When no token was ever recorded (a new database, or one from before tokens), issues a
/// super-admin token that never expires and writes it to `<data_dir>/admin.token`, readable by
/// this user alone. Returns the file's path when it was written.
pub async fn bootstrap(
    conn: &impl ConnectionTrait,
    tokens: &Tokens,
    data_dir: &std::path::Path,
) -> AppResult<Option<std::path::PathBuf>> {
    if any_recorded(conn).await? {
        return Ok(None);
    }
    let request = TokenRequest { user: "admin".into(), profile: Profile::SuperAdmin, entities: Vec::new(), ttl: None };
    let (token, _) = issue(conn, tokens, request, None, Utc::now()).await?;
    let path = data_dir.join(BOOTSTRAP_FILE);
    let written = std::fs::create_dir_all(data_dir).and_then(|()| match std::fs::remove_file(&path) {
        // A file left from an earlier database holds a token this one never issued.
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(err),
        _ => crate::secret_box::write_private(&path, &token),
    });
    written.map_err(|err| AppError::internal(format!("cannot write {}: {err}", path.display())))?;
    Ok(Some(path))
}

/// Reads the revoked tokens again until `shutdown`, so that a token revoked by any process is
/// refused here too; requests never read the database for it. On PostgreSQL a revocation's
/// NOTIFY makes the read at once; every [`REVOCATION_REFRESH`] it is made anyway.
pub async fn keep_revocations_fresh(
    db: sea_orm::DatabaseConnection,
    auth: std::sync::Arc<Auth>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let mut every = tokio::time::interval(REVOCATION_REFRESH);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut listener = None;
    loop {
        if listener.is_none() && db.get_database_backend() == sea_orm::DbBackend::Postgres {
            listener = revocation_listener(&db).await;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = every.tick() => {}
            heard = next_revocation(&mut listener) => {
                if heard.is_err() {
                    // Polling goes on; the listener is opened again at the next turn.
                    listener = None;
                }
            }
        }
        match revoked_ids(&db, Utc::now()).await {
            Ok(ids) => auth.revoked.merge(ids),
            Err(err) => tracing::warn!(?err, "cannot read the revoked API tokens; keeping the ones known"),
        }
    }
}

type Listener = sea_orm::sqlx::postgres::PgListener;

/// A LISTEN connection on the revocations channel, or None when it cannot be opened now.
async fn revocation_listener(db: &sea_orm::DatabaseConnection) -> Option<Listener> {
    let mut listener = Listener::connect_with(db.get_postgres_connection_pool()).await.ok()?;
    match listener.listen(REVOCATIONS_CHANNEL).await {
        Ok(()) => Some(listener),
        Err(err) => {
            tracing::warn!(%err, "cannot LISTEN for token revocations; reading them every 500 ms");
            None
        }
    }
}

/// The next revocation another process announced; never, without a listener.
async fn next_revocation(listener: &mut Option<Listener>) -> Result<(), sea_orm::sqlx::Error> {
    match listener {
        Some(listener) => listener.recv().await.map(|_| ()),
        None => std::future::pending().await,
    }
}
