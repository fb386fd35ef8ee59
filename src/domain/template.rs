//! Liquid templates for payloads, URLs and header values, with output escaped for where it
//! lands: inside a JSON payload `{{ … }}` prints a JSON-escaped string (so a quote in a ticket
//! title never breaks the body) and `{{ … | json }}` prints any value as a JSON literal; in a
//! URL `{{ … }}` is percent-encoded (`| raw` prints it as is); header values are printed as they
//! are and may not contain line breaks.
//!
//! Templates cannot read files or the network (no partials are configured) and have size
//! limits; `for` loops over ranges need literal bounds, so one template cannot stall a worker.

/// A block tag's reflection: its start and end tags and what it does.
macro_rules! block_reflection {
    ($block:ty, $start:literal, $end:literal, $description:literal) => {
        impl liquid_core::BlockReflection for $block {
            fn start_tag(&self) -> &str {
                $start
            }

            fn end_tag(&self) -> &str {
                $end
            }

            fn description(&self) -> &str {
                $description
            }
        }
    };
}

mod arrays;
mod budget;
#[cfg(test)]
mod filter_tests;
mod filters;
mod language;
mod loops;
mod math;
#[cfg(test)]
mod proptests;
mod source;
mod tags;

pub use budget::{Budget, PRODUCED_FACTOR};
use liquid_core::{Renderable, runtime::RuntimeBuilder};

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
    compiled: liquid_core::Template,
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

fn compile(text: &str) -> Result<liquid_core::Template, liquid_core::Error> {
    liquid_core::parser::parse(text, language::language()).map(liquid_core::Template::new)
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
        // Before parsing: liquid parses nested blocks and `[ … ]` recursively.
        source::check(source, limits)?;
        // Parse the text as written first, so that positions in errors are the user's.
        compile(source).map_err(|e| located(source, &e))?;
        let rewritten = source::escape_outputs(source, context);
        let compiled = compile(&rewritten).map_err(|e| located(source, &e))?;
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

    /// Renders with the variables within a budget of its own; checks the size, line breaks in
    /// headers and JSON validity.
    pub fn render(&self, variables: &liquid::Object) -> Result<String, String> {
        self.render_in(variables, Budget::start(self.limits, self.context)).0
    }

    /// Renders within `budget` (shared by the templates of one request) and gives it back.
    pub fn render_in(&self, variables: &liquid::Object, budget: Budget) -> (Result<String, String>, Budget) {
        if let Some(text) = &self.fixed {
            return (Ok(text.clone()), budget);
        }
        let runtime = RuntimeBuilder::new().set_globals(variables).build();
        budget::arm(&runtime, budget.with_context(self.context));
        let mut out = budget::Limited::new(&runtime);
        let rendered = self.compiled.render_to(&mut out, &runtime);
        let text = out.into_string();
        let budget = budget::disarm(&runtime);
        let result = match (rendered, budget.exceeded()) {
            (_, Some(reason)) => Err(format!("rendering stopped: {reason}")),
            (Err(e), None) => Err(format!("rendering failed: {}", first_line(&e.to_string()))),
            (Ok(()), None) => self.checked(text),
        };
        (result, budget)
    }

    /// The output's checks for its context.
    fn checked(&self, text: String) -> Result<String, String> {
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
        assert!(big.render(&vars(json!({}))).expect_err("too big").contains("more than 20 bytes"));
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
        let text =
            source::escape_outputs("{% raw %}{{ not }}{% endraw %}{{- item.a -}}{{ item.b | json }}", Context::Json);
        assert_eq!(text, "{% raw %}{{ not }}{% endraw %}{{- item.a  | __hookline_json_string -}}{{ item.b | json }}");
    }

    /// The default limits but time: a slow (debug, loaded) machine must meet the budget under
    /// test before the 100 ms one.
    fn untimed() -> Limits {
        Limits { timeout: std::time::Duration::from_secs(60), ..Limits::default() }
    }

    fn budget_error(source: &str, limits: Limits, data: serde_json::Value) -> String {
        let template = Template::parse(source, Context::Json, limits).expect("parses");
        template.render(&vars(data)).expect_err("stopped")
    }

    #[test]
    fn the_issue_examples_are_refused() {
        let doubling = "{% assign s = 'xxxxxxxxxxxxxxxx' %}{% for i in (1..40) %}{% assign s = s | append: s %}{% endfor %}{\"n\":{{ s | size }}}";
        let err = budget_error(doubling, untimed(), json!({}));
        assert!(err.contains("more than 1048576 bytes"), "{err}");
        for source in [
            "{% tablerow i in (1..2000000000) %}{% endtablerow %}",
            "{% for a in (1..1000) %}{% for b in (1..1000) %}{% for c in (1..1000) %}{% endfor %}{% endfor %}{% endfor %}",
        ] {
            let err = Template::parse(source, Context::Json, Limits::default()).expect_err(source);
            assert!(err.line == Some(1) && err.column.is_some(), "{err}");
        }
    }

    #[test]
    fn loops_over_data_count_against_the_iteration_budget() {
        let untimed = untimed();
        let tags: Vec<u32> = (0..200).collect();
        let nested = "{% for a in item.tags %}{% for b in item.tags %}{% endfor %}{% endfor %}{}";
        let err = budget_error(nested, untimed, json!({"item": {"tags": tags}}));
        assert!(err.contains("more than 10000 loop iterations"), "{err}");
        let split = "{% assign a = item.s | split: '' %}{% tablerow x in a %}{% tablerow y in a %}{% endtablerow %}{% endtablerow %}{}";
        let err = budget_error(split, untimed, json!({"item": {"s": "x".repeat(500)}}));
        assert!(err.contains("iterations"), "{err}");
        // Within the budget, loops run as liquid's own.
        let ok = render("[{% for t in item.tags limit: 3 offset: 1 reversed %}{{ t | json }}{% unless forloop.last %},{% endunless %}{% endfor %}]", Context::Json, json!({"item": {"tags": [1, 2, 3, 4, 5]}})).expect("renders");
        assert_eq!(ok, "[4,3,2]");
        let range =
            render("{% for i in (3..5) %}{{ forloop.index }}{{ i }}{% endfor %}", Context::Text, json!({})).expect("r");
        assert_eq!(range, "132435");
    }

    #[test]
    fn strings_that_would_grow_past_the_limit_are_refused_before_they_are_built() {
        let data = json!({"item": {"s": "a".repeat(2000), "big": "b".repeat(2000)}});
        for source in [
            "{% assign s = item.s | replace: 'a', item.big %}{}",
            "{% assign parts = item.s | split: '' %}{% assign s = parts | join: item.big %}{}",
            "{% capture c %}{% for i in (1..1000) %}{{ item.s }}{% endfor %}{% endcapture %}{}",
            "{% for i in (1..1000) %}{% ifchanged %}{{ item.s }}{{ item.big }}{{ i }}{% endifchanged %}{% endfor %}",
        ] {
            let err = budget_error(source, untimed(), data.clone());
            assert!(err.contains("bytes"), "{source}: {err}");
        }
    }

    #[test]
    fn the_clock_stops_a_rendering() {
        let limits = Limits { timeout: std::time::Duration::ZERO, ..Limits::default() };
        let err = budget_error("{% for i in (1..3) %}{% endfor %}{}", limits, json!({}));
        assert!(err.contains("longer than 0 ms"), "{err}");
    }

    #[test]
    fn cycle_prints_escaped_values() {
        let name = "x\",\"admin\":true,\"y\":\"";
        let out = render(r#"{"a":"{% cycle item.name %}"}"#, Context::Json, json!({"item": {"name": name}}))
            .expect("renders");
        let parsed: serde_json::Value = serde_json::from_str(&out).expect("valid JSON");
        assert_eq!(parsed, json!({"a": name}));
        let url = render("https://h/{% cycle item.name, 'b' %}", Context::Url, json!({"item": {"name": "a/b?c"}}))
            .expect("url");
        assert_eq!(url, "https://h/a%2Fb%3Fc");
    }

    #[test]
    fn quotes_inside_tags_keep_outputs_escaped() {
        let name = "q\"uote";
        let out =
            render(r#"{"a":"{% assign q = '{{' %}{{ item.name }}"}"#, Context::Json, json!({"item": {"name": name}}))
                .expect("renders");
        let parsed: serde_json::Value = serde_json::from_str(&out).expect("valid JSON");
        assert_eq!(parsed["a"], name);
    }

    #[test]
    fn a_rendering_without_a_budget_is_refused() {
        let template = compile("{% for i in (1..2) %}x{% endfor %}").expect("parses");
        let globals = liquid::Object::new();
        let runtime = RuntimeBuilder::new().set_globals(&globals).build();
        let mut out = Vec::new();
        assert!(template.render_to(&mut out, &runtime).is_err());
    }
}
