//! `hookline bench --matching`: how long matching one event takes with 10,000 active
//! webhooks spread over 50 itemtypes, a 5-level entity tree and a 3-criterion filter on every
//! webhook. The webhooks are held per (itemtype, event) as the event path holds them, so an
//! event only looks at the webhooks of its own itemtype and event.

use std::{collections::HashMap, time::Instant};

use chrono::Utc;
use serde_json::{Map, json};

use crate::{
    domain::{
        filter::{CriterionSpec, Filter, Subject},
        render::WebhookTemplates,
        template::Limits,
        webhook::{WebhookEvent, WebhookSettings},
    },
    service::{
        cache::CachedWebhook,
        events::{in_scope, passing},
        filters::WebhookFilter,
        webhooks::Webhook,
    },
};

const ITEMTYPES: usize = 50;
const WEBHOOKS: usize = 10_000;
const EVENTS: usize = 20_000;

fn rng(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

pub fn run() -> Result<(), String> {
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    // A 5-level tree: 0 > 4 children > 4 each > … (341 entities); parent of n is (n - 1) / 4.
    let entity_count = 1 + 4 + 16 + 64 + 256;
    let chain = |mut id: i64| {
        let mut out = vec![id];
        while id > 0 {
            id = (id - 1) / 4;
            out.push(id);
        }
        out
    };
    let events =
        [WebhookEvent::New, WebhookEvent::Update, WebhookEvent::Delete, WebhookEvent::Restore, WebhookEvent::Purge];
    let mut by_key: HashMap<(String, &'static str), Vec<CachedWebhook>> = HashMap::new();
    let now = Utc::now();
    for n in 0..WEBHOOKS {
        let itemtype = format!("Type{}", n % ITEMTYPES);
        let event = events[(n / ITEMTYPES) % events.len()];
        // Webhooks sit in the top three levels (21 entities), mostly recursive, as in a real tree.
        let entity = (rng(&mut seed) % 21) as i64;
        let mut settings =
            WebhookSettings::defaults(format!("w{n}"), entity, itemtype.clone(), event, "https://h.example/x".into());
        settings.is_recursive = !rng(&mut seed).is_multiple_of(5);
        let criteria = vec![
            CriterionSpec::leaf("AND", "priority", "morethan", &(rng(&mut seed) % 5).to_string()),
            CriterionSpec::leaf(
                "AND",
                "status.name",
                "contains",
                ["new", "proc", "clos"][(rng(&mut seed) % 3) as usize],
            ),
            CriterionSpec::leaf("AND NOT", "brand", "equals", ["Acme", "Other"][(rng(&mut seed) % 2) as usize]),
        ];
        let filter = Some(Filter::compile(&criteria).map_err(|e| format!("{e:?}")));
        let templates = WebhookTemplates::parse(&settings, Limits::default()).map_err(|e| e.to_string());
        let webhook = Webhook {
            id: n as i64,
            settings,
            filter: WebhookFilter::Inline(criteria),
            has_client_secret: false,
            created_at: now,
            updated_at: now,
        };
        by_key.entry((itemtype, event.as_str())).or_default().push(CachedWebhook { webhook, templates, filter });
    }
    let statuses = ["New", "Processing", "Closed"];
    let mut timings = Vec::with_capacity(EVENTS);
    let mut fired = 0usize;
    for _ in 0..EVENTS {
        let itemtype = format!("Type{}", rng(&mut seed) % ITEMTYPES as u64);
        let event = events[(rng(&mut seed) % events.len() as u64) as usize];
        let entity = (rng(&mut seed) % entity_count) as i64;
        let mut item = Map::new();
        item.insert("id".into(), json!(rng(&mut seed) % 100_000));
        item.insert("priority".into(), json!(rng(&mut seed) % 6));
        item.insert("status".into(), json!({"id": 1, "name": statuses[(rng(&mut seed) % 3) as usize]}));
        item.insert("brand".into(), json!(["Acme", "Other", "Third"][(rng(&mut seed) % 3) as usize]));
        item.insert("entity".into(), json!({"id": entity}));
        let item = serde_json::Value::Object(item);
        let started = Instant::now();
        let candidates = by_key.get(&(itemtype, event.as_str())).map(Vec::as_slice).unwrap_or_default();
        let scoped = in_scope(candidates, &chain(entity));
        let subject = Subject { item: &item, parent_item: None, actor: None, entity_chain: &chain };
        fired += passing(scoped, &subject).len();
        timings.push(started.elapsed().as_secs_f64() * 1e6);
    }
    timings.sort_by(f64::total_cmp);
    let at = |p: f64| timings[((timings.len() - 1) as f64 * p) as usize];
    println!(
        "matching: {WEBHOOKS} webhooks over {ITEMTYPES} itemtypes x 5 events, {entity_count} entities in 5 levels, \
         3 criteria each; {EVENTS} events, {:.1} webhooks fired per event",
        fired as f64 / EVENTS as f64
    );
    println!("matching one event: median {:.2} µs, p99 {:.2} µs, max {:.2} µs", at(0.5), at(0.99), at(1.0));
    Ok(())
}
