//! The producer's loops: generate a batch every `interval`, pick up pending
//! tasks nobody dispatches, recover running tasks past `task_timeout`, and
//! stop gracefully.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use faafo_common::api_client::{ApiError, ListQuery};
use faafo_common::fractal::{Fractal, FractalStatus, NewFractal};
use faafo_common::messaging::{RpcClient, new_request_id};
use faafo_common::shutdown::Shutdown;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::api::ResilientApi;
use crate::dispatcher::{Claim, Dispatcher, GIVE_BACK_TIMEOUT, GIVEN_UP_CAST_TIMEOUT, Outcome};
use crate::generator::TaskGenerator;
use crate::kept_results::KeptOutcome;
use crate::settings::ProducerSettings;

/// What a one-shot run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchReport {
    /// Tasks rendered and stored.
    pub done: usize,
    /// Tasks marked failed.
    pub failed: usize,
    /// Tasks deleted or abandoned before the end.
    pub other: usize,
}

impl BatchReport {
    /// Whether every task is done.
    pub fn all_done(&self) -> bool {
        self.failed == 0 && self.other == 0
    }
}

/// Generates tasks and sees each one through to `done` or `failed`.
pub struct Producer {
    api: ResilientApi,
    dispatcher: Arc<Dispatcher>,
    settings: ProducerSettings,
    shutdown: Shutdown,
    tasks: TaskTracker,
    /// The tasks whose results an earlier stop kept, claimed until they
    /// are stored (or dropped): recovery must not dispatch them again.
    kept_claims: std::sync::Mutex<HashMap<String, Claim>>,
}

/// What one pass over the kept results did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct KeptReport {
    delivered: usize,
    dropped: usize,
    elsewhere: usize,
    waiting: usize,
}

/// Longest wait between two offers of kept results to an API that does
/// not take them (a broken API host answering 500 to each: not every
/// poll).
const KEPT_RETRY_MAX: Duration = Duration::from_secs(60);

/// How long a stop waits, past the give-backs, for the results the API has
/// not taken to be kept on disk.
const KEEP_TIMEOUT: Duration = Duration::from_secs(15);

impl Producer {
    /// A producer recording in `api`, calling workers with `rpc`, stopping
    /// when `shutdown` triggers.
    pub fn new(
        api: ResilientApi,
        rpc: RpcClient,
        settings: ProducerSettings,
        shutdown: Shutdown,
    ) -> Self {
        let dispatcher = Dispatcher::new(api.clone(), rpc, settings.clone(), shutdown.clone());
        Self {
            api,
            dispatcher,
            settings,
            shutdown,
            tasks: TaskTracker::new(),
            kept_claims: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// The dispatcher (for its counters).
    pub fn dispatcher(&self) -> &Arc<Dispatcher> {
        &self.dispatcher
    }

    /// Runs until shutdown: batches every `interval`, pending tasks picked up
    /// every `poll_interval`, running tasks past `task_timeout` every
    /// `recovery_interval`. On shutdown, waits up to `shutdown_grace` for
    /// the calls in flight.
    pub async fn run(&self) {
        info!(
            "producer started: a batch of {}-{} task(s) every {:?}, {} call(s) in flight at most",
            self.settings.tasks.a,
            self.settings.tasks.b,
            self.settings.interval,
            self.settings.max_in_flight
        );
        self.serve(true).await;
    }

    /// Runs until shutdown as [`Producer::run`] does, but generates nothing:
    /// it dispatches the tasks others create (`faafo create`, the API) and
    /// recovers the ones left behind (`faafo up --no-producer`).
    pub async fn dispatch_only(&self) {
        info!(
            "producer started without generating: dispatching the pending tasks, {} call(s) in flight at most",
            self.settings.max_in_flight
        );
        self.serve(false).await;
    }

    async fn serve(&self, generate: bool) {
        // Results an earlier stop kept (the API away then): stored first,
        // so that their tasks are found done; claimed while they wait, so
        // that no scan dispatches them again; offered again, with a
        // growing pause, while the API does not take them.
        let mut kept_waiting = self.deliver_kept_results_until_stop().await;
        let mut kept_pause = self.settings.poll_interval;
        let mut kept_next = tokio::time::Instant::now() + kept_pause;
        // What a previous producer left behind: its calls died with it.
        // Looked for again at each poll until the API answers (it may not
        // be up yet when this producer starts).
        let mut recovered = self.recover(None).await;
        let mut generator = TaskGenerator::for_settings(&self.settings);
        let mut batch = tokio::time::interval(self.settings.interval);
        let mut poll = tokio::time::interval(self.settings.poll_interval);
        let mut recovery = tokio::time::interval(self.settings.recovery_interval);
        batch.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        recovery.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        recovery.tick().await;
        loop {
            tokio::select! {
                _ = self.shutdown.wait() => break,
                _ = batch.tick(), if generate => {
                    // Bounded, as the scans are: while the API or the
                    // workers cannot keep up, batches are skipped rather
                    // than piled up in memory (nothing is lost: a skipped
                    // batch was never created).
                    let waiting = self.dispatching();
                    if waiting >= self.backlog_limit() {
                        warn!("{waiting} task(s) in flight or waiting: skipping this batch until they move");
                    } else {
                        let tasks = self.batch(&mut generator);
                        self.submit(tasks).await;
                    }
                }
                _ = poll.tick() => {
                    if kept_waiting && tokio::time::Instant::now() >= kept_next {
                        kept_waiting = self.deliver_kept_results_until_stop().await;
                        kept_pause = if kept_waiting {
                            (kept_pause * 2).min(KEPT_RETRY_MAX)
                        } else {
                            self.settings.poll_interval
                        };
                        kept_next = tokio::time::Instant::now() + kept_pause;
                    }
                    if recovered {
                        self.pick_up_pending().await;
                    } else {
                        recovered = self.recover(None).await;
                    }
                }
                _ = recovery.tick() => {
                    self.recover(Some(self.settings.task_timeout)).await;
                }
            }
        }
        self.drain().await;
    }

    /// [`Self::deliver_kept_results`], ended by a stop (an API that takes
    /// connections and never answers holds an offer for a minute: not the
    /// stop); whether some still wait.
    async fn deliver_kept_results_until_stop(&self) -> bool {
        tokio::select! {
            waiting = self.deliver_kept_results() => waiting,
            () = self.shutdown.wait() => true,
        }
    }

    /// Offers the results kept by an earlier stop to the API (see
    /// [`crate::kept_results`]), their tasks claimed until they are stored
    /// or dropped; whether some still wait for the API. A pass ends at the
    /// first the API cannot take (the rest wait too: one request's time,
    /// not one for each).
    async fn deliver_kept_results(&self) -> bool {
        let Some(kept) = self.dispatcher.kept_results() else {
            return false;
        };
        let uuids = kept.list().await;
        if uuids.is_empty() {
            return false;
        }
        {
            let mut claims = self.kept_claims.lock().unwrap_or_else(|p| p.into_inner());
            // Kept files gone meanwhile (removed by hand, delivered by
            // another process sharing the directory): their tasks free.
            claims.retain(|uuid, _| uuids.contains(uuid));
            for uuid in &uuids {
                if !claims.contains_key(uuid)
                    // None: a dispatch of this process holds it (its
                    // result and the kept one are the same render's).
                    && let Some(claim) = self.dispatcher.claim(uuid)
                {
                    claims.insert(uuid.clone(), claim);
                }
            }
        }
        let release = |uuid: &str| {
            self.kept_claims
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(uuid);
        };
        let mut report = KeptReport::default();
        let mut reason = String::new();
        for (index, uuid) in uuids.iter().enumerate() {
            match kept.deliver(self.api.client(), uuid).await {
                KeptOutcome::Delivered => report.delivered += 1,
                KeptOutcome::Dropped => report.dropped += 1,
                KeptOutcome::Elsewhere => report.elsewhere += 1,
                KeptOutcome::Waiting(why) => {
                    report.waiting = uuids.len() - index;
                    reason = why;
                    break;
                }
            }
            release(uuid);
        }
        if report != KeptReport::default() {
            let waiting = if report.waiting > 0 {
                format!(", {} waiting for the API ({reason})", report.waiting)
            } else {
                String::new()
            };
            let elsewhere = if report.elsewhere > 0 {
                format!(", {} of another API left alone", report.elsewhere)
            } else {
                String::new()
            };
            info!(
                "results kept by an earlier stop in {}: {} stored, {} dropped{elsewhere}{waiting}",
                kept.dir().display(),
                report.delivered,
                report.dropped
            );
        }
        report.waiting > 0
    }

    /// Submits one batch and waits until each task is done or failed.
    pub async fn one_shot(&self, tasks: Vec<NewFractal>) -> BatchReport {
        self.deliver_kept_results().await;
        let handles = self.submit(tasks).await;
        // Side by side: a task in another producer's hands is watched for
        // up to task_timeout before it is taken back, and one such watch
        // must not start only once the one before it has ended.
        let outcomes = futures_util::future::join_all(handles.into_iter().map(|handle| async {
            match handle.await {
                // Another producer took it over: its end is theirs to
                // bring, and this batch's to wait for.
                Ok(Outcome::TakenOver(uuid)) => self.final_outcome(&uuid).await,
                Ok(outcome) => outcome,
                Err(_) => Outcome::Abandoned,
            }
        }))
        .await;
        let mut report = BatchReport::default();
        for outcome in outcomes {
            match outcome {
                Outcome::Done => report.done += 1,
                Outcome::Failed(_) => report.failed += 1,
                _ => report.other += 1,
            }
        }
        report
    }

    /// How task `uuid`, in other hands, ends: read every `poll_interval`
    /// until it is done, failed or deleted (or the producer stops). A task
    /// nobody moves on (pending again, or unchanged for `task_timeout`:
    /// the other producer died or stopped) is taken back and dispatched,
    /// as a running producer's scans would: a one-shot batch has none.
    async fn final_outcome(&self, uuid: &str) -> Outcome {
        info!("task {uuid} is in another producer's hands: waiting for it to end");
        // The state last read, and since when it has not changed.
        let mut seen: Option<(Fractal, tokio::time::Instant)> = None;
        loop {
            let read = tokio::select! {
                read = self.api.get("reading a task taken over", uuid) => read,
                _ = self.shutdown.wait() => return Outcome::Abandoned,
            };
            let fractal = match read {
                Ok(fractal) => fractal,
                Err(_) => return Outcome::Gone,
            };
            match fractal.status {
                FractalStatus::Done => return Outcome::Done,
                FractalStatus::Failed => {
                    return Outcome::Failed(fractal.error.unwrap_or_default());
                }
                FractalStatus::Pending | FractalStatus::Running => {}
            }
            let since = match &seen {
                Some((last, since)) if last.is_same_state(&fractal) => *since,
                _ => tokio::time::Instant::now(),
            };
            seen = Some((fractal.clone(), since));
            let stalled = fractal.status == FractalStatus::Pending
                || since.elapsed() >= self.settings.task_timeout;
            if stalled && let Some(claim) = self.dispatcher.claim(uuid) {
                info!("task {uuid} is moving on in nobody's hands: taking it back");
                // Among this producer's tasks, as every dispatch is: a stop
                // past its grace gives its call up and its attempt back
                // (give_up_in_flight), where this future is merely dropped.
                let dispatcher = self.dispatcher.clone();
                let taken_back = self
                    .tasks
                    .spawn(async move { dispatcher.dispatch(fractal, claim).await });
                match taken_back.await {
                    // Taken by somebody again (or changed meanwhile):
                    // wait for it anew.
                    Ok(Outcome::TakenOver(_) | Outcome::Gone) => seen = None,
                    Ok(outcome) => return outcome,
                    Err(_) => return Outcome::Abandoned,
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(self.settings.poll_interval) => {}
                _ = self.shutdown.wait() => return Outcome::Abandoned,
            }
        }
    }

    /// Generates a batch of the configured size and submits it.
    pub async fn one_batch(&self) -> BatchReport {
        let mut generator = TaskGenerator::for_settings(&self.settings);
        let tasks = self.batch(&mut generator);
        self.one_shot(tasks).await
    }

    /// One batch of randint(min_tasks, max_tasks) generated tasks.
    fn batch(&self, generator: &mut TaskGenerator) -> Vec<NewFractal> {
        let n = generator.batch_size(&self.settings);
        (0..n).map(|_| generator.task(&self.settings)).collect()
    }

    /// Creates each task in the API as a dispatch slot frees, and
    /// dispatches it.
    async fn submit(&self, tasks: Vec<NewFractal>) -> Vec<tokio::task::JoinHandle<Outcome>> {
        info!("generating {} task(s)", tasks.len());
        let mut handles = Vec::with_capacity(tasks.len());
        for new in tasks {
            let uuid = new
                .uuid
                .clone()
                .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
            let new = NewFractal {
                uuid: Some(uuid.clone()),
                ..new
            };
            // Claimed before it exists, so the pending scan leaves it alone.
            let Some(claim) = self.dispatcher.claim(&uuid) else {
                continue;
            };
            info!(
                "generated task: {{'uuid': '{uuid}', 'width': {}, 'height': {}, 'iterations': {}, 'xa': {}, 'xb': {}, 'ya': {}, 'yb': {}}}",
                new.width, new.height, new.iterations, new.xa, new.xb, new.ya, new.yb
            );
            let (api, dispatcher, shutdown) = (
                self.api.clone(),
                self.dispatcher.clone(),
                self.shutdown.clone(),
            );
            handles.push(self.tasks.spawn(async move {
                // Created when a dispatch slot is free, already running:
                // one request instead of a POST and a PUT, and no task
                // sits in the API as running while it waits here.
                let Some(slot) = dispatcher.slot().await else {
                    return Outcome::Abandoned;
                };
                let request_id = new_request_id();
                let new = NewFractal {
                    status: Some(FractalStatus::Running),
                    attempts: Some(1),
                    ..new
                };
                let api = api.with_request_id(&request_id);
                let mut creating = std::pin::pin!(create(&api, &new));
                let created = tokio::select! {
                    created = &mut creating => created,
                    _ = shutdown.wait() => {
                        // The request may be made already: its answer is
                        // waited for a little, and the attempt the task was
                        // created with given back, as a stop gives back a
                        // call's (the next start dispatches the task). Both
                        // within GIVE_BACK_TIMEOUT, which the stop waits for
                        // (each on its own took up to twice that).
                        let _ = tokio::time::timeout(GIVE_BACK_TIMEOUT, async {
                            if let Ok(fractal) = creating.await
                                && fractal.status == FractalStatus::Running
                                && fractal.attempts > 0
                            {
                                dispatcher
                                    .give_back(&api, &uuid, fractal.attempts, fractal.revision)
                                    .await;
                            }
                        })
                        .await;
                        return Outcome::Abandoned;
                    }
                };
                match created {
                    Ok(fractal) => {
                        dispatcher
                            .dispatch_created(fractal, claim, slot, request_id)
                            .await
                    }
                    Err(e) => {
                        error!("task {uuid} could not be created: {e}");
                        Outcome::Failed(e.to_string())
                    }
                }
            }));
        }
        handles
    }

    /// Tasks this process is dispatching: its claims but those of kept
    /// results waiting for the API (which hold no call nor slot, and must
    /// not stop the scans).
    fn dispatching(&self) -> usize {
        let kept = self
            .kept_claims
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len();
        self.dispatcher.in_flight().saturating_sub(kept)
    }

    /// Tasks this process holds at most (dispatching, or waiting for a
    /// dispatch slot) before it stops taking more: 4 x `max_in_flight`.
    fn backlog_limit(&self) -> usize {
        self.settings.max_in_flight.saturating_mul(4)
    }

    /// Dispatches pending tasks nobody in this process is dispatching.
    async fn pick_up_pending(&self) {
        let query = ListQuery {
            status: Some(FractalStatus::Pending),
            results_per_page: Some(100),
            order_by: Some("created_at".into()),
            ..ListQuery::default()
        };
        self.take_over(query, "pending").await;
    }

    /// Dispatches running tasks last updated more than `older_than` ago
    /// (all of them, and all pending ones, when `None`: at start-up).
    /// `false` when the API could not list them.
    async fn recover(&self, older_than: Option<Duration>) -> bool {
        let updated_before = older_than.map(|age| {
            let cutoff = time::OffsetDateTime::now_utc() - age;
            cutoff
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default()
        });
        let query = ListQuery {
            status: Some(FractalStatus::Running),
            results_per_page: Some(100),
            updated_before,
            order_by: Some("updated_at".into()),
            ..ListQuery::default()
        };
        let listed = self.take_over(query, "running").await;
        if older_than.is_none() {
            self.pick_up_pending().await;
        }
        listed
    }

    /// Dispatches the tasks `query` lists that nobody here dispatches;
    /// `false` when they were not listed (the API did not answer, or this
    /// process holds all it may).
    async fn take_over(&self, query: ListQuery, what: &str) -> bool {
        // Bounded per scan, so a huge backlog does not fill memory; the next
        // scan takes the next ones.
        let limit = self.backlog_limit();
        if self.dispatching() >= limit {
            // Nothing listed: not a scan done (the start-up one is tried
            // again).
            return false;
        }
        let page = tokio::select! {
            page = self.api.client().list(&query) => page,
            _ = self.shutdown.wait() => return true,
        };
        let fractals = match page {
            Ok(page) => page.objects,
            Err(e) => {
                warn!("cannot look for {what} tasks: {e}");
                return false;
            }
        };
        let mut taken = 0;
        for fractal in fractals {
            if self.dispatching() >= limit {
                break;
            }
            if let Some(claim) = self.dispatcher.claim(&fractal.uuid) {
                taken += 1;
                let dispatcher = self.dispatcher.clone();
                self.tasks.spawn(dispatcher.dispatch(fractal, claim));
            }
        }
        if taken > 0 {
            info!("dispatching {taken} {what} task(s) nobody was dispatching");
        }
        true
    }

    /// Waits for dispatches in flight, up to `shutdown_grace`.
    async fn drain(&self) {
        // No scan after a stop: the kept results' tasks need no holding
        // (nor are they calls in flight to wait for).
        self.kept_claims
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        self.tasks.close();
        let left = self.dispatcher.in_flight();
        if left > 0 {
            info!(
                "stopping: waiting up to {:?} for {left} task(s) in flight",
                self.settings.shutdown_grace
            );
        }
        if tokio::time::timeout(self.settings.shutdown_grace, self.tasks.wait())
            .await
            .is_err()
        {
            self.give_up_in_flight().await;
        }
    }

    /// Gives up the calls still in flight, their attempts given back (see
    /// [`Dispatcher::give_up_calls`]), and waits for that to be done: for
    /// a stop whose grace is over.
    pub async fn give_up_in_flight(&self) {
        let left = self.dispatcher.in_flight();
        if left == 0 {
            return;
        }
        info!(
            "stopping: giving up {left} call(s) still in flight after {:?}; their tasks stay running for the next start, without using an attempt",
            self.settings.shutdown_grace
        );
        self.tasks.close();
        self.dispatcher.give_up_calls();
        self.dispatcher.keep_undelivered_results();
        // Time for the give-backs and casts, and for the results the API
        // has not taken to be written to disk (synced: a slow disk), within
        // the 30 s a service manager allows past the grace.
        let wait = GIVE_BACK_TIMEOUT + GIVEN_UP_CAST_TIMEOUT + KEEP_TIMEOUT;
        if tokio::time::timeout(wait, self.tasks.wait()).await.is_err() {
            warn!(
                "stopping with {} task(s) still in flight (storing results the API does not take, which could not be kept on disk in time); they stay running and will be dispatched again at the next start, their attempts counted (one on its last attempt is marked failed then)",
                self.dispatcher.in_flight()
            );
        }
    }
}

/// POSTs a task; a 409 means an earlier attempt of this POST got through
/// (the API was slow), so the existing record is used. An API older than
/// `status` in the POST (as during a rollback) gets the task `pending`,
/// and the dispatcher marks it running as it does for picked-up tasks.
async fn create(api: &ResilientApi, new: &NewFractal) -> Result<Fractal, ApiError> {
    let uuid = new.uuid.clone().unwrap_or_default();
    let post = |new: NewFractal| {
        api.retry("creating a task", move |c| {
            let new = new.clone();
            async move { c.create(&new).await }
        })
    };
    let created = match post(new.clone()).await {
        Err(e) if e.is_unknown_field("status") => {
            post(NewFractal {
                status: None,
                attempts: None,
                ..new.clone()
            })
            .await
        }
        other => other,
    };
    match created {
        // Ours already (this producer drew the uuid): made by a request
        // whose answer was lost, then sent again.
        Err(e) if e.status() == Some(409) => api.get("reading a task", &uuid).await,
        // Perhaps made (an answer cut short, a 5xx after the write): read
        // back, or the task would sit `running` with no call until
        // recovery.
        Err(e) if e.may_have_applied() => match api.get("reading a task", &uuid).await {
            Ok(fractal) => Ok(fractal),
            Err(read) if read.is_not_found() => Err(e),
            Err(read) => Err(read),
        },
        other => other,
    }
}
