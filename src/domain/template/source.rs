//! Reading a template's source the way liquid's lexer does (text, `{{ … }}` outputs and
//! `{% … %}` tags, quoted strings inside them included), for the checks made before parsing
//! (literal ranges, nesting) and for the rewriting that adds the escaping filter to outputs.

use super::{Context, Limits, TemplateError};

/// The longest range a `for` or `tablerow` loop may walk.
pub const MAX_RANGE: i128 = 1000;

/// One element of a template's source.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Piece<'s> {
    Text(&'s str),
    /// `{{ … }}`: the text between the braces, and where it starts.
    Output {
        inner: &'s str,
        at: usize,
    },
    /// `{% … %}`: the text between the delimiters, and where it starts.
    Tag {
        inner: &'s str,
        at: usize,
    },
}

/// The offset in `inner` of the closing `close` (`}}` or `%}`), skipping quoted strings; the
/// length of `inner` when it is not closed.
fn closing(inner: &str, close: &[u8; 2]) -> usize {
    let bytes = inner.as_bytes();
    let mut quote = None;
    for (i, &b) in bytes.iter().enumerate() {
        match quote {
            Some(q) if b == q => quote = None,
            Some(_) => {}
            None if b == b'"' || b == b'\'' => quote = Some(b),
            None if b == close[0] && bytes.get(i + 1) == Some(&close[1]) => return i,
            None => {}
        }
    }
    inner.len()
}

/// The pieces of a template, in order; together they are the source.
fn pieces(source: &str) -> Vec<Piece<'_>> {
    let mut out = Vec::new();
    let mut offset = 0;
    while offset < source.len() {
        let rest = &source[offset..];
        let next = [rest.find("{{"), rest.find("{%")].into_iter().flatten().min();
        let Some(start) = next else {
            out.push(Piece::Text(rest));
            break;
        };
        if start > 0 {
            out.push(Piece::Text(&rest[..start]));
        }
        let at = offset + start;
        let inner = &source[at + 2..];
        let is_output = rest[start..].starts_with("{{");
        let end = closing(inner, if is_output { b"}}" } else { b"%}" });
        let body = &inner[..end];
        out.push(if is_output { Piece::Output { inner: body, at } } else { Piece::Tag { inner: body, at } });
        offset = (at + 2 + end + 2).min(source.len());
    }
    out
}

/// The name of a tag (`for`, `endif`) and the rest of it.
fn tag_words(inner: &str) -> (&str, &str) {
    let inner = inner.trim_matches(|c: char| c == '-' || c.is_whitespace());
    let end = inner.find(|c: char| c.is_whitespace()).unwrap_or(inner.len());
    (&inner[..end], inner[end..].trim())
}

const BLOCKS: [&str; 9] = ["for", "tablerow", "if", "unless", "case", "capture", "ifchanged", "comment", "raw"];

fn place(source: &str, offset: usize, message: String) -> TemplateError {
    let before = &source[..offset.min(source.len())];
    let line = before.matches('\n').count() + 1;
    let column = before[before.rfind('\n').map_or(0, |i| i + 1)..].chars().count() + 1;
    TemplateError { line: Some(line), column: Some(column), message }
}

/// The deepest `[ … ]` nesting in an output or tag (liquid parses it recursively).
fn bracket_depth(inner: &str) -> usize {
    let (mut depth, mut deepest, mut quote) = (0usize, 0usize, None);
    for b in inner.bytes() {
        match quote {
            Some(q) if b == q => quote = None,
            Some(_) => {}
            None if b == b'"' || b == b'\'' => quote = Some(b),
            None if b == b'[' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            None if b == b']' => depth = depth.saturating_sub(1),
            None => {}
        }
    }
    deepest
}

/// The iterations a loop tag's literal range asks for; an error when it is not literal or
/// is longer than [`MAX_RANGE`]. `None` for a loop over an array.
fn range_length(rest: &str) -> Result<Option<i128>, String> {
    let Some(open) = rest.find('(') else { return Ok(None) };
    let range = &rest[open + 1..];
    let range = &range[..range.find(')').unwrap_or(range.len())];
    let bounds: Vec<Option<i128>> = range.split("..").map(|b| b.trim().parse().ok()).collect();
    match bounds.as_slice() {
        [Some(a), Some(b)] => {
            let length = (b - a + 1).max(0);
            if length <= MAX_RANGE { Ok(Some(length)) } else { Err(format!("{length} iterations")) }
        }
        _ => Err("bounds that are not literal numbers".into()),
    }
}

/// Checks made before parsing: blocks nested at most `max_depth` deep (and `[ … ]` as deep),
/// loop ranges with literal bounds at most [`MAX_RANGE`] long, and nested literal ranges whose
/// product stays within `max_iterations`.
pub fn check(source: &str, limits: Limits) -> Result<(), TemplateError> {
    // Each open block: its name and the iterations it multiplies its body by.
    let mut open: Vec<(&str, i128)> = Vec::new();
    let mut in_raw = false;
    for piece in pieces(source) {
        let (inner, at) = match piece {
            Piece::Text(_) => continue,
            Piece::Output { inner, at } | Piece::Tag { inner, at } => (inner, at),
        };
        if bracket_depth(inner) > limits.max_depth {
            return Err(place(source, at, format!("`[ … ]` nested more than {} deep", limits.max_depth)));
        }
        let Piece::Tag { .. } = piece else { continue };
        let (name, rest) = tag_words(inner);
        if in_raw {
            in_raw = name != "endraw";
            if !in_raw {
                open.pop();
            }
            continue;
        }
        if let Some(block) = name.strip_prefix("end").filter(|b| BLOCKS.contains(b)) {
            if open.last().is_some_and(|(name, _)| *name == block) {
                open.pop();
            }
            continue;
        }
        if !BLOCKS.contains(&name) {
            continue;
        }
        let mut times = 1;
        if name == "for" || name == "tablerow" {
            match range_length(rest) {
                Ok(length) => times = length.unwrap_or(1).max(1),
                Err(why) => {
                    return Err(place(
                        source,
                        at,
                        format!(
                            "a `{name}` range needs literal bounds at most {MAX_RANGE} apart, such as (1..10), not {why}"
                        ),
                    ));
                }
            }
            let total = open.iter().fold(times, |product, (_, t)| product.saturating_mul(*t));
            if total > limits.max_iterations as i128 {
                return Err(place(
                    source,
                    at,
                    format!(
                        "nested loops over literal ranges ask for {total} iterations, more than the limit of {} \
                         (HOOKLINE_TEMPLATE_MAX_ITERATIONS)",
                        limits.max_iterations
                    ),
                ));
            }
        }
        open.push((name, times));
        in_raw = name == "raw";
        if open.len() > limits.max_depth {
            return Err(place(
                source,
                at,
                format!("blocks nested more than {} deep (HOOKLINE_TEMPLATE_MAX_DEPTH)", limits.max_depth),
            ));
        }
    }
    Ok(())
}

/// The last filter of an output's expression (after its last `|` outside quotes).
fn last_filter(expression: &str) -> Option<&str> {
    let (mut quote, mut last) = (None, None);
    for (i, b) in expression.bytes().enumerate() {
        match quote {
            Some(q) if b == q => quote = None,
            Some(_) => {}
            None if b == b'"' || b == b'\'' => quote = Some(b),
            None if b == b'|' => last = Some(i),
            None => {}
        }
    }
    last.map(|i| expression[i + 1..].trim())
}

/// Adds the escaping filter of the context to every `{{ … }}` output, except where the last
/// filter already decides (`json` in JSON, `raw` in URLs) and inside `{% raw %}` blocks.
pub fn escape_outputs(source: &str, context: Context) -> String {
    let (filter, keep) = match context {
        Context::Json => ("__hookline_json_string", "json"),
        Context::Url => ("__hookline_url", "raw"),
        Context::Text | Context::Header => return source.to_owned(),
    };
    let mut out = String::with_capacity(source.len() + 64);
    let mut in_raw = false;
    let mut copied = 0;
    for piece in pieces(source) {
        match piece {
            Piece::Tag { inner, .. } => {
                let (name, _) = tag_words(inner);
                in_raw = if in_raw { name != "endraw" } else { name == "raw" };
            }
            Piece::Output { inner, at } if !in_raw => {
                let (body, trim_right) = match inner.strip_suffix('-') {
                    Some(body) => (body, "-"),
                    None => (inner, ""),
                };
                out.push_str(&source[copied..at]);
                out.push_str("{{");
                out.push_str(body);
                if last_filter(body) != Some(keep) {
                    out.push_str(" | ");
                    out.push_str(filter);
                    out.push(' ');
                }
                out.push_str(trim_right);
                out.push_str("}}");
                copied = (at + 2 + inner.len() + 2).min(source.len());
            }
            Piece::Output { .. } | Piece::Text(_) => {}
        }
    }
    out.push_str(&source[copied..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_inside_tags_do_not_desynchronise_the_rewriter() {
        let text = escape_outputs(r#"{"a":"{% assign q = '{{' %}{{ item.name }}"}"#, Context::Json);
        assert_eq!(text, r#"{"a":"{% assign q = '{{' %}{{ item.name  | __hookline_json_string }}"}"#);
        let text = escape_outputs(r#"{{ x | append: "|json" }}{{ y | replace: "a", "}}" }}"#, Context::Json);
        assert_eq!(
            text,
            r#"{{ x | append: "|json"  | __hookline_json_string }}{{ y | replace: "a", "}}"  | __hookline_json_string }}"#
        );
    }

    #[test]
    fn ranges_and_nesting_are_checked_before_parsing() {
        let limits = Limits::default();
        assert!(check("{% for i in (1..1000) %}{% endfor %}", limits).is_ok());
        for bad in [
            "{% for i in (1..1001) %}{% endfor %}",
            "{% tablerow i in (1..2000000000) %}{% endtablerow %}",
            "{% for i in (-9223372036854775808..0) %}{% endfor %}",
            "{% for i in (1..99999999999999999999999) %}{% endfor %}",
            "{% for i in (1..item.n) %}{% endfor %}",
            "{% for a in (1..1000) %}{% for b in (1..1000) %}{% endfor %}{% endfor %}",
            "{% for a in (1..100) %}{% for t in item.tags %}{% for b in (1..101) %}{% endfor %}{% endfor %}{% endfor %}",
        ] {
            let err = check(bad, limits).expect_err(bad);
            assert!(err.line.is_some() && err.column.is_some(), "{bad}: {err}");
        }
        let deep = "{% if true %}".repeat(11) + &"{% endif %}".repeat(11);
        assert!(check(&deep, limits).expect_err("deep").message.contains("nested"));
        assert!(check(&("{% if true %}".repeat(10) + &"{% endif %}".repeat(10)), limits).is_ok());
        let brackets = format!("{{{{ {}1{} }}}}", "a[".repeat(20), "]".repeat(20));
        assert!(check(&brackets, limits).is_err());
        // Quoted `%}` inside a tag does not end it; a raw block is not looked into.
        assert!(check("{% assign x = '%}{% for i in (1..5000) %}' %}", limits).is_ok());
        assert!(check("{% raw %}{% for i in (1..5000) %}{% endraw %}", limits).is_ok());
    }
}
