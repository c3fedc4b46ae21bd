//! The commands that talk to the API.

use std::error::Error;
use std::process::ExitCode;
use std::time::Duration;

use faafo_common::api_client::{ApiClient, ListQuery};
use faafo_common::configuration::CommandLineValue;
use faafo_common::files::{Durability, write_whole_async};
use faafo_common::fractal::{Fractal, FractalStatus, NewFractal};
use faafo_common::telemetry::TelemetryGuard;
use faafo_producer::{ProducerSettings, TaskGenerator};
use futures_util::StreamExt;

use crate::output;
use crate::{Cli, Command, CreateArgs, Format, GetArgs, ListArgs};

/// Runs the command line; a command that logs keeps its log writers in
/// `logging` (owned by `main`, which drops them last).
pub async fn run(
    cli: Cli,
    command: Command,
    logging: &mut Option<TelemetryGuard>,
) -> Result<ExitCode, Box<dyn Error>> {
    // As with faafo-producer, the command line wins over the files and the
    // environment (a bad value it replaces is no error); `up` talks to the
    // API it runs itself, `api` and `worker` to none.
    let given = [
        cli.endpoint_url.map(CommandLineValue::endpoint_url),
        cli.token.map(CommandLineValue::auth_token),
    ];
    let mut config = cli
        .config
        .load_with(given.into_iter().flatten().collect())?;
    config.default.debug |= cli.debug;
    let format = cli.output;
    let api = || -> Result<ApiClient, Box<dyn Error>> {
        Ok(ApiClient::new(
            &config.default.endpoint_url,
            Some(config.default.auth_token.clone()),
        )?)
    };
    match command {
        Command::CheckConfig => {
            // `--endpoint-url` replaced the checked `endpoint_url`: checked
            // the way the other commands would use it.
            api()?;
            output::put(format_args!("{}", config.check_summary("faafo")))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Create(args) => {
            let settings = ProducerSettings::from_config(&config);
            let pixel_limit = config.default.pixel_limit;
            create(&api()?, &settings, pixel_limit, args, format).await
        }
        Command::List(args) => list(&api()?, args, format).await,
        Command::Show(arg) => {
            let fractal = api()?.get(&arg.uuid).await?;
            output::show(&fractal, format)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Get(args) => get(&api()?, args, format).await,
        Command::Delete(arg) => {
            // A host that took the DELETE and failed (no answer, a
            // proxy's 502), then the next host's 404: the first one may
            // have deleted it, or there was nothing to delete.
            let perhaps = match api()?.delete(&arg.uuid).await {
                Ok(()) => false,
                Err(e) if e.is_not_found() && e.may_have_applied() => true,
                Err(e) => return Err(e.into()),
            };
            if format == Format::Json {
                output::line(serde_json::json!({"deleted": arg.uuid, "certain": !perhaps}))?;
            } else if perhaps {
                output::line(format_args!(
                    "deleted {} (or it never existed: the first API host failed after taking \
                     the request, and the next one has no such fractal)",
                    arg.uuid
                ))?;
            } else {
                output::line(format_args!("deleted {}", arg.uuid))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Up(args) => crate::up::run(config, args, logging).await,
        Command::BenchRender(args) => tokio::task::spawn_blocking(move || {
            crate::bench::run(&config, &args).map_err(|e| e.to_string())
        })
        .await?
        .map_err(Into::into),
        command @ (Command::Api | Command::Worker | Command::Producer(_)) => {
            service(config, command, logging).await
        }
    }
}

/// Runs one service until SIGTERM or Ctrl-C, as its own program would.
async fn service(
    config: faafo_common::configuration::FaafoConfig,
    command: Command,
    logging: &mut Option<TelemetryGuard>,
) -> Result<ExitCode, Box<dyn Error>> {
    use faafo_common::shutdown::{self, Shutdown};
    use faafo_common::telemetry::{self, TelemetrySettings};
    match &command {
        Command::Worker => config.require_shared_broker("faafo worker")?,
        Command::Producer(_) => config.require_shared_broker("faafo producer")?,
        _ => {}
    }
    *logging = Some(telemetry::init(&TelemetrySettings::from_config(
        &config.default,
    ))?);
    match command {
        Command::Api => {
            // Before the migrations (see faafo-api's main).
            let stop = shutdown::stop_signal();
            let app = faafo_api::Application::build(&config).await?;
            app.run_until_stopped(stop).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Worker => {
            faafo_worker::service::serve(&config, shutdown::stop_signal()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Producer(args) => {
            let stop = Shutdown::new();
            stop.on_signal();
            let success = faafo_producer::serve(&config, args.one_shot, stop).await?;
            Ok(if success {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        _ => Err("internal error: not a service".into()),
    }
}

async fn create(
    api: &ApiClient,
    settings: &ProducerSettings,
    pixel_limit: u64,
    args: CreateArgs,
    format: Format,
) -> Result<ExitCode, Box<dyn Error>> {
    let mut generator = TaskGenerator::new();
    let mut created = Vec::new();
    // Ctrl-C (or SIGTERM: a `timeout` wrapper, a CI job cancelled) while
    // creating: what was created is still shown (it will be rendered);
    // without a handler the process would end silently.
    let ctrl_c = faafo_common::shutdown::signal();
    let mut ctrl_c = std::pin::pin!(ctrl_c);
    for _ in 0..args.tasks {
        let task = match task_of(&mut generator, settings, pixel_limit, &args) {
            Ok(task) => task,
            Err(mistake) => return Err(shown_with(&created, format, mistake.into())),
        };
        let uuid = task.uuid.clone().unwrap_or_default();
        let answer = tokio::select! {
            answer = create_patiently(api, &task, !created.is_empty()) => answer,
            () = &mut ctrl_c => {
                return Ok(interrupted_creating(&created, format, &uuid));
            }
        };
        match answer {
            Ok(fractal) => created.push(fractal),
            Err(e) => return Err(shown_with(&created, format, e)),
        }
    }
    // JSON is one document: the fractals as created, or with `--wait` as
    // they ended up.
    if !args.wait {
        output::list(&created, format)?;
        return Ok(ExitCode::SUCCESS);
    }
    // With --wait a reader that stopped reading (`| head`) does not end
    // the wait: what failed is still said on standard error, and in the
    // exit status.
    if format == Format::Table {
        reader_may_be_gone(output::list(&created, format))?;
    }
    let deadline = args
        .timeout
        .map(|s| std::time::Instant::now() + Duration::from_secs(s));
    // The same signal listener: one that came while the table was written
    // (to a slow reader) ends the wait at once, not lost.
    let ended = match wait_for(api, &created, format, deadline, ctrl_c.as_mut()).await {
        Ok(Some(ended)) => ended,
        Ok(None) => {
            // Ctrl-C: the fractals exist and will be rendered all the same.
            if format == Format::Json {
                let _ = output::list(&created, format);
            }
            faafo_common::say!("faafo: {}", interrupted(&created));
            return Ok(ExitCode::from(130));
        }
        Err(e) => {
            // What was created is not lost from the output (the table
            // already shows it): in JSON, as created.
            if format == Format::Json {
                let _ = output::list(&created, format);
            }
            return Err(e);
        }
    };
    let finished: Vec<Fractal> = ended
        .iter()
        .filter_map(|e| match e {
            Ended::Finished(fractal) | Ended::Unfinished(fractal) => Some(Fractal::clone(fractal)),
            Ended::Deleted(_) => None,
        })
        .collect();
    reader_may_be_gone(output::list(&finished, format))?;
    let mut not_rendered = 0;
    for end in &ended {
        match end {
            Ended::Finished(fractal) if fractal.status == FractalStatus::Done => {}
            Ended::Finished(fractal) => {
                not_rendered += 1;
                // Every field as the API sent it, escaped: a wrong or
                // hostile endpoint's terminal escapes are shown, not run.
                faafo_common::say!(
                    "faafo: {} failed: {}",
                    output::one_line(&fractal.uuid),
                    output::one_line(output::failure_reason(fractal))
                );
            }
            Ended::Deleted(uuid) => {
                not_rendered += 1;
                faafo_common::say!(
                    "faafo: {} was deleted while waiting",
                    output::one_line(uuid)
                );
            }
            Ended::Unfinished(fractal) => {
                not_rendered += 1;
                // Pending: nobody dispatched it; running: a worker renders it.
                let hint = if fractal.status == FractalStatus::Running {
                    ": a worker is rendering it (a longer --timeout would wait for it)"
                } else {
                    " (is a producer running, and a worker?)"
                };
                faafo_common::say!(
                    "faafo: {} still {} after {} s{hint}",
                    output::one_line(&fractal.uuid),
                    fractal.status,
                    args.timeout.unwrap_or_default()
                );
            }
        }
    }
    Ok(if not_rendered == 0 {
        ExitCode::SUCCESS
    } else {
        faafo_common::say!(
            "faafo: {not_rendered} of {} fractal(s) not rendered",
            ended.len()
        );
        ExitCode::FAILURE
    })
}

/// Creates `task` (whose uuid is the client's). An API that fails for a
/// while (a restart, a database that is away: unreachable, 5xx, 429) is
/// waited out for up to [`API_PATIENCE`], the same request sent again: a
/// creation whose answer was lost is then found by its uuid (a 409 after a
/// lost answer reads it back). One never reached is more likely a wrong
/// endpoint (`reached_before`: the batch created some already): said at
/// once. An error that may have left the fractal created says so.
async fn create_patiently(
    api: &ApiClient,
    task: &NewFractal,
    reached_before: bool,
) -> Result<Fractal, Box<dyn Error>> {
    let uuid = task.uuid.clone().unwrap_or_default();
    let mut failing_since: Option<std::time::Instant> = None;
    let mut delay = Duration::from_millis(250);
    let mut sent_before = false;
    let e = loop {
        let e = match api.create(task).await {
            Ok(fractal) => return Ok(fractal),
            Err(e) => e,
        };
        // Created by a try whose answer was lost: as it is now.
        if sent_before && e.status() == Some(409) {
            break match api.get(&uuid).await {
                Ok(fractal) => return Ok(fractal),
                Err(_) => e,
            };
        }
        // The API may have created it before its answer was lost: the
        // uuid is ours, so it can be asked.
        if e.may_have_applied() {
            sent_before = true;
            if let Ok(fractal) = api.get(&uuid).await {
                return Ok(fractal);
            }
        }
        // Reached before (an answer now, a fractal created, a failure
        // being waited out: an API restarting answers 503, then refuses
        // connections for a moment).
        let reached = e.status().is_some() || reached_before || failing_since.is_some();
        let patient = e.is_transient()
            && reached
            && failing_since
                .get_or_insert_with(std::time::Instant::now)
                .elapsed()
                < API_PATIENCE;
        if !patient {
            break e;
        }
        faafo_common::say!("faafo: {e}; trying again in {} ms", delay.as_millis());
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    };
    Err(if sent_before {
        format!("{e} (fractal {uuid} may have been created: `faafo show {uuid}` tells)").into()
    } else {
        e.into()
    })
}

/// The next task of `create`: drawn by `generator`, with what the command
/// line fixes; a mistake of the command line in words.
fn task_of(
    generator: &mut TaskGenerator,
    settings: &ProducerSettings,
    pixel_limit: u64,
    args: &CreateArgs,
) -> Result<NewFractal, String> {
    let mut task = generator.task(settings);
    task.width = args.width.unwrap_or(task.width);
    task.height = args.height.unwrap_or(task.height);
    // One dimension given: the other drawn within the pixel limit, or a
    // batch would fail at random on the sizes the user never gave.
    let most =
        |given: u32| u32::try_from(pixel_limit / u64::from(given.max(1))).unwrap_or(u32::MAX);
    let room = |(flag, given): (&str, u32), other: &str| {
        if most(given) < 2 {
            Err(format!(
                "{flag} {given} leaves no room for a {other} of 2 within pixel_limit \
                 ({pixel_limit} pixels): give a smaller {flag}"
            ))
        } else {
            Ok(most(given))
        }
    };
    match (args.width, args.height) {
        (Some(width), None) => {
            task.height = task.height.min(room(("--width", width), "height")?);
        }
        (None, Some(height)) => {
            task.width = task.width.min(room(("--height", height), "width")?);
        }
        _ => {}
    }
    task.iterations = args.iterations.unwrap_or(task.iterations);
    (task.xa, task.xb) = bounds(("--xa", args.xa), ("--xb", args.xb), (task.xa, task.xb))?;
    (task.ya, task.yb) = bounds(("--ya", args.ya), ("--yb", args.yb), (task.ya, task.yb))?;
    if args.seed.is_some() {
        task.seed = args.seed;
    }
    if let (Some(re), Some(im)) = (args.c_re, args.c_im) {
        (task.seed, task.c_re, task.c_im) = (None, Some(re), Some(im));
    }
    Ok(task)
}

/// `error`, after the fractals created so far: they exist and will be
/// rendered, so they are shown, not hidden behind the error (which is the
/// one to report).
fn shown_with(created: &[Fractal], format: Format, error: Box<dyn Error>) -> Box<dyn Error> {
    if !created.is_empty() {
        let _ = output::list(created, format);
    }
    error
}

/// `printed`, with a reader that has gone taken as a success.
fn reader_may_be_gone(printed: Result<(), Box<dyn Error>>) -> Result<(), Box<dyn Error>> {
    match printed {
        Err(e) if !e.is::<output::ReaderGone>() => Err(e),
        _ => Ok(()),
    }
}

/// A missing bound of the viewport placed relative to the given one, at
/// the distance between the `drawn` pair (the generator's usual span):
/// bounds drawn on their own would often be on the wrong side of it. A
/// bound so large that the span vanishes next to it is refused, naming it
/// (the API would name the other, which the user never gave).
fn bounds(
    (low_flag, low): (&str, Option<f64>),
    (high_flag, high): (&str, Option<f64>),
    drawn: (f64, f64),
) -> Result<(f64, f64), String> {
    let span = drawn.1 - drawn.0;
    let (low, high, given) = match (low, high) {
        (Some(low), Some(high)) => return Ok((low, high)),
        (Some(low), None) => (low, low + span, (low_flag, low, high_flag)),
        (None, Some(high)) => (high - span, high, (high_flag, high, low_flag)),
        (None, None) => return Ok(drawn),
    };
    if low < high && low.is_finite() && high.is_finite() {
        Ok((low, high))
    } else {
        let (flag, value, other) = given;
        Err(format!(
            "{flag} {value} leaves no room for a viewport of width {span} beside it: give {other} too"
        ))
    }
}

/// Ctrl-C while `create` creates: those created are printed (they will
/// be rendered), and the one being created is named; status 130.
fn interrupted_creating(created: &[Fractal], format: Format, uuid: &str) -> ExitCode {
    let _ = output::list(created, format);
    faafo_common::say!(
        "faafo: {} (fractal {uuid} was being created and may exist too)",
        interrupted(created)
    );
    ExitCode::from(130)
}

/// What to say when Ctrl-C ends `create --wait`: the fractals were created
/// and are still rendered, and how to find them.
fn interrupted(created: &[Fractal]) -> String {
    /// More uuids than this would not be read: `faafo list` shows them.
    const MAX_UUIDS: usize = 5;
    let mut text = format!(
        "interrupted: the {} fractal(s) created are still queued or rendering; \
         see them with `faafo list` or `faafo show <uuid>`",
        created.len()
    );
    if created.len() <= MAX_UUIDS {
        let uuids: Vec<String> = created.iter().map(|f| output::one_line(&f.uuid)).collect();
        text.push_str(&format!(": {}", uuids.join(" ")));
    }
    text
}

/// How waiting for one fractal ended.
enum Ended {
    /// Done or failed.
    Finished(Box<Fractal>),
    /// Deleted by someone else meanwhile (its uuid).
    Deleted(String),
    /// Not finished when `--timeout` ran out (as last seen).
    Unfinished(Box<Fractal>),
}

/// Polls until every fractal is done, failed or deleted, with a progress
/// bar, or until Ctrl-C (`None`); see [`poll_until_ended`].
async fn wait_for(
    api: &ApiClient,
    fractals: &[Fractal],
    format: Format,
    deadline: Option<std::time::Instant>,
    stop: std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
) -> Result<Option<Vec<Ended>>, Box<dyn Error>> {
    let bar = indicatif::ProgressBar::new(fractals.len() as u64);
    if format == Format::Json {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} rendering [{bar:30}] {pos}/{len} {msg} ({elapsed})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    // The spinner and the time go on while a request waits for an answer.
    bar.enable_steady_tick(Duration::from_millis(250));
    tokio::select! {
        ended = poll_until_ended(api, fractals, &bar, deadline) => ended.map(Some),
        // Without a handler Ctrl-C (or SIGTERM) would end the process
        // silently.
        () = stop => {
            bar.abandon();
            Ok(None)
        }
    }
}

/// Polls until every fractal is done, failed or deleted; waits out an API
/// that is unreachable or failing (5xx) for up to [`API_PATIENCE`], counted
/// from the first failure (not from when that request was sent: one that
/// waited out the client's whole timeout would leave no patience). Past
/// `deadline`, what has not finished ends as [`Ended::Unfinished`], a
/// request still waiting for its answer then included.
async fn poll_until_ended(
    api: &ApiClient,
    fractals: &[Fractal],
    bar: &indicatif::ProgressBar,
    deadline: Option<std::time::Instant>,
) -> Result<Vec<Ended>, Box<dyn Error>> {
    let mut ended: Vec<Option<Ended>> = fractals.iter().map(|_| None).collect();
    let mut last_seen: Vec<Fractal> = fractals.to_vec();
    let mut failing_since: Option<std::time::Instant> = None;
    // What the API said when it last failed on each fractal, while it
    // still fails on it.
    let mut failures: Vec<Option<String>> = fractals.iter().map(|_| None).collect();
    let out_of_time = || deadline.is_some_and(|d| std::time::Instant::now() >= d);
    loop {
        let pass_started = std::time::Instant::now();
        // The fractals still waited for, asked about a few at a time (a
        // batch of a hundred over a slow network took a round trip each,
        // in turn), their answers taken in order; the round ends after
        // FAILURES_ENDING_A_ROUND transient failures in a row, or at
        // `deadline`, and the requests still out are dropped.
        let waiting: Vec<usize> = (0..fractals.len())
            .filter(|&i| ended[i].is_none())
            .collect();
        // Started at most POLLS_PER_SECOND a second: the thousands of a
        // large batch, asked about back to back, loaded the API the
        // producer and the workers write to.
        let mut spacing = tokio::time::interval(Duration::from_secs_f64(1.0 / POLLS_PER_SECOND));
        spacing.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let ticks = futures_util::stream::unfold(spacing, |mut spacing| async move {
            spacing.tick().await;
            Some(((), spacing))
        });
        let mut failed_in_a_row = 0;
        let mut answers = std::pin::pin!(
            futures_util::stream::iter(waiting)
                .zip(ticks)
                .map(|(i, ())| async move { (i, api.get(&fractals[i].uuid).await) })
                .buffered(POLL_CONCURRENCY)
        );
        loop {
            let next = match deadline {
                Some(deadline) => {
                    match tokio::time::timeout_at(deadline.into(), answers.next()).await {
                        Ok(next) => next,
                        Err(_) => break,
                    }
                }
                None => answers.next().await,
            };
            let Some((i, answer)) = next else {
                break;
            };
            let (slot, fractal) = (&mut ended[i], &fractals[i]);
            if !matches!(&answer, Err(e) if e.is_transient()) {
                failing_since = None;
                failed_in_a_row = 0;
                failures[i] = None;
            }
            match answer {
                Ok(now) if matches!(now.status, FractalStatus::Done | FractalStatus::Failed) => {
                    bar.inc(1);
                    *slot = Some(Ended::Finished(Box::new(now)));
                }
                Ok(now) => {
                    bar.set_message(format!(
                        "({} is {})",
                        short(&output::one_line(&now.uuid)),
                        now.status
                    ));
                    last_seen[i] = now;
                }
                Err(e) if e.is_not_found() => {
                    bar.inc(1);
                    *slot = Some(Ended::Deleted(fractal.uuid.clone()));
                }
                Err(e) if e.is_transient() => {
                    let since = *failing_since.get_or_insert_with(std::time::Instant::now);
                    if since.elapsed() > API_PATIENCE {
                        bar.abandon();
                        return Err(e.into());
                    }
                    bar.set_message(format!("(the API: {e}; trying again)"));
                    failures[i] = Some(e.to_string());
                    // A few failures in a row end the round (the API is
                    // down: the rest would fail too); one fractal the API
                    // keeps failing on does not hold up the ones after it.
                    failed_in_a_row += 1;
                    if failed_in_a_row >= FAILURES_ENDING_A_ROUND || out_of_time() {
                        break;
                    }
                    continue;
                }
                Err(e) => {
                    bar.abandon();
                    return Err(e.into());
                }
            }
        }
        let out_of_time = out_of_time();
        if let Some(failure) = failures.iter().flatten().next().filter(|_| out_of_time) {
            // Not the workers' fault: the last state seen may be stale.
            bar.abandon();
            return Err(
                format!("gave up waiting (--timeout) while the API fails: {failure}").into(),
            );
        }
        if out_of_time || ended.iter().all(Option::is_some) {
            if out_of_time {
                bar.abandon();
            } else {
                bar.finish_and_clear();
            }
            return Ok(ended
                .into_iter()
                .zip(last_seen)
                .map(|(end, last)| end.unwrap_or_else(|| Ended::Unfinished(Box::new(last))))
                .collect());
        }
        bar.tick();
        // A pass every 300 ms at most, and none after --timeout.
        let next = tokio::time::Instant::from(pass_started + Duration::from_millis(300));
        tokio::time::sleep_until(deadline.map_or(next, |d| next.min(d.into()))).await;
    }
}

/// Most requests a second `create --wait` sends to the API.
const POLLS_PER_SECOND: f64 = 500.0;

/// How long `create --wait` waits for an API that stopped answering.
const API_PATIENCE: Duration = Duration::from_secs(60);

/// Transient failures in a row that end a round of `create --wait`.
const FAILURES_ENDING_A_ROUND: usize = 3;

/// How many fractals `create --wait` asks the API about at once.
const POLL_CONCURRENCY: usize = 8;

fn short(uuid: &str) -> &str {
    uuid.get(..8).unwrap_or(uuid)
}

async fn list(api: &ApiClient, args: ListArgs, format: Format) -> Result<ExitCode, Box<dyn Error>> {
    let status = args
        .status
        .as_deref()
        .map(str::parse::<FractalStatus>)
        .transpose()?;
    let fractals = api
        .list_all(&ListQuery {
            status,
            order_by: Some("created_at".into()),
            ..ListQuery::default()
        })
        .await?;
    output::list(&fractals, format)?;
    Ok(ExitCode::SUCCESS)
}

async fn get(api: &ApiClient, args: GetArgs, format: Format) -> Result<ExitCode, Box<dyn Error>> {
    // (`--output json` with `-o -` is refused as a usage mistake by main.)
    let to_stdout = args.writes_to_stdout();
    let png = match api.image(&args.uuid).await {
        Ok(png) => png,
        Err(e) if e.status() == Some(409) => return Err(no_image_yet(api, &args.uuid, e).await),
        Err(e) => return Err(e.into()),
    };
    // The uuid is safe in a path: the API client accepted it as one.
    let file_name = format!("{}.png", args.uuid);
    let path = match args.file {
        _ if to_stdout => None,
        None => Some(file_name.into()),
        Some(dir) if is_directory(&dir).await => Some(dir.join(file_name)),
        Some(file) => Some(file),
    };
    // `-o /dev/stdout` (or `/dev/fd/1`, or the file standard output was
    // sent to) is `-o -`: the PNG alone, whether standard output is a pipe
    // or a file (which a write aside and a rename would take from under
    // the shell's redirection). `-o /dev/stderr` likewise writes to
    // standard error itself, and says so as usual.
    let stream = path.as_deref().map_or(Some(Stream::Out), standard_stream);
    // The file named for it (`<uuid>.png`, here or in `-o DIR`) may be
    // where standard output goes (`> <uuid>.png`): the JSON wants it too.
    if format == Format::Json
        && stream == Some(Stream::Out)
        && let Some(path) = &path
    {
        crate::usage_error(
            Some("get"),
            clap::error::ErrorKind::ArgumentConflict,
            &format!(
                "--output json and the PNG both want the standard output ({} is where it goes): \
                 give -o another file or a directory",
                path.display()
            ),
        )
    }
    let (Some(path), None | Some(Stream::Err)) = (path, stream) else {
        stream_png(Stream::Out, &png)?;
        return Ok(ExitCode::SUCCESS);
    };
    let (size, sha256) = (png.len(), faafo_common::fractal::sha256_hex(&png));
    let replaced = if stream.is_some() {
        stream_png(Stream::Err, &png)?;
        false
    } else {
        // As curl -o does, a file there is replaced; said so, not hidden;
        // and a link is written through: the file it names is replaced,
        // the link stays.
        // A pipe or a device, even through a link that names no path
        // (`-o >(convert - out.jpg)` gives `/dev/fd/63`, a link to
        // `pipe:[N]`): written in place, as curl does.
        if tokio::fs::metadata(&path)
            .await
            .is_ok_and(|m| !m.is_file() && !m.is_dir())
        {
            tokio::fs::write(&path, &png)
                .await
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            false
        } else {
            let target = faafo_common::files::through_links(&path);
            let replaced = tokio::fs::symlink_metadata(&target).await.is_ok();
            // A file there that may not be written (read-only) is not
            // replaced behind its back, as curl -o would not.
            if replaced
                && let Err(e) = tokio::fs::OpenOptions::new()
                    .write(true)
                    .open(&target)
                    .await
                && e.kind() == std::io::ErrorKind::PermissionDenied
            {
                return Err(format!("cannot write {}: {e}", path.display()).into());
            }
            write_whole_async(target, png, Durability::Synced).await?;
            replaced
        }
    };
    if format == Format::Json {
        output::line(serde_json::json!({
            "uuid": args.uuid,
            "file": path.display().to_string(),
            "size": size,
            "checksum": sha256,
            "replaced": replaced,
        }))?;
    } else {
        let verb = if replaced { "replaced" } else { "wrote" };
        output::line(format_args!("{verb} {} ({size} bytes)", path.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes the PNG, whole, to standard output or error.
fn stream_png(stream: Stream, png: &[u8]) -> Result<(), String> {
    use std::io::Write;
    let (mut out, name): (Box<dyn Write>, _) = match stream {
        Stream::Out => (Box::new(std::io::stdout().lock()), "standard output"),
        Stream::Err => (Box::new(std::io::stderr().lock()), "standard error"),
    };
    out.write_all(png)
        .and_then(|()| out.flush())
        .map_err(|e| format!("cannot write the PNG to {name}: {e}"))
}

/// One of the process's standard streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stream {
    Out,
    Err,
}

/// Which standard stream `path` is (the same device and inode), if one:
/// `/dev/stdout`, `/dev/fd/2`, or the very file a stream was sent to.
#[cfg(unix)]
pub(crate) fn standard_stream(path: &std::path::Path) -> Option<Stream> {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let target = std::fs::metadata(path).ok()?;
    let is = |fd: std::os::fd::BorrowedFd<'_>| {
        fd.try_clone_to_owned().is_ok_and(|fd| {
            std::fs::File::from(fd)
                .metadata()
                .is_ok_and(|m| m.dev() == target.dev() && m.ino() == target.ino())
        })
    };
    if is(std::io::stdout().as_fd()) {
        Some(Stream::Out)
    } else if is(std::io::stderr().as_fd()) {
        Some(Stream::Err)
    } else {
        None
    }
}

/// Elsewhere a path is taken as a file.
#[cfg(not(unix))]
pub(crate) fn standard_stream(_path: &std::path::Path) -> Option<Stream> {
    None
}

/// Whether `path` names a directory: one that exists, or any path written
/// with a trailing slash (then a missing one is reported by the write).
async fn is_directory(path: &std::path::Path) -> bool {
    path.as_os_str().as_encoded_bytes().ends_with(b"/")
        || tokio::fs::metadata(path)
            .await
            .is_ok_and(|metadata| metadata.is_dir())
}

/// Why a fractal has no image (the API's 409), in the fractal's terms: a
/// failed one never will, and says why; a pending or running one not yet.
/// The API's own message when the fractal cannot be read.
async fn no_image_yet(
    api: &ApiClient,
    uuid: &str,
    conflict: faafo_common::api_client::ApiError,
) -> Box<dyn Error> {
    match api.get(uuid).await {
        Ok(fractal) if fractal.status == FractalStatus::Failed => format!(
            "fractal {uuid} failed, so it has no image: {}",
            output::one_line(output::failure_reason(&fractal))
        )
        .into(),
        Ok(fractal) if fractal.status != FractalStatus::Done => format!(
            "fractal {uuid} is still {}: it has no image yet",
            fractal.status
        )
        .into(),
        _ => conflict.into(),
    }
}
