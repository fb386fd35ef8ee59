//! Payload, URL and header templates: JSON-correct output, placeholders, validation at save
//! time, queue-time failures, preview and payload variables.

mod common;

use std::time::Duration;

use common::{each_backend, receiver::Receiver};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(20);
const CREATE_WEBHOOK: &str = "mutation($input: WebhookInput!) { createWebhook(input: $input) { id } }";
const CREATE_ITEM: &str = "mutation($input: ItemInput!) { createItem(input: $input) { id } }";

const MATTERMOST: &str = r#"{
"text": "🚨 New critical ticket!",
"attachments": [
{
"color": "danger",
"title": "Ticket #{{ item.id }}",
"text": "{{ item.name }}",
"fields": [
{
"title": "Category",
"value": "{{ item.category.name }}",
"short": true
},
{
"title": "Entity",
"value": "{{ item.entity.completename }}",
"short": true
}
]
}
]
}"#;

fn hook(receiver: &Receiver, extra: Value) -> Value {
    let mut input =
        json!({"name": "t", "entityId": "0", "itemtype": "Ticket", "event": "NEW", "url": receiver.url("/hook")});
    if let (Some(i), Some(e)) = (input.as_object_mut(), extra.as_object()) {
        i.extend(e.clone());
    }
    input
}

#[tokio::test]
async fn glpis_mattermost_example_renders_to_the_expected_json() {
    each_backend(async |app| {
        let receiver = Receiver::start().await;
        let paris = app.data("mutation { createEntity(input: {name: \"Paris\"}) { id } }", json!({})).await["createEntity"]["id"].clone();
        app.data(CREATE_WEBHOOK, json!({"input": hook(&receiver, json!({"useDefaultPayload": false, "payload": MATTERMOST, "isRecursive": true}))})).await;
        let title = "Printer \"HP\" on fire \\ again\nurgent <&> 🔥 \u{2028}";
        app.data(CREATE_ITEM, json!({"input": {"itemtype": "Ticket", "entityId": paris, "name": title, "fields": {"category": {"id": 4, "name": "Hardware"}}}})).await;
        let request = receiver.wait_for(1, WAIT).await.remove(0);
        assert_eq!(
            request.json(),
            json!({
                "text": "🚨 New critical ticket!",
                "attachments": [{
                    "color": "danger",
                    "title": "Ticket #1",
                    "text": title,
                    "fields": [
                        {"title": "Category", "value": "Hardware", "short": true},
                        {"title": "Entity", "value": "Root entity > Paris", "short": true}
                    ]
                }]
            })
        );
    })
    .await;
}

#[tokio::test]
async fn url_and_header_placeholders_render_as_in_glpis_tests() {
    each_backend(async |app| {
        let receiver = Receiver::start().await;
        let url = format!("http://{}/{{{{ parent_item.external_id }}}}/{{{{ event }}}}/{{{{ item.id }}}}", receiver.addr);
        let input = json!({"name": "f", "entityId": "0", "itemtype": "ITILFollowup", "event": "NEW", "url": url,
                           "customHeaders": {"Authorization": "Bearer {{ parent_item.token }}", "X-Event": "{{ event }}"}});
        app.data(CREATE_WEBHOOK, json!({"input": input})).await;
        app.data(CREATE_ITEM, json!({"input": {"itemtype": "Ticket", "id": "9", "entityId": "0", "fields": {"external_id": "ext1234", "token": "s3cr3t"}}})).await;
        let followup = app.data(CREATE_ITEM, json!({"input": {"itemtype": "ITILFollowup", "entityId": "0", "parentItemtype": "Ticket", "parentId": "9"}})).await;
        let id = followup["createItem"]["id"].as_str().unwrap_or_default().to_owned();
        let request = receiver.wait_for(1, WAIT).await.remove(0);
        assert_eq!(request.path, format!("/ext1234/new/{id}"));
        assert_eq!(request.header("authorization"), Some("Bearer s3cr3t"));
        assert_eq!(request.header("x-event"), Some("new"));
    })
    .await;
}

#[tokio::test]
async fn templates_are_validated_when_saved_with_the_place_of_the_problem() {
    each_backend(async |app| {
        let receiver = Receiver::start().await;
        let cases = [
            (json!({"useDefaultPayload": false, "payload": "{\n  \"a\": \"{{ item.name | nosuchfilter }}\"\n}"}), "payload: line 2"),
            (json!({"useDefaultPayload": false, "payload": "{% nosuchtag %}"}), "payload: line 1"),
            (json!({"useDefaultPayload": false, "payload": "{\"a\": \"{{ item.name \"}"}), "payload:"),
            (json!({"customHeaders": {"X-A": "{{ item.name | nope }}"}}), "customHeaders.X-A:"),
            (json!({"url": "https://h.example/{% if %}"}), "url:"),
            (json!({"useDefaultPayload": false, "payload": "{% for i in (1..999999) %}x{% endfor %}"}), "payload:"),
        ];
        for (extra, prefix) in cases {
            let (code, message) = app.error(CREATE_WEBHOOK, json!({"input": hook(&receiver, extra.clone())})).await;
            assert_eq!(code, "VALIDATION", "{extra}: {message}");
            assert!(message.starts_with(prefix), "{extra}: `{message}` should start with `{prefix}`");
        }
        // With a stored Ticket to render against, a payload that is not JSON is refused.
        app.data(CREATE_ITEM, json!({"input": {"itemtype": "Ticket", "entityId": "0", "name": "two words"}})).await;
        let (code, message) = app.error(CREATE_WEBHOOK, json!({"input": hook(&receiver, json!({"useDefaultPayload": false, "payload": "{\"a\": {{ item.name }}}"}))})).await;
        assert_eq!(code, "VALIDATION");
        assert!(message.contains("invalid JSON") && message.contains("Ticket `1`"), "{message}");
        // The same text is fine with a non-JSON content type.
        let ok = hook(&receiver, json!({"useDefaultPayload": false, "payload": "name={{ item.name }}", "customHeaders": {"Content-Type": "text/plain"}}));
        app.data(CREATE_WEBHOOK, json!({"input": ok})).await;
        assert_eq!(app.data("{ webhooks { totalCount } }", json!({})).await["webhooks"]["totalCount"], 1);
    })
    .await;
}

#[tokio::test]
async fn a_payload_that_renders_to_invalid_json_fails_its_row_and_spares_the_others() {
    each_backend(async |app| {
        let receiver = Receiver::start().await;
        // Saved while no Ticket exists, so nothing could check the rendering then.
        app.data(CREATE_WEBHOOK, json!({"input": hook(&receiver, json!({"name": "broken", "useDefaultPayload": false, "payload": "{\"n\": {{ item.name }}}"}))})).await;
        app.data(CREATE_WEBHOOK, json!({"input": hook(&receiver, json!({"name": "fine"}))})).await;
        app.data(CREATE_ITEM, json!({"input": {"itemtype": "Ticket", "entityId": "0", "name": "not a number"}})).await;
        let rows = app.wait_queue(2, &["SENT", "FAILED"]).await;
        let failed: Vec<&Value> = rows.iter().filter(|r| r["status"] == "FAILED").collect();
        assert_eq!(failed.len(), 1, "{rows:?}");
        assert!(failed[0]["lastError"].as_str().unwrap_or_default().contains("invalid JSON"), "{}", failed[0]);
        assert_eq!(failed[0]["sentTry"], 0, "never sent broken");
        assert_eq!(receiver.wait_for(1, WAIT).await.len(), 1);
    })
    .await;
}

#[tokio::test]
async fn the_preview_equals_what_is_then_sent() {
    each_backend(async |app| {
        let receiver = Receiver::start().await;
        let payload = "{\"who\": \"{{ item.name }}\", \"prio\": {{ item.priority | json }}, \"event\": \"{{ event }}\"}";
        let input = hook(&receiver, json!({"useDefaultPayload": false, "payload": payload, "url": receiver.url("/t/{{ item.id }}"), "customHeaders": {"X-Name": "{{ item.name }}"}, "isActive": false}));
        let id = app.data(CREATE_WEBHOOK, json!({"input": input})).await["createWebhook"]["id"].clone();
        app.data(CREATE_ITEM, json!({"input": {"itemtype": "Ticket", "entityId": "0", "name": "Zoë \"Z\"", "fields": {"priority": 5}}})).await;
        let preview = app.data("query($w: ID!) { webhookPreview(webhookId: $w, itemId: \"1\") { apiData payload url headers } }", json!({"w": id})).await["webhookPreview"].clone();
        assert_eq!(preview["apiData"]["item"]["name"], "Zoë \"Z\"");
        assert_eq!(preview["apiData"]["event"], "new");
        assert!(preview["headers"]["X-GLPI-signature"].as_str().unwrap_or_default().starts_with('<'), "{preview}");

        app.data("mutation($w: ID!) { updateWebhook(id: $w, input: {isActive: true}) { id } }", json!({"w": id})).await;
        app.data("mutation { triggerEvent(input: {itemtype: \"Ticket\", itemId: \"1\", event: NEW}) { queued { id } } }", json!({})).await;
        let request = receiver.wait_for(1, WAIT).await.remove(0);
        assert_eq!(request.text(), preview["payload"].as_str().unwrap_or_default());
        assert_eq!(receiver.url(&request.path), preview["url"].as_str().unwrap_or_default());
        assert_eq!(request.header("x-name"), preview["headers"]["X-Name"].as_str());
        assert_eq!(request.header("content-type"), preview["headers"]["Content-Type"].as_str());

        app.data("mutation { createItem(input: {itemtype: \"Computer\", entityId: 0}) { id } }", json!({})).await;
        app.assert_error("query($w: ID!) { webhookPreview(webhookId: $w, itemId: \"404\") { payload } }", json!({"w": id}), "NOT_FOUND", "Ticket").await;
    })
    .await;
}

#[tokio::test]
async fn payload_variables_list_known_and_seen_paths() {
    each_backend(async |app| {
        app.data(CREATE_ITEM, json!({"input": {"itemtype": "Ticket", "entityId": "0", "fields": {"status": {"id": 1, "name": "New"}, "team": [{"name": "a", "role": "tech"}]}}})).await;
        let ticket = app.data("{ payloadVariables(itemtype: \"Ticket\") }", json!({})).await["payloadVariables"].clone();
        let ticket: Vec<&str> = ticket.as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        for expected in ["event", "item.id", "item.name", "item.entity.completename", "item.status.name", "item.priority", "item.team[0].role"] {
            assert!(ticket.contains(&expected), "{expected} missing from {ticket:?}");
        }
        assert!(!ticket.iter().any(|p| p.starts_with("parent_item")), "tickets have no parent");
        let followup = app.data("{ payloadVariables(itemtype: \"ITILFollowup\") }", json!({})).await["payloadVariables"].clone();
        let followup: Vec<&str> = followup.as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        assert!(followup.contains(&"parent_item.status.name") && followup.contains(&"item.content"), "{followup:?}");
        app.assert_error("{ payloadVariables(itemtype: \"Nope\") }", json!({}), "VALIDATION", "itemtype").await;
    })
    .await;
}

/// Any value of an item field survives a string placeholder exactly, in valid JSON.
#[tokio::test]
async fn any_field_value_yields_valid_json_through_a_string_placeholder() {
    each_backend(async |app| {
        let receiver = Receiver::start().await;
        app.data(CREATE_WEBHOOK, json!({"input": hook(&receiver, json!({"useDefaultPayload": false, "payload": "{\"v\": \"{{ item.v }}\"}"}))})).await;
        let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let alphabet: Vec<char> = "aZ09 \"\\/\n\r\t\u{0}\u{1f}\u{7f}<>&'{}[]%:,é漢🎉\u{2028}\u{2029}\u{feff}".chars().collect();
        let mut values = Vec::new();
        for _ in 0..40 {
            let len = (next() % 24) as usize;
            values.push((0..len).map(|_| alphabet[(next() % alphabet.len() as u64) as usize]).collect::<String>());
        }
        // Databases cannot store NUL in text: such values are refused, never stored broken.
        let (with_nul, values): (Vec<String>, Vec<String>) = values.into_iter().partition(|v| v.contains('\0'));
        for value in &with_nul {
            let input = json!({"input": {"itemtype": "Ticket", "entityId": "0", "fields": {"v": value}}});
            app.assert_error(CREATE_ITEM, input, "VALIDATION", "NUL").await;
        }
        for value in &values {
            app.data(CREATE_ITEM, json!({"input": {"itemtype": "Ticket", "entityId": "0", "fields": {"v": value}}})).await;
        }
        let requests = receiver.wait_for(values.len(), WAIT).await;
        let mut got: Vec<String> = requests.iter().map(|r| r.json()["v"].as_str().unwrap_or("<missing>").to_owned()).collect();
        let mut want = values.clone();
        got.sort();
        want.sort();
        assert_eq!(got, want);
    })
    .await;
}
