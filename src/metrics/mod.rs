//! Prometheus metrics: the series `GET /metrics` shows (README, "Metrics"), counted where things
//! happen and rendered in the Prometheus text format (0.0.4) by `metrics-exporter-prometheus`.
//!
//! Each application has its own recorder, built with it and handed to the parts that count
//! (nothing process-global: two servers in one test process count apart). Handles are
//! registered once and kept, so that counting on the hot paths is an atomic add: the fixed
//! label sets at start (at zero, so that a rate has a start), the others (an itemtype, an
//! HTTP route and status, a webhook) the first time they occur.
//!
//! The queue's rows by status and the age of the oldest due row are read from the database at
//! each scrape ([`crate::queue::stats::figures`]), so every process shows the same figures and
//! nothing keeps a second copy.

mod names;

use std::{
    collections::HashMap,
    sync::{Arc, OnceLock, RwLock},
    time::Duration,
};

use ::metrics::{Counter, Gauge, Histogram, Key, Label, Level, Metadata, Recorder, Unit};
use async_graphql::parser::types::OperationType;
use entity::queued_webhooks::QueueStatus;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use secrecy::SecretString;

pub use names::*;

use crate::{
    config::MetricsConfig,
    domain::{
        outcome::{AttemptClass, Decision},
        webhook::WebhookEvent,
    },
    queue::stats::Figures,
};

static METADATA: Metadata<'static> = Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

/// Buckets of `hookline_attempt_duration_seconds`: 5 ms to the longest attempt (four requests
/// within the default 10 s timeout).
const ATTEMPT_BUCKETS: [f64; 13] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0];
/// Buckets of `hookline_delivery_latency_seconds`: 10 ms to a day (retries take hours).
const LATENCY_BUCKETS: [f64; 19] = [
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 21600.0,
    86400.0,
];

/// Buckets of `hookline_write_duration_seconds`: half a millisecond to a few seconds.
const WRITE_BUCKETS: [f64; 12] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];
/// Buckets of `hookline_write_jobs`: one to a full batch (256).
const WRITE_JOB_BUCKETS: [f64; 9] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

/// The outcomes, in the order of [`Decision::index`].
const OUTCOMES: [&str; 3] = ["sent", "retry", "failed"];
const EVENTS: [WebhookEvent; 5] =
    [WebhookEvent::New, WebhookEvent::Update, WebhookEvent::Delete, WebhookEvent::Restore, WebhookEvent::Purge];
const STATUSES: [QueueStatus; 6] = [
    QueueStatus::Pending,
    QueueStatus::Sending,
    QueueStatus::Sent,
    QueueStatus::Retrying,
    QueueStatus::Failed,
    QueueStatus::Cancelled,
];

/// A counter per result: `ok` and `error`.
#[derive(Debug, Clone)]
pub struct Results {
    ok: Counter,
    error: Counter,
}

impl Results {
    pub fn count(&self, ok: bool) {
        if ok { &self.ok } else { &self.error }.increment(1);
    }
}

/// `hookline_subscription_messages_total`: what the queue bus did with the changes meant for a
/// `queueUpdates` subscriber.
#[derive(Debug, Clone)]
pub struct SubscriptionMessages {
    pub sent: Counter,
    pub missed: Counter,
}

/// The attempt and latency series of all webhooks, or of one.
struct AttemptSeries {
    /// `webhook_id`, or nothing.
    labels: Vec<Label>,
    /// By outcome and class.
    attempts: [[OnceLock<Counter>; 7]; 3],
    durations: [OnceLock<Histogram>; 7],
    latency: OnceLock<Histogram>,
}

impl AttemptSeries {
    fn new(labels: Vec<Label>) -> Self {
        Self { labels, attempts: Default::default(), durations: Default::default(), latency: OnceLock::new() }
    }

    fn with(&self, more: &[(&'static str, &'static str)]) -> Vec<Label> {
        let mut labels = self.labels.clone();
        labels.extend(more.iter().map(|&(key, value)| Label::new(key, value)));
        labels
    }

    fn attempts(&self, recorder: &PrometheusRecorder, outcome: usize, class: AttemptClass) -> &Counter {
        self.attempts[outcome][class.index()].get_or_init(|| {
            let labels = self.with(&[("outcome", OUTCOMES[outcome]), ("class", class.as_str())]);
            recorder.register_counter(&Key::from_parts(ATTEMPTS, labels), &METADATA)
        })
    }

    fn duration(&self, recorder: &PrometheusRecorder, class: AttemptClass) -> &Histogram {
        self.durations[class.index()].get_or_init(|| {
            let labels = self.with(&[("class", class.as_str())]);
            recorder.register_histogram(&Key::from_parts(ATTEMPT_DURATION, labels), &METADATA)
        })
    }

    fn latency(&self, recorder: &PrometheusRecorder) -> &Histogram {
        self.latency.get_or_init(|| {
            recorder.register_histogram(&Key::from_parts(DELIVERY_LATENCY, self.labels.clone()), &METADATA)
        })
    }
}

/// One application's metrics: the recorder, its registered handles, and what `GET /metrics`
/// needs to answer.
pub struct Metrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    /// The bearer token a scrape must carry, when configured.
    pub token: Option<SecretString>,
    per_webhook: bool,
    process: metrics_process::Collector,
    /// `hookline_events_total` by itemtype, then event.
    events: RwLock<HashMap<String, Arc<[OnceLock<Counter>; 5]>>>,
    queued: Counter,
    /// Every webhook's attempts (without `HOOKLINE_METRICS_PER_WEBHOOK`).
    attempts: AttemptSeries,
    /// Each webhook's (with it).
    by_webhook: RwLock<HashMap<i64, Arc<AttemptSeries>>>,
    pub sends_in_flight: Gauge,
    pub sends_waiting_for_host: Gauge,
    subscribers: Gauge,
    queue_rows: [Gauge; 6],
    oldest_due_age: Gauge,
    pub subscription_messages: SubscriptionMessages,
    pub oauth_token_requests: Results,
    pub cra_challenges: Results,
    /// By operation type (query, mutation, subscription), then ok / error.
    graphql: [Results; 3],
    /// `hookline_http_requests_total` by route, then status.
    http: RwLock<HashMap<String, HashMap<u16, Counter>>>,
    write_duration: Histogram,
    write_jobs: Histogram,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").field("per_webhook", &self.per_webhook).finish_non_exhaustive()
    }
}

impl Metrics {
    pub fn new(config: &MetricsConfig) -> Arc<Self> {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(ATTEMPT_DURATION.into()), &ATTEMPT_BUCKETS)
            .and_then(|b| b.set_buckets_for_metric(Matcher::Full(DELIVERY_LATENCY.into()), &LATENCY_BUCKETS))
            .and_then(|b| b.set_buckets_for_metric(Matcher::Full(WRITE_DURATION.into()), &WRITE_BUCKETS))
            .and_then(|b| b.set_buckets_for_metric(Matcher::Full(WRITE_JOBS.into()), &WRITE_JOB_BUCKETS));
        let recorder = match builder {
            Ok(builder) => builder.build_recorder(),
            // Only empty bucket lists are refused, and these are not.
            Err(_) => unreachable!("the bucket lists are not empty"),
        };
        let handle = recorder.handle();
        describe(&recorder);
        let process = metrics_process::Collector::default();
        ::metrics::with_local_recorder(&recorder, || process.describe());
        let counter = |name: &'static str, labels: &[(&'static str, &'static str)]| {
            let labels: Vec<Label> = labels.iter().map(|&(k, v)| Label::new(k, v)).collect();
            recorder.register_counter(&Key::from_parts(name, labels), &METADATA)
        };
        let results = |name: &'static str, more: &[(&'static str, &'static str)]| Results {
            ok: counter(name, &[more, &[("result", "ok")]].concat()),
            error: counter(name, &[more, &[("result", "error")]].concat()),
        };
        let gauge =
            |name: &'static str, labels: Vec<Label>| recorder.register_gauge(&Key::from_parts(name, labels), &METADATA);
        let graphql = ["query", "mutation", "subscription"].map(|ty| Results {
            ok: counter(GRAPHQL_OPERATIONS, &[("type", ty), ("outcome", "ok")]),
            error: counter(GRAPHQL_OPERATIONS, &[("type", ty), ("outcome", "error")]),
        });
        let metrics = Self {
            token: config.token.clone(),
            per_webhook: config.per_webhook,
            process,
            events: RwLock::default(),
            queued: counter(QUEUED, &[]),
            attempts: AttemptSeries::new(Vec::new()),
            by_webhook: RwLock::default(),
            sends_in_flight: gauge(SENDS_IN_FLIGHT, Vec::new()),
            sends_waiting_for_host: gauge(SENDS_WAITING_FOR_HOST, Vec::new()),
            subscribers: gauge(SUBSCRIBERS, Vec::new()),
            queue_rows: STATUSES.map(|status| gauge(QUEUE_ROWS, vec![Label::new("status", status.as_str())])),
            oldest_due_age: gauge(QUEUE_OLDEST_DUE_AGE, Vec::new()),
            subscription_messages: SubscriptionMessages {
                sent: counter(SUBSCRIPTION_MESSAGES, &[("result", "sent")]),
                missed: counter(SUBSCRIPTION_MESSAGES, &[("result", "missed")]),
            },
            oauth_token_requests: results(OAUTH_TOKEN_REQUESTS, &[]),
            cra_challenges: results(CRA_CHALLENGES, &[]),
            graphql,
            http: RwLock::default(),
            write_duration: recorder.register_histogram(&Key::from_name(WRITE_DURATION), &METADATA),
            write_jobs: recorder.register_histogram(&Key::from_name(WRITE_JOBS), &METADATA),
            recorder,
            handle,
        };
        if !metrics.per_webhook {
            // The outcomes an attempt can have, at zero: sent after a 2xx, retried or failed
            // after anything else.
            for class in AttemptClass::ALL {
                let outcomes: &[usize] = if class == AttemptClass::Status2xx { &[0] } else { &[1, 2] };
                for &outcome in outcomes {
                    let _ = metrics.attempts.attempts(&metrics.recorder, outcome, class);
                }
            }
        }
        Arc::new(metrics)
    }

    /// The counter of events of this itemtype and kind, to be incremented once the event's
    /// transaction commits.
    pub fn event(&self, itemtype: &str, event: WebhookEvent) -> Counter {
        let index = EVENTS.iter().position(|e| *e == event).unwrap_or_default();
        let known = self.events.read().unwrap_or_else(|p| p.into_inner()).get(itemtype).cloned();
        let cells = match known {
            Some(cells) => cells,
            None => {
                let mut events = self.events.write().unwrap_or_else(|p| p.into_inner());
                events.entry(itemtype.to_owned()).or_default().clone()
            }
        };
        cells[index]
            .get_or_init(|| {
                let labels = vec![Label::new("itemtype", itemtype.to_owned()), Label::new("event", event.as_str())];
                self.recorder.register_counter(&Key::from_parts(EVENTS_RAISED, labels), &METADATA)
            })
            .clone()
    }

    /// What a committed write did: `queued` rows created, and its events.
    pub fn committed(&self, queued: usize, events: &[Counter]) {
        if queued > 0 {
            self.queued.increment(queued as u64);
        }
        for event in events {
            event.increment(1);
        }
    }

    /// One transaction of the writer: how many jobs it ran and how long it took.
    pub fn write(&self, jobs: usize, took: Duration) {
        self.write_jobs.record(jobs as f64);
        self.write_duration.record(took.as_secs_f64());
    }

    /// One attempt made to a webhook's target: its outcome and class, the time its requests
    /// took, and, when it delivered, the time since its event (`latency`).
    pub fn attempt(
        &self,
        webhook_id: i64,
        decision: &Decision,
        class: AttemptClass,
        took: Duration,
        latency: Option<Duration>,
    ) {
        let own;
        let series = if self.per_webhook {
            own = self.webhook(webhook_id);
            &*own
        } else {
            &self.attempts
        };
        series.attempts(&self.recorder, decision.index(), class).increment(1);
        series.duration(&self.recorder, class).record(took.as_secs_f64());
        if let Some(latency) = latency {
            series.latency(&self.recorder).record(latency.as_secs_f64());
        }
    }

    fn webhook(&self, webhook_id: i64) -> Arc<AttemptSeries> {
        if let Some(series) = self.by_webhook.read().unwrap_or_else(|p| p.into_inner()).get(&webhook_id) {
            return series.clone();
        }
        let mut by_webhook = self.by_webhook.write().unwrap_or_else(|p| p.into_inner());
        by_webhook
            .entry(webhook_id)
            .or_insert_with(|| Arc::new(AttemptSeries::new(vec![Label::new("webhook_id", webhook_id.to_string())])))
            .clone()
    }

    /// One GraphQL operation and whether it answered without errors.
    pub fn graphql_operation(&self, ty: OperationType, ok: bool) {
        let index = match ty {
            OperationType::Query => 0,
            OperationType::Mutation => 1,
            OperationType::Subscription => 2,
        };
        self.graphql[index].count(ok);
    }

    /// One HTTP request answered: its route's template (`/graphql`, not the path asked for;
    /// [`UNMATCHED_ROUTE`] when no route matched) and its status.
    pub fn http_request(&self, route: &str, status: u16) {
        let counter = self
            .http
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(route)
            .and_then(|statuses| statuses.get(&status).cloned());
        let counter = counter.unwrap_or_else(|| {
            let mut http = self.http.write().unwrap_or_else(|p| p.into_inner());
            http.entry(route.to_owned())
                .or_default()
                .entry(status)
                .or_insert_with(|| {
                    let labels = vec![Label::new("route", route.to_owned()), Label::new("status", status.to_string())];
                    self.recorder.register_counter(&Key::from_parts(HTTP_REQUESTS, labels), &METADATA)
                })
                .clone()
        });
        counter.increment(1);
    }

    /// A gauge raised while the guard lives (an attempt waiting for its host, one in flight).
    pub fn hold(gauge: &Gauge) -> Held {
        gauge.increment(1.0);
        Held(gauge.clone())
    }

    /// The text of a scrape: the figures read for it, the process's, and everything counted.
    pub fn render(&self, queue: Option<&Figures>, subscribers: usize) -> String {
        if let Some(figures) = queue {
            for (gauge, status) in self.queue_rows.iter().zip(STATUSES) {
                gauge.set(figures.rows(status) as f64);
            }
            self.oldest_due_age.set(figures.oldest_due_age.map_or(0.0, |age| age.as_secs_f64()));
        }
        self.subscribers.set(subscribers as f64);
        ::metrics::with_local_recorder(&self.recorder, || self.process.collect());
        self.handle.render()
    }

    /// Moves recorded histogram values into their buckets: what a scrape does, run between
    /// scrapes too so that values do not pile up when nobody scrapes.
    pub fn upkeep(&self) {
        self.handle.run_upkeep();
    }

    /// Runs [`Self::upkeep`] every few seconds until `shutdown`.
    pub async fn keep_up(self: Arc<Self>, shutdown: tokio_util::sync::CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => self.upkeep(),
            }
        }
    }
}

/// A raised gauge, lowered when dropped.
pub struct Held(Gauge);

impl Drop for Held {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

/// The HELP line and unit of every series of hookline's own.
fn describe(recorder: &PrometheusRecorder) {
    for (name, unit, help) in names::DESCRIPTIONS {
        let unit = unit.then_some(Unit::Seconds);
        match name {
            ATTEMPT_DURATION | DELIVERY_LATENCY | WRITE_DURATION | WRITE_JOBS => {
                recorder.describe_histogram(name.into(), unit, help.into())
            }
            _ if name.ends_with("_total") => recorder.describe_counter(name.into(), unit, help.into()),
            _ => recorder.describe_gauge(name.into(), unit, help.into()),
        }
    }
}
