//! `hookline bench --intake`: how fast the server takes events in. One run against a fresh
//! server process measures the read rate (`{ entities { id name } }`, the ceiling), then
//! `createItem` without a webhook, `createItem` with one delivering webhook, `createItems` in
//! batches of 100, and three latency runs at a steady rate. Every intake rate is also given as a
//! share of the read rate of the same run, so runs on different machines or loads compare.

use std::{
    net::SocketAddr,
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use serde_json::{Value, json};

use crate::{
    bench::{self, Arrivals, BenchArgs, CREATE_ITEM, CREATE_WEBHOOK, FreshDatabase, ServerProcess, gql, percentile},
    bench_report::{Counter, Progress, Table},
};

const READ: &str = "{ entities { id name } }";
const CREATE_ITEMS: &str = "mutation($inputs: [ItemInput!]!) { createItems(inputs: $inputs) { id } }";
const QUEUE_STATS: &str = "{ queueStats { pending sending retrying } }";
/// The measured window of each fixed-duration phase.
const PHASE: Duration = Duration::from_secs(3);
/// Requests made before the window opens, not counted.
const WARM_UP: Duration = Duration::from_millis(500);
/// How long deliveries may take to arrive, or the queue to drain, after a phase.
const DRAIN_LIMIT: Duration = Duration::from_secs(60);
/// The pause after the queue has drained, before the next phase starts.
const REST: Duration = Duration::from_millis(500);
const BATCH: usize = 100;
/// Concurrent `createItems` callers (fewer than for single items: each call is 100 inserts).
const BATCH_CLIENTS: usize = 4;
const LATENCY_RUNS: usize = 3;
/// Length of each latency run when `--seconds` is not given.
const LATENCY_SECONDS: u64 = 5;

pub async fn run(args: BenchArgs) -> Result<(), String> {
    let (arrivals, receiver) = bench::start_receiver().await?;
    let database = FreshDatabase::create(args.postgres.as_deref()).await?;
    let outcome = match bench::start_server(&database.env, &database.dir).await {
        Ok(mut server) => {
            let outcome = measure(&args, &server, &arrivals, receiver, database.kind()).await;
            server.child.kill().await.ok();
            outcome
        }
        Err(err) => Err(err),
    };
    database.remove().await;
    let report = outcome?;
    if args.json {
        println!("{report}");
    }
    Ok(())
}

/// The human lines: on stdout, or on stderr when stdout carries the JSON object.
#[derive(Clone, Copy)]
struct Lines {
    to_stderr: bool,
}

impl Lines {
    fn print(self, line: String) {
        if self.to_stderr { eprintln!("{line}") } else { println!("{line}") }
    }
}

/// Runs every phase in order and returns the JSON report.
async fn measure(
    args: &BenchArgs,
    server: &ServerProcess,
    arrivals: &std::sync::Arc<Arrivals>,
    receiver: SocketAddr,
    database: &str,
) -> Result<Value, String> {
    let lines = Lines { to_stderr: args.json };
    let progress = Progress::new(args.json);
    let (addr, pid) = (server.addr, server.child.id());
    let client = server.client()?;
    let clients = args.clients.max(1);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    lines.print(format!(
        "hookline bench --intake: {database}, {cores} cores, {clients} clients, {} s per phase after a {} ms warm-up",
        PHASE.as_secs(),
        WARM_UP.as_millis()
    ));

    // 1. The ceiling: a small read through the whole HTTP and GraphQL stack, writing nothing.
    let cpu = CpuMeter::start(pid);
    let read = drive(&client, clients, WARM_UP, (progress, "read rate", "requests"), move |client, _, _| async move {
        gql(&client, addr, READ, json!({})).await.map(|_| 1)
    })
    .await?;
    let read_rate = read.window_rate();
    let read_cpu = cpu.percent();
    lines.print(format!("read rate: {read_rate:.0} requests/s of `{READ}` = 100% (the ceiling){}", cpu_note(read_cpu)));
    let share = |rate: f64| rate / read_rate;

    // 2. createItem on Ticket, which no webhook watches.
    settle(&client, addr).await?;
    let cpu = CpuMeter::start(pid);
    let plain = drive(
        &client,
        clients,
        WARM_UP,
        (progress, "createItem, no webhook", "items"),
        move |client, c, n| async move { create_item(&client, addr, "Ticket", format!("plain-{c}-{n}")).await },
    )
    .await?;
    let plain_rate = plain.window_rate();
    let plain_cpu = cpu.percent();
    lines.print(format!(
        "createItem, no webhook: {plain_rate:.0} items/s = {:.1}% of the read rate{}",
        100.0 * share(plain_rate),
        cpu_note(plain_cpu)
    ));

    // 3. createItem on a fresh itemtype with one webhook; counted up to the last arrival.
    gql(&client, addr, "mutation { createItemtype(input: {name: \"BenchIntake\"}) { name } }", json!({})).await?;
    create_webhook(&client, addr, "intake", "BenchIntake", receiver).await?;
    settle(&client, addr).await?;
    reset(arrivals);
    let cpu = CpuMeter::start(pid);
    let hooked = drive(
        &client,
        clients,
        Duration::ZERO,
        (progress, "createItem, one webhook", "items"),
        move |client, c, n| async move { create_item(&client, addr, "BenchIntake", format!("hooked-{c}-{n}")).await },
    )
    .await?;
    let arriving = progress.phase("deliveries arriving", "deliveries", Some(hooked.total), arrived(arrivals));
    let last = bench::wait_for(arrivals, hooked.total, DRAIN_LIMIT)
        .await
        .map_err(|e| format!("createItem with one webhook: {e} within {} s", DRAIN_LIMIT.as_secs()))?;
    arriving.done();
    let to_last_arrival = last.saturating_duration_since(hooked.started);
    let delivered = arrivals.count.load(Ordering::Relaxed);
    let hooked_rate = hooked.total as f64 / to_last_arrival.as_secs_f64();
    let hooked_cpu = cpu.percent();
    lines.print(format!(
        "createItem, one webhook: {hooked_rate:.0} items/s = {:.1}% of the read rate ({} items, {delivered} \
         deliveries arrived, {:.2} s from the first request to the last arrival){}",
        100.0 * share(hooked_rate),
        hooked.total,
        to_last_arrival.as_secs_f64(),
        cpu_note(hooked_cpu)
    ));

    // 4. createItems in batches, on Ticket again (no webhook).
    settle(&client, addr).await?;
    let batch_clients = BATCH_CLIENTS.min(clients);
    let cpu = CpuMeter::start(pid);
    let batched = drive(
        &client,
        batch_clients,
        WARM_UP,
        (progress, "createItems x 100", "items"),
        move |client, c, n| async move {
            let inputs: Vec<Value> = (0..BATCH).map(|i| item_input("Ticket", format!("batch-{c}-{n}-{i}"))).collect();
            let data = gql(&client, addr, CREATE_ITEMS, json!({"inputs": inputs})).await?;
            match data["createItems"].as_array().map_or(0, Vec::len) {
                BATCH => Ok(BATCH as u64),
                created => Err(format!("createItems returned {created} items for {BATCH} inputs")),
            }
        },
    )
    .await?;
    let batch_rate = batched.window_rate();
    let batch_cpu = cpu.percent();
    lines.print(format!(
        "createItems, batches of {BATCH} by {batch_clients} clients: {batch_rate:.0} items/s = {:.1}% of the read \
         rate{}",
        100.0 * share(batch_rate),
        cpu_note(batch_cpu)
    ));

    // 5. Latency at a steady rate, one matching webhook on its own itemtype, three times.
    gql(&client, addr, "mutation { createItemtype(input: {name: \"BenchLatency\"}) { name } }", json!({})).await?;
    create_webhook(&client, addr, "latency", "BenchLatency", receiver).await?;
    let seconds = args.seconds.unwrap_or(LATENCY_SECONDS);
    let total = args.rate * seconds;
    let (mut runs, mut p99s) = (Vec::new(), Vec::new());
    for run in 1..=LATENCY_RUNS {
        settle(&client, addr).await?;
        reset(arrivals);
        arrivals.track_names.store(true, Ordering::Relaxed);
        let cpu = CpuMeter::start(pid);
        let label = format!("latency run {run} of {LATENCY_RUNS}");
        let arriving = progress.phase(&label, "deliveries", Some(total), arrived(arrivals));
        let answered =
            bench::send_steadily(&client, addr, "BenchLatency", &format!("lat{run}-"), args.rate, total).await?;
        if answered.len() as u64 != total {
            return Err(format!(
                "latency run {run}: {} of {total} createItem calls failed",
                total - answered.len() as u64
            ));
        }
        bench::wait_for(arrivals, total, DRAIN_LIMIT)
            .await
            .map_err(|e| format!("latency run {run}: {e} within {} s", DRAIN_LIMIT.as_secs()))?;
        arriving.done();
        arrivals.track_names.store(false, Ordering::Relaxed);
        let server_cpu = cpu.percent();
        let load = load_average();
        let (from_response, _) = bench::latencies(arrivals, &answered);
        let (p50, p99) = (percentile(&from_response, 0.5), percentile(&from_response, 0.99));
        lines.print(format!(
            "latency at {}/s for {seconds} s, run {run}: mutation response -> arrival p50 {p50:.2} ms, p99 {p99:.2} ms \
             ({} of {total} arrived; load average {}){}",
            args.rate,
            from_response.len(),
            load.map_or_else(|| "unavailable".to_owned(), |l| format!("{l:.2}")),
            cpu_note(server_cpu)
        ));
        runs.push(json!({"p50_ms": p50, "p99_ms": p99, "arrived": from_response.len(), "load_average_1m": load,
                         "server_cpu_percent": server_cpu}));
        p99s.push(p99);
    }
    p99s.sort_by(f64::total_cmp);
    let p99_median = percentile(&p99s, 0.5);
    lines.print(format!("latency p99, median of {LATENCY_RUNS} runs: {p99_median:.2} ms"));

    // 6. What the server used.
    let peak_rss = bench::peak_rss_mib(pid);
    let server_cpu_seconds = bench::cpu_seconds(pid);
    lines.print(format!(
        "server peak memory (VmHWM): {}; server CPU since its start: {}",
        peak_rss.map_or_else(|| "unavailable".to_owned(), |mib| format!("{mib:.1} MiB")),
        server_cpu_seconds.map_or_else(|| "unavailable".to_owned(), |s| format!("{s:.2} s"))
    ));

    let mut table = Table::default();
    let shared = |rate: f64| Some(format!("{:.1}%", 100.0 * share(rate)));
    table.row("read rate", format!("{read_rate:.0}/s"), Some("100%".into()), None);
    table.row("createItem, no webhook", format!("{plain_rate:.0}/s"), shared(plain_rate), Some(">= 50%"));
    table.row("createItem, one webhook", format!("{hooked_rate:.0}/s"), shared(hooked_rate), Some(">= 25%"));
    table.row("createItems x 100", format!("{batch_rate:.0}/s"), shared(batch_rate), Some(">= 20,000/s"));
    table.row(
        &format!("latency p99 at {}/s", args.rate),
        format!("{p99_median:.2} ms"),
        None,
        Some("<= 20 ms (median of 3)"),
    );
    table.row(
        "server peak memory",
        peak_rss.map_or_else(|| "unavailable".to_owned(), |mib| format!("{mib:.1} MiB")),
        None,
        Some("<= 100 MB"),
    );
    lines.print(table.render());

    Ok(json!({
        "database": database,
        "cores": cores,
        "clients": clients,
        "phase_seconds": PHASE.as_secs_f64(),
        "read_rate": read_rate,
        "create_item_no_webhook": plain_rate,
        "create_item_no_webhook_ratio": share(plain_rate),
        "create_item_one_webhook": hooked_rate,
        "create_item_one_webhook_ratio": share(hooked_rate),
        "create_item_one_webhook_items": hooked.total,
        "create_item_one_webhook_deliveries": delivered,
        "create_item_one_webhook_seconds": to_last_arrival.as_secs_f64(),
        "create_items_batch_100": batch_rate,
        "create_items_batch_100_ratio": share(batch_rate),
        "create_items_batch_100_clients": batch_clients,
        "latency_rate": args.rate,
        "latency_seconds": seconds,
        "latency_runs": runs,
        "latency_p99_median_ms": p99_median,
        "peak_rss_mib": peak_rss,
        "server_cpu_seconds": server_cpu_seconds,
        "server_cpu_percent": {
            "read": read_cpu,
            "create_item_no_webhook": plain_cpu,
            "create_item_one_webhook": hooked_cpu,
            "create_items_batch_100": batch_cpu,
        },
    }))
}

/// What a fixed-duration phase did.
struct Driven {
    /// Items whose call finished inside the measured window.
    in_window: u64,
    /// Items of every call, warm-up and stragglers included.
    total: u64,
    /// When the first call was made.
    started: Instant,
}

impl Driven {
    fn window_rate(&self) -> f64 {
        self.in_window as f64 / PHASE.as_secs_f64()
    }
}

/// Runs `clients` loops, each calling `op` again as soon as its previous call has answered,
/// for `warm_up` and then [`PHASE`]; no call starts after that. `op` gets a client, the loop's
/// number and the call's number within the loop, and returns how many items the call handled.
/// `shown`: where its progress is shown, under which label, counting what.
async fn drive<F, Fut>(
    client: &reqwest::Client,
    clients: usize,
    warm_up: Duration,
    shown: (Progress, &str, &'static str),
    op: F,
) -> Result<Driven, String>
where
    F: Fn(reqwest::Client, usize, u64) -> Fut + Copy + Send + 'static,
    Fut: Future<Output = Result<u64, String>> + Send + 'static,
{
    let (progress, label, unit) = shown;
    let counter = Counter::default();
    let phase = progress.phase(label, unit, None, counter.reader());
    let started = Instant::now();
    let window = started + warm_up..started + warm_up + PHASE;
    let mut loops = Vec::with_capacity(clients);
    for c in 0..clients {
        let (client, window, counter) = (client.clone(), window.clone(), counter.clone());
        loops.push(tokio::spawn(async move {
            let (mut in_window, mut total) = (0, 0);
            for n in 0_u64.. {
                if Instant::now() >= window.end {
                    break;
                }
                let items = op(client.clone(), c, n).await?;
                counter.add(items);
                total += items;
                if window.contains(&Instant::now()) {
                    in_window += items;
                }
            }
            Ok::<_, String>((in_window, total))
        }));
    }
    let mut driven = Driven { in_window: 0, total: 0, started };
    for task in loops {
        let (in_window, total) = task.await.map_err(|e| e.to_string())??;
        driven.in_window += in_window;
        driven.total += total;
    }
    phase.done();
    Ok(driven)
}

fn item_input(itemtype: &str, name: String) -> Value {
    json!({"itemtype": itemtype, "entityId": "0", "name": name,
           "fields": {"priority": 3, "status": {"id": 1, "name": "New"}}})
}

async fn create_item(client: &reqwest::Client, addr: SocketAddr, itemtype: &str, name: String) -> Result<u64, String> {
    gql(client, addr, CREATE_ITEM, json!({"input": item_input(itemtype, name)})).await.map(|_| 1)
}

/// One webhook on NEW items of `itemtype`, delivering to the receiver.
async fn create_webhook(
    client: &reqwest::Client,
    addr: SocketAddr,
    name: &str,
    itemtype: &str,
    receiver: SocketAddr,
) -> Result<(), String> {
    let input = json!({"name": name, "entityId": "0", "itemtype": itemtype, "event": "NEW",
                       "url": format!("http://{receiver}/hook")});
    gql(client, addr, CREATE_WEBHOOK, json!({"input": input})).await.map(|_| ())
}

/// Waits until the queue holds nothing pending, sending or retrying, then lets the server rest,
/// so that one phase's leftover work does not slow the next one down.
async fn settle(client: &reqwest::Client, addr: SocketAddr) -> Result<(), String> {
    let deadline = Instant::now() + DRAIN_LIMIT;
    loop {
        let data = gql(client, addr, QUEUE_STATS, json!({})).await?;
        let stats = &data["queueStats"];
        let busy: i64 = ["pending", "sending", "retrying"].iter().filter_map(|&key| stats[key].as_i64()).sum();
        if busy == 0 {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("the queue still holds {busy} deliveries after {} s", DRAIN_LIMIT.as_secs()));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(REST).await;
    Ok(())
}

/// How many deliveries the receiver has had, for a progress bar.
fn arrived(arrivals: &std::sync::Arc<Arrivals>) -> impl Fn() -> u64 + Send + 'static {
    let arrivals = arrivals.clone();
    move || arrivals.count.load(Ordering::Relaxed)
}

/// Forgets the receiver's earlier arrivals, so that the next phase counts only its own.
fn reset(arrivals: &Arrivals) {
    arrivals.count.store(0, Ordering::Relaxed);
    *arrivals.last.lock().unwrap_or_else(|p| p.into_inner()) = None;
    arrivals.named.lock().unwrap_or_else(|p| p.into_inner()).clear();
}

/// The server's CPU use since [`CpuMeter::start`], as a percentage of one core.
struct CpuMeter {
    pid: Option<u32>,
    seconds: Option<f64>,
    at: Instant,
}

impl CpuMeter {
    fn start(pid: Option<u32>) -> Self {
        Self { pid, seconds: bench::cpu_seconds(pid), at: Instant::now() }
    }

    fn percent(&self) -> Option<f64> {
        let used = bench::cpu_seconds(self.pid)? - self.seconds?;
        Some(100.0 * used / self.at.elapsed().as_secs_f64())
    }
}

fn cpu_note(percent: Option<f64>) -> String {
    percent.map(|p| format!(", server CPU {p:.0}% of one core")).unwrap_or_default()
}

/// The 1-minute load average, from /proc/loadavg.
fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg").ok()?.split_whitespace().next()?.parse().ok()
}
