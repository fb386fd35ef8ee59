//! Filters: GLPI's search criteria evaluated on item documents.
//!
//! A criterion is `{link, field, searchtype, value}` or a group `{link, criteria: [...]}`.
//! A list combines like GLPI's search engine, that is like SQL: `NOT` binds first, then `AND`,
//! then `OR` (`a OR b AND NOT c` is `a OR (b AND (NOT c))`); a group is a parenthesis. The link
//! of the first criterion of a list only counts for its `NOT`.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{AppError, AppResult};

/// A criterion as users write it and as it is stored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CriterionSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub searchtype: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub criteria: Option<Vec<CriterionSpec>>,
}

impl CriterionSpec {
    /// A criterion on one field.
    pub fn leaf(link: &str, field: &str, searchtype: &str, value: &str) -> Self {
        Self {
            link: Some(link.into()),
            field: Some(field.into()),
            searchtype: Some(searchtype.into()),
            value: Some(value.into()),
            criteria: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    And,
    Or,
    AndNot,
    OrNot,
}

impl Link {
    fn negated(self) -> bool {
        matches!(self, Self::AndNot | Self::OrNot)
    }

    fn is_or(self) -> bool {
        matches!(self, Self::Or | Self::OrNot)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Root {
    Item,
    Parent,
    Actor,
}

#[derive(Debug, Clone, PartialEq)]
enum Bound {
    Number(f64),
    Date(DateTime<Utc>),
}

#[derive(Debug, Clone, PartialEq)]
struct Pattern {
    needle: String,
    anchored_start: bool,
    anchored_end: bool,
    null: bool,
}

#[derive(Debug, Clone, PartialEq)]
enum Op {
    Contains(Pattern),
    NotContains(Pattern),
    Equals(String),
    NotEquals(String),
    LessThan(Bound),
    MoreThan(Bound),
    Under(i64),
    NotUnder(i64),
    Empty,
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Leaf { root: Root, path: Vec<Segment>, op: Op },
    Group(Vec<(Link, Node)>),
}

#[derive(Debug, Clone, PartialEq)]
enum Segment {
    Key(String),
    Index(usize),
}

/// A filter compiled once, evaluated on every event.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    root: Vec<(Link, Node)>,
}

/// The operators, for messages.
pub const SEARCHTYPES: &str = "contains, notcontains, equals, notequals, lessthan, morethan, under, notunder, empty";

/// What a filter is evaluated on.
pub struct Subject<'a> {
    pub item: &'a Value,
    pub parent_item: Option<&'a Value>,
    /// `{user, profile}` of the change's writer, for `actor.user` and `actor.profile`.
    pub actor: Option<&'a Value>,
    /// The entity and its ancestors, the entity first.
    pub entity_chain: &'a (dyn Fn(i64) -> Vec<i64> + Sync),
}

impl Filter {
    /// Checks and compiles criteria; errors name the criterion's position (`criteria[1].value`).
    pub fn compile(criteria: &[CriterionSpec]) -> AppResult<Self> {
        Ok(Self { root: compile_list(criteria, "criteria")? })
    }

    pub fn matches(&self, subject: &Subject<'_>) -> bool {
        eval_list(&self.root, subject)
    }
}

fn compile_list(criteria: &[CriterionSpec], at: &str) -> AppResult<Vec<(Link, Node)>> {
    if criteria.is_empty() {
        return Err(AppError::validation(format!("{at}: a list of criteria cannot be empty")));
    }
    criteria.iter().enumerate().map(|(i, c)| compile_one(c, &format!("{at}[{i}]"))).collect()
}

fn compile_one(spec: &CriterionSpec, at: &str) -> AppResult<(Link, Node)> {
    let link = match spec.link.as_deref().map(|l| l.trim().to_ascii_uppercase()) {
        None => Link::And,
        Some(l) => match l.split_whitespace().collect::<Vec<_>>().join(" ").as_str() {
            "" | "AND" => Link::And,
            "OR" => Link::Or,
            "AND NOT" | "NOT" => Link::AndNot,
            "OR NOT" => Link::OrNot,
            other => {
                return Err(AppError::validation(format!(
                    "{at}.link: unknown link `{other}` (AND, OR, AND NOT, OR NOT)"
                )));
            }
        },
    };
    if let Some(group) = &spec.criteria {
        if spec.field.is_some() || spec.searchtype.is_some() {
            return Err(AppError::validation(format!("{at}: a group has criteria, not a field or searchtype")));
        }
        return Ok((link, Node::Group(compile_list(group, &format!("{at}.criteria"))?)));
    }
    let field = spec.field.as_deref().map(str::trim).filter(|f| !f.is_empty());
    let field = field.ok_or_else(|| {
        AppError::validation(format!("{at}.field: required (a path such as `priority` or `status.name`)"))
    })?;
    let (root, path) = parse_field(field).map_err(|e| AppError::validation(format!("{at}.field: {e}")))?;
    let searchtype = spec.searchtype.as_deref().map(|s| s.trim().to_ascii_lowercase()).unwrap_or_default();
    let value = spec.value.clone().unwrap_or_default();
    let need_value = |what: &str| -> AppResult<()> {
        if spec.value.is_none() {
            return Err(AppError::validation(format!("{at}.value: required for {what}")));
        }
        Ok(())
    };
    let op = match searchtype.as_str() {
        "contains" | "notcontains" => {
            need_value(&searchtype)?;
            let pattern = pattern(&value);
            if searchtype == "contains" { Op::Contains(pattern) } else { Op::NotContains(pattern) }
        }
        "equals" => {
            need_value("equals")?;
            Op::Equals(value)
        }
        "notequals" => {
            need_value("notequals")?;
            Op::NotEquals(value)
        }
        "lessthan" | "morethan" => {
            let bound = bound(&value).ok_or_else(|| {
                AppError::validation(format!(
                    "{at}.value: {searchtype} compares numbers or dates; `{value}` is neither (e.g. 3 or 2026-01-31)"
                ))
            })?;
            if searchtype == "lessthan" { Op::LessThan(bound) } else { Op::MoreThan(bound) }
        }
        "under" | "notunder" => {
            let is_entity = matches!(path.as_slice(), [Segment::Key(k)] if k == "entity")
                || matches!(path.as_slice(), [Segment::Key(k), Segment::Key(id)] if k == "entity" && id == "id");
            if !is_entity {
                return Err(AppError::validation(format!(
                    "{at}.field: {searchtype} needs an entity field (`entity` or `entity.id`)"
                )));
            }
            let id = value.trim().parse().map_err(|_| {
                AppError::validation(format!("{at}.value: {searchtype} needs an entity id, not `{value}`"))
            })?;
            if searchtype == "under" { Op::Under(id) } else { Op::NotUnder(id) }
        }
        "empty" => Op::Empty,
        "" => return Err(AppError::validation(format!("{at}.searchtype: required ({SEARCHTYPES})"))),
        other => {
            return Err(AppError::validation(format!("{at}.searchtype: unknown operator `{other}` ({SEARCHTYPES})")));
        }
    };
    Ok((link, Node::Leaf { root, path, op }))
}

fn parse_field(field: &str) -> Result<(Root, Vec<Segment>), String> {
    let (root, rest) = match (field.strip_prefix("parent_item."), field.strip_prefix("actor.")) {
        (Some(rest), _) => (Root::Parent, rest),
        (None, Some(rest)) => (Root::Actor, rest),
        (None, None) => (Root::Item, field.strip_prefix("item.").unwrap_or(field)),
    };
    let mut path = Vec::new();
    for part in rest.split('.') {
        let (key, indexes) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if key.is_empty() {
            return Err(format!("`{field}` is not a dotted path such as `status.name`"));
        }
        path.push(Segment::Key(key.to_owned()));
        for index in indexes.split('[').skip(1) {
            let n = index.strip_suffix(']').and_then(|n| n.parse().ok());
            path.push(Segment::Index(n.ok_or_else(|| format!("`{field}` has a bad index"))?));
        }
    }
    Ok((root, path))
}

fn pattern(value: &str) -> Pattern {
    let mut needle = value.trim();
    let null = needle.eq_ignore_ascii_case("NULL");
    let anchored_start = needle.starts_with('^');
    if anchored_start {
        needle = &needle[1..];
    }
    let anchored_end = needle.ends_with('$') && !needle.ends_with("\\$");
    if anchored_end {
        needle = &needle[..needle.len() - 1];
    }
    Pattern { needle: needle.to_lowercase(), anchored_start, anchored_end, null }
}

fn bound(value: &str) -> Option<Bound> {
    let value = value.trim();
    if let Ok(n) = value.parse::<f64>() {
        return Some(Bound::Number(n));
    }
    date(value).map(Bound::Date)
}

fn date(text: &str) -> Option<DateTime<Utc>> {
    if let Ok(d) = DateTime::parse_from_rfc3339(text) {
        return Some(d.to_utc());
    }
    if let Ok(d) = NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S") {
        return Some(d.and_utc());
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d").ok().and_then(|d| d.and_hms_opt(0, 0, 0)).map(|d| d.and_utc())
}

fn eval_list(list: &[(Link, Node)], subject: &Subject<'_>) -> bool {
    let mut any = false;
    let mut chain = true;
    for (i, (link, node)) in list.iter().enumerate() {
        let value = eval_node(node, subject) != link.negated();
        if i > 0 && link.is_or() {
            any |= chain;
            chain = value;
        } else {
            chain &= value;
        }
    }
    any || chain
}

fn eval_node(node: &Node, subject: &Subject<'_>) -> bool {
    match node {
        Node::Group(list) => eval_list(list, subject),
        Node::Leaf { root, path, op } => {
            let document = match root {
                Root::Item => Some(subject.item),
                Root::Parent => subject.parent_item,
                Root::Actor => subject.actor,
            };
            let value = document.and_then(|d| lookup(d, path));
            eval_op(op, value, subject)
        }
    }
}

fn lookup<'v>(document: &'v Value, path: &[Segment]) -> Option<&'v Value> {
    path.iter().try_fold(document, |value, segment| match segment {
        Segment::Key(key) => value.get(key),
        Segment::Index(i) => value.get(i),
    })
}

fn is_empty(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.is_empty(),
        Some(Value::Array(a)) => a.is_empty(),
        Some(Value::Object(o)) => o.is_empty(),
        _ => false,
    }
}

/// The scalars a value stands for: itself, an object's `id`/`name`/`completename`, or each
/// element of an array.
fn scalars(value: &Value) -> Vec<&Value> {
    match value {
        Value::Array(items) => items.iter().flat_map(scalars).collect(),
        Value::Object(map) => ["id", "name", "completename"].iter().filter_map(|k| map.get(*k)).collect(),
        other => vec![other],
    }
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Bool(b) => if *b { "1" } else { "0" }.to_owned(),
        other => other.to_string(),
    }
}

fn contains(pattern: &Pattern, value: Option<&Value>) -> bool {
    if pattern.null {
        return is_empty(value);
    }
    let Some(value) = value else { return false };
    scalars(value).into_iter().any(|v| {
        let haystack = text(v).to_lowercase();
        match (pattern.anchored_start, pattern.anchored_end) {
            (true, true) => haystack == pattern.needle,
            (true, false) => haystack.starts_with(&pattern.needle),
            (false, true) => haystack.ends_with(&pattern.needle),
            (false, false) => haystack.contains(&pattern.needle),
        }
    })
}

fn equals(expected: &str, value: Option<&Value>) -> bool {
    let Some(value) = value else { return false };
    let candidates: Vec<&Value> = match value {
        Value::Object(map) => map.get("id").into_iter().collect(),
        Value::Array(items) => items
            .iter()
            .flat_map(|v| if let Value::Object(m) = v { m.get("id").into_iter().collect() } else { vec![v] })
            .collect(),
        other => vec![other],
    };
    candidates.into_iter().any(|v| match (v, expected.trim().parse::<f64>()) {
        (Value::Number(n), Ok(e)) => n.as_f64() == Some(e),
        (Value::Bool(b), _) => matches!(expected.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes") == *b,
        (other, _) => text(other) == expected,
    })
}

fn compare(value: Option<&Value>, bound: &Bound) -> Option<std::cmp::Ordering> {
    let value = value?;
    let value = match value {
        Value::Object(map) => map.get("id")?,
        other => other,
    };
    match bound {
        Bound::Number(b) => {
            let n = match value {
                Value::Number(n) => n.as_f64()?,
                Value::String(s) => s.trim().parse().ok()?,
                _ => return None,
            };
            n.partial_cmp(b)
        }
        Bound::Date(b) => Some(date(value.as_str()?)?.cmp(b)),
    }
}

fn entity_id(value: Option<&Value>) -> Option<i64> {
    match value? {
        Value::Object(map) => map.get("id")?.as_i64(),
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn eval_op(op: &Op, value: Option<&Value>, subject: &Subject<'_>) -> bool {
    let under = |id: i64| entity_id(value).is_some_and(|e| (subject.entity_chain)(e).contains(&id));
    match op {
        Op::Contains(p) => contains(p, value),
        Op::NotContains(p) => !contains(p, value),
        Op::Equals(e) => equals(e, value),
        Op::NotEquals(e) => !equals(e, value),
        Op::LessThan(b) => compare(value, b) == Some(std::cmp::Ordering::Less),
        Op::MoreThan(b) => compare(value, b) == Some(std::cmp::Ordering::Greater),
        Op::Under(id) => under(*id),
        Op::NotUnder(id) => !under(*id),
        Op::Empty => is_empty(value),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn leaf(link: &str, field: &str, searchtype: &str, value: &str) -> CriterionSpec {
        CriterionSpec::leaf(link, field, searchtype, value)
    }

    fn group(link: &str, criteria: Vec<CriterionSpec>) -> CriterionSpec {
        CriterionSpec { link: Some(link.into()), criteria: Some(criteria), ..Default::default() }
    }

    // Root 0 > Europe 1 > Paris 2
    fn chain(id: i64) -> Vec<i64> {
        match id {
            2 => vec![2, 1, 0],
            1 => vec![1, 0],
            other => vec![other, 0],
        }
    }

    fn check(criteria: Vec<CriterionSpec>, item: Value) -> bool {
        let filter = Filter::compile(&criteria).expect("compiles");
        filter.matches(&Subject { item: &item, parent_item: None, actor: None, entity_chain: &chain })
    }

    #[test]
    fn the_actor_of_the_change_can_be_tested() {
        let filter =
            Filter::compile(&[CriterionSpec::leaf("AND", "actor.user", "notequals", "crm-sync")]).expect("compiles");
        let item = ticket();
        let by = |user: &str| json!({"user": user, "profile": "event-writer"});
        let from_crm = by("crm-sync");
        assert!(!filter.matches(&Subject {
            item: &item,
            parent_item: None,
            actor: Some(&from_crm),
            entity_chain: &chain
        }));
        let from_alice = by("alice");
        assert!(filter.matches(&Subject {
            item: &item,
            parent_item: None,
            actor: Some(&from_alice),
            entity_chain: &chain
        }));
        let profile = Filter::compile(&[CriterionSpec::leaf("AND", "actor.profile", "equals", "admin")]).expect("c");
        assert!(!profile.matches(&Subject {
            item: &item,
            parent_item: None,
            actor: Some(&from_alice),
            entity_chain: &chain
        }));
    }

    fn ticket() -> Value {
        json!({"id": 7, "name": "Printer on FIRE", "priority": 5, "status": {"id": 2, "name": "Processing"},
               "entity": {"id": 2, "name": "Paris", "completename": "Root entity > Europe > Paris"},
               "date_mod": "2026-03-01T10:00:00Z", "brand": "", "team": [{"name": "ann"}, {"name": "bob"}], "is_deleted": false})
    }

    #[test]
    fn each_operator_follows_glpi() {
        let t = ticket();
        let yes = |field: &str, op: &str, value: &str| check(vec![leaf("AND", field, op, value)], t.clone());
        assert!(yes("name", "contains", "fire"));
        assert!(yes("name", "contains", "^printer"));
        assert!(!yes("name", "contains", "^fire"));
        assert!(yes("name", "contains", "fire$"));
        assert!(yes("name", "notcontains", "toner"));
        assert!(yes("brand", "contains", "NULL"));
        assert!(yes("missing", "contains", "NULL"));
        assert!(yes("priority", "equals", "5"));
        assert!(yes("status", "equals", "2"));
        assert!(yes("status.name", "equals", "Processing"));
        assert!(yes("status.name", "notequals", "New"));
        assert!(yes("is_deleted", "equals", "0"));
        assert!(yes("priority", "lessthan", "6") && !yes("priority", "lessthan", "5"));
        assert!(yes("priority", "morethan", "4"));
        assert!(yes("date_mod", "morethan", "2026-02-28") && yes("date_mod", "lessthan", "2026-03-01 12:00:00"));
        assert!(yes("entity", "under", "1") && yes("entity.id", "under", "2") && !yes("entity", "under", "3"));
        assert!(yes("entity", "notunder", "3"));
        assert!(yes("brand", "empty", "") && yes("nothing", "empty", "") && !yes("name", "empty", ""));
        assert!(yes("team", "contains", "bob") && yes("team[0].name", "equals", "ann"));
        assert!(!yes("missing", "equals", "x") && yes("missing", "notequals", "x"));
    }

    #[test]
    fn links_bind_like_sql_not_then_and_then_or() {
        let t = ticket();
        let f = |l: &str, field: &str, v: &str| leaf(l, field, "equals", v);
        // false OR true AND true → true
        assert!(check(vec![f("AND", "priority", "1"), f("OR", "priority", "5"), f("AND", "status", "2")], t.clone()));
        // true OR true AND false → true (AND binds tighter)
        assert!(check(vec![f("AND", "priority", "5"), f("OR", "priority", "5"), f("AND", "status", "9")], t.clone()));
        // false OR true AND NOT true → false
        assert!(!check(
            vec![f("AND", "priority", "1"), f("OR", "priority", "5"), f("AND NOT", "status", "2")],
            t.clone()
        ));
        // a first criterion's NOT counts
        assert!(check(vec![f("AND NOT", "priority", "1")], t.clone()));
        // OR NOT
        assert!(check(vec![f("AND", "priority", "1"), f("OR NOT", "status", "9")], t.clone()));
        // groups are parentheses: (false OR true) AND true
        let grouped =
            vec![group("AND", vec![f("AND", "priority", "1"), f("OR", "priority", "5")]), f("AND", "status", "2")];
        assert!(check(grouped, t.clone()));
        let negated = vec![f("AND", "status", "2"), group("AND NOT", vec![f("AND", "priority", "5")])];
        assert!(!check(negated, t));
    }

    #[test]
    fn the_parent_item_can_be_filtered_on() {
        let filter = Filter::compile(&[leaf("AND", "parent_item.priority", "morethan", "4")]).expect("compiles");
        let followup = json!({"id": 1});
        let parent = json!({"priority": 5});
        assert!(filter.matches(&Subject {
            item: &followup,
            parent_item: Some(&parent),
            actor: None,
            entity_chain: &chain
        }));
        assert!(!filter.matches(&Subject { item: &followup, parent_item: None, actor: None, entity_chain: &chain }));
    }

    #[test]
    fn bad_criteria_name_their_position() {
        let err = |criteria: Vec<CriterionSpec>| match Filter::compile(&criteria) {
            Err(AppError::Validation(m)) => m,
            other => panic!("{other:?}"),
        };
        assert!(err(vec![leaf("AND", "name", "like", "x")]).starts_with("criteria[0].searchtype: unknown operator"));
        assert!(
            err(vec![leaf("AND", "a", "equals", "1"), leaf("AND", "priority", "lessthan", "soon")])
                .starts_with("criteria[1].value")
        );
        assert!(err(vec![group("AND", vec![])]).starts_with("criteria[0].criteria: "));
        assert!(err(vec![leaf("XOR", "a", "equals", "1")]).starts_with("criteria[0].link"));
        assert!(
            err(vec![group("AND", vec![leaf("AND", "name", "under", "1")])])
                .starts_with("criteria[0].criteria[0].field")
        );
        assert!(err(vec![]).starts_with("criteria:"));
        assert!(err(vec![leaf("AND", "", "equals", "1")]).starts_with("criteria[0].field"));
    }
}
