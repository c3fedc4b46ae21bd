//! faafo-rpc-bench: measures the messaging library, in the spirit of
//! oslo.messaging's `tools/simulator.py`.
//!
//! ```text
//! faafo-rpc-bench local  --url amqp://guest:guest@127.0.0.1:5672/ --mode call --messages 20000 --in-flight 1
//! faafo-rpc-bench server --url ... --topic bench
//! faafo-rpc-bench client --url ... --topic bench --mode cast --messages 100000 --in-flight 64
//! ```
//!
//! `local` runs a server and a client in one process, each with its own
//! connection; `server` and `client` run them apart. The client prints the
//! rate and the latency percentiles (per call: until the result; per cast:
//! until the broker's confirmation).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand, ValueEnum};
use faafo_common::messaging::*;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

#[derive(Parser)]
#[command(
    name = "faafo-rpc-bench",
    version,
    about = "Benchmark faafo's oslo.messaging-style RPC over any transport URL"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a server and a client in this process (separate connections).
    Local {
        #[command(flatten)]
        server: ServerArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Run only the server, until Ctrl-C.
    Server {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Run only the client against a running server.
    Client {
        #[command(flatten)]
        target: TargetArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(clap::Args, Clone)]
struct TargetArgs {
    /// Transport URL (rabbit://, amqp://, memory://).
    #[arg(
        long,
        default_value = "amqp://guest:guest@127.0.0.1:5672/",
        env = "FAAFO_BENCH_URL"
    )]
    url: String,
    /// Topic.
    #[arg(long, default_value = "faafo-bench")]
    topic: String,
}

#[derive(clap::Args, Clone)]
struct ServerArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// Concurrent requests the server runs (and its prefetch).
    #[arg(long, default_value_t = 64)]
    executor: usize,
    /// Acknowledge before running, as oslo does (default: after replying).
    #[arg(long)]
    ack_before: bool,
}

#[derive(clap::Args, Clone)]
struct ClientArgs {
    /// What to send.
    #[arg(long, value_enum, default_value_t = Mode::Call)]
    mode: Mode,
    /// How many messages.
    #[arg(long, default_value_t = 10_000)]
    messages: u64,
    /// How many at once.
    #[arg(long, default_value_t = 1)]
    in_flight: u64,
    /// Bytes of payload per message.
    #[arg(long, default_value_t = 0)]
    payload: usize,
    /// Body encoding.
    #[arg(long, value_enum, default_value_t = CodecArg::Json)]
    codec: CodecArg,
    /// Messages sent before measuring.
    #[arg(long, default_value_t = 500)]
    warmup: u64,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
enum Mode {
    Call,
    Cast,
    Fanout,
}

#[derive(Clone, Copy, ValueEnum, Debug)]
enum CodecArg {
    Json,
    Msgpack,
}

#[derive(Serialize, Deserialize)]
struct EchoArgs {
    #[serde(with = "faafo_common::messaging::bytes")]
    data: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct NoArgs {}

async fn start_server(
    args: &ServerArgs,
    received: Arc<AtomicU64>,
) -> Result<(Transport, RpcServer), MessagingError> {
    let transport = Transport::builder(&args.target.url)
        .connection_name("faafo-rpc-bench server")
        .connect()
        .await?;
    let endpoint = Endpoint::new()
        .method("echo", |_ctx, a: EchoArgs| async move {
            Ok::<_, RemoteError>(a.data.len())
        })
        .method("noop", move |_ctx, _: NoArgs| {
            received.fetch_add(1, Ordering::Relaxed);
            async { Ok::<_, RemoteError>(()) }
        });
    let server = RpcServer::builder(
        &transport,
        Target::topic(&args.target.topic).with_server("bench-server"),
    )
    .endpoint(endpoint)
    .executor_size(args.executor)
    .ack_mode(if args.ack_before {
        AckMode::BeforeDispatch
    } else {
        AckMode::AfterDispatch
    })
    .start()
    .await?;
    Ok((transport, server))
}

struct Report {
    sent: u64,
    elapsed: Duration,
    latency: Histogram<u64>,
}

async fn run_client(
    target: &TargetArgs,
    args: &ClientArgs,
    count: u64,
) -> Result<Report, MessagingError> {
    let transport = Transport::builder(&target.url)
        .connection_name("faafo-rpc-bench client")
        .codec(match args.codec {
            CodecArg::Json => Codec::Json,
            CodecArg::Msgpack => Codec::MsgPack,
        })
        .connect()
        .await?;
    let client = RpcClient::new(&transport, Target::topic(&target.topic))
        .timeout(Duration::from_secs(30))
        .fanout(args.mode == Mode::Fanout);
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..args.in_flight.max(1) {
        let client = client.clone();
        let next = next.clone();
        let mode = args.mode;
        let data = vec![b'x'; args.payload];
        workers.push(tokio::spawn(async move {
            let mut latency =
                Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds");
            let ctx = RequestContext::with_new_request_id();
            let args = EchoArgs { data };
            while next.fetch_add(1, Ordering::Relaxed) < count {
                let t = Instant::now();
                match mode {
                    Mode::Call => {
                        let _: usize = client.call(&ctx, "echo", &args).await?;
                    }
                    Mode::Cast | Mode::Fanout => client.cast(&ctx, "noop", &NoArgs {}).await?,
                }
                let _ = latency.record(t.elapsed().as_micros() as u64);
            }
            Ok::<_, MessagingError>(latency)
        }));
    }
    let mut latency =
        Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds");
    for worker in workers {
        let h = worker
            .await
            .map_err(|e| MessagingError::Invalid(format!("client task failed: {e}")))??;
        latency
            .add(h)
            .map_err(|e| MessagingError::Invalid(e.to_string()))?;
    }
    let elapsed = started.elapsed();
    transport.close().await;
    Ok(Report {
        sent: count,
        elapsed,
        latency,
    })
}

fn print_report(target: &TargetArgs, args: &ClientArgs, report: &Report) {
    let ms = |q: f64| report.latency.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "{mode:?} x{n} in-flight={m} codec={codec:?} payload={p}B url={url}: {rate:.0} msg/s, \
         latency p50 {p50:.3} ms, p90 {p90:.3} ms, p99 {p99:.3} ms, max {max:.3} ms ({secs:.2} s)",
        mode = args.mode,
        n = report.sent,
        m = args.in_flight,
        codec = args.codec,
        p = args.payload,
        url = redact_url(&target.url),
        rate = report.sent as f64 / report.elapsed.as_secs_f64(),
        p50 = ms(0.50),
        p90 = ms(0.90),
        p99 = ms(0.99),
        max = report.latency.max() as f64 / 1000.0,
        secs = report.elapsed.as_secs_f64(),
    );
}

async fn run(cli: Cli) -> Result<(), MessagingError> {
    match cli.command {
        Command::Server { server } => {
            let received = Arc::new(AtomicU64::new(0));
            let (transport, running) = start_server(&server, received).await?;
            println!(
                "serving topic '{}' on {}; Ctrl-C to stop",
                server.target.topic,
                redact_url(&server.target.url)
            );
            let _ = tokio::signal::ctrl_c().await;
            println!("{:?}", running.stats());
            running.stop().await;
            transport.close().await;
        }
        Command::Client { target, client } => {
            if client.warmup > 0 {
                run_client(&target, &client, client.warmup).await?;
            }
            let report = run_client(&target, &client, client.messages).await?;
            print_report(&target, &client, &report);
        }
        Command::Local { server, client } => {
            let target = &server.target;
            let received = Arc::new(AtomicU64::new(0));
            let (transport, running) = start_server(&server, received.clone()).await?;
            if client.warmup > 0 {
                run_client(target, &client, client.warmup).await?;
            }
            let report = run_client(target, &client, client.messages).await?;
            print_report(target, &client, &report);
            if client.mode != Mode::Call {
                let expected = client.messages + client.warmup;
                let deadline = Instant::now() + Duration::from_secs(60);
                while received.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                println!(
                    "server ran {} of {expected} casts",
                    received.load(Ordering::Relaxed)
                );
            }
            running.stop().await;
            transport.close().await;
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = run(cli).await {
        eprintln!("faafo-rpc-bench: {e}");
        std::process::exit(1);
    }
}
