//! The web page in a real browser: headless Chromium (Debian's `chromium`),
//! driven over the DevTools protocol, loads `/` with rendered fractals,
//! every thumbnail must have loaded (naturalWidth > 0), and screenshots
//! (desktop and phone) are saved under the test's output directory. The
//! first page keeps itself up to date: fractals made after it loaded
//! appear, and the counts change, without a reload; not while the tab is
//! hidden. So does a fractal's page until the fractal is final (or
//! deleted), and then it stops asking. A page opened while the database
//! is away (the 503 page) shows the page asked for once it is back.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::{Backend, spawn_app};

const CHROMIUM: &str = "/usr/bin/chromium";

/// A minimal DevTools client: one WebSocket to the browser, one page session.
struct DevTools {
    socket: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    next_id: u64,
    session: Option<String>,
}

impl DevTools {
    async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({"id": id, "method": method, "params": params});
        if let Some(session) = &self.session {
            message["sessionId"] = json!(session);
        }
        self.socket
            .send(Message::text(message.to_string()))
            .await
            .expect("send to Chromium");
        loop {
            let frame = tokio::time::timeout(Duration::from_secs(30), self.socket.next())
                .await
                .unwrap_or_else(|_| panic!("Chromium did not answer {method} within 30 s"))
                .expect("Chromium closed the DevTools connection")
                .expect("DevTools message");
            let Message::Text(text) = frame else { continue };
            let reply: Value = serde_json::from_str(&text).expect("DevTools JSON");
            if reply["id"] == json!(id) {
                assert!(reply.get("error").is_none(), "{method} failed: {reply}");
                return reply["result"].clone();
            }
        }
    }

    async fn eval(&mut self, expression: &str) -> Value {
        let result = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
            )
            .await;
        assert!(
            result.get("exceptionDetails").is_none(),
            "{expression}: {result}"
        );
        result["result"]["value"].clone()
    }

    async fn screenshot(&mut self, path: &Path) {
        let shot = self
            .call(
                "Page.captureScreenshot",
                json!({"format": "png", "captureBeyondViewport": true}),
            )
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().expect("screenshot data"))
            .expect("base64");
        assert!(png.starts_with(b"\x89PNG"), "the screenshot is a PNG");
        std::fs::write(path, png).expect("write the screenshot");
    }

    /// Loads `url` with the given viewport and waits until the page and
    /// its images are complete.
    async fn load(&mut self, url: &str, width: u32, height: u32, mobile: bool) {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile}),
        )
        .await;
        self.call("Page.navigate", json!({"url": url})).await;
        // The new document, not the previous one still complete on screen
        // while the navigation starts.
        let check = format!(
            "location.href === new URL({}).href && document.readyState === 'complete' \
             && Array.from(document.images).every(i => i.complete)",
            json!(url)
        );
        let started = Instant::now();
        loop {
            let ready = self.eval(&check).await;
            if ready == json!(true) {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "{url} did not finish loading in 30 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until `expression` is true (the page's script polls every
    /// 3 s, and backs off on errors).
    async fn wait_for(&mut self, expression: &str, what: &str) {
        let started = Instant::now();
        while self.eval(expression).await != json!(true) {
            if started.elapsed() > Duration::from_secs(30) {
                let text = self.eval("document.body.innerText").await;
                panic!("{what}: not so after 30 s; the page reads:\n{text}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Chromium, killed when dropped.
struct Browser {
    child: tokio::process::Child,
    _profile: tempfile::TempDir,
}

async fn launch() -> (Browser, DevTools) {
    assert!(
        Path::new(CHROMIUM).exists(),
        "this test needs Debian's chromium at {CHROMIUM}: install it with `apt-get install -y chromium`"
    );
    let profile = tempfile::tempdir().expect("profile directory");
    let child = tokio::process::Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-quic",
            "--hide-scrollbars",
            "--remote-debugging-port=0",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("about:blank")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start chromium");
    // Chromium writes its port and browser path once it listens.
    let port_file = profile.path().join("DevToolsActivePort");
    let started = Instant::now();
    let endpoint = loop {
        if let Ok(text) = std::fs::read_to_string(&port_file) {
            let mut lines = text.lines();
            if let (Some(port), Some(path)) = (lines.next(), lines.next()) {
                break format!("ws://127.0.0.1:{port}{path}");
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "Chromium did not open its DevTools port in 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let (socket, _) = tokio_tungstenite::connect_async(&endpoint)
        .await
        .expect("connect to DevTools");
    let mut devtools = DevTools {
        socket,
        next_id: 0,
        session: None,
    };
    let target = devtools
        .call("Target.createTarget", json!({"url": "about:blank"}))
        .await;
    let attached = devtools
        .call(
            "Target.attachToTarget",
            json!({"targetId": target["targetId"], "flatten": true}),
        )
        .await;
    devtools.session = Some(
        attached["sessionId"]
            .as_str()
            .expect("session id")
            .to_string(),
    );
    devtools.call("Page.enable", json!({})).await;
    (
        Browser {
            child,
            _profile: profile,
        },
        devtools,
    )
}

fn output_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser");
    std::fs::create_dir_all(&dir).expect("output directory");
    dir
}

/// A page opened while the database is away is the 503 page; it asks
/// again by itself (with back-off) and shows the page asked for once the
/// database is back, forgetting its back-off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_unavailable_page_loads_the_page_once_the_database_is_back_in_chromium() {
    use crate::helpers::TestDatabase;
    use crate::outage::{Proxy, api_on, host_port};
    let db = TestDatabase::create(Backend::Postgres).await;
    let mut proxy = Proxy::start(&host_port(&db.url), 0).await;
    let (api, _state) = api_on(&proxy.in_front_of(&db.url), |_| {}).await;
    let (_browser, mut devtools) = launch().await;
    proxy.stop().await;
    devtools.load(&format!("{api}/"), 1280, 900, false).await;
    assert_eq!(
        devtools
            .eval("document.querySelector('main.unavailable') !== null")
            .await,
        json!(true),
        "the 503 page: {}",
        devtools.eval("document.body.innerText").await
    );
    devtools
        .screenshot(&output_dir().join("unavailable.png"))
        .await;
    proxy.restart().await;
    devtools
        .wait_for(
            "document.querySelector('main.unavailable') === null \
             && document.querySelector('header .counts') !== null",
            "the page asked for, once the database is back",
        )
        .await;
    assert_eq!(
        devtools
            .eval("sessionStorage.getItem('faafo.live.delay') === null")
            .await,
        json!(true),
        "the back-off is forgotten once the page is shown"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_rendered_fractals_in_chromium() {
    let app = spawn_app(Backend::Sqlite).await;
    let constants = [
        (-0.8, 0.156),
        (-0.4, 0.6),
        (0.285, 0.01),
        (-0.7269, 0.1889),
        (-0.835, -0.2321),
        (0.35, 0.35),
    ];
    let mut finished = Vec::new();
    for (i, c) in constants.into_iter().enumerate() {
        let (width, height) = if i % 2 == 0 { (360, 240) } else { (240, 240) };
        finished.push(app.finished_fractal(width, height, c).await.0);
    }
    // A pending one, with markup in its error, must not show or break the page.
    let pending = app
        .api
        .create(&crate::helpers::new_fractal(8, 8, None))
        .await
        .expect("create");
    let failed = faafo_common::fractal::FractalUpdate {
        status: Some(faafo_common::fractal::FractalStatus::Failed),
        error: Some("<script>alert(1)</script>".into()),
        ..Default::default()
    };
    app.api
        .update(&pending.uuid, &failed)
        .await
        .expect("failed");

    let (mut browser, mut devtools) = launch().await;
    let dir = output_dir();
    devtools.load(&app.url, 1280, 900, false).await;
    let images = devtools
        .eval("JSON.stringify(Array.from(document.images).map(i => ({src: i.getAttribute('src'), w: i.naturalWidth, h: i.naturalHeight, shown: i.getBoundingClientRect().width})))")
        .await;
    let images: Vec<Value> = serde_json::from_str(images.as_str().expect("text")).expect("json");
    assert_eq!(images.len(), 5, "5 fractals per page: {images:?}");
    // Newest first: the last finished is first.
    let newest = &finished[finished.len() - 1];
    // Linked with its checksum: cached for good, and a uuid used again
    // after a delete is another URL.
    assert_eq!(
        images[0]["src"],
        json!(format!(
            "/fractal/{}?v={}",
            newest.uuid,
            newest.checksum.clone().expect("checksum")
        ))
    );
    for image in &images {
        assert!(
            image["w"].as_u64().unwrap_or(0) > 0,
            "a thumbnail did not load: {image}"
        );
        assert!(
            image["shown"].as_f64().unwrap_or(0.0) <= 300.5,
            "thumbnails are at most 300 px wide: {image}"
        );
    }
    let text = devtools.eval("document.body.innerText").await;
    let text = text.as_str().expect("text");
    for needle in [
        "6 done",
        "1 failed",
        "0 pending",
        "UUID",
        "Duration",
        "360 x 240 px",
        "Iterations",
        "Checksum",
        "Generated by",
        "test-worker",
        "page 1 of 2",
    ] {
        assert!(
            text.contains(needle),
            "{needle:?} is not on the page:\n{text}"
        );
    }
    // One script, ours, served by the API (the policy forbids inline ones).
    assert_eq!(
        devtools
            .eval("Array.from(document.scripts).map(s => new URL(s.src).pathname)")
            .await,
        json!(["/static/live.js"])
    );
    devtools.screenshot(&dir.join("index.png")).await;

    // Page 2 has the oldest one; its link leads to the full image.
    devtools
        .eval("document.querySelector('a[rel=next]').click()")
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    devtools
        .load(&format!("{}/index/2", app.url), 1280, 900, false)
        .await;
    let second = devtools
        .eval("Array.from(document.images).map(i => i.naturalWidth)")
        .await;
    assert_eq!(second, json!([360]));
    // History: no script, nothing moves.
    assert_eq!(devtools.eval("document.scripts.length").await, json!(0));
    // A phone: one column, nothing wider than the screen.
    devtools.load(&app.url, 390, 844, true).await;
    let overflow = devtools
        .eval("document.documentElement.scrollWidth <= window.innerWidth")
        .await;
    assert_eq!(
        overflow,
        json!(true),
        "the page is wider than a phone's screen"
    );
    let loaded = devtools
        .eval("Array.from(document.images).every(i => i.naturalWidth > 0)")
        .await;
    assert_eq!(loaded, json!(true));
    devtools.screenshot(&dir.join("index-phone.png")).await;
    // A fractal's own page.
    devtools
        .load(
            &format!("{}/show/{}", app.url, finished[0].uuid),
            1280,
            900,
            false,
        )
        .await;
    let text = devtools.eval("document.body.innerText").await;
    assert!(
        text.as_str()
            .is_some_and(|t| t.contains("done") && t.contains(&finished[0].uuid)),
        "{text}"
    );
    assert_eq!(devtools.eval("document.scripts.length").await, json!(0));
    devtools.screenshot(&dir.join("show.png")).await;

    watch_fractals_arrive(&app, &mut devtools).await;
    devtools.screenshot(&dir.join("index-updated.png")).await;
    println!("screenshots in {}", dir.display());
    let _ = browser.child.kill().await;
    app.stop().await;
}

/// The first page, left open, follows the fractals made after it loaded:
/// the counts change and a new finished fractal shows (its image loaded)
/// without a reload, the entries already shown keeping their nodes. A
/// hidden tab asks nothing, and catches up once visible again.
async fn watch_fractals_arrive(app: &crate::helpers::TestApp, devtools: &mut DevTools) {
    devtools.load(&app.url, 1280, 900, false).await;
    assert_eq!(
        devtools.eval("document.visibilityState").await,
        json!("visible")
    );
    // Gone if the page reloads; the shown image's mark (a property, not
    // an attribute: the markup stays the server's), if it is rebuilt.
    devtools
        .eval("window.loadedOnce = true; document.images[0].keptNode = true; true")
        .await;
    // The "older" link changes its address as fractals finish (it carries
    // the newest one's time): changed in place, the same node.
    devtools
        .eval(
            "window.olderLink = document.querySelector('a[rel=next]'); \
             window.olderHref = window.olderLink.getAttribute('href'); true",
        )
        .await;
    // A keyboard user on the first entry's link keeps it through updates.
    devtools
        .eval(
            "window.focusedLink = document.querySelector('main article a'); \
             window.focusedLink.focus(); document.activeElement === window.focusedLink",
        )
        .await;
    let counts = "document.querySelector('.counts').innerText";
    assert!(
        devtools
            .eval(&format!("{counts}.includes('0 pending')"))
            .await
            == json!(true)
    );
    app.api
        .create(&crate::helpers::new_fractal(8, 8, None))
        .await
        .expect("create");
    devtools
        .wait_for(
            &format!("{counts}.includes('1 pending')"),
            "a fractal created after the page loaded is counted",
        )
        .await;
    let (newest, _) = app.finished_fractal(300, 200, (-0.75, 0.11)).await;
    let shown_first = |fractal: &faafo_common::fractal::Fractal| {
        let (uuid, width) = (&fractal.uuid, fractal.width);
        format!(
            "(() => {{ const i = document.images[0]; \
              return i.getAttribute('src').startsWith('/fractal/{uuid}?v=') \
                && i.complete && i.naturalWidth === {width}; }})()"
        )
    };
    devtools
        .wait_for(
            &shown_first(&newest),
            "a fractal finished after the page loaded is shown first, its image loaded",
        )
        .await;
    devtools
        .wait_for(
            &format!("{counts}.includes('7 done')"),
            "the done count follows",
        )
        .await;
    assert_eq!(
        devtools
            .eval(
                "JSON.stringify([window.loadedOnce === true, document.images.length, \
                 document.images[1].keptNode === true])"
            )
            .await,
        json!("[true,5,true]"),
        "no reload; still 5 entries; the one shown before kept its node"
    );
    assert_eq!(
        devtools
            .eval("document.activeElement === window.focusedLink")
            .await,
        json!(true),
        "the focused link kept the focus through the update"
    );
    assert_eq!(
        devtools
            .eval(
                "JSON.stringify([document.querySelector('a[rel=next]') === window.olderLink, \
                 window.olderLink.getAttribute('href') !== window.olderHref, \
                 window.olderLink.getAttribute('href').startsWith('/index/2?until=')])"
            )
            .await,
        json!("[true,true,true]"),
        "the older link follows the newest fractal, in place"
    );

    // Hidden: no request at all (the API counts them), nothing changes.
    devtools
        .eval(
            "Object.defineProperty(document, 'visibilityState', \
               {configurable: true, get: () => 'hidden'}); \
             document.dispatchEvent(new Event('visibilitychange')); true",
        )
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = page_requests(app).await;
    let (unseen, _) = app.finished_fractal(240, 240, (0.285, 0.0)).await;
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert_eq!(
        page_requests(app).await,
        before,
        "the hidden page kept polling"
    );
    assert_eq!(devtools.eval(&shown_first(&unseen)).await, json!(false));
    // Visible again: it catches up at once.
    devtools
        .eval(
            "delete document.visibilityState; \
             document.dispatchEvent(new Event('visibilitychange')); true",
        )
        .await;
    devtools
        .wait_for(
            &shown_first(&unseen),
            "the page catches up once visible again",
        )
        .await;
}

/// `GET /` answered 200 so far, from the API's metrics.
async fn page_requests(app: &crate::helpers::TestApp) -> u64 {
    requests(app, "/", 200).await
}

/// `GET route` (a route template) answered `status` so far, from the
/// API's metrics.
async fn requests(app: &crate::helpers::TestApp, route: &str, status: u16) -> u64 {
    let text = app.get("/metrics").await.text().await.expect("metrics");
    let series = format!(
        "faafo_api_http_requests_total{{route=\"{route}\",method=\"GET\",status=\"{status}\"}} "
    );
    text.lines()
        .find_map(|line| line.strip_prefix(&series))
        .map_or(0, |n| n.parse().expect("a count"))
}

/// A fractal's page, left open while the fractal is pending, follows it:
/// running, then done with its image, without a reload; then it asks no
/// more. Another one's page shows that it was deleted, and stops too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fractals_page_follows_it_until_final_in_chromium() {
    use faafo_common::fractal::{FractalStatus, FractalUpdate};

    let app = spawn_app(Backend::Sqlite).await;
    let fractal = app
        .api
        .create(&crate::helpers::new_fractal(240, 160, Some((-0.8, 0.156))))
        .await
        .expect("create");
    let (mut browser, mut devtools) = launch().await;
    let url = format!("{}/show/{}", app.url, fractal.uuid);
    devtools.load(&url, 1280, 900, false).await;
    let status = "document.querySelector('.status').innerText";
    assert_eq!(devtools.eval(status).await, json!("pending"));
    assert_eq!(devtools.eval("document.images.length").await, json!(0));
    // Gone if the page reloads.
    devtools.eval("window.loadedOnce = true; true").await;
    // A keyboard user on the fractal's link: the article is put in anew.
    assert_eq!(
        devtools
            .eval(
                "const link = document.querySelector('main article a'); link.focus(); \
                 document.activeElement === link"
            )
            .await,
        json!(true)
    );

    let running = FractalUpdate {
        status: Some(FractalStatus::Running),
        attempts: Some(1),
        ..FractalUpdate::default()
    };
    app.api
        .update(&fractal.uuid, &running)
        .await
        .expect("running");
    devtools
        .wait_for(
            &format!("{status} === 'running' && document.body.innerText.includes('Attempts\t1')"),
            "the page shows the fractal running, its attempt counted",
        )
        .await;
    assert_eq!(
        devtools
            .eval("document.activeElement === document.querySelector('main')")
            .await,
        json!(true),
        "the focus on the article put in anew went to the page's main part, not the top"
    );

    let rendered = crate::helpers::render(&fractal);
    app.api
        .store_result(&fractal.uuid, rendered.png.clone(), &rendered.done())
        .await
        .expect("done");
    let image_loaded = format!(
        "(() => {{ const i = document.images[0]; \
          return !!i && i.getAttribute('src') === '/fractal/{}?v={}' \
            && i.complete && i.naturalWidth === 240; }})()",
        fractal.uuid, rendered.checksum
    );
    devtools
        .wait_for(
            &format!("{status} === 'done' && {image_loaded}"),
            "the page shows the fractal done, its image loaded",
        )
        .await;
    // Said to screen readers too, in the region the script made at load
    // (the article itself is put in anew, which announces nothing).
    let news = "document.querySelector('p.news[role=status]').textContent";
    assert_eq!(devtools.eval(news).await, json!("Status: done"));
    let text = devtools.eval("document.body.innerText").await;
    let text = text.as_str().expect("text");
    let duration = format!("Duration\t{:.3} s", rendered.duration);
    for needle in [rendered.checksum.as_str(), "test-worker", duration.as_str()] {
        assert!(
            text.contains(needle),
            "{needle:?} is not on the page:\n{text}"
        );
    }
    assert_eq!(
        devtools.eval("window.loadedOnce === true").await,
        json!(true)
    );
    devtools
        .screenshot(&output_dir().join("show-followed.png"))
        .await;
    // Final: no more requests (the script polls every 3 s).
    let route = "/show/{uuid}";
    let before = requests(&app, route, 200).await;
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert_eq!(
        requests(&app, route, 200).await,
        before,
        "the page of a done fractal kept polling"
    );

    // Deleted while looked at: the page says so, and stops asking.
    let doomed = app
        .api
        .create(&crate::helpers::new_fractal(8, 8, None))
        .await
        .expect("create");
    devtools
        .load(
            &format!("{}/show/{}", app.url, doomed.uuid),
            1280,
            900,
            false,
        )
        .await;
    app.api.delete(&doomed.uuid).await.expect("delete");
    devtools
        .wait_for(
            &format!(
                "document.body.innerText.includes('There is no fractal {}')",
                doomed.uuid
            ),
            "the page shows the fractal deleted",
        )
        .await;
    assert_eq!(
        devtools.eval(news).await,
        json!(format!("There is no fractal {}.", doomed.uuid))
    );
    let before = requests(&app, route, 404).await;
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert_eq!(
        requests(&app, route, 404).await,
        before,
        "the page of a deleted fractal kept polling"
    );
    let _ = browser.child.kill().await;
    app.stop().await;
}
