//! Budgeted `for` and `tablerow`: each iteration counts against the rendering's budget and
//! checks its clock, and a range is walked without being built in memory first, so
//! `(1..2000000000)` costs what its iterations cost, not gigabytes up front.

use std::{collections::HashMap, io::Write};

use liquid::{ObjectView, ValueView};
use liquid_core::{
    BlockReflection, Expression, Language, ParseBlock, Renderable, Result, Runtime, TagBlock, TagTokenIter, Template,
    error::ResultLiquidReplaceExt,
    model::{KString, KStringRef, Scalar, Value, ValueCow},
    parser::{BlockElement, TryMatchToken},
    runtime::{Interrupt, InterruptRegister, StackFrame},
};

use super::budget;

/// What a loop walks.
#[derive(Debug)]
enum Source {
    Array(Expression),
    Counted(Expression, Expression),
}

/// The head of a loop: `var in source` and its keyword parameters.
#[derive(Debug)]
struct Head {
    var: KString,
    source: Source,
    limit: Option<Expression>,
    offset: Option<Expression>,
    cols: Option<Expression>,
    reversed: bool,
}

fn parse_head(arguments: &mut TagTokenIter<'_>, tablerow: bool) -> Result<Head> {
    let var = arguments.expect_next("Identifier expected.")?.expect_identifier().into_result()?;
    let var = KString::from_ref(var);
    arguments.expect_next("\"in\" expected.")?.expect_str("in").into_result_custom_msg("\"in\" expected.")?;
    let source = match arguments.expect_next("Array or range expected.")?.expect_value() {
        TryMatchToken::Matches(array) => Source::Array(array),
        TryMatchToken::Fails(token) => match token.expect_range() {
            TryMatchToken::Matches((start, stop)) => Source::Counted(start, stop),
            TryMatchToken::Fails(token) => return token.raise_error().into_err(),
        },
    };
    let mut head = Head { var, source, limit: None, offset: None, cols: None, reversed: false };
    while let Some(token) = arguments.next() {
        match token.as_str() {
            "limit" => head.limit = Some(parse_attr(arguments)?),
            "offset" => head.offset = Some(parse_attr(arguments)?),
            "cols" if tablerow => head.cols = Some(parse_attr(arguments)?),
            "reversed" if !tablerow => head.reversed = true,
            _ => {
                let expected = if tablerow {
                    "\"cols\", \"limit\" or \"offset\" expected."
                } else {
                    "\"limit\", \"offset\" or \"reversed\" expected."
                };
                return token.raise_custom_error(expected).into_err();
            }
        }
    }
    arguments.expect_nothing()?;
    Ok(head)
}

fn parse_attr(arguments: &mut TagTokenIter<'_>) -> Result<Expression> {
    arguments.expect_next("\":\" expected.")?.expect_str(":").into_result_custom_msg("\":\" expected.")?;
    arguments.expect_next("Value expected.")?.expect_value().into_result()
}

fn whole_number(expression: &Expression, runtime: &dyn Runtime) -> Result<i64> {
    let value = expression.evaluate(runtime)?;
    value
        .as_scalar()
        .and_then(|s| s.to_integer())
        .ok_or_else(|| liquid_core::Error::with_msg(format!("Expected whole number, found `{}`", value.type_name())))
}

/// A non-negative count from an optional attribute (a negative one counts as 0).
fn count(attr: &Option<Expression>, runtime: &dyn Runtime) -> Result<Option<usize>> {
    attr.as_ref().map(|e| whole_number(e, runtime).map(|n| usize::try_from(n.max(0)).unwrap_or(usize::MAX))).transpose()
}

/// The elements a loop walks, after `offset`, `limit` and `reversed`; a range stays a range.
enum Walk<'r> {
    Counted { first: i64, len: usize, reversed: bool },
    Values(Vec<ValueCow<'r>>),
}

impl Walk<'_> {
    fn len(&self) -> usize {
        match self {
            Walk::Counted { len, .. } => *len,
            Walk::Values(values) => values.len(),
        }
    }

    fn get(&self, i: usize) -> ValueCow<'_> {
        match self {
            Walk::Counted { first, len, reversed } => {
                let step = if *reversed { len.saturating_sub(1).saturating_sub(i) } else { i };
                // Within the range's own bounds, so it fits an i64.
                let n = i64::try_from(step).ok().and_then(|s| first.checked_add(s)).unwrap_or(*first);
                ValueCow::Owned(Value::scalar(n))
            }
            Walk::Values(values) => {
                values.get(i).map_or(ValueCow::Owned(Value::Nil), |v| ValueCow::Borrowed(v.as_view()))
            }
        }
    }
}

fn walk<'r>(head: &'r Head, runtime: &'r dyn Runtime) -> Result<Walk<'r>> {
    let limit = count(&head.limit, runtime)?;
    let offset = count(&head.offset, runtime)?.unwrap_or(0);
    match &head.source {
        Source::Counted(start, stop) => {
            let (start, stop) = (whole_number(start, runtime)?, whole_number(stop, runtime)?);
            let full = if stop < start { 0 } else { i128::from(stop) - i128::from(start) + 1 };
            let full = usize::try_from(full).unwrap_or(usize::MAX);
            let offset = offset.min(full);
            let len = limit.unwrap_or(usize::MAX).min(full - offset);
            let first = i64::try_from(i128::from(start) + offset as i128).unwrap_or(stop);
            Ok(Walk::Counted { first, len, reversed: head.reversed })
        }
        Source::Array(expression) => {
            let value = expression.evaluate(runtime)?;
            let mut values: Vec<ValueCow<'r>> = match value {
                ValueCow::Borrowed(v) => elements(v, runtime)?,
                ValueCow::Owned(v) => {
                    elements(&v, runtime)?.into_iter().map(|e| ValueCow::Owned(e.into_owned())).collect()
                }
            };
            let offset = offset.min(values.len());
            values.drain(..offset);
            values.truncate(limit.unwrap_or(usize::MAX));
            if head.reversed {
                values.reverse();
            }
            Ok(Walk::Values(values))
        }
    }
}

/// An array's elements, an object's `[key, value]` pairs (charged to the budget: they are
/// copies), nothing for nil; anything else is an error.
fn elements<'v>(value: &'v dyn liquid_core::ValueView, runtime: &dyn Runtime) -> Result<Vec<ValueCow<'v>>> {
    if let Some(array) = value.as_array() {
        Ok(array.values().map(ValueCow::Borrowed).collect())
    } else if let Some(object) = value.as_object() {
        budget::produce(runtime, budget::weight(value))?;
        Ok(object
            .iter()
            .map(|(k, v)| ValueCow::Owned(Value::Array(vec![Value::scalar(k.into_owned()), v.to_value()])))
            .collect())
    } else if value.is_state() || value.is_nil() {
        Ok(Vec::new())
    } else {
        Err(liquid_core::Error::with_msg(format!("Expected array, found `{}`", value.type_name())))
    }
}

#[derive(Debug, Clone, ValueView, ObjectView)]
struct ForloopObject<'p> {
    length: i64,
    parentloop: Option<&'p dyn liquid::ValueView>,
    index0: i64,
    index: i64,
    rindex0: i64,
    rindex: i64,
    first: bool,
    last: bool,
}

fn int(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl<'p> ForloopObject<'p> {
    fn new(i: usize, len: usize, parentloop: Option<&'p dyn liquid::ValueView>) -> Self {
        let (i, len) = (int(i), int(len));
        Self {
            length: len,
            parentloop,
            index0: i,
            index: i.saturating_add(1),
            rindex0: len.saturating_sub(i).saturating_sub(1),
            rindex: len.saturating_sub(i),
            first: i == 0,
            last: i == len.saturating_sub(1),
        }
    }
}

/// The loop body, the `else` body, and how elements are printed around the body.
fn parse_body(
    tokens: &mut TagBlock<'_, '_>,
    options: &Language,
    with_else: bool,
) -> Result<(Template, Option<Template>)> {
    let mut body = Vec::new();
    let mut otherwise = None;
    while let Some(element) = tokens.next()? {
        match element {
            BlockElement::Tag(mut tag) if with_else && tag.name() == "else" => {
                tag.tokens().expect_nothing()?;
                otherwise = Some(Template::new(tokens.parse_all(options)?));
                break;
            }
            BlockElement::Tag(tag) => body.push(tag.parse(tokens, options)?),
            element => body.push(element.parse(tokens, options)?),
        }
    }
    Ok((Template::new(body), otherwise))
}

#[derive(Copy, Clone, Debug, Default)]
pub struct ForBlock;

block_reflection!(
    ForBlock,
    "for",
    "endfor",
    "Loops over an array or a range; each iteration counts against the rendering's budget."
);

impl ParseBlock for ForBlock {
    fn parse(
        &self,
        mut arguments: TagTokenIter<'_>,
        mut tokens: TagBlock<'_, '_>,
        options: &Language,
    ) -> Result<Box<dyn Renderable>> {
        let head = parse_head(&mut arguments, false)?;
        let (body, otherwise) = parse_body(&mut tokens, options, true)?;
        tokens.assert_empty();
        Ok(Box::new(For { head, body, otherwise }))
    }

    fn reflection(&self) -> &dyn BlockReflection {
        self
    }
}

#[derive(Debug)]
struct For {
    head: Head,
    body: Template,
    otherwise: Option<Template>,
}

impl Renderable for For {
    fn render_to(&self, writer: &mut dyn Write, runtime: &dyn Runtime) -> Result<()> {
        budget::tick(runtime)?;
        let elements = walk(&self.head, runtime)?;
        let len = elements.len();
        if len == 0 {
            return match &self.otherwise {
                Some(otherwise) => otherwise.render_to(writer, runtime),
                None => Ok(()),
            };
        }
        let parentloop = runtime.try_get(&[Scalar::new("forloop")]);
        let parentloop = parentloop.as_ref().map(|v| v.as_view());
        for i in 0..len {
            budget::iterate(runtime)?;
            let value = elements.get(i);
            let forloop = ForloopObject::new(i, len, parentloop);
            let mut root = HashMap::<KStringRef<'_>, &dyn liquid_core::ValueView>::new();
            root.insert("forloop".into(), &forloop);
            root.insert(self.head.var.as_ref(), value.as_view());
            let scope = StackFrame::new(runtime, &root);
            self.body.render_to(writer, &scope)?;
            if let Some(Interrupt::Break) = scope.registers().get_mut::<InterruptRegister>().reset() {
                break;
            }
        }
        Ok(())
    }
}

#[derive(Copy, Clone, Debug, Default)]
pub struct TableRowBlock;

block_reflection!(
    TableRowBlock,
    "tablerow",
    "endtablerow",
    "Prints an HTML table row per element; each iteration counts against the rendering's budget."
);

impl ParseBlock for TableRowBlock {
    fn parse(
        &self,
        mut arguments: TagTokenIter<'_>,
        mut tokens: TagBlock<'_, '_>,
        options: &Language,
    ) -> Result<Box<dyn Renderable>> {
        let head = parse_head(&mut arguments, true)?;
        let body = Template::new(tokens.parse_all(options)?);
        tokens.assert_empty();
        Ok(Box::new(TableRow { head, body }))
    }

    fn reflection(&self) -> &dyn BlockReflection {
        self
    }
}

#[derive(Debug)]
struct TableRow {
    head: Head,
    body: Template,
}

#[derive(Debug, Clone, ValueView, ObjectView)]
struct TableRowObject {
    length: i64,
    index0: i64,
    index: i64,
    rindex0: i64,
    rindex: i64,
    first: bool,
    last: bool,
    col0: i64,
    col: i64,
    col_first: bool,
    col_last: bool,
}

impl Renderable for TableRow {
    fn render_to(&self, writer: &mut dyn Write, runtime: &dyn Runtime) -> Result<()> {
        budget::tick(runtime)?;
        let elements = walk(&self.head, runtime)?;
        let len = elements.len();
        let cols = count(&self.head.cols, runtime)?.filter(|c| *c > 0).unwrap_or(len.max(1));
        for i in 0..len {
            budget::iterate(runtime)?;
            let value = elements.get(i);
            let (col, row) = (i % cols, i / cols);
            let last = i + 1 == len;
            let tablerow = TableRowObject {
                length: int(len),
                index0: int(i),
                index: int(i).saturating_add(1),
                rindex0: int(len - i - 1),
                rindex: int(len - i),
                first: i == 0,
                last,
                col0: int(col),
                col: int(col).saturating_add(1),
                col_first: col == 0,
                col_last: col + 1 == cols || last,
            };
            let mut root = HashMap::<KStringRef<'_>, &dyn liquid_core::ValueView>::new();
            root.insert("tablerow".into(), &tablerow);
            root.insert(self.head.var.as_ref(), value.as_view());
            if tablerow.col_first {
                write!(writer, "<tr class=\"row{}\">", row + 1).replace("Failed to render")?;
            }
            write!(writer, "<td class=\"col{}\">", col + 1).replace("Failed to render")?;
            let scope = StackFrame::new(runtime, &root);
            self.body.render_to(writer, &scope)?;
            write!(writer, "</td>").replace("Failed to render")?;
            if tablerow.col_last {
                write!(writer, "</tr>").replace("Failed to render")?;
            }
        }
        Ok(())
    }
}
