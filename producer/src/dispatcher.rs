//! Handing one task to a worker and bringing its result home.
//!
//! The API is the source of truth: a task is marked `running` (with its
//! attempt count) before its call, and `done` only once its image is
//! stored; a failed attempt is retried with backoff up to `max_attempts`,
//! then the task is marked `failed` with the last error. Results wait in
//! memory until the API takes them.
//!
//! A task deleted from the API while it renders is given up, and the
//! workers are told (`cancel` on the control topic) so that its render
//! stops: every `deletion_check_interval`, a call in flight that long
//! checks that its task is still there.
//!
//! A stop is not a failed attempt: the calls still in flight when the
//! producer stops waiting for them are given up with their attempt given
//! back ([`Dispatcher::give_up_calls`]), so that stopping and starting
//! again never uses up `max_attempts`.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use faafo_common::api_client::ApiError;
use faafo_common::fractal::{
    CancelArgs, CancelReason, Fractal, FractalStatus, FractalUpdate, MAX_ERROR_CHARS,
    MAX_HOST_CHARS, ProcessArgs, Task, TaskResult, control_topic, truncate,
};
use faafo_common::messaging::{
    Backoff, MessagingError, RequestContext, RetryPolicy, RpcClient, new_request_id,
};
use faafo_common::shutdown::Shutdown;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{Instrument, debug, error, info, info_span, warn};

use crate::api::ResilientApi;
use crate::kept_results::KeptResults;
use crate::settings::ProducerSettings;

/// The workers' method.
const PROCESS: &str = "process";

/// Longest wait for the broker to take a `cancel` cast.
const CANCEL_CAST_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest wait for the API to take back the attempt of a call given up at
/// a stop; past it the attempt stays counted.
pub const GIVE_BACK_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest wait for the broker to take the `given_up` cast of a call given
/// up at a stop, which waits for it (past it, the call may be rendered for
/// nobody, as before such casts).
pub const GIVEN_UP_CAST_TIMEOUT: Duration = Duration::from_secs(1);

/// How a dispatch ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Rendered and stored.
    Done,
    /// Marked failed, with why.
    Failed(String),
    /// The task disappeared from the API (deleted) or was finished elsewhere.
    Gone,
    /// Somebody else changed the task while this dispatch held it (the
    /// API refused this producer's change, 412): another producer's
    /// recovery took it over, or a user changed it. Its uuid.
    TakenOver(String),
    /// Shutdown came first; the task stays `running` for recovery.
    Abandoned,
}

/// Counters of a producer's dispatches.
#[derive(Debug, Default)]
pub struct DispatchStats {
    /// Calls made.
    pub calls: AtomicU64,
    /// Tasks done.
    pub done: AtomicU64,
    /// Tasks marked failed.
    pub failed: AtomicU64,
    /// Attempts that failed and were retried.
    pub retried: AtomicU64,
}

/// Dispatches tasks, at most `max_in_flight` at once, each at most once
/// at a time in this process.
pub struct Dispatcher {
    api: ResilientApi,
    rpc: RpcClient,
    /// Fanout casts to every worker's control server.
    control: RpcClient,
    settings: ProducerSettings,
    in_flight: Mutex<HashSet<String>>,
    slots: Arc<Semaphore>,
    shutdown: Shutdown,
    /// Triggered when the producer stops waiting for its calls: each one
    /// still in flight is given up, its attempt given back.
    give_up: Shutdown,
    /// Triggered when the stop ends the deliveries still waiting for the
    /// API: their results are kept on disk.
    keep_undelivered: Shutdown,
    backoff: Backoff,
    /// Where results the API did not take by the stop are kept for the
    /// next start (`None`: not kept).
    kept: Option<KeptResults>,
    /// What happened so far.
    pub stats: DispatchStats,
}

/// What became of a result sent to the API.
enum Delivered {
    /// The task is finished (done, or gone from the API).
    Finished(Outcome),
    /// The API refused this result: the attempt failed, for this reason.
    Refused(String),
    /// The API cannot store a result of this task (an image larger than
    /// it takes): another render would make the same one, so the task
    /// fails now, for this reason.
    Unstorable(String),
}

/// A task this process is dispatching; released when dropped.
pub struct Claim {
    dispatcher: Arc<Dispatcher>,
    uuid: String,
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.dispatcher
            .in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.uuid);
    }
}

/// Whether another attempt cannot help: the worker found the task itself
/// bad, or no worker speaks this protocol. An unreadable answer or one
/// about another task is one worker's fault: another attempt may reach
/// another worker.
fn permanent(error: &MessagingError) -> bool {
    match error {
        MessagingError::Remote { error, .. } => {
            matches!(error.class.as_str(), "ValueError" | "TypeError")
        }
        MessagingError::NoSuchMethod { .. }
        | MessagingError::UnsupportedVersion { .. }
        | MessagingError::Encode(_) => true,
        _ => false,
    }
}

/// What a task's record keeps of a failed call, for the people who read
/// it on the web page and in `faafo show`: an error the worker raised in
/// words (its message, without the RPC layer's "remote error from topic
/// ...", a builtin exception's class or the worker's "task <uuid>: "),
/// saying whether the worker refused the task or failed on it; any other
/// error as it is ("no reply ... within 900 s").
fn stored_error(error: &MessagingError, uuid: &str) -> String {
    let MessagingError::Remote { error: remote, .. } = error else {
        return error.to_string();
    };
    let message = remote.message.trim();
    let message = message
        .strip_prefix("task ")
        .and_then(|rest| rest.strip_prefix(uuid))
        .and_then(|rest| rest.strip_prefix(": "))
        .unwrap_or(message);
    let message = match (remote.module.as_str(), message.is_empty()) {
        ("builtins" | "", false) => message.to_string(),
        ("builtins" | "", true) => remote.class.clone(),
        (module, false) => format!("{module}.{}: {message}", remote.class),
        (module, true) => format!("{module}.{}", remote.class),
    };
    if permanent(error) {
        format!("the worker refused it: {message}")
    } else {
        format!("the worker failed: {message}")
    }
}

impl Dispatcher {
    /// A dispatcher calling workers through `rpc` and recording in `api`.
    pub fn new(
        api: ResilientApi,
        rpc: RpcClient,
        settings: ProducerSettings,
        shutdown: Shutdown,
    ) -> Arc<Self> {
        let control = rpc
            .prepare()
            .topic(control_topic(&rpc.target().topic))
            .fanout(true);
        let rpc = rpc
            .timeout(settings.call_timeout)
            .call_monitor_timeout(settings.call_monitor_timeout)
            .retry(RetryPolicy::UNTIL_DEADLINE);
        let kept = settings
            .kept_results_dir
            .clone()
            .map(|dir| KeptResults::new(dir, api.client().endpoints()));
        Arc::new(Self {
            kept,
            api,
            rpc,
            control,
            slots: Arc::new(Semaphore::new(settings.max_in_flight)),
            settings,
            in_flight: Mutex::new(HashSet::new()),
            shutdown,
            give_up: Shutdown::new(),
            keep_undelivered: Shutdown::new(),
            backoff: Backoff {
                initial: Duration::from_secs(1),
                step: Duration::from_secs(2),
                max: Duration::from_secs(30),
            },
            stats: DispatchStats::default(),
        })
    }

    /// Claims `uuid` unless this process is already dispatching it.
    pub fn claim(self: &Arc<Self>, uuid: &str) -> Option<Claim> {
        let fresh = self
            .in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(uuid.to_string());
        fresh.then(|| Claim {
            dispatcher: self.clone(),
            uuid: uuid.to_string(),
        })
    }

    /// Gives up the calls in flight, for a stop whose grace is over: the
    /// tasks stay `running` for the next start (or another producer's
    /// recovery), with the attempt each call had used given back, since
    /// no worker failed it. An answer that comes later finds nobody
    /// waiting. Every dispatch returns [`Outcome::Abandoned`] within
    /// [`GIVE_BACK_TIMEOUT`] unless it is storing a result (which waits
    /// for the API until [`Self::keep_undelivered_results`]).
    pub fn give_up_calls(&self) {
        self.give_up.trigger();
    }

    /// Ends the deliveries of results the API has not taken yet, for a
    /// stop whose grace is over: each is kept on disk for the next start
    /// (see [`KeptResults`]), and its dispatch returns
    /// [`Outcome::Abandoned`]. (`faafo up` gives up its calls earlier,
    /// while its own API still takes the results being delivered.)
    pub fn keep_undelivered_results(&self) {
        self.keep_undelivered.trigger();
    }

    /// Tasks being dispatched now.
    pub fn in_flight(&self) -> usize {
        self.in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    /// A dispatch slot (one of `max_in_flight`), or `None` once shutdown
    /// comes first.
    pub async fn slot(&self) -> Option<OwnedSemaphorePermit> {
        tokio::select! {
            // Shutdown first: a slot freed as the producer stops must not
            // start a new task.
            biased;
            _ = self.shutdown.wait() => None,
            permit = self.slots.clone().acquire_owned() => permit.ok(),
        }
    }

    /// Dispatches `listed` (as a scan of the API found it) until it is
    /// done, failed, gone or shutdown comes; only if, once a slot is free,
    /// the API still has it as listed: the list may predate what this
    /// process did since (it may have finished the task between the list
    /// and the claim), and another producer may have taken it meanwhile.
    pub async fn dispatch(self: Arc<Self>, listed: Fractal, claim: Claim) -> Outcome {
        let Some(slot) = self.slot().await else {
            return Outcome::Abandoned;
        };
        let uuid = listed.uuid.clone();
        let current = tokio::select! {
            current = self.api.get("reading the task", &uuid) => current,
            _ = self.shutdown.wait() => return Outcome::Abandoned,
        };
        let fractal = match current {
            Ok(fractal) => fractal,
            Err(e) => return self.gone(&uuid, e),
        };
        let dispatchable = matches!(
            fractal.status,
            FractalStatus::Pending | FractalStatus::Running
        );
        if !dispatchable || !fractal.is_same_state(&listed) {
            debug!(
                "task {uuid} changed since it was listed ({:?}, updated {}); left alone",
                fractal.status, fractal.updated_at
            );
            return Outcome::Gone;
        }
        self.see_through(fractal, claim, slot, new_request_id(), false)
            .await
    }

    /// Dispatches a task this process has just created `running` (its
    /// first attempt recorded: no `PUT` needed) while holding `slot`, under
    /// the request id of its creation.
    pub async fn dispatch_created(
        self: Arc<Self>,
        fractal: Fractal,
        claim: Claim,
        slot: OwnedSemaphorePermit,
        request_id: String,
    ) -> Outcome {
        let marked = fractal.status == FractalStatus::Running && fractal.attempts >= 1;
        self.see_through(fractal, claim, slot, request_id, marked)
            .await
    }

    async fn see_through(
        self: Arc<Self>,
        fractal: Fractal,
        claim: Claim,
        slot: OwnedSemaphorePermit,
        request_id: String,
        marked: bool,
    ) -> Outcome {
        let span = info_span!("dispatch", request_id = %request_id, uuid = %fractal.uuid);
        let outcome = self
            .run(fractal, &request_id, slot, marked)
            .instrument(span)
            .await;
        match &outcome {
            Outcome::Done => self.stats.done.fetch_add(1, Ordering::Relaxed),
            Outcome::Failed(_) => self.stats.failed.fetch_add(1, Ordering::Relaxed),
            _ => 0,
        };
        drop(claim);
        outcome
    }

    /// The attempts of one task; `marked`: its current attempt is already
    /// recorded as running.
    async fn run(
        &self,
        fractal: Fractal,
        request_id: &str,
        slot: OwnedSemaphorePermit,
        mut marked: bool,
    ) -> Outcome {
        let api = self.api.with_request_id(request_id);
        let uuid = fractal.uuid.clone();
        let task = Task::from_fractal(&fractal);
        let mut attempts = fractal.attempts;
        // The record's revision as this dispatch last saw or made it: its
        // own updates apply only while nobody else changed the task (a
        // late request, another producer's recovery, a user's edit).
        let mut revision = fractal.revision;
        // The last attempt's error, stored with the next attempt's running
        // mark, so that a producer killed during it leaves the real reason.
        // None: earlier processes' attempts, if any, did not fail; they
        // ended with their producer (killed, or a stop whose attempt could
        // not be given back).
        let mut last_error = fractal.error.clone();
        // Whether `last_error` is an attempt's of this process, which only
        // the next attempt's running mark would store.
        let mut unsaved_error = false;
        let earlier_attempts = fractal.attempts;
        let ended_with_producers = || {
            format!(
                "no worker answered in {earlier_attempts} attempt(s): each ended with the producer that made it (killed or stopped) before an answer came"
            )
        };
        // The dispatch slot: held for a call, given back while this task
        // backs off or its result is stored.
        let mut held = Some(slot);
        loop {
            // Before the stop's check: a last attempt that failed as the
            // producer stops is recorded with its error, not left running
            // for the next start to fail with none.
            if !marked && attempts >= self.settings.max_attempts {
                drop(held);
                return self
                    .mark_failed(
                        &api,
                        &uuid,
                        attempts,
                        last_error.unwrap_or_else(ended_with_producers),
                        revision,
                    )
                    .await;
            }
            let permit = match held.take() {
                _ if self.shutdown.is_triggered() => None,
                Some(permit) => Some(permit),
                None => self.slot().await,
            };
            let Some(permit) = permit else {
                // Stopped: no call after a stop. An attempt recorded
                // running here (created so, as the stop came) is given
                // back, as a given-up call's is.
                if marked {
                    self.give_back(&api, &uuid, attempts, revision).await;
                }
                // Stopped after a failed attempt (during its backoff, or
                // while waiting for a slot): the next start's running mark
                // keeps what the record says, so it gets this attempt's
                // error, not the one before's (nor "ended with the
                // producer" should that start be killed during its last
                // attempt).
                if let Some(error) = last_error.as_deref().filter(|_| unsaved_error) {
                    self.keep_error(&api, &uuid, error, revision).await;
                }
                return Outcome::Abandoned;
            };
            if marked {
                marked = false;
            } else {
                attempts += 1;
                let running = FractalUpdate {
                    status: Some(FractalStatus::Running),
                    attempts: Some(attempts),
                    error: last_error.as_deref().map(storable),
                    ..FractalUpdate::default()
                };
                // Its retries (an API down) end when the stop gives up.
                let marking = api.update("marking the task running", &uuid, &running, revision);
                let mut marking = std::pin::pin!(marking);
                let marking = tokio::select! {
                    marking = &mut marking => marking,
                    () = self.give_up.wait() => {
                        // The mark may be landing: its answer waited for a
                        // moment, then its attempt given back (no call was
                        // made), as a creation's is.
                        let _ = tokio::time::timeout(GIVE_BACK_TIMEOUT, async {
                            if let Ok(marked) = marking.await {
                                self.give_back(&api, &uuid, attempts, marked.revision).await;
                            }
                        })
                        .await;
                        return Outcome::Abandoned;
                    }
                };
                match marking {
                    Ok(marked) => revision = marked.revision,
                    Err(e) => return self.gone(&uuid, e),
                }
                // Stopped while the mark was on its way: no call after a
                // stop, and the attempt given back.
                if self.shutdown.is_triggered() {
                    drop(permit);
                    self.give_back(&api, &uuid, attempts, revision).await;
                    return Outcome::Abandoned;
                }
            }
            info!(
                "dispatching task {uuid} (attempt {attempts} of {})",
                self.settings.max_attempts
            );
            self.stats.calls.fetch_add(1, Ordering::Relaxed);
            let ctx = RequestContext::new().with_request_id(request_id);
            let args = ProcessArgs {
                task: Task {
                    revision,
                    ..task.clone()
                },
            };
            let answer = tokio::select! {
                // An answer already here wins over a give-up or a deletion
                // noticed in the same poll: rendered work is stored.
                biased;
                answer = self.rpc.call::<_, TaskResult>(&ctx, PROCESS, &args) => answer,
                () = self.deleted(&api, &uuid, &fractal.created_at) => {
                    // The slot is for calls: free before the cast.
                    drop(permit);
                    self.cancel_render(&ctx, &uuid, revision, CancelReason::Deleted)
                        .await;
                    return Outcome::Gone;
                }
                () = self.give_up.wait() => {
                    drop(permit);
                    self.give_back(&api, &uuid, attempts, revision).await;
                    // The call still queued or rendering is answered to
                    // nobody after this process: workers that hear of it
                    // do not render it (the next start dispatches the task
                    // again, at a later revision). Not without a revision,
                    // which would refuse that dispatch too.
                    if revision.is_some() {
                        self.cancel_render(&ctx, &uuid, revision, CancelReason::GivenUp)
                            .await;
                    }
                    return Outcome::Abandoned;
                }
            };
            let answer = answer.and_then(|result| {
                // A worker that answers for another task must not
                // have its image stored on this one.
                if result.uuid != uuid {
                    Err(MessagingError::Invalid(format!(
                        "the worker answered for task {} instead",
                        faafo_common::fractal::shorten(&result.uuid)
                    )))
                } else if !faafo_common::fractal::is_sha256_hex(&result.checksum) {
                    // Another attempt, perhaps on another worker: sent to
                    // the API, a long one would be a 414, which fails the
                    // task for good as a render too large to store.
                    Err(MessagingError::Invalid(format!(
                        "the worker's checksum is not a sha256 (64 hex digits): {:?}",
                        faafo_common::fractal::shorten(&result.checksum)
                    )))
                } else {
                    Ok(result)
                }
            });
            last_error = Some(match answer {
                Ok(result) => {
                    // As the worker sent them, not yet checked by the API:
                    // cut to what a real checksum and host name need.
                    info!(
                        "task {uuid} processed: {{'duration': {:.6}, 'checksum': '{}', 'generated_by': '{}'}}",
                        result.duration,
                        truncate(&result.checksum, 100),
                        truncate(&result.generated_by, 300)
                    );
                    // The slot is for calls: the next one starts while
                    // this result is stored.
                    drop(permit);
                    let delivery =
                        self.deliver_or_keep(&api, result, &fractal.created_at, &mut revision);
                    let reason = match delivery.await {
                        Delivered::Finished(outcome) => return outcome,
                        Delivered::Refused(reason) => reason,
                        Delivered::Unstorable(reason) => {
                            return self
                                .mark_failed(&api, &uuid, attempts, reason, revision)
                                .await;
                        }
                    };
                    if attempts >= self.settings.max_attempts {
                        // No slot needed (nor to be had, at a stop) to
                        // record the end.
                        return self
                            .mark_failed(&api, &uuid, attempts, reason, revision)
                            .await;
                    }
                    // Refused as this worker made it (a bad image, a wrong
                    // checksum): another attempt, perhaps on another
                    // worker, with a slot taken again after the backoff.
                    reason
                }
                Err(e) if permanent(&e) => {
                    drop(permit);
                    // mark_failed logs the refusal once, in words; the
                    // RPC layer's form of it (the exception's class) only
                    // at debug level.
                    debug!("task {uuid}: attempt {attempts} refused: {e}");
                    return self
                        .mark_failed(&api, &uuid, attempts, stored_error(&e, &uuid), revision)
                        .await;
                }
                Err(e) => {
                    // Not held through the backoff: while one worker fails
                    // fast, the others' calls go on.
                    drop(permit);
                    warn!(
                        "task {uuid}: attempt {attempts} failed: {}",
                        truncate(&e.to_string(), MAX_ERROR_CHARS)
                    );
                    stored_error(&e, &uuid)
                }
            });
            unsaved_error = true;
            if attempts < self.settings.max_attempts {
                self.stats.retried.fetch_add(1, Ordering::Relaxed);
                tokio::select! {
                    _ = tokio::time::sleep(self.backoff.delay(attempts)) => {}
                    // On to the stop's check, which keeps this error.
                    _ = self.shutdown.wait() => {}
                }
            }
        }
    }

    /// Resolves once the API no longer has task `uuid`, the one created at
    /// `created_at` (checked every `deletion_check_interval`): deleted, or
    /// deleted and created again (another fractal, rendered by its own
    /// dispatch); never without the setting. An API that does not answer
    /// is asked again next time.
    async fn deleted(&self, api: &ResilientApi, uuid: &str, created_at: &str) {
        let Some(every) = self.settings.deletion_check_interval else {
            return std::future::pending().await;
        };
        loop {
            tokio::time::sleep(every).await;
            match api.client().get(uuid).await {
                Err(e) if e.is_not_found() => return,
                Ok(now) if !same_creation(&now.created_at, created_at) => {
                    info!(
                        "task {uuid} was deleted from the API and created again (at {}, the task dispatched at {})",
                        truncate(&now.created_at, 40),
                        truncate(created_at, 40)
                    );
                    return;
                }
                _ => {}
            }
        }
    }

    /// Stores `error`, a failed attempt's, on task `uuid` when a stop
    /// comes before the next attempt's running mark would: only while the
    /// API still has the task at `revision`, and only for
    /// [`GIVE_BACK_TIMEOUT`].
    async fn keep_error(&self, api: &ResilientApi, uuid: &str, error: &str, revision: Option<u64>) {
        let update = FractalUpdate {
            error: Some(storable(error)),
            ..FractalUpdate::default()
        };
        let kept = api.update("keeping the attempt's error", uuid, &update, revision);
        match tokio::time::timeout(GIVE_BACK_TIMEOUT, kept).await {
            Ok(Ok(_)) => debug!("task {uuid}: its last attempt's error kept at the stop"),
            Ok(Err(e)) => debug!("task {uuid}: its last attempt's error not kept at the stop: {e}"),
            Err(_) => debug!(
                "task {uuid}: its last attempt's error not kept at the stop: the API did not answer within {GIVE_BACK_TIMEOUT:?}"
            ),
        }
    }

    /// Takes back attempt `attempts` of task `uuid`, whose call was given
    /// up at a stop: the task stays `running` with one attempt fewer. Only
    /// while the API still has the task at `revision`, as this dispatch
    /// left it (another producer may have taken the task over since), and
    /// only for [`GIVE_BACK_TIMEOUT`]: an API that does not answer by then
    /// leaves the attempt counted.
    pub(crate) async fn give_back(
        &self,
        api: &ResilientApi,
        uuid: &str,
        attempts: u32,
        revision: Option<u64>,
    ) {
        let client = api.client();
        let give_back = async {
            if revision.is_none() {
                // An API without revisions: compare by hand (not atomic).
                let current = client.get(uuid).await?;
                if current.status != FractalStatus::Running || current.attempts != attempts {
                    return Ok(false);
                }
            }
            let fewer = FractalUpdate {
                attempts: Some(attempts.saturating_sub(1)),
                ..FractalUpdate::default()
            };
            match api
                .update("taking back the attempt", uuid, &fewer, revision)
                .await
            {
                Ok(_) => Ok(true),
                Err(e) if e.is_stale() => Ok(false),
                Err(e) => Err(e),
            }
        };
        match tokio::time::timeout(GIVE_BACK_TIMEOUT, give_back).await {
            Ok(Ok(true)) => info!(
                "task {uuid}: call given up at the stop; it stays running, its attempt {attempts} not counted"
            ),
            Ok(Ok(false)) => debug!("task {uuid} changed since its call: its attempt stays"),
            Ok(Err(e)) => {
                warn!(
                    "task {uuid}: call given up at the stop; its attempt {attempts} stays counted: {e}"
                )
            }
            Err(_) => warn!(
                "task {uuid}: call given up at the stop; its attempt {attempts} stays counted: the API did not answer within {GIVE_BACK_TIMEOUT:?}"
            ),
        }
    }

    /// Tells every worker that the call of task `uuid` at `revision` is
    /// not wanted any more, for `reason` (deleted from the API, or given up
    /// by this producer as it stops): the one rendering it stops (and a
    /// worker that has it waiting does not start it), while a later
    /// revision (the uuid created again, the task dispatched again) is
    /// rendered. Its answer, if any, finds nobody waiting. A cast that
    /// fails (or waits more than `CANCEL_CAST_TIMEOUT` for the broker,
    /// [`GIVEN_UP_CAST_TIMEOUT`] at a stop) leaves the render to finish
    /// for nothing: logged, not retried.
    async fn cancel_render(
        &self,
        ctx: &RequestContext,
        uuid: &str,
        revision: Option<u64>,
        reason: CancelReason,
    ) {
        match reason {
            CancelReason::Deleted => {
                info!("task {uuid} was deleted from the API: cancelling its render")
            }
            CancelReason::GivenUp => {
                debug!("task {uuid}: call given up: telling the workers not to render it")
            }
        }
        let args = CancelArgs {
            uuid: uuid.to_string(),
            revision,
        };
        // At a stop, which waits for it, the cast is tried once.
        let (control, within) = match reason {
            CancelReason::Deleted => (self.control.prepare(), CANCEL_CAST_TIMEOUT),
            CancelReason::GivenUp => (
                self.control.prepare().retry(RetryPolicy::NEVER),
                GIVEN_UP_CAST_TIMEOUT,
            ),
        };
        let cast = control.cast(ctx, reason.method(), &args);
        let failure = match tokio::time::timeout(within, cast).await {
            Ok(Ok(())) => return,
            // No worker listens, so none has the call taken ahead: one that
            // starts later may still render it for nobody, as before.
            Ok(Err(MessagingError::Undeliverable { .. })) if reason == CancelReason::GivenUp => {
                return;
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("the broker did not take it within {within:?}"),
        };
        warn!("could not tell the workers to cancel the render of task {uuid}: {failure}");
    }

    /// Where results the API has not taken by a stop are kept (`None`:
    /// nowhere).
    pub fn kept_results(&self) -> Option<&KeptResults> {
        self.kept.as_ref()
    }

    /// [`Self::deliver`], until the stop keeps what the API has not taken
    /// ([`Self::keep_undelivered_results`]): such a result is kept on disk
    /// for the next start instead of being lost with the process (the task
    /// stays running, its attempt counted). Without a place to keep it, or
    /// when it cannot be written there, the delivery goes on as long as
    /// the process does.
    async fn deliver_or_keep(
        &self,
        api: &ResilientApi,
        mut result: TaskResult,
        created_at: &str,
        revision: &mut Option<u64>,
    ) -> Delivered {
        // Shared by the delivery's tries and the copy kept at a stop.
        let image: Arc<[u8]> = std::mem::take(&mut result.image).into();
        let delivery = self.deliver(api, &result, image.clone(), created_at, revision);
        let Some(kept) = &self.kept else {
            return delivery.await;
        };
        let mut delivery = std::pin::pin!(delivery);
        tokio::select! {
            // A delivery that ends as the stop comes is what counts.
            biased;
            delivered = &mut delivery => return delivered,
            () = self.keep_undelivered.wait() => {}
        }
        // The store in flight, if any, may still land: delivering it again
        // at the next start changes nothing then.
        let uuid = &result.uuid;
        match kept
            .keep(uuid, created_at, &done_update(&result), image)
            .await
        {
            Ok(()) => {
                info!(
                    "task {uuid}: the API has not taken its result by the stop: kept in {} for the next start",
                    kept.dir().display()
                );
                Delivered::Finished(Outcome::Abandoned)
            }
            Err(e) => {
                warn!("{e}: its delivery goes on while this process lasts");
                delivery.await
            }
        }
    }

    /// Stores the image with the result, in one request (the API applies
    /// both in one write); waits for the API as long as it takes. A store
    /// that changed the task without finishing it (an older API, which
    /// takes the image and not the result) leaves `revision` as it said.
    async fn deliver(
        &self,
        api: &ResilientApi,
        result: &TaskResult,
        image: Arc<[u8]>,
        created_at: &str,
        revision: &mut Option<u64>,
    ) -> Delivered {
        let uuid = result.uuid.clone();
        let done = done_update(result);
        let stored = api
            .retry_until_let_in("storing the result", |c| {
                let (uuid, png, done) = (uuid.clone(), image.to_vec(), done.clone());
                // Only on the fractal it was rendered for: a uuid deleted
                // and created again meanwhile is another fractal (412).
                async move {
                    c.store_result_if_created_at(&uuid, created_at, png, &done)
                        .await
                }
            })
            .await;
        let refusal = match stored {
            Ok(fractal) if fractal.status == FractalStatus::Done => {
                return Delivered::Finished(Outcome::Done);
            }
            // An older API stored the image but not the result (it ignores
            // the query string, as during a rollback): send the result too.
            Ok(stored) => {
                *revision = stored.revision;
                // Unconditional, so no read-back to do: through 401/403
                // as the upload is.
                let stored = api
                    .retry_until_let_in("storing the result", |c| {
                        let (uuid, done) = (uuid.clone(), done.clone());
                        async move { c.update_if_created_at(&uuid, created_at, &done).await }
                    })
                    .await;
                match stored {
                    Ok(_) => return Delivered::Finished(Outcome::Done),
                    Err(e) => e,
                }
            }
            // Perhaps stored (an answer cut short): the task done with
            // this very image is this delivery's doing.
            Err(e) if e.may_have_applied() => match api.get("reading a task", &uuid).await {
                Ok(task)
                    if task.status == FractalStatus::Done
                        // The API keeps it in lower case.
                        && task
                            .checksum
                            .as_deref()
                            .is_some_and(|stored| stored.eq_ignore_ascii_case(&result.checksum)) =>
                {
                    return Delivered::Finished(Outcome::Done);
                }
                _ => e,
            },
            Err(e) => e,
        };
        self.refused(&uuid, refusal)
    }

    /// The API refused a result (it retries everything else): the task is
    /// gone, or this result cannot be stored (a bad image, a checksum that
    /// is not the image's, an image larger than the API accepts).
    fn refused(&self, uuid: &str, e: ApiError) -> Delivered {
        if e.is_not_found() {
            // A user's delete, not a fault: info, not a warning.
            info!("task {uuid}: the fractal was deleted meanwhile: its result is dropped");
            return Delivered::Finished(Outcome::Gone);
        }
        if e.is_stale() {
            // The only precondition a result carries: its creation time.
            info!(
                "task {uuid}: the fractal was deleted and created again meanwhile: its result is dropped (the new one is rendered on its own)"
            );
            return Delivered::Finished(Outcome::Gone);
        }
        warn!("task {uuid}: the API refused its result: {e}");
        let reason = format!("the API refused the result: {e}");
        // Too large for the API (max_body_size, MariaDB's packet): the
        // same render would be refused the same way.
        if matches!(e.status(), Some(413 | 414)) {
            return Delivered::Unstorable(reason);
        }
        Delivered::Refused(reason)
    }

    fn gone(&self, uuid: &str, e: ApiError) -> Outcome {
        if e.is_stale() {
            // Not a fault: another producer's recovery took the task over,
            // or a user changed it; whoever did is in charge of it now.
            info!(
                "task {uuid} changed in the API since this producer last wrote it: left to whoever changed it ({e})"
            );
            return Outcome::TakenOver(uuid.to_string());
        }
        warn!("task {uuid} is no longer dispatchable: {e}");
        Outcome::Gone
    }

    /// Marks task `uuid` failed after `attempts`, unless it changed since
    /// `revision` (another producer may be running it again).
    async fn mark_failed(
        &self,
        api: &ResilientApi,
        uuid: &str,
        attempts: u32,
        reason: String,
        revision: Option<u64>,
    ) -> Outcome {
        let reason = storable(&reason);
        let failed = FractalUpdate {
            status: Some(FractalStatus::Failed),
            error: Some(reason.clone()),
            attempts: Some(attempts),
            ..FractalUpdate::default()
        };
        // At a stop, only until the producer gives up on its dispatches:
        // an API that does not answer leaves the task running.
        let marked = tokio::select! {
            marked = api.update("marking the task failed", uuid, &failed, revision) => marked,
            () = self.give_up.wait() => return Outcome::Abandoned,
        };
        match marked {
            // Said once the API has it: a refused mark leaves the task to
            // whoever changed it.
            Ok(_) => {
                error!("task {uuid} failed after {attempts} attempt(s): {reason}");
                Outcome::Failed(reason)
            }
            Err(e) => self.gone(uuid, e),
        }
    }
}

/// What the API stores with a result's image: the task done, with the
/// worker's figures.
fn done_update(result: &TaskResult) -> FractalUpdate {
    FractalUpdate {
        status: Some(FractalStatus::Done),
        duration: Some(result.duration),
        checksum: Some(result.checksum.clone()),
        size: Some(result.size),
        generated_by: Some(host_name(&result.generated_by)),
        c_re: Some(result.c_re),
        c_im: Some(result.c_im),
        ..FractalUpdate::default()
    }
}

/// Whether two `created_at` texts of the API name the same time: equal,
/// or (an API host of another version, a proxy) the same RFC 3339 time
/// written otherwise. Unreadable ones are compared as text.
fn same_creation(a: &str, b: &str) -> bool {
    use time::format_description::well_known::Rfc3339;
    let parse = |t: &str| time::OffsetDateTime::parse(t.trim(), &Rfc3339).ok();
    a.trim() == b.trim() || matches!((parse(a), parse(b)), (Some(a), Some(b)) if a == b)
}

/// A worker's name as the API stores it (1 to [`MAX_HOST_CHARS`] printable characters):
/// a peer's longer or unprintable one is cut and cleaned, not refused with
/// the result.
fn host_name(name: &str) -> String {
    let printable: String = name
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_HOST_CHARS)
        .collect();
    if printable.is_empty() {
        "unknown".into()
    } else {
        printable
    }
}

/// An error as the API stores it: a worker's message can be longer than
/// the API keeps, or hold a NUL (which PostgreSQL cannot store): cut and
/// replaced, not refused (which would leave the task running until
/// recovery).
fn storable(reason: &str) -> String {
    truncate(&reason.replace('\0', "\u{fffd}"), MAX_ERROR_CHARS)
}

#[cfg(test)]
mod tests {
    use faafo_common::messaging::{MessagingError, RemoteError};

    use super::stored_error;

    const UUID: &str = "01a20b6f-c9b5-7126-a79f-ed15b2dd5b95";

    /// A peer's worker name is stored as the API takes it: printable, 1 to
    /// 255 characters.
    #[test]
    fn worker_names_are_stored_as_the_api_takes_them() {
        use super::host_name;
        assert_eq!(host_name("worker-1"), "worker-1");
        assert_eq!(host_name("bad\nname\u{7}"), "badname");
        assert_eq!(host_name("\n"), "unknown");
        assert_eq!(host_name(&"é".repeat(300)).chars().count(), 255);
    }

    fn remote(error: RemoteError) -> MessagingError {
        MessagingError::Remote {
            target: "topic 'tasks'".into(),
            error: Box::new(error),
        }
    }

    #[test]
    fn a_workers_error_is_kept_in_words() {
        let refused = remote(RemoteError::value_error(format!(
            "task {UUID}: iterations 5 is below the minimum"
        )));
        assert_eq!(
            stored_error(&refused, UUID),
            "the worker refused it: iterations 5 is below the minimum"
        );
        let crashed = remote(RemoteError::runtime_error(format!(
            "task {UUID}: the render crashed"
        )));
        assert_eq!(
            stored_error(&crashed, UUID),
            "the worker failed: the render crashed"
        );
        // Another task's prefix stays: it says something is wrong.
        let other = remote(RemoteError::runtime_error("task 42: boom"));
        assert_eq!(
            stored_error(&other, UUID),
            "the worker failed: task 42: boom"
        );
        // A Python peer's own exception keeps its class; a bare one is named.
        let custom = remote(RemoteError::new("RenderError", "faafo", "out of memory"));
        assert_eq!(
            stored_error(&custom, UUID),
            "the worker failed: faafo.RenderError: out of memory"
        );
        let bare = remote(RemoteError::runtime_error(""));
        assert_eq!(stored_error(&bare, UUID), "the worker failed: RuntimeError");
    }

    #[test]
    fn other_errors_are_kept_as_they_are() {
        let error = MessagingError::Invalid("the worker answered for task 1234 instead".into());
        assert_eq!(stored_error(&error, UUID), error.to_string());
    }
}
