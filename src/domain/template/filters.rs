//! hookline's own filters (`json`, `raw` and the escaping filters the rewriter adds, which
//! print as is inside a `capture`), the budgeted versions of the filters that can multiply a
//! string's size (`replace`, `join`), `truncatewords` without a list of every word, and the
//! wrapper that makes every other filter check the clock, count its cost and charge its result.

use std::fmt;

use liquid_core::{
    Display_filter, Expression, Filter, FilterParameters, FilterReflection, FromFilterParameters, ParseFilter, Result,
    Runtime, Value, ValueView, parser::FilterArguments,
};

use super::{budget, tags};

/// A string escaped for the inside of a JSON string (without the quotes).
pub fn json_string(text: &str) -> String {
    let quoted = serde_json::to_string(text).unwrap_or_default();
    quoted.get(1..quoted.len().saturating_sub(1)).unwrap_or_default().to_owned()
}

/// A string percent-encoded for a URL (unreserved characters kept).
pub fn percent_encoded(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// What a filter costs besides the bytes of its result, counted against the iteration budget
/// before it runs: a filter is one call that the clock cannot interrupt, so the work it may do
/// is charged up front.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cost {
    /// Constant, or linear in the bytes of a string: the clock and the result's size bound it.
    Flat,
    /// One step per element of the input array.
    PerElement,
    /// n·⌈log₂(n+1)⌉ steps for an input of n elements (a sort).
    Sorting,
}

impl Cost {
    /// The steps for an input of `count` elements.
    pub fn steps(self, count: usize) -> usize {
        match self {
            Cost::Flat => 0,
            Cost::PerElement => count,
            Cost::Sorting => count.saturating_mul((usize::BITS - count.leading_zeros()) as usize),
        }
    }
}

/// The elements a filter walks in `input`: an array's, or one for any other value.
pub fn elements(input: &dyn ValueView) -> usize {
    input.as_array().map_or(1, |array| usize::try_from(array.size()).unwrap_or(usize::MAX))
}

/// A filter that checks the clock and charges its cost before it runs, and charges its result.
#[derive(Clone)]
pub struct Checked<F>(pub F, pub Cost);

impl<F: ParseFilter + Clone + 'static> ParseFilter for Checked<F> {
    fn parse(&self, arguments: FilterArguments<'_>) -> Result<Box<dyn Filter>> {
        let name = self.0.reflection().name().to_owned();
        Ok(Box::new(CheckedFilter { inner: self.0.parse(arguments)?, cost: self.1, name }))
    }

    fn reflection(&self) -> &dyn FilterReflection {
        self.0.reflection()
    }
}

#[derive(Debug)]
struct CheckedFilter {
    inner: Box<dyn Filter>,
    cost: Cost,
    name: String,
}

impl fmt::Display for CheckedFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

impl Filter for CheckedFilter {
    fn evaluate(&self, input: &dyn ValueView, runtime: &dyn Runtime) -> Result<Value> {
        budget::tick(runtime)?;
        if self.cost != Cost::Flat {
            budget::work(runtime, self.cost.steps(elements(input)), &self.name)?;
        }
        let value = self.inner.evaluate(input, runtime)?;
        budget::charged(runtime, value)
    }
}

fn to_json(input: &dyn ValueView) -> serde_json::Value {
    serde_json::to_value(input.to_value()).unwrap_or(serde_json::Value::Null)
}

#[derive(Clone, ParseFilter, FilterReflection)]
#[filter(name = "json", description = "Prints any value as a JSON literal.", parsed(JsonLiteralFilter))]
pub struct JsonLiteral;

#[derive(Debug, Default, Display_filter)]
#[name = "json"]
struct JsonLiteralFilter;

impl Filter for JsonLiteralFilter {
    fn evaluate(&self, input: &dyn ValueView, _runtime: &dyn Runtime) -> Result<Value> {
        Ok(Value::scalar(to_json(input).to_string()))
    }
}

#[derive(Clone, ParseFilter, FilterReflection)]
#[filter(name = "raw", description = "Prints a value without URL encoding.", parsed(RawFilter))]
pub struct Raw;

#[derive(Debug, Default, Display_filter)]
#[name = "raw"]
struct RawFilter;

impl Filter for RawFilter {
    fn evaluate(&self, input: &dyn ValueView, _runtime: &dyn Runtime) -> Result<Value> {
        Ok(input.to_value())
    }
}

#[derive(Clone, ParseFilter, FilterReflection)]
#[filter(name = "__hookline_json_string", description = "Escapes for a JSON string.", parsed(EscapeJsonFilter))]
pub struct EscapeJson;

#[derive(Debug, Default, Display_filter)]
#[name = "__hookline_json_string"]
struct EscapeJsonFilter;

impl Filter for EscapeJsonFilter {
    fn evaluate(&self, input: &dyn ValueView, runtime: &dyn Runtime) -> Result<Value> {
        let text = input.to_kstr();
        // Inside a capture the value is escaped once, where the capture is printed.
        if tags::capturing(runtime) {
            return Ok(Value::scalar(text.into_owned()));
        }
        Ok(Value::scalar(json_string(text.as_str())))
    }
}

#[derive(Clone, ParseFilter, FilterReflection)]
#[filter(name = "__hookline_url", description = "Percent-encodes for a URL.", parsed(EscapeUrlFilter))]
pub struct EscapeUrl;

#[derive(Debug, Default, Display_filter)]
#[name = "__hookline_url"]
struct EscapeUrlFilter;

impl Filter for EscapeUrlFilter {
    fn evaluate(&self, input: &dyn ValueView, runtime: &dyn Runtime) -> Result<Value> {
        let text = input.to_kstr();
        // Inside a capture the value is escaped once, where the capture is printed.
        if tags::capturing(runtime) {
            return Ok(Value::scalar(text.into_owned()));
        }
        Ok(Value::scalar(percent_encoded(text.as_str())))
    }
}

#[derive(Debug, FilterParameters)]
struct ReplaceArgs {
    #[parameter(description = "The text to search.", arg_type = "str")]
    search: Expression,
    #[parameter(description = "The text to replace it with (nothing when not given).", arg_type = "str")]
    replace: Option<Expression>,
}

#[derive(Clone, ParseFilter, FilterReflection)]
#[filter(
    name = "replace",
    description = "Replaces every occurrence of `search` with `replace`, within the rendering's budget.",
    parameters(ReplaceArgs),
    parsed(ReplaceFilter)
)]
pub struct Replace;

#[derive(Debug, FromFilterParameters, Display_filter)]
#[name = "replace"]
struct ReplaceFilter {
    #[parameters]
    args: ReplaceArgs,
}

impl Filter for ReplaceFilter {
    fn evaluate(&self, input: &dyn ValueView, runtime: &dyn Runtime) -> Result<Value> {
        budget::tick(runtime)?;
        let args = self.args.evaluate(runtime)?;
        let input = input.to_kstr();
        let replace = args.replace.unwrap_or_else(|| "".into());
        let (search, replace) = (args.search.as_str(), replace.as_str());
        // The size is known before the string is built.
        let hits = input.matches(search).count();
        let size = hits
            .checked_mul(replace.len())
            .and_then(|added| added.checked_add(input.len()))
            .map(|total| total.saturating_sub(hits.saturating_mul(search.len())));
        budget::fits(runtime, size)?;
        budget::charged(runtime, Value::scalar(input.replace(search, replace)))
    }
}

#[derive(Debug, FilterParameters)]
struct JoinArgs {
    #[parameter(description = "The separator between elements.", arg_type = "str")]
    separator: Option<Expression>,
}

#[derive(Clone, ParseFilter, FilterReflection)]
#[filter(
    name = "join",
    description = "Joins the elements of an array with a separator, within the rendering's budget.",
    parameters(JoinArgs),
    parsed(JoinFilter)
)]
pub struct Join;

#[derive(Debug, FromFilterParameters, Display_filter)]
#[name = "join"]
struct JoinFilter {
    #[parameters]
    args: JoinArgs,
}

impl Filter for JoinFilter {
    fn evaluate(&self, input: &dyn ValueView, runtime: &dyn Runtime) -> Result<Value> {
        budget::tick(runtime)?;
        let args = self.args.evaluate(runtime)?;
        let separator = args.separator.unwrap_or_else(|| " ".into());
        let array = input.as_array().ok_or_else(|| liquid_core::Error::with_msg("Array of strings expected"))?;
        budget::work(runtime, elements(input), "join")?;
        let parts: Vec<_> = array.values().map(|v| v.to_kstr()).collect();
        let size = parts
            .len()
            .saturating_sub(1)
            .checked_mul(separator.len())
            .and_then(|seps| parts.iter().try_fold(seps, |sum, p| sum.checked_add(p.len())));
        budget::fits(runtime, size)?;
        let mut joined = String::with_capacity(size.unwrap_or_default());
        for (i, part) in parts.iter().enumerate() {
            if i > 0 {
                joined.push_str(separator.as_str());
            }
            joined.push_str(part.as_str());
        }
        budget::charged(runtime, Value::scalar(joined))
    }
}

#[derive(Debug, FilterParameters)]
struct TruncateWordsArgs {
    #[parameter(description = "The number of words kept (50 when not given).", arg_type = "integer")]
    length: Option<Expression>,
    #[parameter(description = "Appended when words are cut (`...` when not given).", arg_type = "str")]
    ellipsis: Option<Expression>,
}

#[derive(Clone, ParseFilter, FilterReflection)]
#[filter(
    name = "truncatewords",
    description = "Keeps the first words of a string (split at spaces), without listing every word first.",
    parameters(TruncateWordsArgs),
    parsed(TruncateWordsFilter)
)]
pub struct TruncateWords;

#[derive(Debug, FromFilterParameters, Display_filter)]
#[name = "truncatewords"]
struct TruncateWordsFilter {
    #[parameters]
    args: TruncateWordsArgs,
}

/// Where the text of the first `words` words ends, when there are more words than that.
fn words_end(text: &str, words: usize) -> Option<usize> {
    match words.checked_sub(1) {
        None => Some(0),
        Some(nth) => text.match_indices(' ').nth(nth).map(|(at, _)| at),
    }
}

impl Filter for TruncateWordsFilter {
    fn evaluate(&self, input: &dyn ValueView, runtime: &dyn Runtime) -> Result<Value> {
        let args = self.args.evaluate(runtime)?;
        // As liquid's: a negative count keeps every word.
        let words = usize::try_from(args.length.unwrap_or(50)).unwrap_or(usize::MAX);
        let ellipsis = args.ellipsis.unwrap_or_else(|| "...".into());
        let text = input.to_kstr();
        Ok(match words_end(text.as_str(), words) {
            Some(end) => Value::scalar(format!("{}{}", &text[..end], ellipsis.as_str())),
            None => input.to_value(),
        })
    }
}
