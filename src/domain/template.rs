//! Liquid templates for payloads, URLs and header values, with output escaped for where it
//! lands: inside a JSON payload `{{ … }}` prints a JSON-escaped string (so a quote in a ticket
//! title never breaks the body) and `{{ … | json }}` prints any value as a JSON literal; in a
//! URL `{{ … }}` is percent-encoded (`| raw` prints it as is); header values are printed as they
//! are and may not contain line breaks.
//!
//! Templates cannot read files or the network (no partials are configured) and have size
//! limits; `for` loops over ranges need literal bounds, so one template cannot stall a worker.

use std::sync::OnceLock;

use liquid_core::{
    Display_filter, Filter, FilterReflection, ParseFilter, Result as LiquidResult, Runtime, Value, ValueView,
};

/// Where a template's output goes, which decides how `{{ … }}` is escaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    /// A JSON body.
    Json,
    /// A body of another content type: printed as is.
    Text,
    /// A URL: percent-encoded.
    Url,
    /// A header value: printed as is, line breaks refused.
    Header,
}

/// Size limits of templates and of what they render.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_template: usize,
    pub max_rendered: usize,
    /// Loop iterations over all loops of one rendering.
    pub max_iterations: usize,
    /// Deepest nesting of blocks.
    pub max_depth: usize,
    /// The time one rendering may take.
    pub timeout: std::time::Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_template: 64 * 1024,
            max_rendered: 1024 * 1024,
            max_iterations: 10_000,
            max_depth: 10,
            timeout: std::time::Duration::from_millis(100),
        }
    }
}

/// The longest range a `for` loop may walk.
const MAX_RANGE: i64 = 1000;

/// A problem in a template, with its place when known (1-based).
#[derive(Debug, Clone, PartialEq)]
pub struct TemplateError {
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
}

impl std::fmt::Display for TemplateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.line, self.column) {
            (Some(line), Some(column)) => write!(f, "line {line}, column {column}: {}", self.message),
            (Some(line), None) => write!(f, "line {line}: {}", self.message),
            _ => f.write_str(&self.message),
        }
    }
}

impl TemplateError {
    fn plain(message: impl Into<String>) -> Self {
        Self { line: None, column: None, message: message.into() }
    }
}

/// A parsed template, ready to render many times.
pub struct Template {
    compiled: liquid::Template,
    context: Context,
    limits: Limits,
    /// The text itself, when it has no tag or output and passes the context's checks: then
    /// rendering is a copy.
    fixed: Option<String>,
}

impl std::fmt::Debug for Template {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Template").field("context", &self.context).finish_non_exhaustive()
    }
}

fn parser() -> &'static liquid::Parser {
    static PARSER: OnceLock<liquid::Parser> = OnceLock::new();
    PARSER.get_or_init(|| {
        liquid::ParserBuilder::with_stdlib()
            .filter(JsonLiteral)
            .filter(Raw)
            .filter(EscapeJson)
            .filter(EscapeUrl)
            .build()
            .unwrap_or_else(|_| unreachable!("the standard parser always builds"))
    })
}

impl Template {
    /// Parses `source` for `context`. Errors say where the problem is.
    pub fn parse(source: &str, context: Context, limits: Limits) -> Result<Self, TemplateError> {
        if source.len() > limits.max_template {
            return Err(TemplateError::plain(format!(
                "the template has {} bytes, more than the limit of {}",
                source.len(),
                limits.max_template
            )));
        }
        check_ranges(source)?;
        // Parse the text as written first, so that positions in errors are the user's.
        parser().parse(source).map_err(|e| located(source, &e))?;
        let rewritten = escape_outputs(source, context);
        let compiled = parser().parse(&rewritten).map_err(|e| located(source, &e))?;
        let mut template = Self { compiled, context, limits, fixed: None };
        if !super::render::is_dynamic(source) {
            template.fixed = template.render(&liquid::Object::new()).ok();
        }
        Ok(template)
    }

    /// Whether the template is plain text (no variables, nothing to evaluate).
    pub fn is_fixed(&self) -> bool {
        self.fixed.is_some()
    }

    /// Renders with the variables; checks the size, line breaks in headers and JSON validity.
    pub fn render(&self, variables: &liquid::Object) -> Result<String, String> {
        if let Some(text) = &self.fixed {
            return Ok(text.clone());
        }
        let text =
            self.compiled.render(variables).map_err(|e| format!("rendering failed: {}", first_line(&e.to_string())))?;
        if text.len() > self.limits.max_rendered {
            return Err(format!(
                "renders to {} bytes, more than the limit of {}",
                text.len(),
                self.limits.max_rendered
            ));
        }
        match self.context {
            Context::Json => {
                if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(&text) {
                    return Err(format!(
                        "renders to invalid JSON (line {}, column {} of the output: {e}); print values outside strings with `| json`",
                        e.line(),
                        e.column()
                    ));
                }
            }
            Context::Header if text.contains(['\r', '\n']) => {
                return Err("renders to a value with a line break, which a header cannot hold".into());
            }
            _ => {}
        }
        Ok(text)
    }
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or(text)
}

/// A liquid error with the line and column of the problem, when liquid gives one or the
/// offending text can be found in the source.
fn located(source: &str, error: &liquid::Error) -> TemplateError {
    let text = error.to_string();
    // Parse errors carry pest's " --> line:column".
    if let Some(at) = text.split("-->").nth(1) {
        let mut numbers = at.trim().split(|c: char| !c.is_ascii_digit()).filter(|s| !s.is_empty());
        let line = numbers.next().and_then(|n| n.parse().ok());
        let column = numbers.next().and_then(|n| n.parse().ok());
        let message = text
            .lines()
            .find(|l| l.trim_start().starts_with('='))
            .map_or(first_line(&text), |l| l.trim_start_matches([' ', '=']));
        return TemplateError { line, column, message: message.trim().to_owned() };
    }
    // Other errors name the offending snippet ("requested filter=foo").
    let snippet =
        text.split('=').nth(1).map(|s| s.split_whitespace().next().unwrap_or_default().trim_matches(['"', '\'']));
    let (line, column) = match snippet.filter(|s| !s.is_empty()).and_then(|s| source.find(s)) {
        Some(offset) => {
            let before = &source[..offset];
            (Some(before.matches('\n').count() + 1), Some(offset - before.rfind('\n').map_or(0, |i| i + 1) + 1))
        }
        None => (None, None),
    };
    TemplateError { line, column, message: first_line(&text).to_owned() }
}

/// `for` loops over ranges need literal bounds no more than `MAX_RANGE` apart.
fn check_ranges(source: &str) -> Result<(), TemplateError> {
    for (offset, _) in source.match_indices("{%") {
        let tag = &source[offset + 2..];
        let tag = &tag[..tag.find("%}").unwrap_or(tag.len())];
        let words: Vec<&str> = tag.trim_start_matches('-').split_whitespace().collect();
        if words.first() != Some(&"for") {
            continue;
        }
        let Some(range) =
            tag.find('(').map(|start| &tag[start + 1..tag[start..].find(')').map_or(tag.len(), |e| start + e)])
        else {
            continue;
        };
        let bounds: Vec<Option<i64>> = range.split("..").map(|b| b.trim().parse().ok()).collect();
        let within = matches!(bounds.as_slice(), [Some(a), Some(b)] if b - a <= MAX_RANGE);
        if !within {
            let before = &source[..offset];
            return Err(TemplateError {
                line: Some(before.matches('\n').count() + 1),
                column: Some(offset - before.rfind('\n').map_or(0, |i| i + 1) + 1),
                message: format!("a `for` range needs literal bounds at most {MAX_RANGE} apart, such as (1..10)"),
            });
        }
    }
    Ok(())
}

/// Adds the escaping filter of the context to every `{{ … }}` output, except where the last
/// filter already decides (`json` in JSON, `raw` in URLs) and inside `{% raw %}` blocks.
fn escape_outputs(source: &str, context: Context) -> String {
    let (filter, keep) = match context {
        Context::Json => ("__hookline_json_string", "json"),
        Context::Url => ("__hookline_url", "raw"),
        Context::Text | Context::Header => return source.to_owned(),
    };
    let mut out = String::with_capacity(source.len() + 64);
    let mut rest = source;
    while let Some(start) = rest.find(['{']) {
        let (before, from) = rest.split_at(start);
        out.push_str(before);
        if let Some(after_raw) =
            from.strip_prefix("{%").filter(|t| t.trim_start_matches('-').trim_start().starts_with("raw"))
        {
            // Copy a raw block untouched.
            let end = after_raw
                .find("endraw")
                .and_then(|i| after_raw[i..].find("%}").map(|j| i + j + 2))
                .unwrap_or(after_raw.len());
            out.push_str("{%");
            out.push_str(&after_raw[..end]);
            rest = &after_raw[end..];
            continue;
        }
        let Some(inner) = from.strip_prefix("{{") else {
            out.push('{');
            rest = &from[1..];
            continue;
        };
        let end = closing(inner);
        let expr = &inner[..end];
        let (body, trim_right) = match expr.strip_suffix('-') {
            Some(body) => (body, "-"),
            None => (expr, ""),
        };
        let last_filter = body.rsplit('|').next().unwrap_or_default().trim();
        out.push_str("{{");
        out.push_str(body);
        if !(body.contains('|') && last_filter == keep) {
            out.push_str(" | ");
            out.push_str(filter);
            out.push(' ');
        }
        out.push_str(trim_right);
        out.push_str("}}");
        rest = inner.get(end + 2..).unwrap_or_default();
    }
    out.push_str(rest);
    out
}

/// The offset of the `}}` closing an output, skipping quoted strings.
fn closing(inner: &str) -> usize {
    let mut quote = None;
    let bytes = inner.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        match quote {
            Some(q) if b == q => quote = None,
            Some(_) => {}
            None if b == b'"' || b == b'\'' => quote = Some(b),
            None if b == b'}' && bytes.get(i + 1) == Some(&b'}') => return i,
            None => {}
        }
    }
    inner.len()
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
    fn evaluate(&self, input: &dyn ValueView, _runtime: &dyn Runtime) -> LiquidResult<Value> {
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
    fn evaluate(&self, input: &dyn ValueView, _runtime: &dyn Runtime) -> LiquidResult<Value> {
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
    fn evaluate(&self, input: &dyn ValueView, _runtime: &dyn Runtime) -> LiquidResult<Value> {
        let text = input.to_kstr();
        let quoted = serde_json::to_string(text.as_str()).unwrap_or_default();
        Ok(Value::scalar(quoted[1..quoted.len() - 1].to_owned()))
    }
}

#[derive(Clone, ParseFilter, FilterReflection)]
#[filter(name = "__hookline_url", description = "Percent-encodes for a URL.", parsed(EscapeUrlFilter))]
pub struct EscapeUrl;

#[derive(Debug, Default, Display_filter)]
#[name = "__hookline_url"]
struct EscapeUrlFilter;

impl Filter for EscapeUrlFilter {
    fn evaluate(&self, input: &dyn ValueView, _runtime: &dyn Runtime) -> LiquidResult<Value> {
        let text = input.to_kstr();
        let mut out = String::with_capacity(text.len());
        for byte in text.as_bytes() {
            if byte.is_ascii_alphanumeric() || b"-._~".contains(byte) {
                out.push(*byte as char);
            } else {
                out.push_str(&format!("%{byte:02X}"));
            }
        }
        Ok(Value::scalar(out))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn vars(value: serde_json::Value) -> liquid::Object {
        liquid::to_object(&value).expect("object")
    }

    fn render(source: &str, context: Context, data: serde_json::Value) -> Result<String, String> {
        Template::parse(source, context, Limits::default()).map_err(|e| e.to_string())?.render(&vars(data))
    }

    #[test]
    fn strings_in_json_are_escaped_exactly() {
        let nasty = "quote \" backslash \\ newline \n tab \t <&> emoji 🎉 line-sep \u{2028} nul \u{0}";
        let out = render(r#"{"text": "Ticket: {{ item.name }}"}"#, Context::Json, json!({"item": {"name": nasty}}))
            .expect("renders");
        let parsed: serde_json::Value = serde_json::from_str(&out).expect("valid JSON");
        assert_eq!(parsed["text"], format!("Ticket: {nasty}"));
    }

    #[test]
    fn the_json_filter_prints_literals() {
        let data =
            json!({"item": {"id": 7, "team": [{"name": "a"}], "status": {"id": 2, "name": "x\"y"}, "none": null}});
        let out = render(r#"{"id": {{ item.id | json }}, "team": {{ item.team | json }}, "status": {{ item.status | json }}, "none": {{ item.none | json }}}"#, Context::Json, data.clone()).expect("renders");
        let parsed: serde_json::Value = serde_json::from_str(&out).expect("valid JSON");
        assert_eq!(
            parsed,
            json!({"id": 7, "team": [{"name": "a"}], "status": {"id": 2, "name": "x\"y"}, "none": null})
        );
        let plain_number = render(r#"{"id": {{ item.id }}}"#, Context::Json, data).expect("numbers print as they are");
        assert_eq!(plain_number, r#"{"id": 7}"#);
    }

    #[test]
    fn invalid_json_output_is_reported() {
        let err =
            render(r#"{"a": {{ item.name }}}"#, Context::Json, json!({"item": {"name": "x y"}})).expect_err("not JSON");
        assert!(err.contains("invalid JSON"), "{err}");
    }

    #[test]
    fn url_placeholders_are_percent_encoded_unless_raw() {
        let data = json!({"event": "new", "item": {"id": 5, "name": "a b/c?d"}, "parent_item": {"external_id": "ext1234"}, "base": "https://h.example/x"});
        let url = render(
            "http://localhost/{{ parent_item.external_id }}/{{ event }}/{{ item.id }}",
            Context::Url,
            data.clone(),
        )
        .expect("renders");
        assert_eq!(url, "http://localhost/ext1234/new/5");
        assert_eq!(
            render("http://h/{{ item.name }}?q={{ item.name }}", Context::Url, data.clone()).expect("r"),
            "http://h/a%20b%2Fc%3Fd?q=a%20b%2Fc%3Fd"
        );
        assert_eq!(render("{{ base | raw }}/y", Context::Url, data).expect("r"), "https://h.example/x/y");
    }

    #[test]
    fn headers_refuse_line_breaks() {
        let err = render("Bearer {{ item.token }}", Context::Header, json!({"item": {"token": "a\r\nX: y"}}))
            .expect_err("CRLF");
        assert!(err.contains("line break"), "{err}");
        assert_eq!(
            render("Bearer {{ item.token }}", Context::Header, json!({"item": {"token": "t0k"}})).expect("r"),
            "Bearer t0k"
        );
    }

    #[test]
    fn parse_errors_say_where() {
        let err =
            Template::parse("{\n  \"a\": \"{{ item.name | nosuchfilter }}\"\n}", Context::Json, Limits::default())
                .expect_err("unknown filter");
        assert_eq!(err.line, Some(2), "{err}");
        assert!(err.message.to_lowercase().contains("filter"), "{err}");
        let err = Template::parse("ok\n{% nosuchtag %}", Context::Json, Limits::default()).expect_err("unknown tag");
        assert!(err.line == Some(2), "{err}");
        let err = Template::parse("{{ item.name ", Context::Json, Limits::default()).expect_err("unclosed");
        assert!(err.line.is_some(), "{err}");
    }

    #[test]
    fn limits_and_ranges_are_enforced() {
        let small = Limits { max_template: 40, max_rendered: 20, ..Limits::default() };
        assert!(Template::parse(&"x".repeat(41), Context::Text, small).is_err());
        let big = Template::parse("{% for i in (1..50) %}xx{% endfor %}", Context::Text, small).expect("parses");
        assert!(big.render(&vars(json!({}))).expect_err("too big").contains("limit"));
        assert!(Template::parse("{% for i in (1..100000) %}x{% endfor %}", Context::Text, Limits::default()).is_err());
        assert!(Template::parse("{% for i in (1..item.n) %}x{% endfor %}", Context::Text, Limits::default()).is_err());
        assert!(
            Template::parse("{% for t in item.team %}{{ t.name }}{% endfor %}", Context::Text, Limits::default())
                .is_ok()
        );
    }

    #[test]
    fn raw_blocks_and_whitespace_control_survive_rewriting() {
        let out = render("{% raw %}{{ not }}{% endraw %} {{- item.a -}} !", Context::Json, json!({"item": {"a": "x"}}))
            .expect_err("not JSON but renders");
        assert!(out.contains("invalid JSON"));
        let text = escape_outputs("{% raw %}{{ not }}{% endraw %}{{- item.a -}}{{ item.b | json }}", Context::Json);
        assert_eq!(text, "{% raw %}{{ not }}{% endraw %}{{- item.a  | __hookline_json_string -}}{{ item.b | json }}");
    }
}
