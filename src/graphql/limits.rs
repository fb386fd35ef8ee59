//! What one operation may cost: depth, complexity (a page costs `first` times its rows) and
//! aliases, checked before anything runs. A refused operation gets `VALIDATION` and a message
//! that names the limit and its key.

use std::sync::Arc;

use async_graphql::{
    Response, ServerError, ServerResult, Variables,
    extensions::{Extension, ExtensionContext, ExtensionFactory, NextParseQuery, NextRequest},
    parser::types::{DocumentOperations, ExecutableDocument, Selection, SelectionSet},
};

use crate::config::ApiLimits;

/// The limits async-graphql checks itself (depth, complexity) are set on the schema; this
/// extension counts aliases and words the refusals.
#[derive(Debug, Clone, Copy)]
pub struct QueryLimits {
    pub depth: usize,
    pub complexity: usize,
    pub aliases: usize,
}

impl From<&ApiLimits> for QueryLimits {
    fn from(limits: &ApiLimits) -> Self {
        Self {
            depth: limits.max_query_depth,
            complexity: limits.max_query_complexity,
            aliases: limits.max_query_aliases,
        }
    }
}

impl ExtensionFactory for QueryLimits {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(*self)
    }
}

#[async_graphql::async_trait::async_trait]
impl Extension for QueryLimits {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let document = next.run(ctx, query, variables).await?;
        let aliases = count_aliases(&document);
        if aliases > self.aliases {
            return Err(refusal(format!(
                "the operation has {aliases} aliased fields, more than the {} allowed (HOOKLINE_MAX_QUERY_ALIASES); \
                 split it into several operations",
                self.aliases
            )));
        }
        Ok(document)
    }

    async fn request(&self, ctx: &ExtensionContext<'_>, next: NextRequest<'_>) -> Response {
        let mut response = next.run(ctx).await;
        for error in &mut response.errors {
            // async-graphql's own words for the limits set on the schema.
            let reworded = match error.message.as_str() {
                "Query is too complex." => format!(
                    "the operation is too costly: its complexity is over {} (HOOKLINE_MAX_QUERY_COMPLEXITY; each \
                     field costs 1 and a page `first` times its rows); ask for smaller pages or fewer nested fields",
                    self.complexity
                ),
                "Query is nested too deep." => {
                    format!("the operation nests fields deeper than {} levels (HOOKLINE_MAX_QUERY_DEPTH)", self.depth)
                }
                _ => continue,
            };
            error.message = reworded;
            error.extensions.get_or_insert_with(Default::default).set("code", "VALIDATION");
        }
        response
    }
}

fn refusal(message: String) -> ServerError {
    let mut error = ServerError::new(message, None);
    error.extensions.get_or_insert_with(Default::default).set("code", "VALIDATION");
    error
}

/// Aliased fields written in the document (operations and fragments).
fn count_aliases(document: &ExecutableDocument) -> usize {
    let operations: usize = match &document.operations {
        DocumentOperations::Single(operation) => in_set(&operation.node.selection_set.node),
        DocumentOperations::Multiple(operations) => {
            operations.values().map(|operation| in_set(&operation.node.selection_set.node)).sum()
        }
    };
    let fragments: usize = document.fragments.values().map(|fragment| in_set(&fragment.node.selection_set.node)).sum();
    operations + fragments
}

fn in_set(set: &SelectionSet) -> usize {
    set.items
        .iter()
        .map(|selection| match &selection.node {
            Selection::Field(field) => usize::from(field.node.alias.is_some()) + in_set(&field.node.selection_set.node),
            Selection::InlineFragment(fragment) => in_set(&fragment.node.selection_set.node),
            Selection::FragmentSpread(_) => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_are_counted_in_operations_and_fragments() {
        let document = async_graphql::parser::parse_query(
            "query A { a: entities { id } b: entities { x: id } ...F }
             query B { c: itemtypes { name } }
             fragment F on Query { d: entities { id } ... on Query { e: entities { id } } }",
        )
        .expect("parses");
        assert_eq!(count_aliases(&document), 6);
    }
}
