//! What one operation may cost: depth, complexity (a page costs `first` times its rows) and
//! aliases, checked before anything runs. A refused operation gets `VALIDATION` and a message
//! that names the limit and its key.

use std::{collections::HashMap, sync::Arc};

use async_graphql::{
    Request, Response, ServerError, ServerResult,
    extensions::{Extension, ExtensionContext, ExtensionFactory, NextPrepareRequest, NextRequest},
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
    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        mut request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        // Measured with every fragment spread written out (each fragment measured once), before
        // async-graphql walks the operation: its depth check and its cost both visit every
        // path, and a few fragments spreading each other three times over stand for billions.
        // The parsed document is kept in the request, so the query is parsed once.
        let size = Expanded::new(request.parsed_query()?).operations().map_err(refusal)?;
        if size.fields > self.complexity {
            return Err(refusal(format!(
                "the operation selects {} fields once its fragments are spread, more than its cost may reach \
                 ({}, HOOKLINE_MAX_QUERY_COMPLEXITY)",
                size.fields, self.complexity
            )));
        }
        if size.aliases > self.aliases {
            return Err(refusal(format!(
                "the operation has {} aliased fields, more than the {} allowed (HOOKLINE_MAX_QUERY_ALIASES); \
                 split it into several operations",
                size.aliases, self.aliases
            )));
        }
        next.run(ctx, request).await
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

/// Deepest chain of fragments spreading fragments that is measured.
const MAX_FRAGMENT_CHAIN: usize = 100;

/// The fields and aliases an operation selects once its fragments are spread.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Size {
    fields: usize,
    aliases: usize,
}

impl Size {
    fn plus(self, other: Size) -> Size {
        Size { fields: self.fields.saturating_add(other.fields), aliases: self.aliases.saturating_add(other.aliases) }
    }
}

/// Measures a document, each fragment once (a cycle counts as nothing here: validation
/// refuses it).
struct Expanded<'a> {
    document: &'a ExecutableDocument,
    measured: HashMap<&'a str, Size>,
    open: Vec<&'a str>,
}

impl<'a> Expanded<'a> {
    fn new(document: &'a ExecutableDocument) -> Self {
        Self { document, measured: HashMap::new(), open: Vec::new() }
    }

    /// Every operation of the document (the one that runs is among them).
    fn operations(&mut self) -> Result<Size, String> {
        let document = self.document;
        let mut total = Size::default();
        match &document.operations {
            DocumentOperations::Single(operation) => total = self.set(&operation.node.selection_set.node)?,
            DocumentOperations::Multiple(operations) => {
                for operation in operations.values() {
                    total = total.plus(self.set(&operation.node.selection_set.node)?);
                }
            }
        }
        Ok(total)
    }

    fn set(&mut self, set: &'a SelectionSet) -> Result<Size, String> {
        let mut size = Size::default();
        for selection in &set.items {
            let part = match &selection.node {
                Selection::Field(field) => Size { fields: 1, aliases: usize::from(field.node.alias.is_some()) }
                    .plus(self.set(&field.node.selection_set.node)?),
                Selection::InlineFragment(fragment) => self.set(&fragment.node.selection_set.node)?,
                Selection::FragmentSpread(spread) => self.fragment(spread.node.fragment_name.node.as_str())?,
            };
            size = size.plus(part);
        }
        Ok(size)
    }

    fn fragment(&mut self, name: &'a str) -> Result<Size, String> {
        if let Some(size) = self.measured.get(name) {
            return Ok(*size);
        }
        let Some(fragment) = self.document.fragments.get(name) else { return Ok(Size::default()) };
        if self.open.contains(&name) {
            return Ok(Size::default());
        }
        if self.open.len() >= MAX_FRAGMENT_CHAIN {
            return Err(format!("the operation's fragments spread each other more than {MAX_FRAGMENT_CHAIN} deep"));
        }
        self.open.push(name);
        let size = self.set(&fragment.node.selection_set.node);
        self.open.pop();
        let size = size?;
        self.measured.insert(name, size);
        Ok(size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragments_are_counted_as_often_as_they_are_spread() {
        let document = async_graphql::parser::parse_query(
            "query A { a: entities { id } b: entities { x: id } ...F ...F }
             fragment F on Query { d: entities { id } ... on Query { e: entities { id } } }",
        )
        .expect("parses");
        let size = Expanded::new(&document).operations().expect("measured");
        // a, b (+ id, x) and twice F (d, e, each with id).
        assert_eq!(size, Size { fields: 12, aliases: 7 });
    }

    #[test]
    fn fragments_spreading_each_other_are_measured_without_walking_every_path() {
        let mut query = String::from("query { ...F0 }");
        for i in 0..40 {
            query.push_str(&format!(" fragment F{i} on Query {{ ...F{n} ...F{n} ...F{n} }}", n = i + 1));
        }
        query.push_str(" fragment F40 on Query { entities { id } }");
        let document = async_graphql::parser::parse_query(&query).expect("parses");
        let size = Expanded::new(&document).operations().expect("measured");
        assert_eq!(size.fields, usize::MAX, "3^40 × 2 fields saturate");
    }

    #[test]
    fn a_long_chain_of_fragments_is_refused_and_a_cycle_counts_nothing() {
        let mut query = String::from("query { ...F0 }");
        for i in 0..150 {
            query.push_str(&format!(" fragment F{i} on Query {{ ...F{} }}", i + 1));
        }
        query.push_str(" fragment F150 on Query { entities { id } }");
        let document = async_graphql::parser::parse_query(&query).expect("parses");
        assert!(Expanded::new(&document).operations().is_err());
        let cycle = async_graphql::parser::parse_query(
            "query { ...A } fragment A on Query { x: entities { id } ...B } fragment B on Query { ...A }",
        )
        .expect("parses");
        assert_eq!(Expanded::new(&cycle).operations(), Ok(Size { fields: 2, aliases: 1 }));
    }
}
