//! The worker service: an RPC server on topic `tasks` whose `process(task)`
//! renders the fractal and answers with its result and the PNG itself.
//!
//! A bad task is answered with a `ValueError` (the producer marks it failed
//! without retrying); a render that runs past `exec_timeout` is cancelled
//! and answered with a `TimeoutError`; the worker keeps serving either way.
//! A stopping worker waits `shutdown_grace` for its renders, then cancels
//! the rest and gives their tasks back to the queue, unanswered, for
//! another worker.
//!
//! A second server, on the control topic (`tasks_control`), takes
//! `cancel(uuid)` fanout casts from the producer when a fractal is deleted
//! from the API: the render of it stops, and its call is answered with a
//! `FractalDeleted` error (no `fractal.failed` notification).
//! Log lines follow the original (`processing task <uuid>`, `task <uuid>
//! processed in <s> seconds`) and carry the caller's request id.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use faafo_common::configuration::FaafoConfig;
use faafo_common::files::{Durability, sweep_partial_files, write_whole_async};
use faafo_common::fractal::{
    CancelArgs, CancelReason, FRACTAL_DELETED, ProcessArgs, TASK_GIVEN_UP, Task, TaskResult,
    control_topic,
};
use faafo_common::messaging::{
    Endpoint, MessagingError, Notifier, RemoteError, RequestContext, RpcServer, Target, Transport,
};
use serde_json::json;
use tracing::{Instrument, error, info, info_span, warn};

use crate::renders::RenderRegistry;
use crate::{
    CancelToken, FractalError, FractalParams, FractalSpec, JuliaRenderer, RenderError, RenderLimits,
};

/// The RPC method the producer calls.
pub const PROCESS_METHOD: &str = "process";

/// What the service needs to know, from `[worker]`, `[messaging]` and `[DEFAULT]`.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// RPC topic served.
    pub topic: String,
    /// This worker's server name (`generated_by` of its results).
    pub server_name: String,
    /// Tasks rendered at once.
    pub executor_size: usize,
    /// Tasks held at once (the RPC server's prefetch): those rendering and
    /// those received but not started, which go back to the queue if the
    /// worker stops. Never less than `executor_size`.
    pub prefetch: usize,
    /// Threads of the render pool.
    pub render_threads: usize,
    /// Renders running longer are cancelled.
    pub exec_timeout: Duration,
    /// How long a stopping worker waits for the renders in progress; those
    /// still running then are cancelled and their requests given back to
    /// the queue for another worker.
    pub shutdown_grace: Duration,
    /// Where to also write each PNG, if anywhere.
    pub datadir: Option<PathBuf>,
    /// The longest a reply waits for that copy (a disk that hangs, an NFS
    /// mount gone, must not hold the answer): [`STORE_WAIT`] from a
    /// configuration.
    pub store_wait: Duration,
    /// Send `fractal.rendered` / `fractal.failed` notifications.
    pub notifications: bool,
    /// Pixel and iteration caps.
    pub limits: RenderLimits,
    /// Largest request accepted.
    pub max_message_size: usize,
    /// Where rejected requests go, if anywhere.
    pub dead_letter_exchange: Option<String>,
}

impl WorkerSettings {
    /// Renders at once: `executor_size`, at least one (settings built by
    /// hand may say 0).
    fn render_slots(&self) -> usize {
        self.executor_size.max(1)
    }

    /// Copies into `filesystem_store_datadir` being written at once, at
    /// most: twice the render slots. A write that outlasts `store_wait`
    /// goes on on its own thread, holding its PNG; while the directory
    /// hangs (an NFS mount gone), each task would leave one more such
    /// thread behind without this bound. The copies past it are skipped
    /// (logged; the image still travels in the reply).
    pub fn copy_slots(&self) -> usize {
        2 * self.render_slots()
    }

    /// The settings of a loaded configuration.
    pub fn from_config(config: &FaafoConfig) -> Self {
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        let w = &config.worker;
        let executor_size = if w.executor_size == 0 {
            // More tasks than cores: while one is in its single-threaded
            // part (PNG and sha256), the others' tiles keep the cores busy
            // (docs/benchmarks.md, "Pipeline").
            2 * cpus
        } else {
            w.executor_size
        };
        Self {
            topic: w.topic.clone(),
            server_name: config.worker_server_name(),
            executor_size,
            prefetch: if w.prefetch == 0 {
                (executor_size * 2).min(faafo_common::configuration::MAX_PREFETCH)
            } else {
                w.prefetch.max(executor_size)
            },
            render_threads: if w.render_threads == 0 {
                cpus
            } else {
                w.render_threads
            },
            // At least 1 s: the configuration check refuses 0.
            exec_timeout: Duration::from_secs(w.exec_timeout.max(1)),
            shutdown_grace: Duration::from_secs(w.shutdown_grace),
            datadir: Some(w.filesystem_store_datadir.as_str())
                .filter(|d| !d.is_empty())
                .map(PathBuf::from),
            store_wait: STORE_WAIT,
            notifications: w.notifications,
            limits: RenderLimits {
                max_pixels: config.default.pixel_limit,
                max_iterations: config.default.iteration_limit,
            },
            max_message_size: usize::try_from(config.messaging.max_message_size)
                .unwrap_or(usize::MAX),
            dead_letter_exchange: Some(config.messaging.dead_letter_exchange.clone())
                .filter(|d| !d.is_empty()),
        }
    }
}

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The render thread pool could not be built.
    #[error("cannot start {threads} render threads: {reason}")]
    ThreadPool {
        /// Threads asked for.
        threads: usize,
        /// Why not.
        reason: String,
    },
    /// The PNG directory cannot be used.
    #[error("cannot use filesystem_store_datadir {path}: {reason}")]
    DataDir {
        /// The directory.
        path: String,
        /// Why not.
        reason: String,
    },
    /// The RPC server could not start.
    #[error(transparent)]
    Messaging(#[from] MessagingError),
}

/// Renders tasks for RPC callers.
pub struct WorkerService {
    settings: WorkerSettings,
    renderer: JuliaRenderer,
    pool: Arc<rayon::ThreadPool>,
    /// `executor_size` permits: a task renders only with one, so at most
    /// `executor_size` image buffers exist at once even if the service is
    /// driven by a server running more requests at once (the worker's own
    /// server runs `executor_size`; the tasks taken ahead wait in it,
    /// unstarted, without their exec_timeout running). The render's thread
    /// holds its permit until the render ends, even when the request was
    /// given up, so that all permits free means no render is running.
    render_slots: Arc<tokio::sync::Semaphore>,
    /// The renders running, by fractal, for `cancel`.
    renders: RenderRegistry,
    /// [`WorkerSettings::copy_slots`] permits, each held by a copy's
    /// write until its thread ends, waited for or not.
    copies: Arc<tokio::sync::Semaphore>,
    notifier: Notifier,
}

impl WorkerService {
    /// A service rendering with its own pool of `render_threads` threads.
    pub fn new(settings: WorkerSettings, transport: &Transport) -> Result<Self, WorkerError> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(settings.render_threads)
            .thread_name(|i| format!("faafo-render-{i}"))
            .build()
            .map_err(|e| WorkerError::ThreadPool {
                threads: settings.render_threads,
                reason: e.to_string(),
            })?;
        if let Some(dir) = &settings.datadir {
            std::fs::create_dir_all(dir).map_err(|e| WorkerError::DataDir {
                path: dir.display().to_string(),
                reason: e.to_string(),
            })?;
            sweep_partial_files(dir);
        }
        let notifier = if settings.notifications {
            Notifier::new(transport, format!("faafo.worker.{}", settings.server_name))
        } else {
            Notifier::noop()
        };
        Ok(Self {
            renderer: JuliaRenderer::new(settings.limits),
            pool: Arc::new(pool),
            render_slots: Arc::new(tokio::sync::Semaphore::new(settings.render_slots())),
            renders: RenderRegistry::new(),
            copies: Arc::new(tokio::sync::Semaphore::new(settings.copy_slots())),
            notifier,
            settings,
        })
    }

    /// Waits until no render runs: every render slot free (a render's
    /// thread keeps its slot until it ends, even once its request was
    /// given up).
    async fn renders_ended(&self) {
        let slots = u32::try_from(self.settings.render_slots()).unwrap_or(u32::MAX);
        let _ = self.render_slots.acquire_many(slots).await;
    }

    /// The RPC endpoint with the `process` method.
    pub fn endpoint(self: &Arc<Self>) -> Endpoint {
        let service = self.clone();
        Endpoint::new().method(
            PROCESS_METHOD,
            move |ctx: RequestContext, args: ProcessArgs| {
                let service = service.clone();
                async move { service.process(ctx, args.task).await }
            },
        )
    }

    /// The RPC endpoint of the control topic, with the `cancel` method
    /// (a fractal was deleted) and the `given_up` one (a producer gave up
    /// its calls as it stopped).
    pub fn control_endpoint(self: &Arc<Self>) -> Endpoint {
        let mut endpoint = Endpoint::new();
        for reason in [CancelReason::Deleted, CancelReason::GivenUp] {
            let service = self.clone();
            endpoint = endpoint.method(
                reason.method(),
                move |_ctx: RequestContext, args: CancelArgs| {
                    let service = service.clone();
                    async move {
                        service.cancel(&args.uuid, args.revision, reason);
                        Ok::<_, RemoteError>(())
                    }
                },
            );
        }
        endpoint
    }

    /// The tasks of `uuid` at `revision` or before (`None`: all of them)
    /// are cancelled for `reason` (the fractal was deleted, or the
    /// producer gave the call up as it stopped): their renders here stop,
    /// and such a task taken ahead is not started; a later revision (the
    /// uuid created again, the task dispatched again) is rendered. Returns
    /// how many renders stopped.
    pub fn cancel(&self, uuid: &str, revision: Option<u64>, reason: CancelReason) -> usize {
        // Only a fractal's uuid is remembered: whoever can publish on the
        // broker cannot fill the registry with anything else.
        if uuid::Uuid::try_parse(uuid).is_err() {
            warn!(
                "cancel of {:?} ignored: not a UUID",
                faafo_common::fractal::shorten(uuid)
            );
            return 0;
        }
        let stopped = self.renders.cancel(uuid, revision, reason);
        if stopped > 0 {
            info!("task {uuid}: {}: cancelling its render", reason.describe());
        }
        stopped
    }

    /// Renders one task.
    pub async fn process(
        &self,
        ctx: RequestContext,
        task: Task,
    ) -> Result<TaskResult, RemoteError> {
        // A peer's uuid is checked by the render: until then it is shown
        // cut short and quoted (a line break in it would forge a log line,
        // megabytes of it would fill the log and the notification).
        let uuid = task_label(&task.uuid);
        let span = info_span!(
            "process",
            request_id = faafo_common::fractal::shorten(ctx.log_id()),
            uuid = %uuid
        );
        async {
            info!("processing task {uuid}");
            let outcome = self.render(&task).await;
            match &outcome {
                Ok(result) => {
                    info!("task {uuid} processed in {:.6} seconds", result.duration);
                    self.store(result).await;
                    self.notify_rendered(&ctx, result).await;
                }
                Err(error) if error.class == FRACTAL_DELETED || error.class == TASK_GIVEN_UP => {
                    info!("task {uuid} not rendered: {}", error.message);
                }
                Err(error) => {
                    warn!("task {uuid} failed: {}", error.message);
                    self.notify_failed(&ctx, &uuid, error).await;
                }
            }
            outcome
        }
        .instrument(span)
        .await
    }

    async fn render(&self, task: &Task) -> Result<TaskResult, RemoteError> {
        // The uuid names the file in filesystem_store_datadir: a peer's
        // "../x" must not become a path.
        if uuid::Uuid::try_parse(&task.uuid).is_err() {
            return Err(RemoteError::value_error(format!(
                "task uuid {:?} is not a UUID",
                faafo_common::fractal::shorten(&task.uuid)
            )));
        }
        let spec = FractalSpec::try_from(FractalParams::from(task))
            .map_err(|e| RemoteError::value_error(format!("task {}: {e}", task.uuid)))?;
        self.renderer
            .limits()
            .check(&spec)
            .map_err(|e| RemoteError::value_error(format!("task {}: {e}", task.uuid)))?;
        let cancel = CancelToken::new();
        let ticket = self.renders.register(&task.uuid, task.revision, &cancel);
        let refused = |reason: CancelReason| {
            RemoteError::new(
                reason.error_class(),
                "faafo",
                format!("task {}: {}", task.uuid, reason.describe()),
            )
        };
        if let Some(reason) = ticket.cancelled() {
            return Err(refused(reason));
        }
        let slot = self
            .render_slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| RemoteError::runtime_error("the worker is stopping"))?;
        // Cancelled while it waited for the slot: not started.
        if let Some(reason) = ticket.cancelled() {
            return Err(refused(reason));
        }
        // Dropped with this future when a stop abandons the request: the
        // render, on a thread of its own, stops at its next tile.
        let _abandoned = cancel.cancel_on_drop();
        let mut job = {
            let (renderer, pool, cancel) = (self.renderer, self.pool.clone(), cancel.clone());
            tokio::task::spawn_blocking(move || {
                let _slot = slot;
                let mut png = Vec::new();
                renderer
                    .render_png_on(&pool, &spec, &cancel, &mut png)
                    .map(|output| (output, png))
            })
        };
        let timeout = self.settings.exec_timeout;
        let (output, png) = match tokio::time::timeout(timeout, &mut job).await {
            Err(_) => {
                cancel.cancel();
                // The render stops at its next tile (or after its PNG
                // step); its thread holds the slot until then, so the next
                // task does not start while this one holds a core and its
                // image. Waited for, so that the answer comes after it.
                let _ = job.await;
                if let Some(reason) = ticket.cancelled() {
                    return Err(refused(reason));
                }
                return Err(RemoteError::timeout_error(format!(
                    "task {}: the render ran past exec_timeout ({} s) and was cancelled",
                    task.uuid,
                    timeout.as_secs()
                )));
            }
            Ok(Err(join)) => {
                error!("render of task {} crashed: {join}", task.uuid);
                return Err(RemoteError::runtime_error(format!(
                    "task {}: the render crashed",
                    task.uuid
                )));
            }
            Ok(Ok(Err(FractalError::Render(RenderError::Cancelled))))
                if let Some(reason) = ticket.cancelled() =>
            {
                return Err(refused(reason));
            }
            Ok(Ok(Err(e))) => return Err(render_failure(&task.uuid, e)),
            Ok(Ok(Ok(done))) => done,
        };
        // A PNG the reply cannot carry (the RPC server would answer with a
        // retryable error in its place): every try would render the same
        // bytes, so it is refused for good, before it is copied or
        // notified as rendered.
        let reply_size = json_reply_size(png.len());
        if reply_size > self.settings.max_message_size {
            return Err(RemoteError::value_error(format!(
                "task {}: its PNG ({} bytes, about {reply_size} bytes in a JSON reply) does not fit \
                 max_message_size ({} bytes): raise it (and the broker's own limit) or ask for a \
                 smaller fractal",
                task.uuid,
                png.len(),
                self.settings.max_message_size
            )));
        }
        Ok(TaskResult {
            uuid: task.uuid.clone(),
            duration: output.duration().as_secs_f64(),
            checksum: output.png.checksum.to_string(),
            size: output.png.size,
            c_re: output.constant.re(),
            c_im: output.constant.im(),
            generated_by: self.settings.server_name.clone(),
            pixel_iterations: output.render.pixel_iterations,
            image: png,
        })
    }

    /// Writes the PNG into `filesystem_store_datadir`, when set. A failure is
    /// logged: the image still travels in the reply.
    async fn store(&self, result: &TaskResult) {
        let Some(dir) = &self.settings.datadir else {
            return;
        };
        // Written whole: a reader never sees half a PNG, and a failed write
        // leaves no file. Not synced: the image travels in the reply too.
        // The uuid's canonical form (a peer may spell it in capitals, in
        // braces...): one file per fractal, named as the API names it.
        let path = dir.join(format!("{}.png", crate::renders::canonical(&result.uuid)));
        let wait = self.settings.store_wait;
        let Ok(permit) = self.copies.clone().try_acquire_owned() else {
            error!(
                "{}: not written: {} earlier copies are still being written, past {wait:?} (does the directory hang?)",
                path.display(),
                self.settings.copy_slots()
            );
            return;
        };
        // Bounded: the reply does not wait on a disk that hangs (an NFS
        // mount gone); the write goes on, or not, on its own thread, with
        // its permit.
        let (target, image) = (path.clone(), result.image.clone());
        let write = tokio::spawn(async move {
            let _permit = permit;
            write_whole_async(target, image, Durability::Buffered).await
        });
        match tokio::time::timeout(wait, write).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => error!("{e}"),
            Ok(Err(e)) => error!("{}: the write failed: {e}", path.display()),
            Err(_) => error!(
                "{}: not written within {wait:?}: answering without waiting for it",
                path.display()
            ),
        }
    }

    async fn notify_rendered(&self, ctx: &RequestContext, result: &TaskResult) {
        if !self.notifier.is_enabled() {
            return;
        }
        let payload = json!({
            "uuid": result.uuid, "duration": result.duration, "checksum": result.checksum,
            "size": result.size, "c_re": result.c_re, "c_im": result.c_im,
            "generated_by": result.generated_by,
        });
        if let Err(e) = self.notifier.info(ctx, "fractal.rendered", &payload).await {
            warn!("could not send the fractal.rendered notification: {e}");
        }
    }

    async fn notify_failed(&self, ctx: &RequestContext, uuid: &str, failure: &RemoteError) {
        if !self.notifier.is_enabled() {
            return;
        }
        let payload = json!({
            "uuid": uuid, "error": failure.message, "class": failure.class,
            "generated_by": self.settings.server_name,
        });
        if let Err(e) = self.notifier.error(ctx, "fractal.failed", &payload).await {
            warn!("could not send the fractal.failed notification: {e}");
        }
    }
}

/// The longest a reply waits for the PNG's copy in
/// `filesystem_store_datadir`.
pub const STORE_WAIT: Duration = Duration::from_secs(30);

/// A task's uuid as logs and notifications show it: as it is when it is
/// a UUID, else cut short and quoted, control characters escaped.
fn task_label(uuid: &str) -> String {
    if uuid::Uuid::try_parse(uuid).is_ok() {
        uuid.to_string()
    } else {
        format!("{:?}", faafo_common::fractal::shorten(uuid))
    }
}

/// A refused task is the caller's `ValueError`; anything else is ours.
fn render_failure(uuid: &str, e: FractalError) -> RemoteError {
    match e {
        FractalError::Render(
            e @ (RenderError::Invalid(_)
            | RenderError::TooManyPixels { .. }
            | RenderError::TooManyIterations { .. }
            | RenderError::NoQualifyingConstant { .. }),
        ) => RemoteError::value_error(format!("task {uuid}: {e}")),
        // Not expected: a render past exec_timeout is answered before this,
        // and one given up by a stop is never answered. Kept for a cancel
        // from elsewhere.
        FractalError::Render(RenderError::Cancelled) => {
            RemoteError::timeout_error(format!("task {uuid}: the render was cancelled"))
        }
        other => RemoteError::runtime_error(format!("task {uuid}: {other}")),
    }
}

/// A running worker: the RPC servers and what they serve.
pub struct RunningWorker {
    server: RpcServer,
    /// The control topic's server (`cancel`).
    control: RpcServer,
    /// The service, for stats and tests.
    pub service: Arc<WorkerService>,
}

impl RunningWorker {
    /// Stops taking tasks and waits for the ones in progress.
    pub async fn stop(self) {
        self.server.stop().await;
        self.control.stop().await;
    }

    /// Stops taking tasks and waits up to `grace` for the tasks in
    /// progress. Those still running then are given back to the queue
    /// unanswered, for another worker (the caller waits for one answer,
    /// whoever sends it), without a failed attempt or a `fractal.failed`
    /// notification; their renders are cancelled and waited for (they stop
    /// at their next tile), so that no render outlives the worker. A task
    /// given up after its render, while its PNG is written to
    /// `filesystem_store_datadir` or its `fractal.rendered` notification
    /// sent, is rendered again elsewhere, and may be notified twice.
    /// Returns whether no task was given up.
    pub async fn stop_within(self, grace: Duration) -> bool {
        // The control server goes last: a fractal deleted while the
        // renders finish still stops its render.
        let ended = self.server.stop_within(grace).await.abandoned == 0;
        self.control.stop().await;
        if !ended {
            warn!(
                "the renders still in progress after {grace:?} were cancelled; their tasks went back to the queue"
            );
        }
        // Cancelled renders stop at their next tile; one given up while it
        // waited for the render's thread may still hold a slot.
        self.service.renders_ended().await;
        ended
    }

    /// The RPC server's counters.
    pub fn stats(&self) -> faafo_common::messaging::ServerStats {
        self.server.stats()
    }
}

/// About how large a JSON reply carrying a PNG of `png` bytes is: the
/// image as base64, plus the other fields and the envelope (a MessagePack
/// reply is smaller; JSON, oslo's format, is the default and the bound).
fn json_reply_size(png: usize) -> usize {
    png.div_ceil(3).saturating_mul(4).saturating_add(2048)
}

/// Why [`serve`] stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The broker could not be reached.
    #[error(transparent)]
    Messaging(#[from] MessagingError),
    /// The service could not start.
    #[error(transparent)]
    Worker(#[from] WorkerError),
}

/// The whole worker program: connects, serves until `stop` resolves, then
/// finishes the tasks in progress (for up to `shutdown_grace`, then gives
/// the rest back to the queue) and disconnects.
pub async fn serve(
    config: &FaafoConfig,
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), ServeError> {
    let settings = WorkerSettings::from_config(config);
    let transport = Transport::builder(&config.default.transport_url)
        .control_exchange(&config.default.control_exchange)
        .codec(config.codec())
        .connection_name(format!("faafo-worker@{}", settings.server_name))
        .connect()
        .await?;
    let grace = settings.shutdown_grace;
    let worker = start(&transport, settings).await?;
    stop.await;
    info!("stopping: finishing the tasks in progress (up to shutdown_grace, {grace:?})");
    worker.stop_within(grace).await;
    transport.close().await;
    info!("faafo-worker stopped");
    Ok(())
}

/// Starts serving `process` on `transport`.
pub async fn start(
    transport: &Transport,
    settings: WorkerSettings,
) -> Result<RunningWorker, WorkerError> {
    let target = Target::topic(&settings.topic).with_server(&settings.server_name);
    let (executor_size, prefetch) = (settings.executor_size, settings.prefetch);
    let max_message_size = settings.max_message_size;
    let dead_letter = settings.dead_letter_exchange.clone();
    let service = Arc::new(WorkerService::new(settings, transport)?);
    let mut builder = RpcServer::builder(transport, target)
        .endpoint(service.endpoint())
        .executor_size(executor_size)
        .prefetch(prefetch)
        .max_message_size(max_message_size)
        .ping(true);
    if let Some(dlx) = &dead_letter {
        builder = builder.dead_letter_exchange(dlx.as_str());
    }
    let server = builder.start().await?;
    let control_target = Target::topic(control_topic(&service.settings.topic))
        .with_server(&service.settings.server_name);
    let mut control = RpcServer::builder(transport, control_target)
        .endpoint(service.control_endpoint())
        // One at a time, in the order sent: each takes a lock and sets flags.
        .executor_size(1)
        .max_message_size(max_message_size);
    if let Some(dlx) = dead_letter {
        control = control.dead_letter_exchange(dlx);
    }
    let control = match control.start().await {
        Ok(control) => control,
        Err(e) => {
            server.stop().await;
            return Err(e.into());
        }
    };
    info!(
        topic = %service.settings.topic,
        server = %service.settings.server_name,
        executor_size,
        prefetch,
        simd = ?service.renderer.simd_level(),
        "worker ready"
    );
    Ok(RunningWorker {
        server,
        control,
        service,
    })
}

impl From<&Task> for FractalParams {
    /// A task as it travels in `process(task)`, before validation.
    fn from(task: &Task) -> Self {
        Self {
            width: task.width,
            height: task.height,
            iterations: task.iterations,
            xa: task.xa,
            xb: task.xb,
            ya: task.ya,
            yb: task.yb,
            c_re: task.c_re,
            c_im: task.c_im,
            seed: task.seed,
            uuid: Some(task.uuid.clone()),
        }
    }
}
