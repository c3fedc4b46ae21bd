//! Notifications: a `Notifier` and `NotificationListener`s in pools.
//!
//! Two listeners share the pool `audit` (each notification goes to one of
//! them), a third in the pool `billing` gets every notification, and a
//! fourth, in no pool, listens to `error` notifications only: it reads the
//! `notifications.error` queue, which every listener without a pool shares. One handler asks for a
//! notification to be requeued once. The sender's request context travels
//! with each notification.
//!
//! ```sh
//! cargo run -p faafo-common --example notifications
//! cargo run -p faafo-common --example notifications -- amqp://guest:guest@127.0.0.1:5672/demo
//! ```
//!
//! The listeners' queues (`audit`, `billing`, `notifications.error`) and the
//! notifier's (`notifications.info`, `notifications.error`) stay on the
//! broker after the program ends, as oslo.messaging's do, and keep
//! collecting notifications: a second run on the same RabbitMQ vhost first
//! gets what was sent since the first one stopped, so its counts are higher.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use faafo_common::messaging::*;
use serde::Serialize;

#[derive(Serialize)]
struct Rendered {
    uuid: String,
    seconds: f64,
}

/// Starts a listener that counts and prints what it gets.
async fn listener(
    transport: &Transport,
    name: &'static str,
    pool: Option<&str>,
    priorities: Vec<Priority>,
    seen: Arc<AtomicUsize>,
) -> Result<NotificationListener> {
    let requeued = Arc::new(AtomicUsize::new(0));
    let mut builder = NotificationListener::builder(transport).priorities(priorities);
    if let Some(pool) = pool {
        builder = builder.pool(pool);
    }
    builder
        .start(move |n: Notification| {
            let seen = seen.clone();
            let requeued = requeued.clone();
            async move {
                // The billing listener puts its first notification back once.
                if name == "billing" && requeued.fetch_add(1, Ordering::SeqCst) == 0 {
                    println!("  [{name}] requeue {} for later", n.event_type);
                    return NotificationResult::Requeue;
                }
                println!(
                    "  [{name}] {} {} from {} ({}): {}",
                    n.priority,
                    n.event_type,
                    n.publisher_id,
                    n.context.log_id(),
                    n.payload
                );
                seen.fetch_add(1, Ordering::SeqCst);
                NotificationResult::Handled
            }
        })
        .await
}

/// Waits until `counter` reaches `n` (at most 5 s).
async fn wait_for(counter: &AtomicUsize, n: usize) {
    for _ in 0..500 {
        if counter.load(Ordering::SeqCst) >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!(
        "  (gave up waiting: {} of {n})",
        counter.load(Ordering::SeqCst)
    );
}

#[tokio::main]
async fn main() -> Result<()> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "memory://".into());
    let transport = Transport::connect(&url).await?;

    let audit = Arc::new(AtomicUsize::new(0));
    let billing = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(AtomicUsize::new(0));
    let all = Priority::ALL.to_vec();
    let listeners = vec![
        listener(
            &transport,
            "audit-1",
            Some("audit"),
            all.clone(),
            audit.clone(),
        )
        .await?,
        listener(
            &transport,
            "audit-2",
            Some("audit"),
            all.clone(),
            audit.clone(),
        )
        .await?,
        listener(&transport, "billing", Some("billing"), all, billing.clone()).await?,
        listener(
            &transport,
            "errors",
            None,
            vec![Priority::Error],
            errors.clone(),
        )
        .await?,
    ];

    let notifier = Notifier::new(&transport, "faafo.worker.host1");
    let ctx = RequestContext::with_new_request_id();
    for i in 0..4 {
        let payload = Rendered {
            uuid: format!("fractal-{i}"),
            seconds: 0.5 * f64::from(i),
        };
        notifier.info(&ctx, "fractal.rendered", &payload).await?;
    }
    notifier
        .error(
            &ctx,
            "fractal.failed",
            &serde_json::json!({"uuid": "fractal-9"}),
        )
        .await?;

    wait_for(&audit, 5).await;
    wait_for(&billing, 5).await;
    wait_for(&errors, 1).await;
    println!(
        "audit pool: {} (shared by two listeners), billing pool: {}, errors: {}",
        audit.load(Ordering::SeqCst),
        billing.load(Ordering::SeqCst),
        errors.load(Ordering::SeqCst)
    );

    for listener in listeners {
        listener.stop().await;
    }
    transport.close().await;
    Ok(())
}
