//! Group commit: one task writes for the whole process. Item mutations, claims and attempt
//! outcomes are sent to it as jobs; it runs every job that is waiting in one transaction, each
//! in its own savepoint (a refused job refuses only itself), commits once, lets the queue
//! publish what the batch changed, and only then answers each caller.
//!
//! While a batch commits, the next one gathers, so the busier the server, the larger the
//! batches; an idle writer starts at once (it only yields to let jobs that are ready join).
//! A job must not submit another job (the writer would wait for itself).
//!
//! Jobs of a [`Grouped`] kind that wait together are run as one job, so that their rows go
//! in with one statement per table instead of a few each.

use std::{
    any::{Any, TypeId},
    panic::AssertUnwindSafe,
};

use futures_util::{FutureExt, future::BoxFuture};
use sea_orm::{DatabaseConnection, DatabaseTransaction, DbErr, TransactionTrait};
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

use crate::{
    db::PageBudget,
    error::{AppError, AppResult},
    queue::{Publisher, Staged},
};

/// Most jobs in one transaction.
const MAX_BATCH: usize = 256;
/// Scheduler turns the writer gives waiting jobs to join a batch.
const GATHER_TURNS: usize = 4;
/// Jobs waiting for the writer; callers wait for room beyond this.
const BACKLOG: usize = 4096;

/// Called once the batch that holds a job's write has committed (with the reason when the
/// commit failed). Dropped uncalled when the batch was rolled back: nothing of it was stored.
pub type Completion = Box<dyn FnOnce(Result<(), String>) + Send>;
/// A job: runs in the transaction; `Err(())` means it failed and has already answered.
type Run =
    Box<dyn for<'a> FnOnce(&'a DatabaseTransaction, &'a mut Staged) -> BoxFuture<'a, Result<Completion, ()>> + Send>;

/// A kind of job that is better run many at a time. Each job answers its own caller: at once
/// when it fails, from the returned completion once the batch has committed.
pub trait Grouped: Send + Sized + 'static {
    /// Runs the jobs of one batch together. `Err(())` (every job answered) undoes them all.
    fn apply<'a>(
        txn: &'a DatabaseTransaction,
        staged: &'a mut Staged,
        jobs: Vec<Self>,
    ) -> BoxFuture<'a, Result<Completion, ()>>;
}

/// A grouped job, its kind erased.
type Erased = Box<dyn Any + Send>;
/// Turns the jobs of one grouped kind into one run.
type Grouping = fn(Vec<Erased>) -> Run;

/// Which part of a size-limited SQLite database a job may fill ([`crate::db::PageBudget`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Room {
    /// What clients ask for: items, events and their queued rows.
    Clients,
    /// The queue's own work: claims, outcomes, releases, cleanup.
    Queue,
}

enum Job {
    One(Run, Room),
    Grouped { kind: TypeId, job: Box<dyn Any + Send>, group: Grouping },
}

/// The jobs of one kind as one run.
fn group_of<G: Grouped>(jobs: Vec<Box<dyn Any + Send>>) -> Run {
    let jobs: Vec<G> = jobs.into_iter().filter_map(|job| job.downcast::<G>().ok().map(|job| *job)).collect();
    Box::new(move |txn, staged| G::apply(txn, staged, jobs))
}

/// The batch as runs: each group of grouped jobs (where its first job stood), then the rest in
/// order.
fn runs(batch: Vec<Job>) -> Vec<(Run, Room)> {
    let mut runs: Vec<Option<(Run, Room)>> = Vec::with_capacity(batch.len());
    // Each kind: where its run goes, how its jobs become one run, and the jobs.
    let mut groups: Vec<(TypeId, usize, Grouping, Vec<Erased>)> = Vec::new();
    for job in batch {
        match job {
            Job::One(run, room) => runs.push(Some((run, room))),
            Job::Grouped { kind, job, group } => match groups.iter_mut().find(|(k, ..)| *k == kind) {
                Some((.., jobs)) => jobs.push(job),
                None => {
                    groups.push((kind, runs.len(), group, vec![job]));
                    runs.push(None);
                }
            },
        }
    }
    for (_, at, group, jobs) in groups {
        runs[at] = Some((group(jobs), Room::Clients));
    }
    runs.into_iter().flatten().collect()
}

/// The handle through which every part of the process writes.
///
/// On PostgreSQL it has several lanes, each a batch loop on a connection of its own, so that
/// one batch gathers while another waits for its commit. Lane 0 takes every job but those that
/// never wait for a row another job holds: creates of items with new numbers (they only insert
/// rows nobody else can touch) are spread over every lane but the last
/// ([`Writer::submit_spread`]), and claims (they skip locked rows) have the last lane to
/// themselves ([`Writer::write_claim`]). Only lane 0 ever waits for another lane, so lanes
/// cannot deadlock.
#[derive(Clone)]
pub struct Writer {
    lanes: std::sync::Arc<[mpsc::Sender<Job>]>,
    next_lane: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// The lanes' pool, for [`Writer::close`].
    db: DatabaseConnection,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Writer")
    }
}

impl Writer {
    /// Starts `lanes` batch loops on their own connection pool (of `lanes` connections: on
    /// SQLite one, the database's only writer). They run until every handle is dropped.
    /// `budget`: how much of a size-limited SQLite database client writes may fill, and how
    /// much the queue's own work may.
    pub fn start(
        db: DatabaseConnection,
        lanes: usize,
        publisher: std::sync::Arc<Publisher>,
        budget: Option<PageBudget>,
    ) -> Self {
        let numbers = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let senders: Vec<_> = (0..lanes.max(1))
            .map(|_| {
                let (jobs, rx) = mpsc::channel(BACKLOG);
                tokio::spawn(run(db.clone(), publisher.clone(), numbers.clone(), budget, rx));
                jobs
            })
            .collect();
        Self { lanes: senders.into(), next_lane: Default::default(), db }
    }

    /// Closes the lanes' connections, once the batches that hold one have ended. For a
    /// process that stops: writes submitted afterwards fail.
    pub async fn close(&self) {
        self.db.clone().close().await.ok();
    }

    async fn send(&self, lane: usize, job: Job) -> AppResult<()> {
        self.lanes[lane % self.lanes.len()]
            .send(job)
            .await
            .map_err(|_| AppError::internal("the database writer has stopped"))
    }

    /// Runs `job` in the next batch and returns its result once that batch has committed.
    /// Whatever the job wrote is undone if it returns an error. The job runs in the caller's
    /// current span.
    pub async fn write<T, F>(&self, job: F) -> AppResult<T>
    where
        T: Send + 'static,
        F: for<'a> FnOnce(&'a DatabaseTransaction, &'a mut Staged) -> BoxFuture<'a, AppResult<T>> + Send + 'static,
    {
        self.write_on(0, Room::Clients, job).await
    }

    /// Like [`Writer::write`], for the queue's own work (outcomes, releases, cleanup): it may
    /// also fill the room a size-limited SQLite database keeps for it, so that deliveries go on
    /// when clients have filled the rest.
    pub async fn write_queue<T, F>(&self, job: F) -> AppResult<T>
    where
        T: Send + 'static,
        F: for<'a> FnOnce(&'a DatabaseTransaction, &'a mut Staged) -> BoxFuture<'a, AppResult<T>> + Send + 'static,
    {
        self.write_on(0, Room::Queue, job).await
    }

    /// Like [`Writer::write_queue`], on the claims' own lane (the last one, when there are
    /// several): a claim skips locked rows and never waits, and it does not wait behind item
    /// writes either.
    pub async fn write_claim<T, F>(&self, job: F) -> AppResult<T>
    where
        T: Send + 'static,
        F: for<'a> FnOnce(&'a DatabaseTransaction, &'a mut Staged) -> BoxFuture<'a, AppResult<T>> + Send + 'static,
    {
        self.write_on(self.lanes.len() - 1, Room::Queue, job).await
    }

    /// The lanes creates are spread over: all but the claims' lane.
    fn spread_lane(&self) -> usize {
        let lanes = if self.lanes.len() > 1 { self.lanes.len() - 1 } else { 1 };
        self.next_lane.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % lanes
    }

    async fn write_on<T, F>(&self, lane: usize, room: Room, job: F) -> AppResult<T>
    where
        T: Send + 'static,
        F: for<'a> FnOnce(&'a DatabaseTransaction, &'a mut Staged) -> BoxFuture<'a, AppResult<T>> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel::<AppResult<T>>();
        // The job runs in its caller's span, carried over: the writer's task runs many callers'
        // jobs and is nobody's (what the job logs, and the rows it queues, belong to the caller).
        let span = tracing::Span::current();
        let run: Run = Box::new(move |txn, staged| {
            Box::pin(async move {
                match job(txn, staged).instrument(span).await {
                    Ok(value) => Ok(Box::new(move |committed: Result<(), String>| {
                        let _ = reply.send(committed.map(|()| value).map_err(AppError::not_confirmed));
                    }) as Completion),
                    Err(err) => {
                        let _ = reply.send(Err(err));
                        Err(())
                    }
                }
            })
        });
        self.send(lane, Job::One(run, room)).await?;
        // A job is dropped unanswered only when its batch failed before it ran.
        answer.await.map_err(|_| AppError::not_run())?
    }

    /// Submits a job that runs together with the others of its kind in the batch. It answers
    /// its caller itself.
    pub async fn submit<G: Grouped>(&self, job: G) -> AppResult<()> {
        self.send(0, Job::Grouped { kind: TypeId::of::<G>(), job: Box::new(job), group: group_of::<G> }).await
    }

    /// Like [`Writer::submit`], on any lane: only for jobs that insert new rows and touch no
    /// stored row another job may lock.
    pub async fn submit_spread<G: Grouped>(&self, job: G) -> AppResult<()> {
        self.send(
            self.spread_lane(),
            Job::Grouped { kind: TypeId::of::<G>(), job: Box::new(job), group: group_of::<G> },
        )
        .await
    }
}

async fn run(
    db: DatabaseConnection,
    publisher: std::sync::Arc<Publisher>,
    numbers: std::sync::Arc<std::sync::atomic::AtomicU64>,
    budget: Option<PageBudget>,
    mut jobs: mpsc::Receiver<Job>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = jobs.recv().await {
        let number = numbers.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        batch.push(first);
        // Let the tasks that are ready submit their jobs too, for as long as more keep coming
        // (a few scheduler turns at most: an idle writer starts at once).
        for _ in 0..GATHER_TURNS {
            tokio::task::yield_now().await;
            let before = batch.len();
            while batch.len() < MAX_BATCH {
                match jobs.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            if batch.len() == before || batch.len() == MAX_BATCH {
                break;
            }
        }
        let (jobs, started) = (batch.len(), std::time::Instant::now());
        let result = commit(&db, &publisher, number, budget, runs(std::mem::take(&mut batch))).await;
        publisher.metrics().write(jobs, started.elapsed());
        if let Err(err) = result {
            tracing::error!(?err, "a write batch failed; its callers were told");
        }
    }
}

/// Runs a batch in one transaction and answers its callers.
async fn commit(
    db: &DatabaseConnection,
    publisher: &Publisher,
    number: u64,
    budget: Option<PageBudget>,
    batch: Vec<(Run, Room)>,
) -> Result<(), DbErr> {
    // Dropping the jobs (on an error before they ran) tells their callers.
    let txn = crate::db::begin_write(db).await?;
    let alone = batch.len() == 1;
    let unheard = !publisher.heard(db);
    let mut staged = Staged::new(number).unheard(unheard);
    let mut done = Vec::with_capacity(batch.len());
    // The page limit the connection holds now (unknown at first: the last batch set one).
    let mut limit = None;
    for (job, room) in batch {
        if let Some(budget) = budget {
            let pages = if room == Room::Queue { budget.queue } else { budget.clients };
            if limit != Some(pages) {
                crate::db::limit_pages(&txn, pages).await?;
                limit = Some(pages);
            }
        }
        let mut own = Staged::with_budget(number, budget).unheard(unheard);
        if alone {
            // No savepoint: the job's failure is the transaction's.
            match AssertUnwindSafe(job(&txn, &mut own)).catch_unwind().await {
                Ok(Ok(completion)) => {
                    staged.absorb(own);
                    done.push(completion);
                }
                Ok(Err(())) => return txn.rollback().await,
                Err(_) => {
                    tracing::error!("a write job panicked");
                    return txn.rollback().await;
                }
            }
            continue;
        }
        let savepoint = txn.begin().await?;
        let kept = match AssertUnwindSafe(job(&savepoint, &mut own)).catch_unwind().await {
            Ok(Ok(completion)) => match savepoint.commit().await {
                Ok(()) => {
                    staged.absorb(own);
                    done.push(completion);
                    true
                }
                Err(err) => {
                    completion(Err(format!("cannot release a savepoint: {err}")));
                    false
                }
            },
            Ok(Err(())) => {
                savepoint.rollback().await?;
                false
            }
            Err(_) => {
                tracing::error!("a write job panicked");
                savepoint.rollback().await?;
                false
            }
        };
        // A refused job may have ended the whole transaction ([`crate::db::still_open`]): then
        // nothing of the batch is stored. Its callers learn so from their dropped answers, the
        // jobs not yet run are not run, and nothing more is written in what would otherwise be
        // a new transaction.
        if !kept && !crate::db::still_open(&txn).await {
            return Err(DbErr::Custom(
                "the database ended the transaction on a refused write; nothing was stored".into(),
            ));
        }
    }
    let announced = publisher.before_commit(&txn, &staged).await;
    let committed = match announced {
        Ok(()) => txn.commit().await,
        Err(err) => {
            txn.rollback().await.ok();
            Err(DbErr::Custom(format!("{err:?}")))
        }
    };
    match committed {
        Ok(()) => {
            publisher.after_commit(staged);
            for completion in done {
                completion(Ok(()));
            }
            Ok(())
        }
        Err(err) => {
            for completion in done {
                completion(Err(format!("the transaction did not commit: {err}")));
            }
            Err(err)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection};

    use super::Writer;
    use crate::{
        error::AppResult,
        metrics::Metrics,
        queue::{Queue, QueueBus},
    };

    /// A SQLite database of one connection, holding a table `t` and no more than two pages
    /// beyond it.
    async fn nearly_full(dir: &std::path::Path) -> DatabaseConnection {
        let mut options = ConnectOptions::new(format!("sqlite://{}?mode=rwc", dir.join("writer.db").display()));
        options.max_connections(1).min_connections(1).sqlx_logging(false);
        let db = Database::connect(options).await.expect("the database opens");
        db.execute_unprepared("CREATE TABLE t (id INTEGER PRIMARY KEY, body BLOB NOT NULL)").await.expect("the table");
        let pages = db.query_one_raw(sea_orm::Statement::from_string(db.get_database_backend(), "PRAGMA page_count"));
        let pages: i64 = pages.await.expect("the page count").expect("a row").try_get_by_index(0).expect("a number");
        crate::db::limit_pages(&db, pages as u64 + 2).await.expect("the limit");
        db
    }

    fn writer(db: &DatabaseConnection) -> Writer {
        let metrics = Metrics::new(&Default::default());
        let bus = Arc::new(QueueBus::new(16, 100, metrics.subscription_messages.clone()));
        Writer::start(db.clone(), 1, Queue::publisher(db, bus, metrics), None)
    }

    async fn insert(writer: &Writer, bytes: usize) -> AppResult<()> {
        writer
            .write(move |txn, _| {
                Box::pin(async move {
                    let sql = format!("INSERT INTO t (body) VALUES (zeroblob({bytes}))");
                    txn.execute_unprepared(&sql).await?;
                    Ok(())
                })
            })
            .await
    }

    async fn rows(db: &DatabaseConnection) -> i64 {
        crate::db::count_rows(db, "t").await
    }

    /// A single-row insert that finds the database full makes SQLite end the whole
    /// transaction, not only the statement: the writes before it in the batch are gone, and
    /// their callers must not hear that they were stored.
    #[tokio::test]
    async fn a_batch_the_database_rolled_back_answers_no_write_as_stored() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let db = nearly_full(dir.path()).await;
        let writer = writer(&db);
        // Both are sent before the writer runs, so they share one batch: the small one first.
        let (small, big) = tokio::join!(insert(&writer, 16), insert(&writer, 1 << 20));
        let full = big.expect_err("a megabyte does not fit in two pages");
        assert!(full.message().starts_with("the database is full"), "{}", full.message());
        let stored = rows(&db).await;
        assert_eq!(small.is_ok(), stored == 1, "answered {small:?} with {stored} rows stored");
        assert_eq!(stored, 0, "the database ended the batch's transaction");
        // The writer goes on: the next batch begins a transaction of its own and commits.
        insert(&writer, 16).await.expect("a small write fits");
        assert_eq!(rows(&db).await, 1);
    }
}
