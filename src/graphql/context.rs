//! Who is calling, and the one function through which every resolver learns it.

use async_graphql::Context;

use crate::{AppState, error::AppError};

/// The caller of a request, put in the request data by the HTTP and WebSocket handlers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub user: String,
    pub profile: String,
}

impl Caller {
    /// The caller of a request that carries no credentials. Until API authentication exists,
    /// such a request holds every right (the `super-admin` profile).
    pub fn local() -> Self {
        Self { user: "local".into(), profile: "super-admin".into() }
    }
}

/// What a resolver works with: the application state and the caller.
#[derive(Clone, Copy)]
pub struct Session<'a> {
    pub state: &'a AppState,
    pub caller: &'a Caller,
}

/// The session of the request. Every resolver starts here, so that authentication and rights
/// checks plug in at one place.
pub fn session<'a>(ctx: &Context<'a>) -> Result<Session<'a>, AppError> {
    let state = ctx.data::<AppState>().map_err(|_| AppError::internal("the schema was built without state"))?;
    let caller = ctx.data::<Caller>().map_err(|_| AppError::Unauthenticated("the request carries no caller".into()))?;
    Ok(Session { state, caller })
}
