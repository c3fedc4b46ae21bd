//! The `faafo` command line as a user runs it: `create` (with `--wait`),
//! `list`, `show`, `get`, `delete`, both output formats, `--token`, the
//! errors (one line, a non-zero exit, never a panic) and `--help` on every
//! command. The API is `faafo up --no-producer` (the API, a worker and a
//! dispatcher that generates nothing) or `faafo api` alone, in processes of
//! their own on SQLite and the in-process broker.

mod support;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use faafo_common::api_client::ApiClient;
use serde_json::Value;
use support::*;

/// Runs `faafo <args>` against `endpoint` and waits for it, at most
/// [`COMMAND_TIMEOUT`] (then it is killed and the test fails: a `--wait`
/// nobody answers must not hang the suite).
fn faafo_at(endpoint: &str, args: &[&str]) -> Output {
    let mut command = Command::new(faafo());
    command.arg("--endpoint-url").arg(endpoint).args(args);
    run(command, &format!("faafo {args:?}"))
}

/// The address of a proxy to the API at `target` (host:port) whose first
/// connection is answered `503 Service Unavailable`, whatever it asked;
/// the next ones go through.
fn unavailable_once_before(target: &str) -> String {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    let target = target.to_string();
    std::thread::spawn(move || {
        for (n, client) in listener.incoming().enumerate() {
            let Ok(client) = client else { return };
            if n == 0 {
                // The whole request read, so that the answer is not lost
                // to a reset.
                let mut reader = BufReader::new(client);
                let mut length = 0;
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|read| read > 2) {
                    if let Some((name, value)) = line.split_once(':')
                        && name.eq_ignore_ascii_case("content-length")
                    {
                        length = value.trim().parse().unwrap_or(0);
                    }
                    line.clear();
                }
                let mut body = vec![0; length];
                let _ = reader.read_exact(&mut body);
                let _ = reader.get_mut().write_all(
                    b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                );
                continue;
            }
            let Ok(upstream) = std::net::TcpStream::connect(&target) else {
                return;
            };
            let (Ok(mut client_in), Ok(mut upstream_in)) =
                (client.try_clone(), upstream.try_clone())
            else {
                return;
            };
            let (mut client_out, mut upstream_out) = (client, upstream);
            // The client gone, the API's side closed too.
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut client_in, &mut upstream_out);
                let _ = upstream_out.shutdown(std::net::Shutdown::Both);
            });
            std::thread::spawn(move || std::io::copy(&mut upstream_in, &mut client_out));
        }
    });
    url
}

/// Runs `command` to its end, at most [`COMMAND_TIMEOUT`]; its output is
/// read as it comes (a full pipe cannot stall it).
fn run(command: Command, what: &str) -> Output {
    finish(spawn(command, what), what)
}

/// Starts `command` with its standard output and error piped.
fn spawn(mut command: Command, what: &str) -> std::process::Child {
    command
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"))
}

/// Waits for `child` to end, at most [`COMMAND_TIMEOUT`], reading what is
/// left of its output.
fn finish(child: std::process::Child, what: &str) -> Output {
    let pid = child.id();
    let (done, output) = std::sync::mpsc::channel();
    std::thread::spawn(move || done.send(child.wait_with_output()));
    match output.recv_timeout(COMMAND_TIMEOUT) {
        Ok(output) => output.unwrap_or_else(|e| panic!("{what}: {e}")),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("{what} still running after {COMMAND_TIMEOUT:?}");
        }
    }
}

/// Sends `child` Ctrl-C's SIGINT and waits for its end, as [`finish`].
fn interrupt(child: std::process::Child, what: &str) -> Output {
    signal(child, "-INT", what)
}

/// Sends `child` `signal` (`-INT`, `-TERM`) and waits for its end.
fn signal(child: std::process::Child, signal: &str, what: &str) -> Output {
    let status = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "{what}: kill {signal}");
    finish(child, what)
}

/// Longest a command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The command succeeded; its standard output.
fn ok(output: Output, what: &str) -> String {
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}{}",
        output.status,
        stdout(&output),
        stderr(&output)
    );
    stdout(&output)
}

/// The command failed as a user should see it: exit 1 and one line on
/// standard error, starting with `faafo:` and containing `expected`.
fn refused(output: Output, what: &str, expected: &str) {
    let err = stderr(&output);
    assert_eq!(
        output.status.code(),
        Some(1),
        "{what}: exit 1 expected, got {}:\n{err}",
        output.status
    );
    assert!(!err.contains("panicked"), "{what} panicked:\n{err}");
    assert_eq!(err.lines().count(), 1, "{what}: one line expected:\n{err}");
    assert!(
        err.starts_with("faafo: ") && err.contains(expected),
        "{what}: {expected:?} expected in {err:?}"
    );
}

fn json(text: &str, what: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{what}: not JSON ({e}):\n{text}"))
}

/// A configuration with its data in `dir` and the `sections` after
/// `[DEFAULT]`.
fn write_config(dir: &Path, sections: &str) -> std::path::PathBuf {
    let text = format!("[DEFAULT]\nstate_path = {}\n\n{sections}", dir.display());
    support::write_config(dir, "faafo.conf", &text)
}

/// A fractal's field as text.
fn field<'a>(fractal: &'a Value, name: &str) -> &'a str {
    fractal[name]
        .as_str()
        .unwrap_or_else(|| panic!("{name} missing from {fractal}"))
}

/// `create`'s options for a render that takes minutes, even in a release
/// build: c = 0, every pixel of the unit disk takes all its iterations.
const LONG_RENDER: &[&str] = &[
    "--width",
    "4000",
    "--height",
    "4000",
    "--iterations",
    "100000",
    "--c-re",
    "0",
    "--c-im",
    "0",
];

/// `faafo up --no-producer` on a port of its own, with `sections` as its
/// configuration, once its API answers: its directory, the service and
/// the API's URL.
async fn up_without_producer(sections: &str) -> (tempfile::TempDir, Service, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), sections);
    let (up, url) = up_on(dir.path(), &config).await;
    (dir, up, url)
}

/// `faafo up --no-producer` with `config`, on a free port, once its API
/// answers; and the API's URL.
async fn up_on(dir: &Path, config: &Path) -> (Service, String) {
    let port = free_port();
    let up = Service::start(
        "up",
        dir,
        config,
        &["up", "--port", &port.to_string(), "--no-producer"],
    );
    let url = format!("http://127.0.0.1:{port}");
    api_ready(&ApiClient::new(&url, None).expect("client"), &up).await;
    (up, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_wait_list_show_get_and_delete() {
    // Pending fractals are picked up every second.
    let (dir, _up, url) = up_without_producer("[producer]\npoll_interval = 1\n").await;
    let at = |args: &[&str]| faafo_at(&url, args);

    // Two fractals with fixed sizes, rendered before the command returns;
    // in JSON, one document with them as they ended up.
    let created = ok(
        at(&[
            "--output",
            "json",
            "create",
            "--width",
            "64",
            "--height",
            "48",
            "--iterations",
            "40",
            "--tasks",
            "2",
            "--wait",
        ]),
        "create --wait",
    );
    let created = json(&created, "create --wait --output json");
    let created = created.as_array().expect("an array");
    assert_eq!(created.len(), 2, "{created:?}");
    for fractal in created {
        assert_eq!(field(fractal, "status"), "done", "{fractal}");
        assert_eq!(fractal["width"], 64);
        assert_eq!(fractal["height"], 48);
        assert_eq!(fractal["iterations"], 40);
    }
    let (first, second) = (field(&created[0], "uuid"), field(&created[1], "uuid"));

    // A table too, with the count of fractals.
    let table = ok(at(&["create", "--width", "64", "--height", "64"]), "create");
    assert!(
        table.contains("64 x 64 px") && table.contains("1 fractal(s)"),
        "{table}"
    );

    let done = json(
        &ok(
            at(&["--output", "json", "list", "--status", "done"]),
            "list",
        ),
        "list --output json",
    );
    let done: Vec<&str> = done
        .as_array()
        .expect("an array")
        .iter()
        .map(|f| field(f, "uuid"))
        .collect();
    assert!(done.contains(&first) && done.contains(&second), "{done:?}");
    let table = ok(at(&["list"]), "list");
    assert!(
        table.contains(first) && table.contains("3 fractal(s)"),
        "{table}"
    );

    let shown = json(
        &ok(at(&["--output", "json", "show", first]), "show"),
        "show --output json",
    );
    let checksum = field(&shown, "checksum").to_string();
    let table = ok(at(&["show", first]), "show");
    assert!(
        table.contains(&checksum) && table.contains("64 x 48 px"),
        "{table}"
    );

    // The PNG as stored: its sha256 is the checksum.
    let png = dir.path().join("first.png");
    let said = ok(
        at(&["get", first, "-o", png.to_str().expect("utf-8 path")]),
        "get -o",
    );
    assert!(said.starts_with("wrote "), "{said}");
    let bytes = std::fs::read(&png).expect("the PNG");
    assert_eq!(sha256_hex(&bytes), checksum);
    // Again: the file is replaced, and that is said.
    let said = ok(
        at(&["get", first, "-o", png.to_str().expect("utf-8 path")]),
        "get -o over a file",
    );
    assert!(said.starts_with("replaced "), "{said}");
    let by_long_name = dir.path().join("again.png");
    ok(
        at(&[
            "get",
            first,
            "--file",
            by_long_name.to_str().expect("utf-8"),
        ]),
        "get --file",
    );
    assert_eq!(std::fs::read(&by_long_name).expect("the PNG"), bytes);
    // `-o -`: the PNG on standard output, nothing else there.
    let piped = at(&["get", first, "-o", "-"]);
    assert!(piped.status.success(), "{}", stderr(&piped));
    assert_eq!(piped.stdout, bytes);
    // `-o /dev/stdout` is the same, to a pipe or to a file standard output
    // was sent to (which was once replaced from under the redirection,
    // and /dev/stdout by a file, for root).
    let piped = at(&["get", first, "-o", "/dev/stdout"]);
    assert!(piped.status.success(), "{}", stderr(&piped));
    assert_eq!(piped.stdout, bytes);
    let redirected = dir.path().join("redirected.png");
    let mut command = Command::new(faafo());
    command
        .arg("--endpoint-url")
        .arg(&url)
        .args(["get", first, "-o", "/dev/stdout"])
        .stdout(std::fs::File::create(&redirected).expect("a file"));
    let status = command.status().expect("faafo get");
    assert!(status.success());
    assert_eq!(std::fs::read(&redirected).expect("the PNG"), bytes);
    assert!(
        std::fs::symlink_metadata("/dev/stdout")
            .expect("/dev/stdout")
            .file_type()
            .is_symlink(),
        "/dev/stdout is still a link"
    );
    // A link to a file is written through: the file is replaced, the
    // link stays.
    let link = dir.path().join("latest.png");
    std::os::unix::fs::symlink(&by_long_name, &link).expect("a link");
    std::fs::write(&by_long_name, b"old").expect("set up");
    ok(
        at(&["get", first, "-o", link.to_str().expect("utf-8")]),
        "get -o a link",
    );
    assert_eq!(std::fs::read(&by_long_name).expect("the PNG"), bytes);
    assert!(
        std::fs::symlink_metadata(&link)
            .expect("the link")
            .file_type()
            .is_symlink()
    );
    // A directory that does not exist: named, with the system's reason.
    let nowhere = dir.path().join("nowhere").join("x.png");
    refused(
        at(&["get", first, "-o", nowhere.to_str().expect("utf-8")]),
        "get into a missing directory",
        &format!(
            "cannot write {}: No such file or directory (os error 2)",
            nowhere.display()
        ),
    );

    let deleted = ok(at(&["delete", first]), "delete");
    assert_eq!(deleted.trim(), format!("deleted {first}"));
    refused(at(&["show", first]), "show of a deleted fractal", "404");
    refused(at(&["delete", first]), "second delete", "404");
    refused(at(&["get", first]), "get of a deleted fractal", "404");
    // Usage mistakes are clap's (exit 2), named as such, found before
    // anything is sent.
    for (args, expected) in [
        (
            &["show", "not-a-uuid"][..],
            "not a UUID (expected 8-4-4-4-12",
        ),
        (
            &["get", "{01a20784-fe99-72fe-a554-9a9b678b0fe0}"][..],
            "not a UUID",
        ),
        (&["delete", "../healthz"][..], "not a UUID"),
        (
            &["create", "--width", "0"][..],
            "invalid value '0' for '--width",
        ),
        (
            &["create", "--height", "1"][..],
            "invalid value '1' for '--height",
        ),
        (
            &["create", "--width", "70000"][..],
            "invalid value '70000' for '--width",
        ),
        (
            &["create", "--iterations", "0"][..],
            "invalid value '0' for '--iterations",
        ),
        (
            &["create", "--iterations", "11"][..],
            "give --c-re and --c-im to render fewer",
        ),
        (
            &["create", "--iterations", "5", "--seed", "3"][..],
            "give --c-re and --c-im to render fewer",
        ),
        (
            &["list", "--status", "bogus"][..],
            "invalid value 'bogus' for '--status",
        ),
        (
            &["create", "--tasks", "0"][..],
            "invalid value '0' for '--tasks",
        ),
        (
            &["create", "--c-re", "0.3"][..],
            "the following required arguments were not provided",
        ),
        (
            &["create", "--seed", "1", "--c-re", "0", "--c-im", "0"][..],
            "cannot be used with",
        ),
        (
            &["create", "--width", "-5"][..],
            "invalid value '-5' for '--width",
        ),
        (&["create", "--xa", "nan"][..], "must be a finite number"),
        (&["create", "--yb", "inf"][..], "must be a finite number"),
    ] {
        let output = at(args);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            stderr(&output)
        );
        assert!(
            stderr(&output).contains(expected),
            "{args:?}: {}",
            stderr(&output)
        );
    }

    // A fractal the worker refuses (no Julia constant qualifies so far
    // from the set): `--wait` ends, says why, exits 1.
    let output = at(&[
        "create",
        "--width",
        "64",
        "--height",
        "64",
        "--iterations",
        "64",
        "--xa",
        "10",
        "--xb",
        "11",
        "--ya",
        "10",
        "--yb",
        "11",
        "--wait",
    ]);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{err}");
    assert!(stdout(&output).contains("failed"), "{}", stdout(&output));
    assert!(
        err.lines()
            .any(|l| l.contains(" failed: ") && l.contains("iterations")),
        "the reason is shown:\n{err}"
    );
    assert!(err.contains("1 of 1 fractal(s) not rendered"), "{err}");
    // The worker's message, not the RPC layer's wrapping of it.
    assert!(
        !err.contains("builtins.") && !err.contains("remote error from"),
        "{err}"
    );
    let failed = json(
        &ok(
            at(&["--output", "json", "list", "--status", "failed"]),
            "list of failed",
        ),
        "list --output json",
    );
    // The record keeps the worker's message in words too, for the web
    // page and every other client.
    let stored = field(&failed[0], "error");
    assert!(
        stored.starts_with("the worker refused it: ") && stored.contains("iterations"),
        "{stored}"
    );
    assert!(
        !stored.contains("builtins.") && !stored.contains("remote error from"),
        "{stored}"
    );
    let failed = field(&failed[0], "uuid").to_string();
    // `get` says that it failed, and why, not that it "is failed".
    let output = at(&["get", &failed]);
    assert!(
        !stderr(&output).contains("builtins."),
        "{}",
        stderr(&output)
    );
    refused(
        output,
        "get of a failed fractal",
        &format!("fractal {failed} failed, so it has no image: "),
    );
    let table = ok(at(&["show", &failed]), "show of a failed fractal");
    assert!(
        table.contains("iterations") && !table.contains("builtins."),
        "{table}"
    );
    // `list --status failed` says why in a column of its own.
    let failed = ok(at(&["list", "--status", "failed"]), "list of failed");
    let header = failed
        .lines()
        .find(|l| l.contains("uuid"))
        .expect("a header");
    assert!(header.contains("error"), "{failed}");
    assert!(failed.contains("iterations"), "{failed}");
    let done = ok(at(&["list", "--status", "done"]), "list of done");
    assert!(
        !done
            .lines()
            .any(|l| l.contains("uuid") && l.contains("error")),
        "no error column without errors:\n{done}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_fractals_tokens_and_an_unreachable_api() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let config = write_config(
        dir.path(),
        &format!("[api]\nbind_port = {port}\nauth_strategy = token\nauth_tokens = cli-secret\n"),
    );
    // The API alone: what is created stays pending.
    let api = Service::start("api", dir.path(), &config, &["api"]);
    let url = format!("http://127.0.0.1:{port}");
    api_ready(&ApiClient::new(&url, None).expect("client"), &api).await;
    let at = |args: &[&str]| faafo_at(&url, args);

    refused(at(&["create"]), "create without a token", "401");
    let created = json(
        &ok(
            at(&["--token", "cli-secret", "--output", "json", "create"]),
            "create with a token",
        ),
        "create --output json",
    );
    let uuid = field(&created[0], "uuid").to_string();
    // A pending fractal shows (the original crashed here) but has no image.
    let shown = json(
        &ok(at(&["--output", "json", "show", &uuid]), "show"),
        "show --output json",
    );
    assert_eq!(field(&shown, "status"), "pending");
    assert!(shown["checksum"].is_null(), "{shown}");
    let table = ok(at(&["show", &uuid]), "show of a pending fractal");
    assert!(table.contains("pending"), "{table}");
    refused(
        at(&["get", &uuid]),
        "get of a pending fractal",
        &format!("fractal {uuid} is still pending: it has no image yet"),
    );
    refused(at(&["delete", &uuid]), "delete without a token", "401");
    ok(
        at(&["--token", "cli-secret", "delete", &uuid]),
        "delete with a token",
    );

    // An API that answers 503 once (a restart, its database away) is
    // waited out: the batch is created all the same, each fractal once.
    let flaky = unavailable_once_before(&format!("127.0.0.1:{port}"));
    let output = faafo_at(
        &flaky,
        &[
            "--token",
            "cli-secret",
            "--output",
            "json",
            "create",
            "--tasks",
            "2",
        ],
    );
    let err = stderr(&output);
    assert!(output.status.success(), "{err}");
    assert!(err.contains("503") && err.contains("trying again"), "{err}");
    let created = json(&stdout(&output), "create through a flaky API");
    assert_eq!(created.as_array().map(Vec::len), Some(2), "{created}");
    for fractal in created.as_array().into_iter().flatten() {
        ok(
            at(&["--token", "cli-secret", "delete", field(fractal, "uuid")]),
            "delete of a fractal created through the flaky API",
        );
    }

    // Deleted while `create --wait` waits for it (nobody renders here):
    // the wait ends, says so, exits 1, and the JSON lists what exists.
    let waiting = {
        let url = url.clone();
        std::thread::spawn(move || {
            faafo_at(
                &url,
                &[
                    "--token",
                    "cli-secret",
                    "--output",
                    "json",
                    "create",
                    "--wait",
                ],
            )
        })
    };
    let mut pending = Vec::new();
    for _ in 0..600 {
        let listed = json(
            &ok(
                at(&["--output", "json", "list", "--status", "pending"]),
                "list",
            ),
            "list",
        );
        pending = listed.as_array().cloned().unwrap_or_default();
        if !pending.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let created = field(
        pending.first().expect("created by the waiting command"),
        "uuid",
    );
    ok(
        at(&["--token", "cli-secret", "delete", created]),
        "delete while waited for",
    );
    let output = waiting.join().expect("the waiting command");
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("faafo: {created} was deleted while waiting")),
        "{err}"
    );
    assert_eq!(
        json(&stdout(&output), "create --wait"),
        serde_json::json!([])
    );

    // Nobody renders: `--timeout` ends the wait, shows the fractals as
    // they are (still queued), says why, exits 1.
    let started = std::time::Instant::now();
    let output = at(&[
        "--token",
        "cli-secret",
        "--output",
        "json",
        "create",
        "--tasks",
        "2",
        "--wait",
        "--timeout",
        "2",
    ]);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{err}");
    assert!(started.elapsed() >= Duration::from_secs(2), "{err}");
    let left = json(&stdout(&output), "create --wait --timeout");
    let left = left.as_array().expect("a list");
    assert_eq!(left.len(), 2, "{left:?}");
    for fractal in left {
        assert_eq!(field(fractal, "status"), "pending");
        let uuid = field(fractal, "uuid");
        assert!(
            err.contains(&format!(
                "faafo: {uuid} still pending after 2 s (is a producer running, and a worker?)"
            )),
            "{err}"
        );
    }
    assert!(err.contains("2 of 2 fractal(s) not rendered"), "{err}");
    // Nothing to list: said in words, not an empty table.
    assert_eq!(
        ok(at(&["list", "--status", "done"]), "an empty list").trim(),
        "no fractals"
    );
    let misuse = at(&["create", "--timeout", "2"]);
    assert_eq!(misuse.status.code(), Some(2), "a usage error");
    assert!(stderr(&misuse).contains("--wait"), "{}", stderr(&misuse));

    // Not a URL: said so, not taken for an unreachable API.
    for (endpoint, expected) in [
        (
            "notaurl",
            "the command line's --endpoint-url: [DEFAULT] endpoint_url: expected an http:// URL",
        ),
        ("https://api:5000", "faafo's client speaks plain HTTP"),
        (
            "http://",
            "the command line's --endpoint-url: [DEFAULT] endpoint_url: ",
        ),
    ] {
        refused(faafo_at(endpoint, &["list"]), endpoint, expected);
    }
    // Nobody listening: one line that names the URL.
    let nobody = format!("http://127.0.0.1:{}", free_port());
    refused(
        faafo_at(&nobody, &["list"]),
        "list with no API",
        &format!("cannot reach the faafo API at {nobody}"),
    );
    // Several API hosts: one that is down is passed over.
    let listed = ok(
        faafo_at(&format!("{nobody},{url}"), &["list", "--status", "pending"]),
        "list with the first host down",
    );
    assert_eq!(
        listed,
        ok(at(&["list", "--status", "pending"]), "list"),
        "the same fractals as from the host that is up"
    );
    assert!(listed.contains("pending"), "{listed}");
}

/// `create` with some bounds of the viewport: a missing one is drawn next
/// to the given one (they used to be drawn on their own, often on the wrong
/// side); a pair in the wrong order is a usage error, before anything is
/// sent. Ctrl-C during `create --wait` says what was created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_viewports_and_ctrl_c_while_waiting() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let config = write_config(dir.path(), &format!("[api]\nbind_port = {port}\n"));
    // The API alone: what is created stays pending.
    let api = Service::start("api", dir.path(), &config, &["api"]);
    let url = format!("http://127.0.0.1:{port}");
    api_ready(&ApiClient::new(&url, None).expect("client"), &api).await;
    let at = |args: &[&str]| faafo_at(&url, args);

    // The generator's spans with the default ranges: x 2 to 8, y 1 to 6.
    for (flag, value, low, high, spans) in [
        ("--xa", "3", "xa", "xb", 2.0..=8.0),
        ("--xb", "-3", "xa", "xb", 2.0..=8.0),
        ("--ya", "2", "ya", "yb", 1.0..=6.0),
        ("--yb", "-2", "ya", "yb", 1.0..=6.0),
    ] {
        let created = json(
            &ok(
                at(&["--output", "json", "create", flag, value, "--tasks", "20"]),
                flag,
            ),
            flag,
        );
        let created = created.as_array().expect("an array");
        assert_eq!(created.len(), 20, "{flag}: {created:?}");
        for fractal in created {
            let (a, b) = (
                fractal[low].as_f64().expect("a bound"),
                fractal[high].as_f64().expect("a bound"),
            );
            let given: f64 = value.parse().expect("a number");
            assert!(a == given || b == given, "{flag} {value} kept: {fractal}");
            assert!(spans.contains(&(b - a)), "{flag} {value}: {fractal}");
        }
    }
    for (args, expected) in [
        (
            &["create", "--xa", "3", "--xb", "1"][..],
            "--xa 3 is not less than --xb 1: the left bound must be less than the right one",
        ),
        (
            &["create", "--ya", "0.5", "--yb", "0.5"][..],
            "--ya 0.5 is not less than --yb 0.5: the lower bound must be less than the upper one",
        ),
    ] {
        let output = at(args);
        let err = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(expected), "{args:?}: {err}");
        assert!(err.contains("Usage: faafo create"), "{args:?}: {err}");
    }
    // A bound so large that the drawn span vanishes beside it: refused,
    // naming it, before anything is sent.
    refused(
        at(&["create", "--xa", "1e17"]),
        "create --xa 1e17",
        "--xa 100000000000000000 leaves no room for a viewport",
    );
    assert_eq!(
        all(&ApiClient::new(&url, None).expect("client"), None)
            .await
            .len(),
        80,
        "nothing created by a refused pair or bound"
    );
    ok(at(&["--output", "json", "create"]), "an 81st fractal");
    // One dimension given: the other is drawn within the pixel limit
    // (16 Mi pixels by default), so none of the batch is refused.
    let wide = json(
        &ok(
            at(&[
                "--output", "json", "create", "--width", "20000", "--tasks", "20",
            ]),
            "create --width 20000",
        ),
        "create --width 20000",
    );
    let wide = wide.as_array().expect("an array");
    assert_eq!(wide.len(), 20, "{wide:?}");
    for fractal in wide {
        let height = fractal["height"].as_u64().expect("a height");
        assert!((1..=838).contains(&height), "{fractal}");
    }

    // Ctrl-C while waiting: one line with the uuids and where to see them.
    let mut command = Command::new(faafo());
    command.args(["--endpoint-url", &url, "create", "--tasks", "2", "--wait"]);
    let child = spawn(command, "faafo create --wait");
    let client = ApiClient::new(&url, None).expect("client");
    eventually("both are created", Duration::from_secs(60), async || {
        all(&client, None).await.len() == 103
    })
    .await;
    // The table printed, then the wait (and its Ctrl-C handler) begins.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let output = interrupt(child, "faafo create --wait");
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(130), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with(
            "faafo: interrupted: the 2 fractal(s) created are still queued or rendering; \
             see them with `faafo list` or `faafo show <uuid>`: "
        ),
        "{err}"
    );
    let shown = stdout(&output);
    let uuids: Vec<&str> = shown
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter(|w| uuid::Uuid::try_parse(w).is_ok())
        .collect();
    assert_eq!(uuids.len(), 2, "{shown}");
    for uuid in uuids {
        assert!(err.contains(uuid), "{uuid} named:\n{err}");
    }
    assert!(shown.contains("2 fractal(s)"), "{shown}");

    // SIGTERM (a `timeout` wrapper, a CI job cancelled) while creating,
    // as Ctrl-C: those created are printed (the JSON array, whole), and
    // the one being created is named.
    let mut command = Command::new(faafo());
    command.args([
        "--endpoint-url",
        &url,
        "--output",
        "json",
        "create",
        "--tasks",
        "100000",
    ]);
    let child = spawn(command, "faafo create --tasks 100000");
    eventually("some are created", Duration::from_secs(60), async || {
        all(&client, None).await.len() >= 113
    })
    .await;
    let output = signal(child, "-TERM", "faafo create --tasks 100000");
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(130), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("faafo: interrupted: the "), "{err}");
    let shown = json(&stdout(&output), "create interrupted");
    let shown = shown.as_array().expect("an array");
    let stored = all(&client, None).await.len();
    assert!(shown.len() >= 10, "{} shown", shown.len());
    // Every one stored is shown, but the one being created when Ctrl-C came.
    assert!(
        stored - 103 == shown.len() || stored - 103 == shown.len() + 1,
        "{stored} stored, {} shown",
        shown.len()
    );
    let in_flight = err
        .split("fractal ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the fractal being created is named");
    assert!(uuid::Uuid::try_parse(in_flight).is_ok(), "{err}");
    assert!(err.contains("was being created and may exist too"), "{err}");
}

/// An error said to a standard error that is gone (`2>&1 | head` that
/// ended) is no panic: the exit status still says what happened (1, not
/// Rust's 101 of a panic).
#[test]
fn an_error_to_a_closed_standard_error_is_no_panic() {
    let mut command = Command::new(faafo());
    // Nothing listens on port 9 (discard) here.
    command
        .args([
            "--endpoint-url",
            "http://127.0.0.1:9",
            "show",
            "01a20784-fe99-72fe-a554-9a9b678b0fe0",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("faafo show");
    // The reader of standard error is gone before anything is said.
    drop(child.stderr.take());
    let status = child.wait().expect("its end");
    assert_eq!(status.code(), Some(1), "{status}");
}

/// `create --wait --timeout` of a fractal a worker is rendering says so,
/// not that a producer or worker may be missing; a viewport far from the
/// set renders with its constant given.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_fractal_outlasts_the_timeout() {
    let (_dir, _up, url) = up_without_producer("[producer]\npoll_interval = 0.2\n").await;
    let at = |args: &[&str]| faafo_at(&url, args);
    ok(
        at(&[
            "create", "--xa", "3.5", "--xb", "3.9", "--c-re", "-0.8", "--c-im", "0.156", "--width",
            "64", "--height", "64", "--wait",
        ]),
        "a viewport far from the set with c given",
    );
    let output = at(&[
        &["--output", "json", "create"][..],
        LONG_RENDER,
        &["--wait", "--timeout", "10"],
    ]
    .concat());
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{err}");
    let left = json(&stdout(&output), "create --wait --timeout");
    let uuid = field(&left[0], "uuid");
    assert_eq!(field(&left[0], "status"), "running", "{left}");
    assert!(
        err.contains(&format!(
            "faafo: {uuid} still running after 10 s: a worker is rendering it \
             (a longer --timeout would wait for it)"
        )),
        "{err}"
    );
    assert!(!err.contains("is a producer running"), "{err}");
    refused(
        at(&["get", uuid]),
        "get of a running fractal",
        &format!("fractal {uuid} is still running: it has no image yet"),
    );
}

/// `get -o DIR` writes DIR/<uuid>.png; `--output json` prints what was
/// written; with `-o -` it is refused (both want the standard output).
#[test]
fn get_into_a_directory_and_as_json() {
    let dir = tempfile::tempdir().expect("tempdir");
    let png = b"\x89PNG\r\n\x1a\nan image".to_vec();
    let checksum = faafo_common::fractal::sha256_hex(&png);
    let headers: &'static str =
        Box::leak(format!("content-type: image/png\r\netag: \"{checksum}\"\r\n").into_boxed_str());
    let answers = (0..4).map(|_| ("200 OK", headers, png.clone())).collect();
    let (url, requests) = scripted_api(answers);
    let uuid = "01a20784-fe99-72fe-a554-000000000001";
    let expected = dir.path().join(format!("{uuid}.png"));

    let said = ok(
        faafo_at(
            &url,
            &["get", uuid, "-o", &dir.path().display().to_string()],
        ),
        "get -o DIR",
    );
    assert_eq!(
        said.trim(),
        format!("wrote {} ({} bytes)", expected.display(), png.len())
    );
    assert_eq!(std::fs::read(&expected).expect("written"), png);
    std::fs::remove_file(&expected).expect("removed");

    let said = ok(
        faafo_at(
            &url,
            &[
                "--output",
                "json",
                "get",
                uuid,
                "-o",
                &format!("{}/", dir.path().display()),
            ],
        ),
        "get -o DIR/ --output json",
    );
    let said = json(&said, "get --output json");
    assert_eq!(field(&said, "uuid"), uuid);
    assert_eq!(field(&said, "checksum"), checksum);
    assert_eq!(said["size"], png.len());
    assert_eq!(
        std::path::Path::new(field(&said, "file")),
        dir.path().join(format!("{uuid}.png"))
    );
    assert_eq!(std::fs::read(&expected).expect("written"), png);

    // A usage mistake: clap's message and status 2 (docs/cli.md).
    let output = faafo_at(&url, &["--output", "json", "get", uuid, "-o", "-"]);
    let err = stderr(&output);
    assert_eq!(
        output.status.code(),
        Some(2),
        "get -o - --output json: {err}"
    );
    assert!(
        err.contains("--output json and -o - both want the standard output")
            && err.contains("Usage: faafo get"),
        "{err}"
    );
    // So is the standard output by another name: before, the PNG came
    // out where the JSON was asked for.
    let output = faafo_at(
        &url,
        &["--output", "json", "get", uuid, "-o", "/dev/stdout"],
    );
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "get -o /dev/stdout: {err}");
    assert!(
        err.contains("--output json and -o /dev/stdout both want the standard output")
            && output.stdout.is_empty(),
        "{err}"
    );
    assert_eq!(requests.try_iter().count(), 2, "nothing asked when refused");

    // A pipe by a link that names no file (bash's `>(...)` gives
    // `/dev/fd/63`, a link to `pipe:[N]`) is written in place: before,
    // a file was made beside `/dev/fd/pipe:[N]`, and that failed.
    let piped = dir.path().join("piped.png");
    let mut command = Command::new("bash");
    command.args([
        "-c",
        r#""$0" --endpoint-url "$1" get "$2" -o >(cat > "$3")"#,
        faafo(),
        &url,
        uuid,
        &piped.display().to_string(),
    ]);
    let said = ok(run(command, "get -o >(cat)"), "get -o >(cat)");
    assert!(said.starts_with("wrote /dev/fd/"), "{said}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::fs::read(&piped).map_or(true, |written| written != png) {
        assert!(
            std::time::Instant::now() < deadline,
            "the PNG never came out of the pipe"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }

    // The file `get` names itself (`<uuid>.png`) is where standard output
    // goes: the JSON cannot go there too.
    let mut command = Command::new("bash");
    command.current_dir(dir.path()).args([
        "-c",
        r#""$0" --endpoint-url "$1" --output json get "$2" > "$2.png""#,
        faafo(),
        &url,
        uuid,
    ]);
    let output = run(command, "get --output json > <uuid>.png");
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--output json and the PNG both want the standard output"),
        "{err}"
    );

    // check-config checks an endpoint given on the command line too.
    refused(
        faafo_at("https://api.example.org", &["check-config"]),
        "check-config --endpoint-url https://...",
        "the command line's --endpoint-url: [DEFAULT] endpoint_url: expected an http:// URL",
    );
}

/// A service that cannot start says why in its last line, after its logs.
#[test]
fn a_failed_start_ends_with_its_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), "");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let port = taken.local_addr().expect("its address").port().to_string();
    // Twice: the second start finds its database ready and fails within
    // milliseconds of its first log line, before the log writer's flush.
    for attempt in ["first", "second"] {
        let mut command = Command::new(faafo());
        command
            .args(["up", "--port", &port, "--config-file"])
            .arg(&config);
        let output = run(command, "faafo up on a taken port");
        let err = stderr(&output);
        assert_eq!(output.status.code(), Some(1), "{attempt} start: {err}");
        assert!(err.lines().count() > 1, "the logs come first:\n{err}");
        let last = err.lines().last().unwrap_or_default();
        assert!(
            last.starts_with("faafo: ") && last.contains(&port),
            "{attempt} start: the reason is the last line:\n{err}"
        );
        assert!(
            last.contains("give faafo up --port another one"),
            "{attempt} start: the option that picks another port:\n{err}"
        );
    }
}

/// A service that cannot start (a taken port, a broker that does not
/// answer) says why once on standard error, in one line, and with a
/// log_file in that file too; without one, once on standard error (not
/// the logged line and the printed one).
#[test]
fn a_failed_start_is_in_the_log_file_and_once_on_standard_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let taken = taken.local_addr().expect("its address").port();
    let broker = format!(
        "transport_url = rabbit://guest:guest@127.0.0.1:{}/\n",
        free_port()
    );
    let api = format!("[api]\nbind_port = {taken}\n");
    let producer = env!("CARGO_BIN_EXE_faafo-producer");
    let cases = [
        (
            "faafo api",
            faafo(),
            &["api"][..],
            "",
            api.as_str(),
            "faafo: ",
        ),
        ("faafo worker", faafo(), &["worker"], &broker, "", "faafo: "),
        (
            "faafo producer",
            faafo(),
            &["producer"],
            &broker,
            "",
            "faafo: ",
        ),
        ("faafo up", faafo(), &["up"], "", &api, "faafo: "),
        (
            "faafo-producer",
            producer,
            &[],
            &broker,
            "",
            "faafo-producer: ",
        ),
    ];
    for (name, program, args, default, sections, prefix) in cases {
        for with_file in [false, true] {
            let what = format!("{name} (log_file: {with_file})");
            let dir = tempfile::tempdir().expect("tempdir");
            let log = dir.path().join("faafo.log");
            let log_file = if with_file {
                format!("log_file = {}\n", log.display())
            } else {
                String::new()
            };
            let text = format!(
                "[DEFAULT]\nstate_path = {}\n{log_file}{default}\n{sections}",
                dir.path().display()
            );
            let config = support::write_config(dir.path(), "faafo.conf", &text);
            let mut command = Command::new(program);
            command.args(args).arg("--config-file").arg(&config);
            let output = run(command, &what);
            let err = stderr(&output);
            assert_eq!(output.status.code(), Some(1), "{what}: {err}");
            let last = err.lines().last().unwrap_or_default();
            let error = last
                .strip_prefix(prefix)
                .unwrap_or_else(|| panic!("{what}: the reason is the last line:\n{err}"));
            assert_eq!(
                err.matches(error).count(),
                1,
                "{what}: the error once on standard error:\n{err}"
            );
            if !with_file {
                continue;
            }
            assert_eq!(err.lines().count(), 1, "{what}: one line:\n{err}");
            // Rotated daily: faafo.log.<date>.
            let logged: String = std::fs::read_dir(dir.path())
                .expect("readable")
                .filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with("faafo.log"))
                .filter_map(|e| std::fs::read_to_string(e.path()).ok())
                .collect();
            assert!(
                logged
                    .lines()
                    .any(|line| line.contains(" ERROR ") && line.contains(error)),
                "{what}: the error in the log file:\n{logged}"
            );
        }
    }
    // The log on standard error too (use_stderr), but a filter that drops
    // the line (RUST_LOG=off): the error is still printed, once.
    let dir = tempfile::tempdir().expect("tempdir");
    let text = format!(
        "[DEFAULT]\nstate_path = {}\nlog_file = {}\nuse_stderr = true\n{broker}",
        dir.path().display(),
        dir.path().join("faafo.log").display()
    );
    let config = support::write_config(dir.path(), "faafo.conf", &text);
    let output = Command::new(producer)
        .arg("--config-file")
        .arg(&config)
        .env("RUST_LOG", "off")
        .stdin(Stdio::null())
        .output()
        .expect("faafo-producer runs");
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "one line:\n{err}");
    assert!(err.starts_with("faafo-producer: "), "{err}");
}

/// A service's `--print-sample-config` read by a reader that stops at
/// once (`| head -1`): no panic, status 0.
#[test]
fn a_sample_config_to_a_closed_pipe_ends_quietly() {
    let producer = env!("CARGO_BIN_EXE_faafo-producer");
    let mut child = Command::new(producer)
        .arg("--print-sample-config")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("faafo-producer runs");
    // Closed before the program writes (it has to start first).
    drop(child.stdout.take());
    let output = child.wait_with_output().expect("it ends");
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(0), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn help_on_every_command() {
    let commands = [
        vec![],
        vec!["up"],
        vec!["create"],
        vec!["list"],
        vec!["show"],
        vec!["get"],
        vec!["delete"],
        vec!["bench-render"],
        vec!["check-config"],
        vec!["api"],
        vec!["worker"],
        vec!["producer"],
    ];
    for command in commands {
        let output = Command::new(faafo())
            .args(&command)
            .arg("--help")
            .output()
            .expect("faafo --help");
        let text = stdout(&output);
        assert!(
            output.status.success() && text.contains("Usage: faafo"),
            "faafo {command:?} --help:\n{text}{}",
            stderr(&output)
        );
    }
    // A missing argument is clap's usage error (exit 2), not a panic.
    let output = Command::new(faafo())
        .arg("show")
        .output()
        .expect("faafo show");
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("<UUID>"), "{}", stderr(&output));
    // No command at all: the same, naming what is missing.
    let output = Command::new(faafo()).output().expect("faafo");
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("a command is required"),
        "{}",
        stderr(&output)
    );
}

/// `faafo --print-sample-config` prints the same sample as the services.
#[test]
fn prints_the_sample_configuration() {
    let output = Command::new(faafo())
        .arg("--print-sample-config")
        .output()
        .expect("faafo --print-sample-config");
    let text = ok(output, "--print-sample-config");
    assert_eq!(text, faafo_common::configuration::FaafoConfig::sample());
}

/// `bench-render` renders the tasks it is given, as the worker does.
#[test]
fn bench_render_renders_the_generated_tasks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(
        dir.path(),
        "[producer]\nmin_width = 64\nmax_width = 64\nmin_height = 64\nmax_height = 64\n",
    );
    // Never more render threads than tasks.
    let output = Command::new(faafo())
        .args(["bench-render", "--tasks", "2", "--executor-size", "8"])
        .arg("--config-file")
        .arg(&config)
        .output()
        .expect("faafo bench-render");
    let text = ok(output, "bench-render");
    assert!(text.contains("(seed 1, 2 at once on "), "{text}");
    let output = Command::new(faafo())
        .args(["bench-render", "--tasks", "5", "--executor-size", "3"])
        .arg("--config-file")
        .arg(&config)
        .output()
        .expect("faafo bench-render");
    let text = ok(output, "bench-render");
    assert!(
        text.starts_with("rendered 5 task(s) (seed 1, 3 at once on "),
        "{text}"
    );
    let bytes: u64 = text
        .trim()
        .strip_suffix(" bytes of PNG")
        .and_then(|t| t.rsplit(", ").next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no byte count in {text}"));
    assert!(bytes > 5 * 100, "five 64x64 PNGs: {bytes} bytes");
}

/// `faafo producer` asks the API that `--endpoint-url` names, with the
/// `--token` given, as faafo-producer does (they used to be ignored for the
/// services, which took the files' values).
#[test]
fn the_producer_takes_the_endpoint_and_token_of_the_command_line() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().expect("tempdir");
    // A broker of its own: a producer alone refuses the in-process one.
    let vhost = tokio::runtime::Runtime::new()
        .expect("a runtime")
        .block_on(faafo_common::testing::RabbitVhost::create());
    let config = write_config(
        dir.path(),
        &format!(
            "transport_url = {}\n[producer]\nmin_tasks = 1\nmax_tasks = 1\n",
            vhost.url()
        ),
    );
    let api = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let endpoint = format!("http://{}", api.local_addr().expect("its address"));
    let mut producer = Command::new(faafo())
        .args([
            "producer",
            "--one-shot",
            "--token",
            "cli-token",
            "--endpoint-url",
        ])
        .arg(&endpoint)
        .arg("--config-file")
        .arg(&config)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("faafo producer starts");
    api.set_nonblocking(true).expect("non-blocking");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let connection = loop {
        match api.accept() {
            Ok((connection, _)) => break Some(connection),
            Err(_) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(_) => break None,
        }
    };
    let head: Vec<String> = connection
        .map(|c| {
            c.set_nonblocking(false).expect("blocking");
            c.set_read_timeout(Some(Duration::from_secs(30)))
                .expect("read timeout");
            BufReader::new(c)
                .lines()
                .map_while(Result::ok)
                .take_while(|line| !line.is_empty())
                .collect()
        })
        .unwrap_or_default();
    let _ = producer.kill();
    let _ = producer.wait();
    assert!(
        head.first()
            .is_some_and(|line| line.contains(" /v1/fractal")),
        "the producer did not ask --endpoint-url: {head:?}"
    );
    assert!(
        head.iter()
            .any(|line| line.eq_ignore_ascii_case("x-auth-token: cli-token")),
        "the --token was not sent: {head:?}"
    );
}

/// A fractal as a scripted API answers it: 64 x 48, 40 iterations.
fn scripted_fractal(uuid: &str, status: &str, error: Value, created_at: &str) -> Value {
    serde_json::json!({
        "uuid": uuid, "width": 64, "height": 48, "iterations": 40,
        "xa": -1.5, "xb": 1.5, "ya": -1.5, "yb": 1.5,
        "seed": null, "c_re": null, "c_im": null,
        "status": status, "error": error, "attempts": 1,
        "duration": null, "checksum": null, "size": null,
        "generated_by": null,
        "created_at": created_at,
        "updated_at": "2025-01-01T00:00:00.000000Z",
    })
}

/// The status line of a scripted answer that never comes.
const HANG: &str = "hang";

/// A scripted answer: status line, extra headers, body.
type Answer = (&'static str, &'static str, Vec<u8>);

/// An HTTP server on 127.0.0.1 that answers the requests it gets, in
/// order, with `answers` (status line, extra headers, body; [`HANG`]: no
/// answer at all), keeping connections alive as reqwest expects; the
/// requests' first lines are sent on the channel.
fn scripted_api(answers: Vec<Answer>) -> (String, std::sync::mpsc::Receiver<String>) {
    let answers = std::sync::Mutex::new(answers.into_iter());
    answering_api(move |_| answers.lock().map(|mut a| a.next()).ok().flatten())
}

/// The same, each answer chosen by `answer` from the request's first line
/// (`None`: the connection closed unanswered).
fn answering_api(
    answer: impl Fn(&str) -> Option<Answer> + Send + Sync + 'static,
) -> (String, std::sync::mpsc::Receiver<String>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let url = format!("http://{}", listener.local_addr().expect("its address"));
    let (seen, requests) = std::sync::mpsc::channel();
    let answer = std::sync::Arc::new(answer);
    std::thread::spawn(move || {
        for connection in listener.incoming().map_while(Result::ok) {
            let (answer, seen) = (answer.clone(), seen.clone());
            std::thread::spawn(move || {
                let Ok(mut writer) = connection.try_clone() else {
                    return;
                };
                let mut reader = BufReader::new(connection);
                loop {
                    let mut head = Vec::new();
                    let mut length = 0;
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        let line = line.trim_end().to_string();
                        if line.is_empty() {
                            break;
                        }
                        if let Some(value) =
                            line.to_ascii_lowercase().strip_prefix("content-length:")
                        {
                            length = value.trim().parse().unwrap_or(0);
                        }
                        head.push(line);
                    }
                    let mut body = vec![0; length];
                    if reader.read_exact(&mut body).is_err() {
                        return;
                    }
                    let line = head.first().cloned().unwrap_or_default();
                    let next = answer(&line);
                    let _ = seen.send(line);
                    let Some((status, headers, body)) = next else {
                        return;
                    };
                    if status == HANG {
                        // Holds the connection open, never answering.
                        std::thread::sleep(Duration::from_secs(600));
                        return;
                    }
                    let response = format!(
                        "HTTP/1.1 {status}\r\n{headers}content-length: {}\r\n\r\n",
                        body.len()
                    );
                    if writer.write_all(response.as_bytes()).is_err()
                        || writer.write_all(&body).is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    (url, requests)
}

/// A reader that stops early (`faafo list | head -2`) ends the output
/// quietly with status 0 (docs/cli.md): no panic (`println!` on a closed
/// pipe), no message. More fractals than a pipe holds, so that `list`
/// still writes after the reader has gone.
#[test]
fn a_reader_that_stops_early_ends_the_output_quietly() {
    use std::io::BufRead;
    let objects: Vec<Value> = (0..2000)
        .map(|i| {
            scripted_fractal(
                &format!("01a20784-fe99-72fe-a554-{i:012}"),
                "pending",
                Value::Null,
                "2025-01-01T00:00:00Z",
            )
        })
        .collect();
    let page = serde_json::json!({
        "num_results": objects.len(), "objects": objects, "page": 1, "total_pages": 1,
    });
    for format in ["table", "json"] {
        let (url, _) = scripted_api(vec![(
            "200 OK",
            "content-type: application/json\r\n",
            page.to_string().into_bytes(),
        )]);
        let what = format!("faafo --output {format} list | head -2");
        let mut command = Command::new(faafo());
        command.args(["--endpoint-url", &url, "--output", format, "list"]);
        let mut child = spawn(command, &what);
        let mut reader = std::io::BufReader::new(child.stdout.take().expect("its stdout"));
        for _ in 0..2 {
            let mut line = String::new();
            reader.read_line(&mut line).expect("a line");
            assert!(!line.is_empty(), "{what}: no output");
        }
        drop(reader);
        let output = finish(child, &what);
        let err = stderr(&output);
        assert!(!err.contains("panicked"), "{what} panicked:\n{err}");
        assert_eq!(output.status.code(), Some(0), "{what}: {err}");
        assert_eq!(err, "", "{what}: nothing to say");
    }
}

/// `faafo get` checks the image against the sha256 the API sends as its
/// ETag, and never leaves a damaged or partial file: an existing file of
/// that name stays as it was.
#[test]
fn get_refuses_an_image_that_is_not_its_checksum() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = dir.path().join("picture.png");
    std::fs::write(&target, b"the previous picture").expect("an existing file");
    let png = b"\x89PNG\r\n\x1a\nnot the image the checksum is of".to_vec();
    let wrong = "0".repeat(64);
    let headers: &'static str =
        Box::leak(format!("content-type: image/png\r\netag: \"{wrong}\"\r\n").into_boxed_str());
    let (url, _) = scripted_api(vec![("200 OK", headers, png.clone())]);
    let uuid = "01a20784-fe99-72fe-a554-000000000001";
    let output = faafo_at(&url, &["get", uuid, "-o", &target.display().to_string()]);
    refused(output, "get of a damaged image", "not its checksum");
    assert_eq!(
        std::fs::read(&target).expect("still there"),
        b"the previous picture"
    );
    assert_eq!(
        std::fs::read_dir(dir.path()).expect("readable").count(),
        1,
        "no temporary file left"
    );

    // The same bytes with their own checksum are written.
    let right = faafo_common::fractal::sha256_hex(&png);
    let headers: &'static str =
        Box::leak(format!("content-type: image/png\r\netag: \"{right}\"\r\n").into_boxed_str());
    let (url, _) = scripted_api(vec![("200 OK", headers, png.clone())]);
    let output = faafo_at(&url, &["get", uuid, "-o", &target.display().to_string()]);
    ok(output, "get of an intact image");
    assert_eq!(std::fs::read(&target).expect("written"), png);
}

/// With no endpoint_url anywhere, `faafo` asks the API of its configuration
/// file, at `[api] bind_port` (it went to the default port 5000 before).
#[test]
fn the_command_line_follows_the_api_port_of_its_configuration() {
    let json_headers = "content-type: application/json\r\n";
    let (url, requests) = scripted_api(vec![(
        "422 Unprocessable Entity",
        json_headers,
        br#"{"message": "reached"}"#.to_vec(),
    )]);
    let port = url.rsplit(':').next().expect("a port");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), &format!("[api]\nbind_port = {port}\n"));
    let mut command = Command::new(faafo());
    command.arg("--config-file").arg(&config).arg("create");
    refused(
        run(command, "faafo create"),
        "a create the API refuses",
        "422",
    );
    let first = requests
        .recv_timeout(Duration::from_secs(10))
        .expect("the API of [api] bind_port was asked");
    assert!(first.starts_with("POST /v1/fractal"), "{first}");
}

/// When the API refuses a task part-way through `faafo create --tasks N`,
/// the fractals already created (which exist and will be rendered) are
/// still shown, then the error.
#[test]
fn create_shows_what_it_created_before_an_error() {
    let created = serde_json::json!({
        "uuid": "01a20784-fe99-72fe-a554-000000000001", "width": 64, "height": 64,
        "iterations": 32, "xa": -1.5, "xb": 1.5, "ya": -1.5, "yb": 1.5, "seed": 1,
        "c_re": null, "c_im": null, "status": "pending", "error": null, "attempts": 0,
        "duration": null, "checksum": null, "size": null, "generated_by": null,
        "created_at": "2026-11-23T00:00:00.000000Z", "updated_at": "2026-11-23T00:00:00.000000Z"
    })
    .to_string()
    .into_bytes();
    let json_headers = "content-type: application/json\r\n";
    let (url, requests) = scripted_api(vec![
        ("201 Created", json_headers, created),
        (
            "422 Unprocessable Entity",
            json_headers,
            br#"{"message": "the database said no"}"#.to_vec(),
        ),
    ]);
    let output = faafo_at(&url, &["create", "--tasks", "3", "--output", "json"]);
    let shown = stdout(&output);
    refused(output, "a create the API refuses", "422");
    assert!(
        shown.contains("01a20784-fe99-72fe-a554-000000000001"),
        "the created fractal is shown: {shown}"
    );
    let posts = requests
        .try_iter()
        .filter(|r| r.starts_with("POST "))
        .count();
    assert_eq!(posts, 2, "it stops at the first refusal");
}

/// An answer lost on its way back (a proxy's 502 after the API applied
/// the request) is no failure to report: a `create` asks for the fractal
/// it sent (its uuid is the client's), and a `delete` whose next host says
/// 404 takes the fractal as deleted.
#[test]
fn requests_whose_answer_was_lost_are_recognised() {
    let fractal = |uuid: &str| {
        scripted_fractal(uuid, "pending", Value::Null, "2026-11-23T00:00:00.000000Z")
            .to_string()
            .into_bytes()
    };
    let json_headers = "content-type: application/json\r\n";
    let uuid = "01a20784-fe99-72fe-a554-000000000007";
    let (url, requests) = scripted_api(vec![
        ("502 Bad Gateway", "", Vec::new()),
        ("200 OK", json_headers, fractal(uuid)),
    ]);
    let created = json(
        &ok(
            faafo_at(&url, &["--output", "json", "create"]),
            "a create whose answer was lost",
        ),
        "create",
    );
    assert_eq!(created[0]["uuid"], uuid, "{created}");
    let asked: Vec<String> = requests.try_iter().collect();
    assert_eq!(asked.len(), 2, "{asked:?}");
    assert!(asked[0].starts_with("POST /v1/fractal "), "{asked:?}");
    assert!(asked[1].starts_with("GET /v1/fractal/"), "{asked:?}");
    // The same, but the fractal is not there: it is sent again.
    let (url, requests) = scripted_api(vec![
        ("502 Bad Gateway", "", Vec::new()),
        (
            "404 Not Found",
            json_headers,
            br#"{"code": 404, "message": "no fractal"}"#.to_vec(),
        ),
        ("201 Created", json_headers, fractal(uuid)),
    ]);
    let said = ok(
        faafo_at(&url, &["--output", "json", "create"]),
        "a create lost, then not found",
    );
    assert_eq!(json(&said, "create")[0]["uuid"], uuid, "{said}");
    let asked: Vec<String> = requests.try_iter().collect();
    assert_eq!(asked.len(), 3, "{asked:?}");
    assert!(asked[2].starts_with("POST /v1/fractal "), "{asked:?}");
    // An API that took the request and went away: the error says the
    // fractal may exist.
    let (url, _) = scripted_api(Vec::new());
    refused(
        faafo_at(&url, &["create"]),
        "a create cut off, the API gone",
        "may have been created: `faafo show ",
    );

    // Two hosts: the first answers 502 to the DELETE, the second 404.
    let (first, _) = scripted_api(vec![("502 Bad Gateway", "", Vec::new())]);
    let (second, to_second) = scripted_api(vec![(
        "404 Not Found",
        json_headers,
        br#"{"code": 404, "message": "no fractal"}"#.to_vec(),
    )]);
    let said = ok(
        faafo_at(&format!("{first},{second}"), &["delete", uuid]),
        "a delete the first host applied",
    );
    assert_eq!(
        said.trim(),
        format!(
            "deleted {uuid} (or it never existed: the first API host failed after taking \
             the request, and the next one has no such fractal)"
        )
    );
    assert_eq!(to_second.try_iter().count(), 1, "the second host was asked");
    // A 404 with nothing lost before it is still an error.
    let (url, _) = scripted_api(vec![(
        "404 Not Found",
        json_headers,
        br#"{"code": 404, "message": "no fractal"}"#.to_vec(),
    )]);
    refused(
        faafo_at(&url, &["delete", uuid]),
        "a delete of nothing",
        "404",
    );
}

/// A 404 that is not the API's own (a proxy's page, while the API behind
/// it is deployed) is the API away, not the fractal deleted: `create
/// --wait` waits on, and the fractal ends done.
#[test]
fn a_proxys_404_while_waiting_is_no_deletion() {
    let json_headers = "content-type: application/json\r\n";
    let uuid = "01a20784-fe99-72fe-a554-000000000009";
    let as_bytes = |v: Value| v.to_string().into_bytes();
    let (url, requests) = scripted_api(vec![
        (
            "201 Created",
            json_headers,
            as_bytes(scripted_fractal(
                uuid,
                "pending",
                Value::Null,
                "2026-11-23T00:00:00.000000Z",
            )),
        ),
        (
            "404 Not Found",
            "content-type: text/html\r\n",
            b"<html><body>404 page not found</body></html>".to_vec(),
        ),
        (
            "200 OK",
            json_headers,
            as_bytes(scripted_fractal(
                uuid,
                "done",
                Value::Null,
                "2026-11-23T00:00:01.000000Z",
            )),
        ),
    ]);
    let said = ok(
        faafo_at(&url, &["--output", "json", "create", "--wait"]),
        "create --wait through a proxy's 404",
    );
    let ended = json(&said, "create --wait");
    assert_eq!(ended[0]["status"], "done", "{ended}");
    assert_eq!(requests.try_iter().count(), 3);
}

/// `create --wait --timeout` ends on time even while a request of the
/// wait gets no answer (the client's own timeout is longer): the fractal
/// is reported as last seen.
#[test]
fn the_timeout_ends_a_wait_on_a_request_that_gets_no_answer() {
    let uuid = "01a20784-fe99-72fe-a554-00000000000a";
    let created = scripted_fractal(uuid, "pending", Value::Null, "2026-11-25T00:00:00.000000Z");
    let (url, requests) = scripted_api(vec![
        (
            "201 Created",
            "content-type: application/json\r\n",
            created.to_string().into_bytes(),
        ),
        (HANG, "", Vec::new()),
    ]);
    let started = std::time::Instant::now();
    let output = faafo_at(
        &url,
        &["--output", "json", "create", "--wait", "--timeout", "2"],
    );
    let took = started.elapsed();
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{err}");
    assert!(took < Duration::from_secs(15), "took {took:?}: {err}");
    let left = json(&stdout(&output), "create --wait --timeout");
    assert_eq!(field(&left[0], "status"), "pending", "{left}");
    assert!(
        err.contains(&format!("faafo: {uuid} still pending after 2 s")),
        "{err}"
    );
    let seen: Vec<String> = requests.try_iter().collect();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(seen[1].starts_with("GET "), "{seen:?}");
}

/// `create --wait` asks about several fractals at once: one whose request
/// gets no answer does not hold back the others'.
#[test]
fn the_wait_asks_about_several_fractals_at_once() {
    let uuid = "01a20784-fe99-72fe-a554-00000000000b";
    let json_headers = "content-type: application/json\r\n";
    let at = "2026-11-25T00:00:00.000000Z";
    let pending = scripted_fractal(uuid, "pending", Value::Null, at).to_string();
    let done = scripted_fractal(uuid, "done", Value::Null, at).to_string();
    let mut answers = vec![("201 Created", json_headers, pending.into_bytes()); 3];
    answers.push((HANG, "", Vec::new()));
    answers.extend(vec![("200 OK", json_headers, done.into_bytes()); 2]);
    let (url, requests) = scripted_api(answers);
    let output = faafo_at(
        &url,
        &[
            "--output",
            "json",
            "create",
            "--tasks",
            "3",
            "--wait",
            "--timeout",
            "3",
        ],
    );
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let seen: Vec<String> = requests.try_iter().collect();
    let gets = seen.iter().filter(|line| line.starts_with("GET ")).count();
    assert_eq!(gets, 3, "{seen:?}");
}

/// `faafo create --tasks 2 --wait --timeout 3` against an API that answers
/// 500 for the first fractal's row, always, and `other` as the second's
/// status: the command's standard error and the requests' first lines.
fn wait_beside_a_fractal_the_api_fails_on(other: &'static str) -> (String, Vec<String>) {
    let json_headers = "content-type: application/json\r\n";
    let at = "2026-11-25T00:00:00.000000Z";
    let created = std::sync::atomic::AtomicUsize::new(0);
    let (url, requests) = answering_api(move |line| {
        let fractal = |uuid: &str, status: &str| {
            scripted_fractal(uuid, status, Value::Null, at)
                .to_string()
                .into_bytes()
        };
        if line.starts_with("POST ") {
            let n = created.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let uuid = if n == 0 { FAILING_ROW } else { FINE_ROW };
            Some(("201 Created", json_headers, fractal(uuid, "pending")))
        } else if line.contains(FAILING_ROW) {
            Some((
                "500 Internal Server Error",
                json_headers,
                br#"{"code": 500, "message": "a corrupt row"}"#.to_vec(),
            ))
        } else {
            Some(("200 OK", json_headers, fractal(FINE_ROW, other)))
        }
    });
    let output = faafo_at(
        &url,
        &[
            "--output",
            "json",
            "create",
            "--tasks",
            "2",
            "--wait",
            "--timeout",
            "3",
        ],
    );
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{err}");
    (err, requests.try_iter().collect())
}

/// The fractals of [`wait_beside_a_fractal_the_api_fails_on`].
const FAILING_ROW: &str = "01a20784-fe99-72fe-a554-00000000000c";
const FINE_ROW: &str = "01a20784-fe99-72fe-a554-00000000000d";

/// A fractal the API keeps failing on (a 500 for its row alone) does not
/// hold up the wait for the others: they are asked about past it, and the
/// one done is not asked about again. (Each round of the wait ended at
/// the first failure: the fractals after it were never seen done.) The
/// timeout says the API failed, whether the other is done or still
/// pending (a later fractal's answer hid the failure).
#[test]
fn a_fractal_the_api_fails_on_does_not_hold_up_the_others() {
    let (err, seen) = wait_beside_a_fractal_the_api_fails_on("done");
    assert!(
        err.contains("gave up waiting (--timeout) while the API fails")
            && err.contains("a corrupt row"),
        "{err}"
    );
    let asked = |uuid: &str| {
        seen.iter()
            .filter(|line| line.starts_with("GET ") && line.contains(uuid))
            .count()
    };
    assert_eq!(asked(FINE_ROW), 1, "{seen:?}");
    assert!(asked(FAILING_ROW) > 1, "{seen:?}");
    let (err, _) = wait_beside_a_fractal_the_api_fails_on("pending");
    assert!(
        err.contains("gave up waiting (--timeout) while the API fails")
            && err.contains("a corrupt row"),
        "{err}"
    );
}

/// `list` reads its pages by uuid, and an API older than `uuid_after`
/// (a 400 for it) by page numbers.
#[test]
fn list_pages_by_uuid_and_by_number_on_an_older_api() {
    let fractal = |i: usize| {
        // Created in the reverse order of their uuids.
        let s = 10_000 - i;
        let created_at = format!(
            "2025-01-01T{:02}:{:02}:{:02}.000000Z",
            s / 3600,
            s / 60 % 60,
            s % 60
        );
        scripted_fractal(
            &format!("01a20784-fe99-72fe-a554-{i:012}"),
            "pending",
            Value::Null,
            &created_at,
        )
    };
    let page = |range: std::ops::Range<usize>, left: usize| {
        let objects: Vec<Value> = range.map(fractal).collect();
        serde_json::json!({"num_results": left, "objects": objects, "page": 1, "total_pages": 1})
            .to_string()
            .into_bytes()
    };
    let json_headers = "content-type: application/json\r\n";
    let (url, requests) = scripted_api(vec![
        ("200 OK", json_headers, page(0..100, 150)),
        ("200 OK", json_headers, page(100..150, 50)),
    ]);
    // `faafo list --output json` against `url`: the fractals listed.
    let list = |url: &str, what: &str| -> Vec<Value> {
        let listed = json(
            &ok(faafo_at(url, &["--output", "json", "list"]), what),
            what,
        );
        listed.as_array().expect("an array").clone()
    };
    let listed = list(&url, "list");
    assert_eq!(listed.len(), 150);
    // Oldest first, whatever the order of the pages (by uuid).
    assert_eq!(listed[0]["uuid"], "01a20784-fe99-72fe-a554-000000000149");
    let asked: Vec<String> = requests.try_iter().collect();
    assert_eq!(asked.len(), 2, "{asked:?}");
    assert!(
        asked[0].contains("order_by=uuid") && !asked[0].contains("uuid_after"),
        "{asked:?}"
    );
    assert!(
        asked[1].contains("uuid_after=01a20784-fe99-72fe-a554-000000000099"),
        "{asked:?}"
    );

    // An older API takes the first page (order_by=uuid it knows) and
    // refuses the second's uuid_after; then it is read by page number.
    let numbered = |range: std::ops::Range<usize>, page: usize| {
        let objects: Vec<Value> = range.map(fractal).collect();
        serde_json::json!({"num_results": 150, "objects": objects, "page": page, "total_pages": 2})
            .to_string()
            .into_bytes()
    };
    let (url, requests) = scripted_api(vec![
        ("200 OK", json_headers, page(0..100, 150)),
        (
            "400 Bad Request",
            json_headers,
            br#"{"code": 400, "message": "unknown field `uuid_after`"}"#.to_vec(),
        ),
        ("200 OK", json_headers, numbered(0..100, 1)),
        ("200 OK", json_headers, numbered(100..150, 2)),
    ]);
    assert_eq!(list(&url, "list on an older API").len(), 150);
    let asked: Vec<String> = requests.try_iter().collect();
    assert!(
        asked[2].contains("page=1") && asked[3].contains("page=2"),
        "{asked:?}"
    );
    // An API that ignores uuid_after (a page that does not follow the last
    // uuid) is read by page number too, not for ever.
    let (url, _) = scripted_api(vec![
        ("200 OK", json_headers, page(0..100, 150)),
        ("200 OK", json_headers, page(0..100, 150)),
        ("200 OK", json_headers, numbered(0..100, 1)),
        ("200 OK", json_headers, numbered(100..150, 2)),
    ]);
    assert_eq!(list(&url, "list on an API ignoring uuid_after").len(), 150);
}

/// `create --wait` whose reader has gone (`| head`) still waits, says
/// what failed on standard error, on one line even when a worker's
/// message has several, and exits non-zero.
#[test]
fn create_wait_reports_failures_after_its_reader_has_gone() {
    let uuid = "01a20784-fe99-72fe-a554-000000000008";
    let fractal = |status: &str, error: Value| {
        scripted_fractal(uuid, status, error, "2026-11-23T00:00:00.000000Z")
            .to_string()
            .into_bytes()
    };
    let json_headers = "content-type: application/json\r\n";
    let (url, _) = scripted_api(vec![
        ("201 Created", json_headers, fractal("pending", Value::Null)),
        (
            "200 OK",
            json_headers,
            fractal(
                "failed",
                Value::from(
                    "Traceback (most recent call last):\n  File \"x\"\nValueError: \u{1b}[31mbad",
                ),
            ),
        ),
    ]);
    let mut command = Command::new(faafo());
    command.args(["--endpoint-url", &url, "create", "--wait"]);
    let mut child = spawn(command, "create --wait | (nothing)");
    drop(child.stdout.take());
    let output = finish(child, "create --wait with its reader gone");
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(
        lines,
        [
            format!(
                "faafo: {uuid} failed: Traceback (most recent call last): File \"x\" \
                 ValueError: \\u{{1b}}[31mbad"
            )
            .as_str(),
            "faafo: 1 of 1 fractal(s) not rendered"
        ],
        "{err}"
    );
}

/// An environment variable that is not UTF-8 text is no reason to panic:
/// ignored unless it is one of faafo's, which is then a one-line error.
#[test]
fn environment_variables_that_are_not_text() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().expect("tempdir");
    // A broker of its own: faafo-producer refuses the in-process default.
    let config = support::write_config(
        dir.path(),
        "faafo.conf",
        "[DEFAULT]\ntransport_url = rabbit://guest:guest@127.0.0.1:5672/\n",
    );
    let not_text = std::ffi::OsStr::from_bytes(b"\xff\xfe");
    let mut command = Command::new(env!("CARGO_BIN_EXE_faafo-producer"));
    command
        .args(["check-config", "--config-file"])
        .arg(&config)
        .env("LEGACY_SETTING", not_text);
    ok(
        run(command, "check-config with a foreign variable"),
        "check-config with a foreign variable that is not UTF-8",
    );
    let mut command = Command::new(env!("CARGO_BIN_EXE_faafo-producer"));
    command
        .args(["check-config", "--config-file"])
        .arg(&config)
        .env("FAAFO_DEFAULT__DEBUG", not_text);
    let output = run(command, "check-config with a FAAFO_ variable");
    assert!(!output.status.success());
    let err = stderr(&output);
    assert!(
        err.contains("FAAFO_DEFAULT__DEBUG") && err.contains("not UTF-8"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

/// faafo-producer's options go before or after its command
/// (docs/operations.md), and `--endpoint-url` is checked as the files'
/// `endpoint_url` is.
#[test]
fn producer_options_follow_its_command_and_are_checked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = support::write_config(
        dir.path(),
        "faafo.conf",
        "[DEFAULT]\ntransport_url = rabbit://guest:guest@127.0.0.1:5672/\n",
    );
    let producer = |args: &[&str]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_faafo-producer"));
        command.args(args).arg("--config-file").arg(&config);
        run(command, &format!("faafo-producer {args:?}"))
    };
    let said = ok(
        producer(&[
            "check-config",
            "--debug",
            "--one-shot",
            "--endpoint-url",
            "http://api.example.org:5000",
        ]),
        "check-config with the options after it",
    );
    assert!(said.contains("http://api.example.org:5000"), "{said}");
    let output = producer(&["check-config", "--endpoint-url", "https://api.example.org"]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        stderr(&output).contains(
            "the command line's --endpoint-url: [DEFAULT] endpoint_url: expected an http:// URL"
        ),
        "{}",
        stderr(&output)
    );
}

/// `faafo up` refuses, at start and in one line, a token setup in which
/// its own producer could create nothing; `--no-producer` too, whose
/// dispatcher could store nothing (it looped on 401s, and `create --wait`
/// waited for ever).
#[test]
fn up_refuses_a_token_its_producer_does_not_have() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(
        dir.path(),
        "[api]\nauth_strategy = token\nauth_tokens = right-token\n",
    );
    for extra in [None, Some("--no-producer")] {
        let mut command = Command::new(faafo());
        command
            .args(["up", "--port", &free_port().to_string(), "--config-file"])
            .arg(&config)
            .args(extra);
        refused(
            run(command, "faafo up with a wrong token"),
            &format!("faafo up {extra:?} with a token setup its producer cannot use"),
            "auth_token is not one of [api] auth_tokens",
        );
    }
}

/// `faafo up` refuses to start a producer whose tasks its own API would
/// refuse (the same configuration's limits), naming both options.
#[test]
fn up_refuses_tasks_beyond_its_own_limits() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (sections, expected) in [
        (
            "[producer]\nmax_iterations = 200000\n",
            "[producer] max_iterations (200000) is more than [DEFAULT] iteration_limit (100000)",
        ),
        (
            // (After the [DEFAULT] section `write_config` opens.)
            "pixel_limit = 500000\n",
            "[producer] max_width x max_height (1024 x 1024) is more than [DEFAULT] pixel_limit (500000)",
        ),
    ] {
        let config = write_config(dir.path(), sections);
        let mut command = Command::new(faafo());
        command
            .args(["up", "--port", &free_port().to_string(), "--config-file"])
            .arg(&config);
        refused(
            run(command, "faafo up beyond its limits"),
            &format!("faafo up with {sections:?}"),
            expected,
        );
    }
}

/// The data directory follows `XDG_DATA_HOME` when it is an absolute path,
/// and `HOME` when it is relative (the XDG specification: the data would
/// follow the working directory).
#[test]
fn the_default_data_directory_ignores_a_relative_xdg_data_home() {
    let home = tempfile::tempdir().expect("tempdir");
    for (xdg, expected) in [
        (
            "relative".to_string(),
            home.path().join(".local/share/faafo"),
        ),
        (
            home.path().join("xdg").display().to_string(),
            home.path().join("xdg/faafo"),
        ),
    ] {
        let mut command = Command::new(faafo());
        command
            .current_dir(home.path())
            .env("HOME", home.path())
            .env("XDG_DATA_HOME", &xdg)
            .env_remove("FAAFO_CONFIG_FILE")
            .arg("check-config");
        let out = ok(run(command, "check-config"), "check-config");
        assert!(
            out.contains(&format!("sqlite://{}/faafo.db", expected.display())),
            "XDG_DATA_HOME={xdg}: {out}"
        );
    }
}

/// A second `faafo up` on the data directory of one that runs is refused
/// at once: its producer would take over every task the first renders,
/// and it failed only at its port, after opening the database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_up_on_the_same_data_is_refused() {
    let (dir, _up, _url) = up_without_producer("").await;
    let config = dir.path().join("faafo.conf");
    assert!(config.exists(), "{}", config.display());
    let mut command = Command::new(faafo());
    command
        .args(["up", "--port", &free_port().to_string(), "--config-file"])
        .arg(&config);
    refused(
        run(command, "a second faafo up"),
        "a second faafo up on the same data directory",
        "another faafo up is running on the data directory",
    );
}

/// A port another program holds is said, with the option that picks
/// another, before a new data directory is made: it stayed behind, with an
/// empty database.
#[test]
fn up_on_a_busy_port_makes_no_data_directory() {
    let home = tempfile::tempdir().expect("tempdir");
    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let port = busy.local_addr().expect("address").port();
    let xdg = home.path().join("data");
    let mut command = Command::new(faafo());
    command
        .args(["up", "--port", &port.to_string()])
        .env("HOME", home.path())
        .env("XDG_DATA_HOME", &xdg);
    let output = run(command, "faafo up on a busy port");
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("cannot listen on 127.0.0.1:{port}"))
            && err.contains("faafo up --port"),
        "{err}"
    );
    assert!(!xdg.join("faafo").exists(), "{err}");
    drop(busy);
}

/// `faafo up --no-producer` with `options` (configuration lines, read in
/// its `[producer]` section unless they open another), rendering one fractal that takes minutes (c = 0: the unit disk
/// never escapes, every pixel takes all its iterations, even in a release
/// build); returns once that render runs, with the API's URL.
async fn up_with_a_long_render(options: &str) -> (tempfile::TempDir, Service, String) {
    let (dir, up, url) =
        up_without_producer(&format!("[producer]\npoll_interval = 0.2\n{options}")).await;
    let api = ApiClient::new(&url, None).expect("client");
    ok(
        faafo_at(&url, &[&["create"][..], LONG_RENDER].concat()),
        "create a long render",
    );
    eventually(
        "the render is running",
        Duration::from_secs(30),
        async || {
            all(&api, Some(faafo_common::fractal::FractalStatus::Running))
                .await
                .len()
                == 1
        },
    )
    .await;
    (dir, up, url)
}

/// `faafo delete` of a fractal while it renders stops the render: the
/// producer finds the task gone (every `deletion_check_interval`) and casts
/// `cancel` to the workers, which stop rendering it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_fractal_stops_its_render() {
    let (_dir, up, url) = up_with_a_long_render("deletion_check_interval = 0.5\n").await;
    let api = ApiClient::new(&url, None).expect("client");
    let running = all(&api, Some(faafo_common::fractal::FractalStatus::Running)).await;
    let uuid = running[0].uuid.clone();
    ok(faafo_at(&url, &["delete", &uuid]), "delete");
    let stopped = format!("task {uuid} not rendered: task {uuid}: the fractal was deleted");
    eventually("the render stops", Duration::from_secs(20), async || {
        up.log_text().contains(&stopped)
    })
    .await;
    let log = up.log_text();
    assert!(
        log.contains(&format!(
            "task {uuid} was deleted from the API: cancelling its render"
        )),
        "{log}"
    );
    assert!(
        support::listed(&api, None).await.is_empty(),
        "nothing else to render"
    );

    // The same uuid created again at once (a client may choose it): the
    // worker, which remembers the deletion, tells the new fractal from the
    // deleted one by its revision, and renders it.
    let again = faafo_common::fractal::NewFractal {
        uuid: Some(uuid.clone()),
        width: 64,
        height: 48,
        iterations: 32,
        xa: -1.5,
        xb: 1.5,
        ya: -1.0,
        yb: 1.0,
        seed: Some(7),
        c_re: None,
        c_im: None,
        status: None,
        attempts: None,
    };
    api.create(&again).await.expect("created again");
    eventually(
        "the fractal created again is rendered",
        Duration::from_secs(30),
        async || {
            api.get(&uuid)
                .await
                .is_ok_and(|f| f.status == faafo_common::fractal::FractalStatus::Done)
        },
    )
    .await;
    let rendered = api.get(&uuid).await.expect("the fractal");
    assert_eq!((rendered.attempts, rendered.error), (1, None));
}

/// A second Ctrl-C or SIGTERM ends a stopping `faafo up` at once (exit
/// status 130), instead of waiting for a long render to finish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_stops_at_once() {
    let (_dir, mut up, _) = up_with_a_long_render("").await;
    a_second_signal_ends(&mut up, "the render", Duration::from_secs(10)).await;
}

/// Sends `service` SIGTERM, checks that it still waits for `waiting_for` a
/// second later, then that a second SIGTERM ends it with 130 `within`.
async fn a_second_signal_ends(service: &mut Service, waiting_for: &str, within: Duration) {
    service.signal("TERM");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        service.is_running(),
        "the first signal waits for {waiting_for}"
    );
    let second = std::time::Instant::now();
    service.signal("TERM");
    assert_eq!(service.wait(within), Some(130));
    assert!(second.elapsed() < within);
    assert!(
        service.log_text().contains("a second signal"),
        "{}",
        service.log_text()
    );
}

/// The same for `faafo api` alone: a second signal ends a stop that waits
/// for a client which never finishes its request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_stops_a_draining_api_at_once() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let config = write_config(dir.path(), &format!("[api]\nbind_port = {port}\n"));
    let mut api = Service::start("api", dir.path(), &config, &["api"]);
    api_ready(
        &ApiClient::new(&format!("http://127.0.0.1:{port}"), None).expect("client"),
        &api,
    )
    .await;
    let mut stalled = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    // A first request answered on the connection: the API has accepted it
    // and serves it, whatever the machine's load, before the stalled one.
    stalled
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("a first request");
    let mut answer = Vec::new();
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        let mut chunk = [0u8; 1024];
        let n = tokio::time::timeout(Duration::from_secs(10), stalled.read(&mut chunk))
            .await
            .expect("the API answers the first request")
            .expect("read");
        assert!(n > 0, "the API closed the connection");
        answer.extend_from_slice(&chunk[..n]);
    }
    assert!(answer.starts_with(b"HTTP/1.1 200"), "{answer:?}");
    stalled
        .write_all(
            b"POST /v1/fractal HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
              Content-Length: 100\r\n\r\n{",
        )
        .await
        .expect("half a request");
    tokio::time::sleep(Duration::from_millis(300)).await;
    a_second_signal_ends(&mut api, "the request", Duration::from_secs(5)).await;
    drop(stalled);
}

/// One Ctrl-C or SIGTERM ends `faafo up` within its grace even while a
/// long render runs: the render is cancelled, not left to run on in a
/// process that said it had stopped, and its task is taken over next time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_cancels_renders_past_the_grace() {
    let (_dir, mut up, _) =
        up_with_a_long_render("shutdown_grace = 1\n[worker]\nshutdown_grace = 1\n").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let stopped = std::time::Instant::now();
    up.signal("TERM");
    assert_eq!(
        up.wait(Duration::from_secs(20)),
        Some(0),
        "{}",
        up.log_text()
    );
    assert!(
        stopped.elapsed() < Duration::from_secs(20),
        "{:?}",
        stopped.elapsed()
    );
    let log = up.log_text();
    assert!(
        log.contains("were cancelled; their tasks went back to the queue"),
        "{log}"
    );
    // Not a failure of the task (the worker's "task <uuid> failed: ..."),
    // nor its end ("failed after <n> attempt(s)"): it stays running.
    assert!(
        !log.contains(" failed: task ") && !log.contains("failed after"),
        "not a failure of the task:\n{log}"
    );
}

/// A stop is not a failed attempt: stopping `faafo up` during a render,
/// more times than `max_attempts`, leaves the task running with its attempt
/// given back each time, and every start renders it again (before, each
/// stop used an attempt and the third start marked it failed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stops_do_not_use_up_a_tasks_attempts() {
    let (dir, mut up, url) = up_with_a_long_render(
        "shutdown_grace = 1\nmax_attempts = 2\n[worker]\nshutdown_grace = 1\n",
    )
    .await;
    let api = ApiClient::new(&url, None).expect("client");
    let uuid = all(&api, Some(faafo_common::fractal::FractalStatus::Running)).await[0]
        .uuid
        .clone();
    let port = url.rsplit(':').next().expect("a port").to_string();
    let config = dir.path().join("faafo.conf");
    for stop in 1..=3 {
        up.signal("TERM");
        assert_eq!(
            up.wait(Duration::from_secs(30)),
            Some(0),
            "{}",
            up.log_text()
        );
        up = Service::start(
            "up",
            dir.path(),
            &config,
            &["up", "--port", &port, "--no-producer"],
        );
        api_ready(&api, &up).await;
        let dispatched = format!("dispatching task {uuid} (attempt 1 of 2)");
        eventually(
            &format!("the task is rendered again after stop {stop}"),
            Duration::from_secs(30),
            async || up.log_text().matches(&dispatched).count() == stop + 1,
        )
        .await;
    }
    let fractal = api.get(&uuid).await.expect("the task");
    assert_eq!(
        (fractal.status, fractal.attempts),
        (faafo_common::fractal::FractalStatus::Running, 1),
        "{}",
        up.log_text()
    );
    let log = up.log_text();
    assert_eq!(
        log.matches("its attempt 1 not counted").count(),
        3,
        "each stop gave its attempt back:\n{log}"
    );
    assert!(!log.contains("failed after"), "{log}");
}

/// A render that ends within the worker's grace at a stop is stored, not
/// dropped: on memory://, the calls left once the worker has stopped are
/// given up, and the call of this render used to be given up before its
/// reply, already sent, reached it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_render_finished_during_the_stop_is_stored() {
    let (dir, mut up, url) = up_without_producer(
        "[producer]\npoll_interval = 0.2\nshutdown_grace = 120\n[worker]\nshutdown_grace = 120\n",
    )
    .await;
    let api = ApiClient::new(&url, None).expect("client");
    // Seconds of rendering: it runs when the stop comes, and ends in its grace.
    let created = ok(
        faafo_at(
            &url,
            &[
                "--output",
                "json",
                "create",
                "--width",
                "2000",
                "--height",
                "2000",
                "--iterations",
                "2000",
                "--c-re",
                "0",
                "--c-im",
                "0",
            ],
        ),
        "create a render of a few seconds",
    );
    let uuid = field(&json(&created, "create")[0], "uuid").to_string();
    eventually(
        "the render is running",
        Duration::from_secs(30),
        async || {
            api.get(&uuid)
                .await
                .is_ok_and(|f| f.status == faafo_common::fractal::FractalStatus::Running)
        },
    )
    .await;
    up.signal("TERM");
    assert_eq!(
        up.wait(Duration::from_secs(150)),
        Some(0),
        "{}",
        up.log_text()
    );
    let log = up.log_text();
    assert!(!log.contains("call given up at the stop"), "{log}");
    let port = url.rsplit(':').next().expect("a port").to_string();
    let up = Service::start(
        "up",
        dir.path(),
        &dir.path().join("faafo.conf"),
        &["up", "--port", &port, "--no-producer"],
    );
    api_ready(&api, &up).await;
    let fractal = api.get(&uuid).await.expect("the fractal");
    assert_eq!(
        fractal.status,
        faafo_common::fractal::FractalStatus::Done,
        "{log}"
    );
}

/// `up` with a `database_url` says where its data is (that database, its
/// password hidden) and creates no data directory it does not use.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_on_a_database_of_its_own_says_where_the_data_is() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("unused");
    let database = format!("sqlite://{}/elsewhere.db", dir.path().display());
    let text = format!(
        "[DEFAULT]\nstate_path = {}\ndatabase_url = {database}\n",
        state.display()
    );
    let config = support::write_config(dir.path(), "faafo.conf", &text);
    let (mut up, url) = up_on(dir.path(), &config).await;
    up.signal("TERM");
    let code = up.wait(Duration::from_secs(30));
    let log = up.log_text();
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains(&format!("data: {database}")), "{log}");
    // On a port of `--port`, not the configuration's: the commands are
    // told where to look.
    assert!(
        log.contains(&format!("commands: faafo --endpoint-url {url} list")),
        "{log}"
    );
    assert!(
        log.contains(&format!("faafo stopped; its data stays in {database}")),
        "{log}"
    );
    assert!(!state.exists(), "no data directory made:\n{log}");
}

/// `faafo worker` and `faafo producer` stopped by SIGTERM say so in a last
/// log line, as the API does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_and_the_producer_say_they_stopped() {
    let (dir, _up, url) = up_without_producer("").await;
    // A broker of their own: alone, they refuse the in-process one.
    let vhost = faafo_common::testing::RabbitVhost::create().await;
    let config = write_config(
        dir.path(),
        &format!(
            "endpoint_url = {url}\ntransport_url = {}\n[producer]\nmin_tasks = 0\nmax_tasks = 0\n",
            vhost.url()
        ),
    );
    for (name, ready, stopped) in [
        ("worker", "worker ready", "faafo-worker stopped"),
        ("producer", "producer started", "faafo-producer stopped"),
    ] {
        let mut service = Service::start(name, dir.path(), &config, &[name]);
        eventually(
            &format!("the {name} starts"),
            Duration::from_secs(60),
            async || service.log_text().contains(ready),
        )
        .await;
        service.signal("TERM");
        let code = service.wait(Duration::from_secs(60));
        let log = service.log_text();
        assert_eq!(code, Some(0), "{log}");
        assert!(
            log.lines().last().is_some_and(|l| l.contains(stopped)),
            "{stopped:?} last:\n{log}"
        );
    }
}

/// A worker or producer run on its own with the default `memory://`
/// broker (a file without `transport_url`) would wait forever or call
/// nobody: it refuses to start, and its `check-config` refuses the file, in
/// one line that says what to set; `faafo check-config` (which `faafo up`
/// uses too) accepts it.
#[test]
fn a_worker_or_producer_alone_refuses_the_in_process_broker() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), "");
    let producer = env!("CARGO_BIN_EXE_faafo-producer");
    let cases: [(&str, &str, &[&str]); 4] = [
        ("faafo worker", faafo(), &["worker"]),
        ("faafo producer", faafo(), &["producer", "--one-shot"]),
        ("faafo-producer", producer, &[]),
        ("faafo-producer check-config", producer, &["check-config"]),
    ];
    for (name, program, args) in cases {
        let mut command = Command::new(program);
        command.args(args).arg("--config-file").arg(&config);
        let output = run(command, name);
        let err = stderr(&output);
        assert_eq!(output.status.code(), Some(1), "{name}: {err}");
        assert_eq!(err.lines().count(), 1, "{name}: one line:\n{err}");
        assert!(
            err.contains("transport_url is memory://")
                && err.contains("rabbit://")
                && err.contains("faafo up"),
            "{name}: {err}"
        );
    }
    let mut command = Command::new(faafo());
    command.args(["check-config", "--config-file"]).arg(&config);
    let out = ok(run(command, "faafo check-config"), "faafo check-config");
    assert!(out.contains("the configuration is valid"), "{out}");
}
