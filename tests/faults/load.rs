//! A stream of `createItem` requests from several clients while the database fails under
//! them, and the checks that follow: clear refusals, nothing confirmed lost, every row sent,
//! none sent again beyond the attempts caught in flight.

use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use serde_json::{Value, json};
use tokio::task::JoinHandle;

use crate::common::receiver::Receiver;

const CREATE_ITEM: &str = "mutation($input: ItemInput!) { createItem(input: $input) { id } }";
const ROWS_OF: &str =
    "query($w: ID) { queuedWebhooks(first: 500, webhookId: $w) { edges { node { id status deliveryId } } } }";
const TICKETS: &str = "{ items(itemtype: \"Ticket\", first: 500) { edges { node { name } } } }";

/// One `createItem`: the item's id, or the error's code and message.
pub type Created = Result<String, (String, String)>;

/// A client with the token whose requests give up after a minute: a request that hangs fails
/// the test.
pub fn client(token: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    let value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}")).expect("a header value");
    headers.insert(reqwest::header::AUTHORIZATION, value);
    hookline::crypto::install();
    reqwest::Client::builder().default_headers(headers).timeout(Duration::from_secs(60)).build().expect("client")
}

/// Posts a GraphQL request to `url`; `Err((code, message))` for its first error (`HTTP` when
/// no answer came).
pub async fn graphql(
    client: &reqwest::Client,
    url: &str,
    query: &str,
    variables: Value,
) -> Result<Value, (String, String)> {
    let body = json!({"query": query, "variables": variables});
    let response = client.post(url).json(&body).send().await.map_err(|e| ("HTTP".to_owned(), e.to_string()))?;
    let value: Value = response.json().await.map_err(|e| ("HTTP".to_owned(), e.to_string()))?;
    match value["errors"].get(0) {
        Some(error) => Err((
            error["extensions"]["code"].as_str().unwrap_or("<none>").to_owned(),
            error["message"].as_str().unwrap_or_default().to_owned(),
        )),
        None => Ok(value["data"].clone()),
    }
}

pub async fn create_ticket(client: &reqwest::Client, url: &str, name: &str) -> Created {
    let input = json!({"input": {"itemtype": "Ticket", "entityId": "0", "name": name}});
    graphql(client, url, CREATE_ITEM, input)
        .await
        .map(|data| data["createItem"]["id"].as_str().unwrap_or_default().into())
}

/// What one client of the load got: each ticket's name and outcome, and its longest request.
pub type Results = (Vec<(String, Created)>, Duration);

/// Four clients creating 40 tickets each, one after the other.
pub fn start(url: &str, token: &str) -> Vec<JoinHandle<Results>> {
    (0..4)
        .map(|w| {
            let (client, url) = (client(token), url.to_owned());
            tokio::spawn(async move {
                let (mut out, mut longest) = (Vec::new(), Duration::ZERO);
                for n in 0..40 {
                    let name = format!("w{w}-{n}");
                    let started = std::time::Instant::now();
                    out.push((name.clone(), create_ticket(&client, &url, &name).await));
                    longest = longest.max(started.elapsed());
                }
                (out, longest)
            })
        })
        .collect()
}

/// Waits for the load, then checks what the server did with it: each refusal is a clear
/// `UNAVAILABLE`, the server serves again, every confirmed create is stored, every row of
/// `webhook_id` is sent and received, and at most `max_repeats` deliveries were sent again.
pub async fn check(
    url: &str,
    token: &str,
    load: Vec<JoinHandle<Results>>,
    receiver: &Receiver,
    webhook_id: &str,
    max_repeats: usize,
) {
    let (mut results, mut longest) = (Vec::new(), Duration::ZERO);
    for task in load {
        let (out, slowest) = task.await.expect("load task");
        results.extend(out);
        longest = longest.max(slowest);
    }
    let (stored, refused): (Vec<_>, Vec<_>) = results.iter().partition(|(_, r)| r.is_ok());
    let messages: std::collections::BTreeSet<String> =
        refused.iter().filter_map(|(_, r)| r.as_ref().err()).map(|(code, m)| format!("{code}: {m}")).collect();
    eprintln!(
        "{} creates stored, {} refused (longest request {longest:?}): {messages:#?}",
        stored.len(),
        refused.len()
    );
    for (name, result) in &refused {
        let Err((code, message)) = result else { continue };
        assert_eq!(code, "UNAVAILABLE", "{name}: {message}");
        assert!(message.starts_with("the database"), "{name}: {message}");
    }

    let client = client(token);
    let after = create_ticket(&client, url, "after").await;
    assert!(after.is_ok(), "the server does not serve again: {after:?}");
    let tickets = graphql(&client, url, TICKETS, json!({})).await.expect("tickets");
    let names: HashSet<&str> =
        tickets["items"]["edges"].as_array().into_iter().flatten().filter_map(|e| e["node"]["name"].as_str()).collect();
    for (name, _) in &stored {
        assert!(names.contains(name.as_str()), "{name} was confirmed but is not stored");
    }

    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let rows = loop {
        let data = graphql(&client, url, ROWS_OF, json!({"w": webhook_id})).await.expect("rows");
        let rows: Vec<Value> =
            data["queuedWebhooks"]["edges"].as_array().into_iter().flatten().map(|e| e["node"].clone()).collect();
        if rows.len() >= names.len() && rows.iter().all(|r| r["status"] == "SENT") {
            break rows;
        }
        let pending = rows.iter().filter(|r| r["status"] != "SENT").count();
        assert!(std::time::Instant::now() < deadline, "{} rows, {pending} not sent", rows.len());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut sent: HashMap<String, usize> = HashMap::new();
    for request in receiver.requests() {
        *sent.entry(request.header("x-hookline-delivery").unwrap_or_default().to_owned()).or_default() += 1;
    }
    for row in &rows {
        assert!(sent.contains_key(row["deliveryId"].as_str().unwrap_or_default()), "row {} never arrived", row["id"]);
    }
    let repeated: usize = sent.values().map(|n| n - 1).sum();
    eprintln!("{} rows sent, {repeated} sent again", rows.len());
    assert!(repeated <= max_repeats, "{repeated} deliveries were sent again");
}
