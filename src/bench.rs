//! `hookline bench`: the delivery benchmark. Starts this binary as a server process on a fresh
//! database, a receiver that answers 200 at once, and GraphQL clients, then prints figures:
//! throughput (first mutation to last arrival), the same receiver's ceiling with a bare HTTP
//! client loop (before the run and after it), end-to-end latency at a steady rate, and the
//! server's peak memory.

use std::{
    collections::HashMap,
    net::SocketAddr,
    process::Stdio,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{Router, body::Bytes, extract::State, routing::post};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

/// What to run.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Webhooks on the benchmark itemtype.
    #[arg(long, default_value_t = 100)]
    pub webhooks: usize,
    /// Items created (each fires every webhook).
    #[arg(long, default_value_t = 200)]
    pub items: usize,
    /// Concurrent GraphQL clients creating the items.
    #[arg(long, default_value_t = 8)]
    pub clients: usize,
    /// Events per second in the latency run.
    #[arg(long, default_value_t = 500)]
    pub rate: u64,
    /// Webhooks fired by each event of the latency run (deliveries per second = rate x fanout).
    #[arg(long, default_value_t = 1)]
    pub fanout: usize,
    /// Length of each latency run in seconds (default 10, or 5 with --intake).
    #[arg(long)]
    pub seconds: Option<u64>,
    /// Run on PostgreSQL: the admin URL of a server where a fresh database is created.
    #[arg(long, value_name = "URL")]
    pub postgres: Option<String>,
    /// Payload template for every webhook (default: the default payload).
    #[arg(long)]
    pub payload: Option<String>,
    /// Instead: time the matching of one event against 10,000 filtered webhooks.
    #[arg(long)]
    pub matching: bool,
    /// Instead: the intake benchmark. Measures the read rate, createItem without and with one
    /// delivering webhook, createItems in batches of 100, and three latency runs at --rate; each
    /// rate also as a share of the read rate.
    #[arg(long, conflicts_with = "matching")]
    pub intake: bool,
    /// With --intake: print one JSON object with every figure on stdout (progress goes to stderr).
    #[arg(long, requires = "intake")]
    pub json: bool,
    /// WebSocket subscribers to `queueUpdates` kept reading during the whole run (each watches
    /// one webhook of the throughput run, in turn).
    #[arg(long, default_value_t = 0)]
    pub subscribers: usize,
    /// Signature scheme of every webhook: GLPI, STANDARD_WEBHOOKS or BOTH.
    #[arg(long, default_value = "GLPI")]
    pub signature: String,
    /// Every webhook gets OAuth client credentials, its tokens issued by the receiver.
    #[arg(long)]
    pub oauth: bool,
    /// Every webhook is `ordered` (the deliveries of one item are sent one at a time).
    #[arg(long)]
    pub ordered: bool,
}

/// The receiver's token endpoint: counts requests and issues a token valid for an hour.
async fn issue_token(State(arrivals): State<Arc<Arrivals>>) -> axum::Json<Value> {
    let n = arrivals.tokens.fetch_add(1, Ordering::Relaxed) + 1;
    axum::Json(json!({"access_token": format!("bench-token-{n}"), "token_type": "Bearer", "expires_in": 3600}))
}

/// Opens a `queueUpdates` subscription and counts its messages until the run ends.
async fn subscriber(
    addr: SocketAddr,
    token: String,
    webhook_id: Option<String>,
    received: Arc<AtomicU64>,
) -> Result<(), String> {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest, http::HeaderValue};
    let mut request = format!("ws://{addr}/graphql").into_client_request().map_err(|e| e.to_string())?;
    request.headers_mut().insert("Sec-WebSocket-Protocol", HeaderValue::from_static("graphql-transport-ws"));
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.map_err(|e| e.to_string())?;
    let send = |value: Value| Message::text(value.to_string());
    let init = json!({"type": "connection_init", "payload": {"Authorization": format!("Bearer {token}")}});
    socket.send(send(init)).await.map_err(|e| e.to_string())?;
    let query = "subscription($w: ID) { queueUpdates(webhookId: $w) { previousStatus missedUpdates queuedWebhook { id status sentTry } } }";
    let subscribe =
        json!({"id": "1", "type": "subscribe", "payload": {"query": query, "variables": {"w": webhook_id}}});
    socket.send(send(subscribe)).await.map_err(|e| e.to_string())?;
    while let Some(Ok(message)) = socket.next().await {
        if let Message::Text(text) = message
            && text.contains("\"next\"")
        {
            received.fetch_add(1, Ordering::Relaxed);
        }
    }
    Ok(())
}

pub(crate) fn cpu_seconds(pid: Option<u32>) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid?)).ok()?;
    let fields: Vec<&str> = stat.rsplit(')').next()?.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

#[derive(Default)]
pub(crate) struct Arrivals {
    pub(crate) count: AtomicU64,
    /// Token requests (with `--oauth`).
    tokens: AtomicU64,
    /// Deliveries that came without `Authorization: Bearer …` (with `--oauth`).
    unauthorized: AtomicU64,
    pub(crate) last: Mutex<Option<Instant>>,
    /// Latency run: arrival time by item name.
    pub(crate) named: Mutex<HashMap<String, Instant>>,
    pub(crate) track_names: std::sync::atomic::AtomicBool,
}

async fn receive(State(arrivals): State<Arc<Arrivals>>, headers: axum::http::HeaderMap, body: Bytes) -> &'static str {
    let now = Instant::now();
    arrivals.count.fetch_add(1, Ordering::Relaxed);
    if !headers.get("authorization").and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("Bearer bench-token-"))
    {
        arrivals.unauthorized.fetch_add(1, Ordering::Relaxed);
    }
    *arrivals.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(now);
    if arrivals.track_names.load(Ordering::Relaxed)
        && let Ok(value) = serde_json::from_slice::<Value>(&body)
        && let Some(name) = value["item"]["name"].as_str()
    {
        arrivals.named.lock().unwrap_or_else(|p| p.into_inner()).insert(name.to_owned(), now);
    }
    "ok"
}

/// Starts the receiver on a loopback port: `/hook` counts deliveries, `/token` issues OAuth tokens.
pub(crate) async fn start_receiver() -> Result<(Arc<Arrivals>, SocketAddr), String> {
    let arrivals = Arc::new(Arrivals::default());
    let receiver = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| e.to_string())?;
    let receiver_addr = receiver.local_addr().map_err(|e| e.to_string())?;
    let app =
        Router::new().route("/hook", post(receive)).route("/token", post(issue_token)).with_state(arrivals.clone());
    tokio::spawn(async move { axum::serve(receiver, app).await.ok() });
    Ok((arrivals, receiver_addr))
}

/// Where the server process keeps its data: a temporary directory and, with `--postgres`, a
/// database created for this run. [`FreshDatabase::remove`] deletes both.
pub(crate) struct FreshDatabase {
    pub(crate) dir: std::path::PathBuf,
    /// The server's database settings: none on SQLite (the data dir is used).
    pub(crate) env: Vec<(&'static str, String)>,
    postgres: Option<(sea_orm::DatabaseConnection, String)>,
}

impl FreshDatabase {
    pub(crate) async fn create(postgres: Option<&str>) -> Result<Self, String> {
        let dir = tempfile_dir()?;
        let mut env = Vec::new();
        let mut created = None;
        if let Some(admin) = postgres {
            let name = format!("hookline_bench_{}", uuid::Uuid::new_v4().simple());
            let conn = sea_orm::Database::connect(admin).await.map_err(|e| e.to_string())?;
            sea_orm::ConnectionTrait::execute_unprepared(&conn, &format!("CREATE DATABASE {name}"))
                .await
                .map_err(|e| e.to_string())?;
            let mut url = url::Url::parse(admin).map_err(|e| e.to_string())?;
            url.set_path(&format!("/{name}"));
            env.push(("HOOKLINE_DATABASE_URL", url.to_string()));
            env.push(("HOOKLINE_SECRET_KEY", "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=".to_owned()));
            created = Some((conn, name));
        }
        Ok(Self { dir, env, postgres: created })
    }

    pub(crate) fn kind(&self) -> &'static str {
        if self.postgres.is_some() { "PostgreSQL" } else { "SQLite" }
    }

    pub(crate) async fn remove(self) {
        if let Some((conn, name)) = self.postgres {
            sea_orm::ConnectionTrait::execute_unprepared(
                &conn,
                &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            )
            .await
            .ok();
        }
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

pub(crate) struct ServerProcess {
    pub(crate) child: tokio::process::Child,
    pub(crate) addr: SocketAddr,
    /// The super-admin token the server wrote at its first start: every client sends it, as
    /// users must.
    pub(crate) token: String,
}

impl ServerProcess {
    /// An HTTP client whose requests carry the token.
    pub(crate) fn client(&self) -> Result<reqwest::Client, String> {
        let mut headers = reqwest::header::HeaderMap::new();
        let value = reqwest::header::HeaderValue::from_str(&format!("Bearer {}", self.token))
            .map_err(|e| format!("the token is not a header value: {e}"))?;
        headers.insert(reqwest::header::AUTHORIZATION, value);
        reqwest::Client::builder().default_headers(headers).build().map_err(|e| e.to_string())
    }
}

pub(crate) async fn start_server(database: &[(&str, String)], dir: &std::path::Path) -> Result<ServerProcess, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut command = tokio::process::Command::new(exe);
    command
        .arg("serve")
        .env("HOOKLINE_LISTEN", "127.0.0.1:0")
        .env("HOOKLINE_DATA_DIR", dir)
        .env("HOOKLINE_LOG", "warn,hookline=info")
        // The benchmark's receiver listens on loopback.
        .env("HOOKLINE_ALLOW_PRIVATE_TARGETS", "true")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (key, value) in database {
        command.env(key, value);
    }
    let mut child = command.spawn().map_err(|e| format!("cannot start the server: {e}"))?;
    let stderr = child.stderr.take().ok_or("no stderr")?;
    let mut lines = BufReader::new(stderr).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if let Some(addr) = line.split("addr=").nth(1) {
            let addr = addr.split_whitespace().next().unwrap_or_default().parse().map_err(|_| "bad address")?;
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            let path = dir.join(crate::auth::store::BOOTSTRAP_FILE);
            let token = std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read the server's first token {}: {e}", path.display()))?
                .trim()
                .to_owned();
            return Ok(ServerProcess { child, addr, token });
        }
    }
    Err("the server exited before listening".into())
}

/// Concurrent requests of the bare ceiling (hookline's default per-host limit).
const BARE_CONCURRENCY: usize = 64;

/// The ceiling: the receiver driven by a bare HTTP client loop at the same concurrency as
/// hookline's sends, `requests` times; requests per second.
async fn bare_ceiling(url: &str, requests: u64) -> f64 {
    let body = Bytes::from(vec![b'x'; 300]);
    let sent = Arc::new(AtomicU64::new(0));
    // Without the API token the benchmark's clients send: the receiver takes no credentials.
    let client = reqwest::Client::new();
    let started = Instant::now();
    let mut loops = Vec::new();
    for _ in 0..BARE_CONCURRENCY {
        let (client, url, sent, body) = (client.clone(), url.to_owned(), sent.clone(), body.clone());
        loops.push(tokio::spawn(async move {
            while sent.fetch_add(1, Ordering::Relaxed) < requests {
                client.post(&url).body(body.clone()).send().await.ok();
            }
        }));
    }
    for task in loops {
        task.await.ok();
    }
    requests as f64 / started.elapsed().as_secs_f64()
}

pub(crate) fn peak_rss_mib(pid: Option<u32>) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid?)).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

pub(crate) async fn gql(
    client: &reqwest::Client,
    addr: SocketAddr,
    query: &str,
    variables: Value,
) -> Result<Value, String> {
    let response: Value = client
        .post(format!("http://{addr}/graphql"))
        .json(&json!({"query": query, "variables": variables}))
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    match response.get("errors") {
        Some(errors) => Err(errors.to_string()),
        None => Ok(response["data"].clone()),
    }
}

pub(crate) const CREATE_ITEM: &str = "mutation($input: ItemInput!) { createItem(input: $input) { id } }";
pub(crate) const CREATE_WEBHOOK: &str = "mutation($input: WebhookInput!) { createWebhook(input: $input) { id } }";

pub(crate) async fn wait_for(arrivals: &Arrivals, count: u64, limit: Duration) -> Result<Instant, String> {
    let deadline = Instant::now() + limit;
    while arrivals.count.load(Ordering::Relaxed) < count {
        if Instant::now() > deadline {
            return Err(format!("only {} of {count} deliveries arrived", arrivals.count.load(Ordering::Relaxed)));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    arrivals.last.lock().unwrap_or_else(|p| p.into_inner()).ok_or_else(|| "no arrival".into())
}

pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// When each mutation of a steady run was sent and answered, by item name.
pub(crate) type Answered = HashMap<String, (Instant, Instant)>;

/// Creates `total` items of `itemtype` named `{prefix}{n}`, one every 1/`rate` s without waiting
/// for the previous ones, and returns once every call has finished; failed calls are left out.
pub(crate) async fn send_steadily(
    client: &reqwest::Client,
    addr: SocketAddr,
    itemtype: &str,
    prefix: &str,
    rate: u64,
    total: u64,
) -> Result<Answered, String> {
    if rate == 0 {
        return Err("--rate must be at least 1".into());
    }
    let responded: Arc<Mutex<Answered>> = Arc::default();
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    let mut sends = Vec::with_capacity(total as usize);
    for n in 0..total {
        ticker.tick().await;
        let (client, responded) = (client.clone(), responded.clone());
        let (name, itemtype) = (format!("{prefix}{n}"), itemtype.to_owned());
        sends.push(tokio::spawn(async move {
            let sent_at = Instant::now();
            let input = json!({"itemtype": itemtype, "entityId": "0", "name": name});
            if gql(&client, addr, CREATE_ITEM, json!({"input": input})).await.is_ok() {
                responded.lock().unwrap_or_else(|p| p.into_inner()).insert(name, (sent_at, Instant::now()));
            }
        }));
    }
    for task in sends {
        task.await.ok();
    }
    let answered = std::mem::take(&mut *responded.lock().unwrap_or_else(|p| p.into_inner()));
    Ok(answered)
}

/// A steady run's latencies in ms, sorted: from each mutation's response, and from its request,
/// to its delivery's arrival. Items whose delivery has not arrived are left out.
pub(crate) fn latencies(arrivals: &Arrivals, answered: &Answered) -> (Vec<f64>, Vec<f64>) {
    let named = arrivals.named.lock().unwrap_or_else(|p| p.into_inner());
    let (mut from_response, mut from_request) = (Vec::new(), Vec::new());
    for (name, (sent_at, answered_at)) in answered {
        if let Some(arrived) = named.get(name) {
            from_response.push(arrived.saturating_duration_since(*answered_at).as_secs_f64() * 1000.0);
            from_request.push(arrived.saturating_duration_since(*sent_at).as_secs_f64() * 1000.0);
        }
    }
    from_response.sort_by(f64::total_cmp);
    from_request.sort_by(f64::total_cmp);
    (from_response, from_request)
}

pub async fn run(args: BenchArgs) -> Result<(), String> {
    if args.matching {
        return crate::bench_match::run();
    }
    if args.intake {
        return crate::bench_intake::run(args).await;
    }
    let (arrivals, receiver_addr) = start_receiver().await?;
    let database = FreshDatabase::create(args.postgres.as_deref()).await?;
    let mut server = start_server(&database.env, &database.dir).await?;
    let addr = server.addr;
    let client = server.client()?;
    let url = format!("http://{receiver_addr}/hook");
    println!(
        "hookline bench: {} webhooks x {} items by {} clients, {}, signature {}{}{}",
        args.webhooks,
        args.items,
        args.clients,
        database.kind(),
        args.signature.to_uppercase(),
        if args.oauth { ", OAuth" } else { "" },
        if args.ordered { ", ordered" } else { "" }
    );

    let mut webhook_ids = Vec::new();
    for n in 0..args.webhooks {
        let mut input =
            json!({"name": format!("bench {n}"), "entityId": "0", "itemtype": "Ticket", "event": "NEW", "url": url});
        if let Some(payload) = &args.payload {
            input["useDefaultPayload"] = json!(false);
            input["payload"] = json!(payload);
        }
        input["signatureScheme"] = json!(args.signature.to_uppercase());
        if args.ordered {
            input["ordered"] = json!(true);
        }
        if args.oauth {
            input["useOauth"] = json!(true);
            input["oauthUrl"] = json!(format!("http://{receiver_addr}/token"));
            input["clientId"] = json!("bench");
            input["clientSecret"] = json!("bench-client-secret");
        }
        let created = gql(&client, addr, CREATE_WEBHOOK, json!({"input": input})).await?;
        webhook_ids.push(created["createWebhook"]["id"].as_str().unwrap_or_default().to_owned());
    }
    let streamed = Arc::new(AtomicU64::new(0));
    let mut subscribers = Vec::new();
    for n in 0..args.subscribers {
        let webhook = if webhook_ids.len() > 1 { Some(webhook_ids[n % webhook_ids.len()].clone()) } else { None };
        subscribers.push(tokio::spawn(subscriber(addr, server.token.clone(), webhook, streamed.clone())));
    }
    if args.subscribers > 0 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        println!("{} subscribers attached to queueUpdates", args.subscribers);
    }
    let expected = (args.webhooks * args.items) as u64;
    let progress = crate::bench_report::Progress::new(args.json);
    // The ceiling is measured before the run and again after it: the machine's load moves
    // it, and the share is taken of their mean.
    let ceiling_before = bare_ceiling(&url, expected).await;
    arrivals.count.store(0, Ordering::Relaxed);
    arrivals.unauthorized.store(0, Ordering::Relaxed);
    *arrivals.last.lock().unwrap_or_else(|p| p.into_inner()) = None;
    let (server_cpu, own_cpu) = (cpu_seconds(server.child.id()), cpu_seconds(Some(std::process::id())));
    let started = Instant::now();
    let counted = arrivals.clone();
    let arriving =
        progress.phase("fan-out", "deliveries", Some(expected), move || counted.count.load(Ordering::Relaxed));
    let mut tasks = Vec::new();
    for c in 0..args.clients {
        let (client, share) = (client.clone(), args.items / args.clients + usize::from(c < args.items % args.clients));
        tasks.push(tokio::spawn(async move {
            for i in 0..share {
                let input = json!({"itemtype": "Ticket", "entityId": "0", "name": format!("c{c}-{i}"), "fields": {"priority": 3, "status": {"id": 1, "name": "New"}}});
                gql(&client, addr, CREATE_ITEM, json!({"input": input})).await?;
            }
            Ok::<(), String>(())
        }));
    }
    for task in tasks {
        task.await.map_err(|e| e.to_string())??;
    }
    let enqueued = started.elapsed();
    let last = wait_for(&arrivals, expected, Duration::from_secs(600)).await?;
    arriving.done();
    let elapsed = last - started;
    let rate = expected as f64 / elapsed.as_secs_f64();
    println!(
        "throughput: {expected} deliveries in {:.3} s = {rate:.0}/s (all events queued after {:.3} s)",
        elapsed.as_secs_f64(),
        enqueued.as_secs_f64()
    );
    if args.oauth {
        println!(
            "OAuth: {} token requests; {} of the {expected} deliveries arrived without the token",
            arrivals.tokens.load(Ordering::Relaxed),
            arrivals.unauthorized.load(Ordering::Relaxed)
        );
    }
    let used = |before: Option<f64>, pid: Option<u32>| Some(cpu_seconds(pid)? - before?);
    if let (Some(server_used), Some(own_used)) =
        (used(server_cpu, server.child.id()), used(own_cpu, Some(std::process::id())))
    {
        println!(
            "CPU during the throughput run: server {server_used:.2} s, benchmark clients and receiver {own_used:.2} s \
             (over {:.2} s, 2 cores)",
            elapsed.as_secs_f64()
        );
    }

    let ceiling_after = bare_ceiling(&url, expected).await;
    let ceiling = (ceiling_before + ceiling_after) / 2.0;
    println!(
        "ceiling: a bare reqwest loop, {BARE_CONCURRENCY} concurrent, {ceiling_before:.0}/s before the run and \
         {ceiling_after:.0}/s after it, mean {ceiling:.0}/s; hookline reaches {:.0}% of the mean ({:.0}% of the \
         higher)",
        100.0 * rate / ceiling,
        100.0 * rate / ceiling_before.max(ceiling_after)
    );

    // Latency at a steady rate, one matching webhook.
    gql(&client, addr, "mutation { createItemtype(input: {name: \"BenchLatency\"}) { name } }", json!({})).await?;
    for n in 0..args.fanout.max(1) {
        let input = json!({"name": format!("latency {n}"), "entityId": "0", "itemtype": "BenchLatency", "event": "NEW", "url": url});
        gql(&client, addr, CREATE_WEBHOOK, json!({"input": input})).await?;
    }
    arrivals.track_names.store(true, Ordering::Relaxed);
    let seconds = args.seconds.unwrap_or(10);
    let total = args.rate * seconds;
    let cpu_before = cpu_seconds(server.child.id());
    let latency_started = Instant::now();
    let counted = arrivals.clone();
    let arriving = progress.phase("latency", "deliveries", Some(total * args.fanout.max(1) as u64), move || {
        counted.count.load(Ordering::Relaxed)
    });
    arrivals.count.store(0, Ordering::Relaxed);
    let responded = send_steadily(&client, addr, "BenchLatency", "lat-", args.rate, total).await?;
    let latency_wall = latency_started.elapsed().as_secs_f64();
    let cpu_after = cpu_seconds(server.child.id());
    tokio::time::sleep(Duration::from_secs(2)).await;
    arriving.done();
    let (from_response, from_request) = latencies(&arrivals, &responded);
    println!(
        "latency at {}/s{} for {} s: {} of {total} arrived; mutation response -> arrival p50 {:.2} ms, p99 {:.2} ms; \
         mutation sent -> arrival p50 {:.2} ms, p99 {:.2} ms",
        args.rate,
        if args.fanout > 1 {
            format!(
                " x {} webhooks = {} deliveries/s (to the last arrival)",
                args.fanout,
                args.rate * args.fanout as u64
            )
        } else {
            String::new()
        },
        seconds,
        from_response.len(),
        percentile(&from_response, 0.5),
        percentile(&from_response, 0.99),
        percentile(&from_request, 0.5),
        percentile(&from_request, 0.99),
    );
    if let (Some(before), Some(after)) = (cpu_before, cpu_after) {
        println!(
            "server CPU during the latency run: {:.0}% of one core ({:.2} s over {latency_wall:.2} s)",
            100.0 * (after - before) / latency_wall,
            after - before
        );
    }
    if args.subscribers > 0 {
        println!("subscription messages received: {}", streamed.load(Ordering::Relaxed));
        for task in subscribers {
            task.abort();
        }
    }
    let peak_rss = peak_rss_mib(server.child.id());
    match peak_rss {
        Some(mib) => println!("server peak memory (VmHWM): {mib:.1} MiB"),
        None => println!("server peak memory: unavailable"),
    }
    let mut table = crate::bench_report::Table::default();
    let target = if database.kind() == "SQLite" { ">= 20% of the ceiling" } else { ">= 10% of the ceiling" };
    table.row("fan-out", format!("{rate:.0}/s"), Some(format!("{:.0}%", 100.0 * rate / ceiling)), Some(target));
    table.row("ceiling (mean of before and after)", format!("{ceiling:.0}/s"), Some("100%".into()), None);
    table.row(
        &format!("latency p50 / p99 at {}/s", args.rate),
        format!("{:.2} / {:.2} ms", percentile(&from_response, 0.5), percentile(&from_response, 0.99)),
        None,
        None,
    );
    table.row(
        "server peak memory",
        peak_rss.map_or_else(|| "unavailable".to_owned(), |mib| format!("{mib:.1} MiB")),
        None,
        Some("<= 100 MB"),
    );
    println!("{}", table.render());
    server.child.kill().await.ok();
    database.remove().await;
    Ok(())
}

fn tempfile_dir() -> Result<std::path::PathBuf, String> {
    let dir = std::env::temp_dir().join(format!("hookline-bench-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    Ok(dir)
}
