//! Random templates and random item values: rendering never panics, never spends more than
//! its budget, and a JSON payload renders to valid JSON or to a refusal; values printed inside
//! JSON strings (by `{{ … }}`, `cycle`, captures, loops) always stay inside them.

use proptest::prelude::*;
use serde_json::{Value, json};

use super::{Budget, Context, Limits, PRODUCED_FACTOR, Template};

fn limits() -> Limits {
    Limits {
        max_template: 64 * 1024,
        max_rendered: 4096,
        max_iterations: 300,
        max_depth: 10,
        timeout: std::time::Duration::from_secs(5),
    }
}

/// Pieces of liquid, some harmless, some that loop, grow strings or nest.
fn piece() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        "[a-z {}\\[\\]:,\"'|%.-]{0,8}",
        Just("{{ item.s }}".to_owned()),
        Just("{{ item.n | json }}".to_owned()),
        Just("{{ item.list | join: item.s }}".to_owned()),
        Just("{{ item.s | replace: 'a', item.s }}".to_owned()),
        Just("{% assign s = item.s | append: item.s %}".to_owned()),
        Just("{% assign s = s | append: s | append: s %}".to_owned()),
        Just("{% assign parts = item.s | split: '' %}".to_owned()),
        Just("{% cycle item.s, 'x' %}".to_owned()),
        Just("{% assign q = '{{' %}".to_owned()),
        Just("{{ s | size }}".to_owned()),
        Just("{% increment k %}".to_owned()),
        Just("{% break %}".to_owned()),
        // Whole numbers at the edges: checked arithmetic refuses, never panics.
        Just("{{ item.n | plus: item.n }}{{ item.n | minus: item.m }}{{ item.n | times: item.m }}".to_owned()),
        Just("{{ item.n | divided_by: item.m }}{{ item.n | modulo: item.m }}{{ item.n | abs }}".to_owned()),
        Just("{{ item.s | slice: item.n, item.m }}{{ item.nums | slice: item.m, item.n | size }}".to_owned()),
        // Array filters: counted before they run.
        Just("{{ item.nums | uniq | join: ',' }}{{ item.list | sort | first }}".to_owned()),
        Just("{% assign list = item.list | concat: item.list | reverse | uniq %}".to_owned()),
        Just("{{ item.nums | sort_natural | last }}{{ item.nums | compact | size }}".to_owned()),
    ];
    leaf.prop_recursive(4, 24, 4, |inner| {
        let body = prop::collection::vec(inner, 0..4).prop_map(|v| v.concat());
        prop_oneof![
            body.clone().prop_map(|b| format!("{{% for i in (1..20) %}}{b}{{% endfor %}}")),
            body.clone().prop_map(|b| format!("{{% for p in parts %}}{b}{{% endfor %}}")),
            body.clone().prop_map(|b| format!("{{% for t in item.list reversed %}}{b}{{% else %}}e{{% endfor %}}")),
            body.clone().prop_map(|b| format!("{{% tablerow t in item.list cols: 2 %}}{b}{{% endtablerow %}}")),
            body.clone().prop_map(|b| format!("{{% capture c %}}{b}{{% endcapture %}}{{{{ c }}}}")),
            body.clone().prop_map(|b| format!("{{% if item.s contains 'a' %}}{b}{{% endif %}}")),
            body.prop_map(|b| format!("{{% ifchanged %}}{b}{{% endifchanged %}}")),
        ]
    })
}

/// Any whole number, often one at an edge of the range.
fn whole() -> impl Strategy<Value = i64> {
    prop_oneof![Just(i64::MIN), Just(i64::MAX), Just(-1i64), Just(0i64), Just(1i64), any::<i64>()]
}

fn item() -> impl Strategy<Value = Value> {
    (
        any::<String>(),
        whole(),
        whole(),
        prop::collection::vec(any::<String>(), 0..30),
        prop::collection::vec(whole(), 0..400),
    )
        .prop_map(|(s, n, m, list, nums)| json!({"item": {"s": s, "n": n, "m": m, "list": list, "nums": nums}}))
}

fn within_budget(template: &Template, data: &Value) -> Result<String, String> {
    let variables = liquid::to_object(data).map_err(|e| e.to_string())?;
    let (result, budget) = template.render_in(&variables, Budget::start(limits(), Context::Text));
    let (iterations, produced) = budget.spent();
    let limits = limits();
    // A check refuses the steps that would go past the iteration limit without counting them;
    // a value is refused once it is counted, so at most one value beyond the bytes produced.
    assert!(iterations <= limits.max_iterations, "{iterations} iterations");
    assert!(produced <= limits.max_rendered * PRODUCED_FACTOR + limits.max_rendered, "{produced} bytes");
    if let Ok(text) = &result {
        assert!(text.len() <= limits.max_rendered);
    }
    result
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn random_templates_stay_within_their_budget(pieces in prop::collection::vec(piece(), 1..6), data in item()) {
        let source = pieces.concat();
        for context in [Context::Json, Context::Text, Context::Url, Context::Header] {
            if let Ok(template) = Template::parse(&source, context, limits()) {
                let result = within_budget(&template, &data);
                if let (Context::Json, Ok(text)) = (context, &result) {
                    prop_assert!(serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok(), "{text}");
                }
            }
        }
    }

    #[test]
    fn values_printed_inside_json_strings_stay_inside(pieces in prop::collection::vec(piece(), 0..6), data in item()) {
        // Only tags and outputs inside the string: no text of the template's own can close it.
        let printed: Vec<String> = pieces.into_iter().filter(|p| p.starts_with('{') && !p.contains('"')).collect();
        let source = format!("{{\"v\": \"{}\"}}", printed.concat());
        let Ok(template) = Template::parse(&source, Context::Json, limits()) else { return Ok(()) };
        // A refusal is fine (a budget, or `break` cutting the output short); what renders keeps
        // every printed value inside the one string.
        if let Ok(text) = within_budget(&template, &data) {
            let parsed: Value = serde_json::from_str(&text).map_err(|e| TestCaseError::fail(format!("{e}: {text}")))?;
            let keys: Vec<&String> = parsed.as_object().map(|o| o.keys().collect()).unwrap_or_default();
            prop_assert_eq!(keys, vec!["v"], "{}", text);
            prop_assert!(parsed["v"].is_string());
        }
    }

    #[test]
    fn arbitrary_text_never_panics(source in "[a-z0-9 {}%|:'\"(),.\\[\\]=<>-]{0,120}", data in item()) {
        if let Ok(template) = Template::parse(&source, Context::Json, limits()) {
            let _ = within_budget(&template, &data);
        }
    }
}
