//! The record of issued tokens: issued tokens verify, are listed newest first, and once
//! revoked are found among the revoked ids, on both databases.

mod common;

use chrono::{Duration, Utc};
use common::each_backend;
use hookline::auth::{
    EntityScope, Profile, Revoked, TokenError, Tokens,
    store::{self, TokenRequest},
    token_signing_key,
};

#[tokio::test]
async fn issued_tokens_verify_are_listed_and_revoked() {
    each_backend(async |app| {
        let db = &app.state.db;
        let tokens = Tokens::new(token_signing_key(&[3; 32]), None).expect("tokens");
        let now = Utc::now();
        assert!(store::any_recorded(db).await.expect("count"), "the first start recorded the bootstrap token");
        let request =
            |user: &str, ttl| TokenRequest { user: user.into(), profile: Profile::Viewer, entities: vec![], ttl };
        let (first, first_record) = store::issue(db, &tokens, request("dash", None), None, now).await.expect("issued");
        let (second, _) = store::issue(db, &tokens, request("ci", Some(Duration::hours(1))), Some("admin"), now)
            .await
            .expect("issued");
        let claims = tokens.verify(&first, now.timestamp()).expect("verifies");
        assert_eq!(
            claims.entities,
            vec![EntityScope { id: 0, recursive: true }],
            "no entity means the root, recursive"
        );
        assert_eq!((claims.exp, first_record.expires_at), (None, None));
        let claims = tokens.verify(&second, now.timestamp()).expect("verifies");
        assert_eq!(claims.exp, Some((now + Duration::hours(1)).timestamp()));
        assert_eq!(tokens.verify(&second, now.timestamp() + 3_700), Err(TokenError::Expired));

        let listed: Vec<String> = store::list(db, 10, None).await.expect("list").into_iter().map(|t| t.user).collect();
        assert_eq!(listed, ["ci", "dash", "admin"], "newest first, the bootstrap token last");

        let revoked = store::revoke(db, &claims.jti, now).await.expect("revoked");
        assert!(revoked.revoked_at.is_some());
        let again = store::revoke(db, &claims.jti, now + Duration::seconds(30)).await.expect("idempotent");
        assert_eq!(again.revoked_at, revoked.revoked_at, "the first revocation's time is kept");
        let set = Revoked::default();
        set.replace(store::revoked_ids(db, now).await.expect("ids"));
        assert!(set.contains(&claims.jti) && !set.contains(&first_record.id));
        assert!(store::revoke(db, "nope", now).await.is_err());

        let bad = store::issue(db, &tokens, request("  ", None), None, now).await.expect_err("empty user");
        assert_eq!(bad.code(), "VALIDATION");
        let bad =
            store::issue(db, &tokens, request("x", Some(Duration::seconds(-1))), None, now).await.expect_err("ttl");
        assert_eq!(bad.code(), "VALIDATION");
    })
    .await;
}
