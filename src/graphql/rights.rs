//! The guard that checks, before anything runs, the right each root field of an operation
//! needs (declared once, in `auth::rights`). A field the table does not name refuses everyone
//! but `super-admin`, and a test fails for every root field of the schema that has no entry.

use std::sync::Arc;

use async_graphql::{
    Name, Request, ServerError, ServerResult, Value, Variables,
    extensions::{Extension, ExtensionContext, ExtensionFactory, NextParseQuery, NextPrepareRequest},
    parser::types::{ExecutableDocument, Field, OperationType, Selection, SelectionSet},
};

use crate::{
    AppState,
    auth::{
        Caller, Right,
        rights::{self, Root},
    },
};

/// The right a root field needs (the table in `auth::rights`); None: not declared.
pub fn required(operation: OperationType, field: &str) -> Option<Right> {
    let root = match operation {
        OperationType::Query => Root::Query,
        OperationType::Mutation => Root::Mutation,
        OperationType::Subscription => Root::Subscription,
    };
    rights::required(root, field)
}

/// Checks every root field of every operation of a document against the caller's profile.
#[derive(Debug, Clone, Copy)]
pub struct Rights {
    /// Whether `__schema` and `__type` answer (`HOOKLINE_INTROSPECTION`).
    pub introspection: bool,
}

impl ExtensionFactory for Rights {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(*self)
    }
}

#[async_graphql::async_trait::async_trait]
impl Extension for Rights {
    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        next.run(ctx, request.data(super::context::ScopeMemo::default())).await
    }

    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let document = next.run(ctx, query, variables).await?;
        let Some(caller) = ctx.data_opt::<Caller>() else {
            return Err(coded("the request carries no caller", "UNAUTHENTICATED"));
        };
        let mut mutations = 0u32;
        for (_, operation) in document.operations.iter() {
            let kind = operation.node.ty;
            let mut fields = Vec::new();
            root_fields(&document, &operation.node.selection_set.node, &mut fields, 0);
            for field in fields {
                self.check(caller, kind, field.name.node.as_str())?;
                if kind == OperationType::Mutation {
                    mutations = mutations.saturating_add(inputs_of(field, variables));
                }
            }
        }
        if mutations > 0
            && let Some(state) = ctx.data_opt::<AppState>()
            && let Err(limited) = state.auth.count_mutations(caller, mutations)
        {
            let seconds = limited.retry_after.as_secs_f64().ceil().max(1.0) as u64;
            let mut error = coded(
                &format!(
                    "this token made more mutations than it may (HOOKLINE_TOKEN_MUTATION_RATE); try again in \
                     {seconds} s"
                ),
                "RATE_LIMITED",
            );
            error.extensions.get_or_insert_with(Default::default).set("retryAfterSeconds", seconds);
            return Err(error);
        }
        Ok(document)
    }
}

impl Rights {
    fn check(&self, caller: &Caller, operation: OperationType, field: &str) -> ServerResult<()> {
        match field {
            "__typename" => return Ok(()),
            "__schema" | "__type" if self.introspection => return Ok(()),
            "__schema" | "__type" => {
                return Err(coded(
                    "introspection is turned off on this server (HOOKLINE_INTROSPECTION=false)",
                    "FORBIDDEN",
                ));
            }
            _ => {}
        }
        let (allowed, needs) = match required(operation, field) {
            Some(right) => (caller.may(right), right.describe()),
            None => (caller.may(Right::ConfigureGlobal), "super-admin"),
        };
        if allowed {
            return Ok(());
        }
        Err(coded(
            &format!("`{field}` needs the right to {needs}, which the `{}` profile does not hold", caller.profile),
            "FORBIDDEN",
        ))
    }
}

/// Deepest nesting of fragments at the root that is followed (validation refuses cycles).
const MAX_ROOT_FRAGMENTS: usize = 100;

/// How many mutations a root mutation field counts for: a batch counts its inputs (a literal
/// list or a variable's), anything else one.
fn inputs_of(field: &Field, variables: &Variables) -> u32 {
    let Some(inputs) = field.get_argument("inputs") else { return 1 };
    let length = match inputs.node.clone().into_const_with(|name: Name| variables.get(&name).cloned().ok_or(())) {
        Ok(Value::List(items)) => items.len(),
        _ => 1,
    };
    u32::try_from(length).unwrap_or(u32::MAX).max(1)
}

/// The root fields a selection names, through fragment spreads and inline fragments.
fn root_fields<'a>(document: &'a ExecutableDocument, set: &'a SelectionSet, out: &mut Vec<&'a Field>, depth: usize) {
    if depth > MAX_ROOT_FRAGMENTS {
        return;
    }
    for selection in &set.items {
        match &selection.node {
            Selection::Field(field) => out.push(&field.node),
            Selection::InlineFragment(inline) => {
                root_fields(document, &inline.node.selection_set.node, out, depth + 1);
            }
            Selection::FragmentSpread(spread) => {
                if let Some(fragment) = document.fragments.get(&spread.node.fragment_name.node) {
                    root_fields(document, &fragment.node.selection_set.node, out, depth + 1);
                }
            }
        }
    }
}

fn coded(message: &str, code: &str) -> ServerError {
    let mut error = ServerError::new(message, None);
    error.extensions.get_or_insert_with(Default::default).set("code", code);
    error
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every root field of the schema declares its right: a new field without one fails here.
    #[test]
    fn every_root_field_declares_its_right() {
        let fields = crate::graphql::root_fields();
        assert!(fields.len() > 40, "the roots were read ({} fields)", fields.len());
        let missing: Vec<String> = fields
            .iter()
            .filter(|(operation, field)| required(*operation, field).is_none())
            .map(|(operation, field)| format!("{operation}.{field}"))
            .collect();
        assert!(missing.is_empty(), "root fields without a declared right: {missing:?}");
    }
}
