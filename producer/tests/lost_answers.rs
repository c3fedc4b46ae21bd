//! A state change whose answer is lost (the connection broke after the API
//! applied it) is sent again; the API refuses the repeat (412: the task has
//! moved on, by that very change). The producer reads the task back and
//! takes the change for its own, instead of leaving the task it holds to
//! nobody until recovery. A change it did not make stays refused. The API
//! runs in this process (SQLite in a temporary directory), behind a proxy
//! that eats the first answer.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use faafo_common::api_client::ApiClient;
use faafo_common::configuration::FaafoConfig;
use faafo_common::fractal::{Fractal, FractalStatus, FractalUpdate};
use faafo_common::messaging::{RpcClient, Target, Transport};
use faafo_common::shutdown::Shutdown;
use faafo_producer::{Producer, ProducerSettings, ResilientApi};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

mod support;
use support::{LocalApi, tiny_task};

/// A TCP proxy to `target` that, on its first connection, passes the
/// request on but drops the connection once the answer starts arriving
/// (the API has done the work, the client never hears of it), after
/// `eaten` is told and `release` says so; later connections pass through.
/// `instead` says what the client gets in place of the answer.
struct AnswerEater {
    url: String,
    connections: Arc<AtomicUsize>,
    eaten: Arc<Notify>,
    release: Arc<Notify>,
}

/// What the client of [`answer_eater`] gets instead of the first answer.
#[derive(Clone, Copy)]
enum Instead {
    /// The connection dropped.
    Nothing,
    /// A 502, as from a proxy whose upstream broke off.
    BadGateway,
    /// A 201 whose body is cut short (a proxy's fault, a broken link).
    Garbled,
    /// The answer itself, late.
    Late,
}

async fn answer_eater(target: String, instead: Instead) -> AnswerEater {
    let eaten_at = 1;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    let connections = Arc::new(AtomicUsize::new(0));
    let (eaten, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let counted = connections.clone();
    let (told, held) = (eaten.clone(), release.clone());
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let n = counted.fetch_add(1, Ordering::SeqCst);
            let target = target.clone();
            let (told, held) = (told.clone(), held.clone());
            tokio::spawn(async move {
                let Ok(mut upstream) = TcpStream::connect(&target).await else {
                    return;
                };
                if n >= eaten_at {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                    return;
                }
                let (mut from_client, mut client_write) = client.into_split();
                let (mut from_upstream, mut to_upstream) = upstream.into_split();
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut from_client, &mut to_upstream).await;
                });
                let mut answer = [0u8; 1];
                let _ = from_upstream.read(&mut answer).await;
                told.notify_one();
                held.notified().await;
                if let Instead::Late = instead {
                    let _ = client_write.write_all(&answer).await;
                    let _ = tokio::io::copy(&mut from_upstream, &mut client_write).await;
                    return;
                }
                let answer: &[u8] = match instead {
                    Instead::Nothing | Instead::Late => b"",
                    Instead::BadGateway => {
                        b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                    }
                    Instead::Garbled => {
                        b"HTTP/1.1 201 Created\r\ncontent-type: application/json\r\ncontent-length: 5\r\nconnection: close\r\n\r\n{oops"
                    }
                };
                let _ = client_write.write_all(answer).await;
                drop(client_write);
            });
        }
    });
    AnswerEater {
        url,
        connections,
        eaten,
        release,
    }
}

/// Marks `task` running (attempt 2) at the revision it was created with,
/// through `api`, while `eater` eats the first answer; checks that the
/// change was applied once.
async fn mark_running_through(
    api: &ResilientApi,
    eater: &AnswerEater,
    task: &Fractal,
    running: &FractalUpdate,
) -> Result<(), faafo_common::api_client::ApiError> {
    let (marked, ()) = tokio::join!(
        api.update(
            "marking the task running",
            &task.uuid,
            running,
            task.revision
        ),
        async {
            eater.eaten.notified().await;
            eater.release.notify_one();
        }
    );
    let marked = marked?;
    assert_eq!(
        (marked.status, marked.attempts),
        (FractalStatus::Running, 2)
    );
    assert_eq!(
        marked.revision,
        task.revision.map(|r| r + 1),
        "applied once"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_whose_answer_was_lost_is_recognised_as_its_own() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = FaafoConfig::default();
    config.default.state_path = dir.path().display().to_string();
    let local_api = LocalApi::start(&mut config).await;
    let direct = ApiClient::new(&config.default.endpoint_url, None).expect("client");
    let target = config
        .default
        .endpoint_url
        .trim_start_matches("http://")
        .to_string();

    // Marking a task running (attempt 2): the first answer is eaten.
    let task = direct.create(&tiny_task(None)).await.expect("a task");
    let eater = answer_eater(target.clone(), Instead::Nothing).await;
    let api = ResilientApi::new(ApiClient::new(&eater.url, None).expect("client"));
    let running = FractalUpdate {
        status: Some(FractalStatus::Running),
        attempts: Some(2),
        ..FractalUpdate::default()
    };
    mark_running_through(&api, &eater, &task, &running)
        .await
        .expect("the lost answer's change is recognised");
    assert!(
        eater.connections.load(Ordering::SeqCst) >= 2,
        "the first answer was eaten and the change sent again"
    );

    // The same change made by somebody else, with no answer lost: refused.
    let other = direct.create(&tiny_task(None)).await.expect("a task");
    direct
        .update_at_revision(&other.uuid, &running, other.revision)
        .await
        .expect("another producer takes it over");
    let direct_api = ResilientApi::new(direct.clone());
    let refused = direct_api
        .update(
            "marking the task running",
            &other.uuid,
            &running,
            other.revision,
        )
        .await
        .expect_err("another's change is not this one's");
    assert!(refused.is_stale(), "{refused}");

    // A lost answer, but somebody changed the task further since: refused.
    let third = direct.create(&tiny_task(None)).await.expect("a task");
    let eater = answer_eater(target.clone(), Instead::Nothing).await;
    let api = ResilientApi::new(ApiClient::new(&eater.url, None).expect("client"));
    let failed = FractalUpdate {
        status: Some(FractalStatus::Failed),
        error: Some("no worker".into()),
        ..FractalUpdate::default()
    };
    let (first, second) = tokio::join!(
        api.update(
            "marking the task failed",
            &third.uuid,
            &failed,
            third.revision
        ),
        async {
            // Between the eaten answer and the retry.
            eater.eaten.notified().await;
            let current = direct.get(&third.uuid).await.expect("read");
            let taken = direct
                .update_at_revision(&third.uuid, &running, current.revision)
                .await;
            eater.release.notify_one();
            taken
        }
    );
    second.expect("another producer takes it over after the failure");
    let refused = first.expect_err("moved on twice: not this change's doing alone");
    assert!(refused.is_stale(), "{refused}");
    let after = direct.get(&third.uuid).await.expect("read");
    assert_eq!((after.status, after.attempts), (FractalStatus::Running, 2));

    // Two API hosts: the first applies the change but answers 502 (a
    // proxy whose upstream broke off), the client passes the same request
    // to the second at once, which refuses it (412): recognised too.
    let fourth = direct.create(&tiny_task(None)).await.expect("a task");
    let eater = answer_eater(target, Instead::BadGateway).await;
    let hosts = format!("{},{}", eater.url, config.default.endpoint_url);
    let api = ResilientApi::new(ApiClient::new(&hosts, None).expect("client"));
    mark_running_through(&api, &eater, &fourth, &running)
        .await
        .expect("the change the first host made is recognised");

    local_api.stop().await;
}

/// `host:port` of `config`'s API.
fn api_address(config: &FaafoConfig) -> String {
    config
        .default
        .endpoint_url
        .trim_start_matches("http://")
        .to_string()
}

/// A producer of `config` on `transport` whose API requests go through
/// `eater`.
fn producer_through(
    eater: &AnswerEater,
    config: &FaafoConfig,
    transport: &Transport,
    stop: Shutdown,
) -> Producer {
    let settings = ProducerSettings::from_config(config);
    Producer::new(
        ResilientApi::new(ApiClient::new(&eater.url, None).expect("client")),
        RpcClient::new(transport, Target::topic(&settings.topic)),
        settings,
        stop,
    )
}

/// A task whose creation was answered 201 with a body cut short (the API
/// created it) is read back and dispatched: it was counted failed and left
/// `running` with no call, for recovery to find a task_timeout later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_created_with_a_garbled_answer_is_read_back_and_rendered() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = support::small_tasks_config(dir.path(), "garbled-create", 1, 2);
    let local_api = LocalApi::start(&mut config).await;
    config.validate().expect("valid configuration");
    let (transport, worker) = support::rendering_worker(&config, "garbled").await;
    let eater = answer_eater(api_address(&config), Instead::Garbled).await;
    let producer = producer_through(&eater, &config, &transport, Shutdown::new());
    let uuid = uuid::Uuid::new_v4().to_string();
    let (report, ()) = tokio::join!(producer.one_shot(vec![tiny_task(Some(&uuid))]), async {
        eater.eaten.notified().await;
        eater.release.notify_one();
    });
    assert_eq!(
        (report.done, report.failed, report.other),
        (1, 0, 0),
        "the task created is rendered: {report:?}"
    );
    let direct = ApiClient::new(&config.default.endpoint_url, None).expect("client");
    let task = direct.get(&uuid).await.expect("the task");
    assert_eq!((task.status, task.attempts), (FractalStatus::Done, 1));

    worker.stop().await;
    transport.close().await;
    local_api.stop().await;
}

/// A producer stopped while the API takes its time to answer a task's
/// creation (made, its answer not yet back) waits a little for that
/// answer and gives back the attempt the task was created with, as a stop
/// gives back a call's: the next start's dispatch is its first attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_during_a_creation_gives_its_attempt_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = support::small_tasks_config(dir.path(), "stop-creating", 1, 2);
    let local_api = LocalApi::start(&mut config).await;
    config.validate().expect("valid configuration");
    let transport = Transport::connect(&config.default.transport_url)
        .await
        .expect("the transport");
    let eater = answer_eater(api_address(&config), Instead::Late).await;
    let stop = Shutdown::new();
    let producer = producer_through(&eater, &config, &transport, stop.clone());
    let uuid = uuid::Uuid::new_v4().to_string();
    let (report, ()) = tokio::join!(producer.one_shot(vec![tiny_task(Some(&uuid))]), async {
        // Made by the API, its answer held: the producer is told to stop.
        eater.eaten.notified().await;
        stop.trigger();
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        eater.release.notify_one();
    });
    assert_eq!((report.done, report.other), (0, 1), "{report:?}");
    let direct = ApiClient::new(&config.default.endpoint_url, None).expect("client");
    let task = direct.get(&uuid).await.expect("the task was created");
    assert_eq!(
        (task.status, task.attempts),
        (FractalStatus::Running, 0),
        "left running for the next start, its attempt given back"
    );
    transport.close().await;
    local_api.stop().await;
}
