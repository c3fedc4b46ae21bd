//! Secrets stay out of logs and error messages: API tokens, and the
//! passwords in broker and database URLs (URLs are always redacted), even
//! at debug level.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use faafo_common::api_client::ApiClient;
use faafo_common::fractal::NewFractal;
use support::*;

fn run_to_end(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut command = Command::new(faafo());
    command.args(args).stdin(Stdio::null());
    for (k, v) in env {
        command.env(k, v);
    }
    let output = command.output().expect("faafo runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code(), text)
}

#[test]
fn database_passwords_never_show_in_errors() {
    let (code, text) = run_to_end(
        &["api", "--debug"],
        &[
            (
                "FAAFO_DEFAULT__DATABASE_URL",
                "postgresql://postgres:DB-S3CRET-PW@127.0.0.1:1/faafo",
            ),
            ("FAAFO_DATABASE__CONNECT_TIMEOUT", "2"),
            ("FAAFO_API__BIND_PORT", "0"),
        ],
    );
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("127.0.0.1:1"), "the error says where: {text}");
    assert!(!text.contains("DB-S3CRET-PW"), "password shown: {text}");
    let (code, text) = run_to_end(
        &["check-config"],
        &[(
            "FAAFO_DEFAULT__DATABASE_URL",
            "oracle://u:DB-S3CRET-PW@h/db",
        )],
    );
    assert_eq!(code, Some(1), "{text}");
    assert!(!text.contains("DB-S3CRET-PW"), "password shown: {text}");
}

#[test]
fn broker_passwords_never_show_in_errors() {
    // The real broker, with a wrong password: ACCESS_REFUSED.
    let url = faafo_common::testing::rabbit_url();
    let parsed = faafo_common::messaging::TransportUrl::parse(&url).expect("test broker URL");
    let host = &parsed.hosts[0];
    let wrong = format!(
        "amqp://{}:AMQP-S3CRET-PW@{}:{}/",
        host.username, host.host, host.port
    );
    let (code, text) = run_to_end(
        &["worker", "--debug"],
        &[("FAAFO_DEFAULT__TRANSPORT_URL", &wrong)],
    );
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains(&host.host), "the error says where: {text}");
    assert!(!text.contains("AMQP-S3CRET-PW"), "password shown: {text}");
    let (code, text) = run_to_end(
        &["check-config"],
        &[(
            "FAAFO_DEFAULT__TRANSPORT_URL",
            "rabbit://u:AMQP-S3CRET-PW@h:notaport/",
        )],
    );
    assert_eq!(code, Some(1), "{text}");
    assert!(!text.contains("AMQP-S3CRET-PW"), "password shown: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_tokens_never_show_in_logs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let token = "TOKEN-S3CRET-0123456789";
    let wrong = "WRONG-T0KEN-9876543210";
    let config = dir.path().join("faafo.conf");
    std::fs::write(
        &config,
        format!(
            "[DEFAULT]\nstate_path = {}\ndebug = true\n\n[api]\nbind_port = {port}\nauth_strategy = token\nauth_tokens = {token}\n",
            dir.path().display()
        ),
    )
    .expect("config");
    let mut service = Service::start("api", dir.path(), &config, &["api"]);
    let url = format!("http://127.0.0.1:{port}");
    let good = ApiClient::new(&url, Some(token.into())).expect("client");
    api_ready(&good, &service).await;
    let new = NewFractal {
        uuid: None,
        width: 16,
        height: 16,
        iterations: 16,
        xa: -1.0,
        xb: 1.0,
        ya: -1.0,
        yb: 1.0,
        seed: Some(1),
        c_re: None,
        c_im: None,
        status: None,
        attempts: None,
    };
    let created = good.create(&new).await.expect("created with the token");
    let bad = ApiClient::new(&url, Some(wrong.into())).expect("client");
    let err = bad.create(&new).await.expect_err("refused");
    assert_eq!(err.status(), Some(401));
    let err = bad.delete(&created.uuid).await.expect_err("refused");
    assert_eq!(err.status(), Some(401));
    service.signal("TERM");
    let log = tokio::task::spawn_blocking(move || {
        service.wait(Duration::from_secs(30));
        service.log_text()
    })
    .await
    .expect("join");
    assert!(log.contains("401"), "the refusals are logged: {log}");
    assert!(!log.contains(token), "the token is logged: {log}");
    assert!(!log.contains(wrong), "a refused token is logged: {log}");
}
