//! Test support for the workspace's tests (feature `testing`).
//!
//! Tests that need RabbitMQ get a virtual host of their own, created through
//! the management API and deleted when the guard drops, so they can run in
//! parallel on the shared broker and leave nothing behind. When RabbitMQ or
//! its management API is not there, they fail with a message that says so.

use std::time::Duration;

use crate::messaging::{MessagingError, Transport, TransportUrl};

/// The broker tests use: `FAAFO_TEST_TRANSPORT_URL`, by default the local
/// RabbitMQ as guest.
pub fn rabbit_url() -> String {
    std::env::var("FAAFO_TEST_TRANSPORT_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/".to_string())
}

/// RabbitMQ's management API: `FAAFO_TEST_RABBIT_API`, by default on the
/// broker's host, port 15672.
pub fn rabbit_api() -> String {
    std::env::var("FAAFO_TEST_RABBIT_API").unwrap_or_else(|_| {
        let host = TransportUrl::parse(&rabbit_url())
            .ok()
            .and_then(|u| u.hosts.first().map(|h| h.host.clone()))
            .unwrap_or_else(|| "127.0.0.1".into());
        format!("http://{host}:15672")
    })
}

/// A name no other test run uses.
pub fn unique_name(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// A RabbitMQ virtual host that exists for one test.
pub struct RabbitVhost {
    name: String,
    url: String,
    api: String,
    user: String,
    password: String,
}

impl RabbitVhost {
    /// Creates a fresh vhost and grants the test user all rights on it.
    ///
    /// # Panics
    /// When RabbitMQ's management API cannot be reached or refuses: the
    /// message names what is missing and how to start it.
    pub async fn create() -> Self {
        let base = TransportUrl::parse(&rabbit_url())
            .unwrap_or_else(|e| panic!("FAAFO_TEST_TRANSPORT_URL is not usable: {e}"));
        let host = base
            .hosts
            .first()
            .cloned()
            .unwrap_or_else(|| panic!("FAAFO_TEST_TRANSPORT_URL names no host"));
        let name = unique_name("faafo-test");
        let api = rabbit_api();
        let client = reqwest::Client::new();
        let put = |path: String, body: serde_json::Value| {
            client
                .put(format!("{api}{path}"))
                .basic_auth(&host.username, Some(&host.password))
                .json(&body)
                .timeout(Duration::from_secs(10))
                .send()
        };
        let explain = |what: &str, e: &dyn std::fmt::Display| -> ! {
            panic!(
                "RabbitMQ is needed for this test but {what} failed at {api}: {e}. \
                 Start RabbitMQ (`rabbitmq-server -detached`) with its management plugin \
                 (`rabbitmq-plugins enable rabbitmq_management`), or point \
                 FAAFO_TEST_TRANSPORT_URL / FAAFO_TEST_RABBIT_API at one."
            )
        };
        for (what, path, body) in [
            (
                "creating a vhost",
                format!("/api/vhosts/{name}"),
                serde_json::json!({}),
            ),
            (
                "granting permissions",
                format!("/api/permissions/{name}/{}", host.username),
                serde_json::json!({"configure": ".*", "write": ".*", "read": ".*"}),
            ),
        ] {
            match put(path, body).await {
                Ok(r) if r.status().is_success() => {}
                Ok(r) => explain(what, &format!("HTTP {}", r.status())),
                Err(e) => explain(what, &e),
            }
        }
        let url = format!(
            "amqp://{}:{}@{}:{}/{name}",
            percent_encoding::utf8_percent_encode(
                &host.username,
                percent_encoding::NON_ALPHANUMERIC
            ),
            percent_encoding::utf8_percent_encode(
                &host.password,
                percent_encoding::NON_ALPHANUMERIC
            ),
            host.host,
            host.port
        );
        Self {
            name,
            url,
            api,
            user: host.username,
            password: host.password,
        }
    }

    /// The vhost's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// An AMQP URL into this vhost.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The management API's view of one queue (arguments, flags, counts),
    /// or `None` if it does not exist.
    pub async fn queue_info(&self, queue: &str) -> Option<serde_json::Value> {
        let response = reqwest::Client::new()
            .get(format!("{}/api/queues/{}/{queue}", self.api, self.name))
            .basic_auth(&self.user, Some(&self.password))
            .send()
            .await
            .ok()?;
        if !response.status().is_success() {
            return None;
        }
        response.json().await.ok()
    }

    /// Declares, through the management API, what another client of the
    /// broker (a Python peer) would have: `kind` is `exchanges` or
    /// `queues`, `body` the properties (`{"type": "topic", "durable":
    /// true}`).
    pub async fn declare_as_another_client(&self, kind: &str, name: &str, body: serde_json::Value) {
        let url = format!("{}/api/{kind}/{}/{name}", self.api, self.name);
        self.management_write(reqwest::Method::PUT, &url, Some(body))
            .await;
    }

    /// Deletes what another client (an operator, a peer's auto-delete)
    /// would: `kind` is `exchanges` or `queues`.
    pub async fn delete_as_another_client(&self, kind: &str, name: &str) {
        let url = format!("{}/api/{kind}/{}/{name}", self.api, self.name);
        self.management_write(reqwest::Method::DELETE, &url, None)
            .await;
    }

    /// Binds `queue` to `exchange` with `key`, as another client would.
    pub async fn bind_as_another_client(&self, exchange: &str, queue: &str, key: &str) {
        let url = format!(
            "{}/api/bindings/{}/e/{exchange}/q/{queue}",
            self.api, self.name
        );
        self.management_write(
            reqwest::Method::POST,
            &url,
            Some(serde_json::json!({"routing_key": key})),
        )
        .await;
    }

    async fn management_write(
        &self,
        method: reqwest::Method,
        url: &str,
        body: Option<serde_json::Value>,
    ) {
        let mut request = reqwest::Client::new()
            .request(method, url)
            .basic_auth(&self.user, Some(&self.password));
        if let Some(body) = &body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("the management API at {url}: {e}"));
        assert!(
            response.status().is_success(),
            "the management API at {url}: {}",
            response.status()
        );
    }

    /// Closes, as an operator (or a network failure) would, every
    /// connection into the vhost whose `connection_name` is `name`, once
    /// the management API lists it (its statistics can take seconds).
    /// Returns how many it closed.
    ///
    /// # Panics
    /// When none with that name is listed within 30 seconds.
    pub async fn close_connections_named(&self, name: &str) -> usize {
        let client = reqwest::Client::new();
        let list = format!("{}/api/vhosts/{}/connections", self.api, self.name);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let listed: Vec<serde_json::Value> = match client
                .get(&list)
                .basic_auth(&self.user, Some(&self.password))
                .send()
                .await
            {
                Ok(r) if r.status().is_success() => r.json().await.unwrap_or_default(),
                _ => Vec::new(),
            };
            let named: Vec<&str> = listed
                .iter()
                .filter(|c| c["client_properties"]["connection_name"].as_str() == Some(name))
                .filter_map(|c| c["name"].as_str())
                .collect();
            if !named.is_empty() {
                for connection in &named {
                    let url = format!(
                        "{}/api/connections/{}",
                        self.api,
                        percent_encoding::utf8_percent_encode(
                            connection,
                            percent_encoding::NON_ALPHANUMERIC
                        )
                    );
                    self.management_write(reqwest::Method::DELETE, &url, None)
                        .await;
                }
                return named.len();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the management API at {list} lists no connection named {name}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Names of the queues in the vhost.
    pub async fn queue_names(&self) -> Vec<String> {
        let Ok(response) = reqwest::Client::new()
            .get(format!("{}/api/queues/{}", self.api, self.name))
            .basic_auth(&self.user, Some(&self.password))
            .send()
            .await
        else {
            return Vec::new();
        };
        let list: Vec<serde_json::Value> = response.json().await.unwrap_or_default();
        list.iter()
            .filter_map(|q| q["name"].as_str().map(str::to_string))
            .collect()
    }
}

impl Drop for RabbitVhost {
    fn drop(&mut self) {
        let url = format!("{}/api/vhosts/{}", self.api, self.name);
        let (user, password) = (self.user.clone(), self.password.clone());
        // The blocking client cannot run on a runtime thread: use our own.
        let deleted = std::thread::spawn(move || {
            reqwest::blocking::Client::new()
                .delete(url)
                .basic_auth(user, Some(password))
                .timeout(Duration::from_secs(10))
                .send()
        })
        .join();
        if !matches!(deleted, Ok(Ok(ref r)) if r.status().is_success()) {
            eprintln!("warning: could not delete test vhost {}", self.name);
        }
    }
}

/// Publishes raw bytes, bypassing the RPC layer (to test bad input).
pub async fn publish_raw(
    transport: &Transport,
    exchange: &str,
    routing_key: &str,
    body: Vec<u8>,
    content_type: &str,
) -> Result<(), MessagingError> {
    let publication = crate::messaging::testing_support::publication(
        exchange,
        routing_key,
        body,
        content_type.to_string(),
    );
    crate::messaging::testing_support::publish(transport, publication).await
}

/// Ready messages in a queue, `None` if it does not exist.
pub async fn queue_depth(
    transport: &Transport,
    queue: &str,
) -> Result<Option<usize>, MessagingError> {
    crate::messaging::testing_support::queue_depth(transport, queue).await
}

/// A RabbitMQ node of a test's own (own ports, node name and data
/// directory, on 127.0.0.1), for tests that restart the broker. Never the
/// shared one other tests use. Stopped and removed when dropped.
pub struct PrivateRabbit {
    node: String,
    port: u16,
    dir: std::path::PathBuf,
    child: std::process::Child,
}

/// Where Debian installs RabbitMQ's scripts (`FAAFO_RABBITMQ_SBIN` overrides).
fn rabbit_sbin() -> std::path::PathBuf {
    std::env::var_os("FAAFO_RABBITMQ_SBIN")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| "/usr/lib/rabbitmq/bin".into())
}

/// A TCP port of 127.0.0.1 for a process the test starts, free now and
/// never handed out before by this process.
///
/// Drawn below Linux's ephemeral range (32768 and up), so that no outgoing
/// connection of a test running beside this one takes it as its local port
/// before the process listens on it, which a port from `bind(0)` could
/// not promise (nor that the next `bind(0)` would not return it again).
pub fn free_port() -> u16 {
    static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut handed_out = HANDED_OUT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for _ in 0..10_000 {
        let port = fastrand::u16(20_000..32_768);
        if handed_out.contains(&port) {
            continue;
        }
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            handed_out.push(port);
            return port;
        }
    }
    panic!("no free TCP port between 20000 and 32767 on 127.0.0.1")
}

impl PrivateRabbit {
    /// Starts a node and waits until it accepts connections (blocking; call
    /// it from `spawn_blocking` in async tests).
    ///
    /// # Panics
    /// When RabbitMQ is not installed or the node does not start; the
    /// message says which and where its logs are.
    pub fn start() -> Self {
        let sbin = rabbit_sbin();
        let server = sbin.join("rabbitmq-server");
        assert!(
            server.exists(),
            "this test starts a RabbitMQ node of its own but {} is missing: install the \
             rabbitmq-server package or set FAAFO_RABBITMQ_SBIN",
            server.display()
        );
        let id = uuid::Uuid::new_v4().simple().to_string();
        let node = format!("faafo-test-{}@localhost", &id[..12]);
        let dir = std::env::temp_dir().join(format!("faafo-rabbit-{}", &id[..12]));
        std::fs::create_dir_all(&dir).expect("node directory");
        std::fs::write(dir.join("enabled_plugins"), "[].\n").expect("plugins file");
        std::fs::write(dir.join("rabbitmq.conf"), "loopback_users = none\n").expect("config");
        std::fs::write(dir.join("rabbitmq-env.conf"), "").expect("env file");
        let port = free_port();
        let dist_port = free_port();
        let log = std::fs::File::create(dir.join("server.log")).expect("log file");
        let child = std::process::Command::new(&server)
            .current_dir(&dir)
            .env("RABBITMQ_NODENAME", &node)
            .env("RABBITMQ_NODE_PORT", port.to_string())
            .env("RABBITMQ_DIST_PORT", dist_port.to_string())
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_MNESIA_BASE", dir.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", dir.join("log"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", dir.join("enabled_plugins"))
            .env("RABBITMQ_CONFIG_FILE", dir.join("rabbitmq.conf"))
            .env("RABBITMQ_CONF_ENV_FILE", dir.join("rabbitmq-env.conf"))
            .env("RABBITMQ_PID_FILE", dir.join("pid"))
            .stdout(
                log.try_clone()
                    .map(std::process::Stdio::from)
                    .unwrap_or_else(|_| std::process::Stdio::null()),
            )
            .stderr(std::process::Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", server.display()));
        let mut rabbit = Self {
            node,
            port,
            dir,
            child,
        };
        rabbit.wait_until_booted();
        rabbit
    }

    /// Polls until the node has registered and booted (up to 90 s).
    fn wait_until_booted(&mut self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(90);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
                panic!(
                    "the test's RabbitMQ node exited ({status}) while starting:\n{}",
                    log.lines()
                        .rev()
                        .take(30)
                        .collect::<Vec<_>>()
                        .into_iter()
                        .rev()
                        .collect::<Vec<_>>()
                        .join("\n")
                );
            }
            let booted = std::process::Command::new(rabbit_sbin().join("rabbitmqctl"))
                .arg("-n")
                .arg(&self.node)
                .args(["await_startup", "--timeout", "10"])
                .output()
                .is_ok_and(|o| o.status.success());
            if booted {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the test's RabbitMQ node {} did not boot within 90 s (log: {})",
                self.node,
                self.dir.join("server.log").display()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// An AMQP URL to the node (guest/guest).
    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/", self.port)
    }

    /// The node's AMQP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `rabbitmqctl stop_app`: every connection drops, transient queues go.
    pub fn stop_app(&self) {
        self.ctl(&["stop_app"]);
    }

    /// Raises (`true`) or clears the node's memory alarm: RabbitMQ then
    /// blocks (or unblocks) every connection that publishes.
    pub fn set_memory_alarm(&self, on: bool) {
        self.ctl(&["set_vm_memory_high_watermark", if on { "0" } else { "0.4" }]);
    }

    /// Sets the node's `max_message_size` (bytes): the channels opened from
    /// then on refuse larger messages, closing with PRECONDITION_FAILED.
    pub fn set_max_message_size(&self, bytes: usize) {
        self.ctl(&[
            "eval",
            &format!("application:set_env(rabbit, max_message_size, {bytes})."),
        ]);
    }

    /// `rabbitmqctl start_app`.
    pub fn start_app(&self) {
        self.ctl(&["start_app"]);
        self.ctl(&["await_startup", "--timeout", "60"]);
    }

    fn ctl(&self, args: &[&str]) {
        let out = std::process::Command::new(rabbit_sbin().join("rabbitmqctl"))
            .arg("-n")
            .arg(&self.node)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run rabbitmqctl: {e}"));
        assert!(
            out.status.success(),
            "rabbitmqctl {} failed on {}: {}\n(server log: {})",
            args.join(" "),
            self.node,
            String::from_utf8_lossy(&out.stderr),
            self.dir.join("server.log").display()
        );
    }
}

impl Drop for PrivateRabbit {
    fn drop(&mut self) {
        let _ = std::process::Command::new(rabbit_sbin().join("rabbitmqctl"))
            .arg("-n")
            .arg(&self.node)
            .arg("stop")
            .output();
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The broker of one test: an isolated in-process broker, or a RabbitMQ
/// vhost of its own. Suites run the same scenario on both with
/// [`on_both_transports!`](crate::on_both_transports).
pub struct TestBroker {
    url: String,
    vhost: Option<RabbitVhost>,
}

impl TestBroker {
    /// A `memory:///<unique>` broker nobody else uses.
    pub fn memory() -> Self {
        Self {
            url: format!("memory:///{}", unique_name("test")),
            vhost: None,
        }
    }

    /// A fresh vhost on the test RabbitMQ (see [`RabbitVhost::create`]).
    pub async fn rabbit() -> Self {
        let vhost = RabbitVhost::create().await;
        Self {
            url: vhost.url().to_string(),
            vhost: Some(vhost),
        }
    }

    /// Its transport URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The RabbitMQ vhost, when it is one.
    pub fn vhost(&self) -> Option<&RabbitVhost> {
        self.vhost.as_ref()
    }

    /// A new connection to it.
    ///
    /// # Panics
    /// When the broker cannot be reached (the message says which).
    pub async fn transport(&self) -> Transport {
        match Transport::connect(&self.url).await {
            Ok(t) => t,
            Err(e) => panic!(
                "cannot connect to {}: {e}",
                crate::messaging::redact_url(&self.url)
            ),
        }
    }
}

/// Generates, for each named `async fn(TestBroker)` in scope, a test on
/// `memory://` (module `memory`) and one on RabbitMQ (module `rabbitmq`).
#[macro_export]
macro_rules! on_both_transports {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::testing::TestBroker::memory()).await;
                }
            )*
        }
        mod rabbitmq {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::testing::TestBroker::rabbit().await).await;
                }
            )*
        }
    };
}

/// The [`RemoteError`](crate::messaging::RemoteError) a call was answered
/// with, when its class is `class`: what tests of a server's failures
/// check first, before the message or the module.
///
/// # Panics
/// When the call succeeded, failed otherwise, or failed with another class
/// (the message shows what came instead).
#[track_caller]
pub fn remote_error<T: std::fmt::Debug>(
    outcome: Result<T, MessagingError>,
    class: &str,
) -> crate::messaging::RemoteError {
    match outcome {
        Err(MessagingError::Remote { error, .. }) => {
            assert_eq!(error.class, class, "the remote error: {error}");
            *error
        }
        other => panic!("expected a remote {class}, got {other:?}"),
    }
}

/// A notification listener that hands every notification it receives to
/// the returned channel, as `builder` sets it up (its pool, its topics).
pub async fn collecting_listener(
    builder: crate::messaging::NotificationListenerBuilder,
) -> (
    crate::messaging::NotificationListener,
    tokio::sync::mpsc::UnboundedReceiver<crate::messaging::Notification>,
) {
    use crate::messaging::{Notification, NotificationResult};
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let listener = builder
        .start(move |n: Notification| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(n);
                NotificationResult::Handled
            }
        })
        .await
        .expect("a notification listener");
    (listener, rx)
}
