//! The `faafo-worker render` command: renders a file and reports c, duration, size,
//! throughput and checksum; refuses bad parameters with a message. And
//! `faafo-worker` itself refusing a broker that only its own process sees.

use std::process::Command;

use sha2::{Digest, Sha256};

fn worker() -> Command {
    Command::new(env!("CARGO_BIN_EXE_faafo-worker"))
}

fn field<'a>(stdout: &'a str, name: &str) -> &'a str {
    stdout
        .lines()
        .find_map(|line| line.strip_prefix(name))
        .map(|rest| rest.trim_start_matches(':').trim())
        .unwrap_or_else(|| panic!("no {name:?} in {stdout}"))
}

#[test]
fn render_writes_the_png_and_reports_its_checksum() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("julia.png");
    let output = worker()
        .args([
            "render",
            "--width",
            "64",
            "--height",
            "48",
            "--iterations",
            "128",
        ])
        .args(["--c-re", "-0.8", "--c-im", "0.156", "-o"])
        .arg(&path)
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let bytes = std::fs::read(&path).expect("the PNG was written");
    let sha256: String = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(field(&stdout, "checksum (sha256)"), sha256);
    // The same task as the first golden test.
    assert_eq!(
        sha256,
        "4e783791524e3234dbd1a8c0f94a3c543b6066a767f07daa838b57a861da5862"
    );
    assert_eq!(field(&stdout, "c"), "-0.8+0.156i");
    assert_eq!(field(&stdout, "size"), format!("{} bytes", bytes.len()));
    assert_eq!(field(&stdout, "pixel-iterations"), "39840");
    assert!(field(&stdout, "pixel-iterations/s").parse::<f64>().is_ok());
    assert!(field(&stdout, "render duration").ends_with(" s"));
}

#[test]
fn render_with_a_seed_reports_the_c_it_drew() {
    let dir = tempfile::tempdir().expect("temp dir");
    let run = |seed: &str| {
        let output = worker()
            .args([
                "render",
                "--width",
                "32",
                "--height",
                "32",
                "--iterations",
                "200",
                "--seed",
                seed,
            ])
            .arg("-o")
            .arg(dir.path().join(format!("{seed}.png")))
            .output()
            .expect("runs");
        assert!(output.status.success());
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let (first, again, other) = (run("5"), run("5"), run("6"));
    assert_eq!(field(&first, "c"), field(&again, "c"));
    assert_eq!(
        field(&first, "checksum (sha256)"),
        field(&again, "checksum (sha256)")
    );
    assert_ne!(field(&first, "c"), field(&other, "c"));
}

#[test]
fn render_refuses_bad_parameters_with_a_message() {
    let dir = tempfile::tempdir().expect("temp dir");
    for args in [
        &["--width", "1"][..],
        &["--height", "-5"],
        &["--iterations", "0"],
        &["--xa", "3"],
        &["--ya", "NaN"],
        &["--iterations", "10", "--seed", "1"],
        &["--width", "5000", "--height", "5000"],
    ] {
        let output = worker()
            .arg("render")
            .args(args)
            .arg("-o")
            .arg(dir.path().join("bad.png"))
            .output()
            .expect("runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.starts_with("faafo-worker render: "),
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn help_lists_the_subcommands() {
    let output = worker().arg("--help").output().expect("runs");
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for command in ["serve", "render", "check-config"] {
        assert!(help.contains(command), "{command} missing from:\n{help}");
    }
}

#[test]
fn check_config_names_the_bad_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = dir.path().join("good.conf");
    std::fs::write(
        &good,
        "[DEFAULT]\ntransport_url = rabbit://guest:guest@127.0.0.1:5672/\n[worker]\nexec_timeout = 30\n",
    )
    .expect("write");
    let output = worker()
        .args(["check-config", "--config-file"])
        .arg(&good)
        .output()
        .expect("runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let bad = dir.path().join("bad.conf");
    std::fs::write(&bad, "[worker]\nexec_timeot = 30\n").expect("write");
    let output = worker()
        .args(["check-config", "--config-file"])
        .arg(&bad)
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(1));
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(
        err.contains("bad.conf") && err.contains("[worker] unknown option 'exec_timeot'"),
        "{err}"
    );
}

#[test]
fn serving_without_a_broker_fails_with_one_clear_line() {
    let output = worker()
        .env(
            "FAAFO_DEFAULT__TRANSPORT_URL",
            "amqp://guest:s3cret@127.0.0.1:1/?connection_timeout=2",
        )
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(1));
    let err = String::from_utf8_lossy(&output.stderr);
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("faafo-worker: ") && last.contains("127.0.0.1:1"),
        "{err}"
    );
    assert!(!err.contains("s3cret"), "password shown: {err}");
}

/// A worker refused by RabbitMQ (a wrong password) exits 1 with one line
/// that says why, the password masked: not lapin's protocol-level ERROR
/// lines before it.
#[test]
fn a_refused_login_is_one_line() {
    let url = faafo_common::messaging::TransportUrl::parse(&faafo_common::testing::rabbit_url())
        .expect("FAAFO_TEST_TRANSPORT_URL parses");
    let host = url.hosts.first().expect("a broker host");
    let password = faafo_common::testing::unique_name("wrong");
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("worker.conf");
    std::fs::write(
        &config,
        format!(
            "[DEFAULT]\ntransport_url = rabbit://guest:{password}@{}:{}/\n",
            host.host, host.port
        ),
    )
    .expect("config written");
    let mut child = worker()
        .arg("--config-file")
        .arg(&config)
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("faafo-worker starts");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("waits") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!(
                "faafo-worker did not give up within 60 s: is RabbitMQ running at {}:{}?",
                host.host, host.port
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut err)
        .expect("stderr read");
    assert_eq!(status.code(), Some(1), "{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "one line, the reason:\n{err}");
    assert!(
        lines[0].starts_with("faafo-worker: ") && lines[0].contains("ACCESS_REFUSED"),
        "{err}"
    );
    assert!(!err.contains(&password), "the password is masked:\n{err}");
}

/// Without a `transport_url`, `faafo-worker` would serve the in-process
/// `memory://` broker, where no task ever comes: it refuses to start, and
/// `check-config` refuses the file, saying what to set.
#[test]
fn serving_alone_on_the_in_process_broker_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("worker.conf");
    std::fs::write(&config, "[worker]\nexec_timeout = 60\n").expect("config");
    for args in [&[][..], &["serve"], &["check-config"]] {
        let output = worker()
            .args(args)
            .arg("--config-file")
            .arg(&config)
            .env_remove("RUST_LOG")
            .output()
            .expect("runs");
        let err = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: one line:\n{err}");
        assert!(
            err.starts_with("faafo-worker: [DEFAULT] transport_url is memory://")
                && err.contains("a worker alone would never get a task")
                && err.contains("faafo up"),
            "{args:?}: {err}"
        );
    }
}
