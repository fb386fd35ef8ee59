//! `hookline token`: issues a token from the command line, signed with the server's key and
//! recorded in its database, and prints it.

use chrono::Utc;

use super::{Auth, EntityScope, Profile, store};
use crate::{config::Config, domain::retry::parse_duration};

/// `hookline token --user NAME --profile PROFILE [--entity ID [--recursive]]… [--ttl 30d]`
#[derive(Debug, clap::Args)]
pub struct TokenArgs {
    /// The user the token stands for (recorded as the actor of what it changes).
    #[arg(long)]
    pub user: String,
    /// super-admin, admin, operator, viewer or event-writer.
    #[arg(long)]
    pub profile: String,
    /// An entity the token covers (repeat for several); none: the root entity, recursive.
    #[arg(long = "entity", value_name = "ID")]
    pub entities: Vec<i64>,
    /// The entities given cover their descendants too.
    #[arg(long)]
    pub recursive: bool,
    /// How long the token is valid (`30d`, `12h`, `90m`); `0`: it never expires.
    #[arg(long, default_value = "30d")]
    pub ttl: String,
}

/// Issues the token; returns it, or why it cannot be issued.
pub async fn issue(config: &Config, args: TokenArgs) -> Result<String, String> {
    let profile = Profile::parse(args.profile.trim()).ok_or_else(|| {
        format!(
            "--profile: `{}` is not a profile; use one of super-admin, admin, operator, viewer, event-writer",
            args.profile
        )
    })?;
    let ttl = match args.ttl.trim() {
        "0" => None,
        text => {
            let ttl = parse_duration(text).map_err(|e| format!("--ttl: {e}"))?;
            if ttl.is_zero() {
                None
            } else {
                Some(chrono::Duration::from_std(ttl).map_err(|_| format!("--ttl: `{text}` is too long"))?)
            }
        }
    };
    let key = crate::secret_box::master_key(&config.secret_key).map_err(|e| e.to_string())?;
    let auth = Auth::new(&key, &config.auth).map_err(|e| e.to_string())?;
    let db = crate::db::connect(config, 1, crate::db::Pool::Shared).await.map_err(|e| e.to_string())?;
    crate::db::migrate(&db).await.map_err(|e| e.to_string())?;
    let index = crate::service::tree::EntityIndex::load(&db).await.map_err(|e| format!("{e:?}"))?;
    if let Some(missing) = args.entities.iter().find(|id| !index.contains(**id)) {
        return Err(format!("--entity: no entity with id {missing}"));
    }
    let entities = args.entities.iter().map(|&id| EntityScope { id, recursive: args.recursive }).collect();
    let request = store::TokenRequest { user: args.user, profile, entities, ttl };
    let (token, _) =
        store::issue(&db, &auth.tokens, request, None, Utc::now()).await.map_err(|e| e.message().to_owned())?;
    db.close().await.ok();
    Ok(token)
}
