//! `schema.graphql` must be the schema the code builds. `UPDATE_SCHEMA=1 cargo test --test
//! schema` rewrites it.

#[test]
fn schema_graphql_matches_the_code() {
    let built = hookline::graphql::sdl();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql");
    if std::env::var_os("UPDATE_SCHEMA").is_some() {
        std::fs::write(path, &built).expect("write schema.graphql");
        return;
    }
    let stored = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        stored == built,
        "schema.graphql is stale: run `UPDATE_SCHEMA=1 cargo test --test schema` and commit the result"
    );
}

#[test]
fn the_schema_command_prints_the_same_sdl() {
    let output =
        std::process::Command::new(env!("CARGO_BIN_EXE_hookline")).arg("schema").output().expect("run hookline");
    assert!(output.status.success());
    assert_eq!(String::from_utf8_lossy(&output.stdout), hookline::graphql::sdl());
}
