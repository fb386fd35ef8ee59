//! Filters within the rendering's budget: array filters count their steps before they run,
//! `split` is sized before it is built, the arithmetic never overflows, and values printed
//! inside a `capture` are escaped once, where the capture is printed.

use serde_json::{Value, json};

use super::{Budget, Context, Limits, Template};

fn render_with(source: &str, context: Context, limits: Limits, data: Value) -> Result<String, String> {
    let template = Template::parse(source, context, limits).map_err(|e| e.to_string())?;
    template.render(&liquid::to_object(&data).map_err(|e| e.to_string())?)
}

fn render(source: &str, data: Value) -> Result<String, String> {
    render_with(source, Context::Text, Limits::default(), data)
}

#[test]
fn array_filters_count_their_elements_before_they_run() {
    let numbers: Vec<i64> = (0..20_000).collect();
    let objects: Vec<Value> = (0..20_000).map(|i| json!({"a": i})).collect();
    let data = json!({"item": {"numbers": numbers, "objects": objects}});
    for source in [
        "{{ item.numbers | uniq | size }}",
        "{{ item.numbers | sort | size }}",
        "{{ item.numbers | sort_natural | size }}",
        "{{ item.numbers | reverse | size }}",
        "{{ item.numbers | compact | size }}",
        "{{ item.numbers | concat: item.numbers | size }}",
        "{{ item.numbers | slice: 0, 3 | size }}",
        "{{ item.numbers | join: ',' | size }}",
        "{{ item.objects | map: 'a' | size }}",
        "{{ item.objects | where: 'a', 3 | size }}",
    ] {
        let err = render(source, data.clone()).expect_err(source);
        assert!(err.contains("more than 10000 loop iterations"), "{source}: {err}");
    }
    // Constant-time filters over the same arrays are not counted.
    assert_eq!(render("{{ item.numbers | size }} {{ item.numbers | last }}", data).expect("renders"), "20000 19999");
}

#[test]
fn the_steps_of_filters_and_loops_add_up() {
    let numbers: Vec<i64> = (0..6_000).collect();
    let data = json!({"item": {"numbers": numbers}});
    assert_eq!(render("{{ item.numbers | reverse | first }}", data.clone()).expect("renders"), "5999");
    let twice = "{% assign r = item.numbers | reverse %}{% for n in r limit: 5000 %}{% endfor %}";
    let err = render(twice, data.clone()).expect_err("6000 + 5000 steps");
    assert!(err.contains("more than 10000 loop iterations"), "{err}");
    let concat = "{{ item.numbers | concat: item.numbers | size }}";
    assert!(render(concat, data).expect_err("12000 steps").contains("`concat`"));
}

#[test]
fn sorts_count_n_log_n() {
    // 1000 elements: 1000 × 10 steps, exactly the limit; 1100 elements: 1100 × 11.
    let data = |n: i64| json!({"item": {"list": (0..n).rev().collect::<Vec<i64>>()}});
    assert_eq!(render("{{ item.list | sort | first }}", data(1000)).expect("within"), "0");
    let err = render("{{ item.list | sort | first }}", data(1100)).expect_err("beyond");
    assert!(err.contains("more than 10000 loop iterations") && err.contains("`sort`"), "{err}");
    // A linear filter over the same 1100 elements is within the limit.
    assert_eq!(render("{{ item.list | reverse | first }}", data(1100)).expect("linear"), "0");
}

#[test]
fn uniq_hashes_instead_of_comparing_every_pair() {
    // 200,000 distinct numbers: liquid's uniq compares 2·10^10 pairs, far beyond the clock
    // (which is checked when the filter returns); by hashing it is one step each.
    let list: Vec<i64> = (0..200_000).collect();
    let limits = Limits {
        max_iterations: 1_000_000,
        max_rendered: 64 << 20,
        timeout: std::time::Duration::from_secs(10),
        ..Limits::default()
    };
    let out = render_with("{{ item.list | uniq | size }}", Context::Text, limits, json!({"item": {"list": list}}));
    assert_eq!(out.expect("renders"), "200000");
    // Equal values as liquid compares them: numbers by value, strings and booleans exactly,
    // arrays and objects element by element, the first one kept.
    let data = json!({"item": {"list": [1, 1.0, "1", 2, 1, "a", "a", true, true, false, null, null,
        [1, "x"], [1, "x"], [1, "y"], {"k": 1, "j": 2}, {"j": 2, "k": 1}, 1.5, 1.5, 9007199254740993i64]}});
    let out = render("{{ item.list | uniq | json }}", data).expect("renders");
    let unique: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(
        unique,
        json!([1, "1", 2, "a", true, false, null, [1, "x"], [1, "y"], {"k": 1, "j": 2}, 1.5, 9007199254740993i64])
    );
}

#[test]
fn split_is_refused_before_it_builds_a_huge_array() {
    // 8 MB split into characters: 8 million values, refused from the estimate.
    let data = json!({"item": {"s": "x".repeat(8 * 1024 * 1024)}});
    let (result, budget) = Template::parse("{% assign a = item.s | split: '' %}{}", Context::Json, Limits::default())
        .expect("parses")
        .render_in(&liquid::to_object(&data).expect("object"), Budget::start(Limits::default(), Context::Json));
    let err = result.expect_err("refused");
    assert!(err.contains("a value of more than 1048576 bytes"), "{err}");
    assert_eq!(budget.spent().1, 0, "nothing was built nor charged");
    // The estimate is what the built array weighs.
    for (text, pattern) in [("a,b,,c", ","), ("abc", ""), ("héllo wörld", "ö"), ("xx", "xx"), ("a", "b")] {
        let built: Vec<liquid::model::Value> =
            text.split(pattern).map(|s| liquid::model::Value::scalar(s.to_owned())).collect();
        let weight = super::budget::weight(&liquid::model::Value::Array(built));
        assert_eq!(super::arrays::split_weight(text, pattern), Some(weight), "{text:?} / {pattern:?}");
    }
    assert_eq!(render("{{ item.s | split: ',' | join: '-' }}", json!({"item": {"s": "a,b"}})).expect("r"), "a-b");
}

#[test]
fn arithmetic_refuses_overflow_instead_of_panicking() {
    let data = json!({"item": {"min": i64::MIN, "max": i64::MAX}});
    for source in [
        "{{ item.min | divided_by: -1 }}",
        "{{ item.max | plus: 1 }}",
        "{{ item.min | minus: 1 }}",
        "{{ item.max | times: 2 }}",
        "{{ item.min | times: -1 }}",
        "{{ item.min | abs }}",
    ] {
        let err = render(source, data.clone()).expect_err(source);
        assert!(err.starts_with("rendering failed") && err.contains("out of range (overflow)"), "{source}: {err}");
    }
    // The remainder by -1 is 0 for every whole number.
    assert_eq!(render("{{ item.min | modulo: -1 }}", data.clone()).expect("r"), "0");
    assert_eq!(render("{{ item.max | slice: 1, item.max }}", data.clone()).expect("r"), "223372036854775807");
    assert_eq!(render("{{ 'abc' | slice: item.min, 2 }}|{{ 'abc' | slice: -2, 5 }}", data.clone()).expect("r"), "|bc");
    // Liquid's results otherwise.
    let ok = "{{ 5 | plus: 2 }} {{ 5 | minus: 7 }} {{ 3 | times: 4 }} {{ 7 | divided_by: 2 }} {{ 7.0 | divided_by: 2 }} \
              {{ 7 | modulo: 3 }} {{ -5 | abs }} {{ 1.5 | plus: 1 }} {{ '4' | plus: 1 }}";
    assert_eq!(render(ok, json!({})).expect("r"), "7 -2 12 3 3.5 1 5 2.5 5");
    for zero in ["{{ 1 | divided_by: 0 }}", "{{ 1 | modulo: 0 }}", "{{ 1.5 | divided_by: 0.0 }}"] {
        assert!(render(zero, json!({})).expect_err(zero).contains("divide by zero"), "{zero}");
    }
}

#[test]
fn values_printed_inside_a_capture_are_escaped_once() {
    let name = r#"x"y\z"#;
    let data = json!({"item": {"name": name}});
    for source in [
        r#"{"a":"{% capture c %}{% cycle item.name %}{% endcapture %}{{ c }}"}"#,
        r#"{"a":"{% capture c %}{{ item.name }}{% endcapture %}{{ c }}"}"#,
        r#"{"a":"{% capture c %}{% capture d %}{% cycle item.name %}{% endcapture %}{{ d }}{% endcapture %}{{ c }}"}"#,
    ] {
        let out = render_with(source, Context::Json, Limits::default(), data.clone()).expect(source);
        assert_eq!(out, r#"{"a":"x\"y\\z"}"#, "{source}");
    }
    let literal = r#"{"a":{% capture c %}{% cycle item.name %}{% endcapture %}{{ c | json }}}"#;
    assert_eq!(render_with(literal, Context::Json, Limits::default(), data).expect("r"), r#"{"a":"x\"y\\z"}"#);
    let url = "https://h/{% capture c %}{% cycle item.name %}/{{ item.name }}{% endcapture %}{{ c }}";
    let out = render_with(url, Context::Url, Limits::default(), json!({"item": {"name": "a b"}})).expect("url");
    assert_eq!(out, "https://h/a%20b%2Fa%20b");
    // Outside a capture, both stay escaped.
    let out = render_with(
        r#"{"a":"{% cycle item.name %}"}"#,
        Context::Json,
        Limits::default(),
        json!({"item": {"name": name}}),
    );
    assert_eq!(out.expect("r"), r#"{"a":"x\"y\\z"}"#);
}

#[test]
fn truncatewords_behaves_as_liquids() {
    let data = json!({"item": {"s": "one two  three four"}});
    for (source, expected) in [
        ("{{ item.s | truncatewords: 2 }}", "one two..."),
        ("{{ item.s | truncatewords: 3, '!' }}", "one two !"),
        ("{{ item.s | truncatewords: 4 }}", "one two  three..."),
        ("{{ item.s | truncatewords: 5 }}", "one two  three four"),
        ("{{ item.s | truncatewords: 0 }}", "..."),
        ("{{ item.s | truncatewords: -1 }}", "one two  three four"),
        ("{{ 'a b' | truncatewords }}", "a b"),
    ] {
        assert_eq!(render(source, data.clone()).expect(source), expected, "{source}");
    }
}
