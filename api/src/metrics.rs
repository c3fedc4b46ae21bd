//! Prometheus metrics: requests by route template, method and status, a
//! latency histogram per route, and (computed at scrape time by the
//! `/metrics` handler) fractals by status.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

use axum::http::Method;
use faafo_common::fractal::FractalStatus;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Debug, Default)]
struct Histogram {
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Debug, Default)]
struct RouteStats {
    requests: HashMap<(Method, u16), u64>,
    latency: HashMap<Method, Histogram>,
}

/// The method as a label: HTTP's own, or `OTHER` for any token a client
/// makes up (each would otherwise add series for as long as the process
/// runs).
fn label(method: &Method) -> Method {
    const KNOWN: [Method; 9] = [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::HEAD,
        Method::OPTIONS,
        Method::PATCH,
        Method::TRACE,
        Method::CONNECT,
    ];
    if KNOWN.contains(method) {
        method.clone()
    } else {
        Method::from_bytes(b"OTHER").unwrap_or(Method::GET)
    }
}

/// The request metrics of one process.
#[derive(Debug, Default)]
pub struct Metrics {
    routes: Mutex<HashMap<String, RouteStats>>,
}

impl Metrics {
    /// Records one answered request. `route` is the route template
    /// (`/v1/fractal/{uuid}`), never the raw path, so labels stay few.
    pub fn observe(&self, method: &Method, route: &str, status: u16, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let Ok(mut routes) = self.routes.lock() else {
            return;
        };
        let stats = match routes.get_mut(route) {
            Some(stats) => stats,
            None => routes.entry(route.to_string()).or_default(),
        };
        let method = label(method);
        *stats.requests.entry((method.clone(), status)).or_default() += 1;
        let histogram = stats.latency.entry(method).or_default();
        histogram.count += 1;
        histogram.sum += seconds;
        if let Some(i) = BUCKETS.iter().position(|&bound| seconds <= bound) {
            histogram.buckets[i] += 1;
        }
    }

    /// The Prometheus text exposition of the request metrics and of
    /// `fractals` (counts by status, when the database answered).
    pub fn render(&self, fractals: Option<&[(FractalStatus, u64)]>) -> String {
        let mut out = String::new();
        let routes = match self.routes.lock() {
            Ok(routes) => routes,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut names: Vec<&String> = routes.keys().collect();
        names.sort();
        out.push_str("# HELP faafo_api_http_requests_total HTTP requests answered, by route template, method and status.\n");
        out.push_str("# TYPE faafo_api_http_requests_total counter\n");
        for route in &names {
            let mut series: Vec<_> = routes[*route].requests.iter().collect();
            series.sort_by(|a, b| (a.0.0.as_str(), a.0.1).cmp(&(b.0.0.as_str(), b.0.1)));
            for ((method, status), n) in series {
                let _ = writeln!(
                    out,
                    "faafo_api_http_requests_total{{route=\"{}\",method=\"{}\",status=\"{status}\"}} {n}",
                    escape(route),
                    escape(method.as_str())
                );
            }
        }
        out.push_str("# HELP faafo_api_http_request_duration_seconds Time to answer HTTP requests, by route template and method.\n");
        out.push_str("# TYPE faafo_api_http_request_duration_seconds histogram\n");
        for route in &names {
            let mut series: Vec<_> = routes[*route].latency.iter().collect();
            series.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
            for (method, h) in series {
                let labels = format!(
                    "route=\"{}\",method=\"{}\"",
                    escape(route),
                    escape(method.as_str())
                );
                let mut cumulative = 0;
                for (bound, n) in BUCKETS.iter().zip(h.buckets) {
                    cumulative += n;
                    let _ = writeln!(
                        out,
                        "faafo_api_http_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {cumulative}"
                    );
                }
                let _ = writeln!(
                    out,
                    "faafo_api_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                    h.count
                );
                let _ = writeln!(
                    out,
                    "faafo_api_http_request_duration_seconds_sum{{{labels}}} {}",
                    h.sum
                );
                let _ = writeln!(
                    out,
                    "faafo_api_http_request_duration_seconds_count{{{labels}}} {}",
                    h.count
                );
            }
        }
        if let Some(fractals) = fractals {
            out.push_str("# HELP faafo_api_fractals Fractals in the database, by status.\n");
            out.push_str("# TYPE faafo_api_fractals gauge\n");
            for (status, n) in fractals {
                let _ = writeln!(out, "faafo_api_fractals{{status=\"{status}\"}} {n}");
            }
        }
        out.push_str(
            "# HELP faafo_api_log_lines_dropped_total Log lines dropped because their writer could not keep up.\n",
        );
        out.push_str("# TYPE faafo_api_log_lines_dropped_total counter\n");
        let _ = writeln!(
            out,
            "faafo_api_log_lines_dropped_total {}",
            faafo_common::telemetry::dropped_log_lines()
        );
        out.push_str(
            "# HELP faafo_api_database_up Whether the database answered the last scrape.\n",
        );
        out.push_str("# TYPE faafo_api_database_up gauge\n");
        let _ = writeln!(
            out,
            "faafo_api_database_up {}",
            u8::from(fractals.is_some())
        );
        out
    }
}

/// A label value with `\`, `"` and newlines escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_up_methods_share_one_label() {
        let m = Metrics::default();
        for i in 0..100 {
            let method = Method::from_bytes(format!("FOO{i}").as_bytes()).expect("a token");
            m.observe(&method, "/healthz", 405, Duration::from_micros(10));
        }
        let text = m.render(None);
        assert!(!text.contains("FOO"), "{text}");
        assert!(text.contains(
            "faafo_api_http_requests_total{route=\"/healthz\",method=\"OTHER\",status=\"405\"} 100"
        ), "{text}");
    }

    #[test]
    fn counts_and_histograms() {
        let m = Metrics::default();
        m.observe(
            &Method::GET,
            "/v1/fractal/{uuid}",
            200,
            Duration::from_micros(700),
        );
        m.observe(
            &Method::GET,
            "/v1/fractal/{uuid}",
            200,
            Duration::from_millis(30),
        );
        m.observe(
            &Method::GET,
            "/v1/fractal/{uuid}",
            404,
            Duration::from_millis(1),
        );
        let text = m.render(Some(&[(FractalStatus::Done, 3)]));
        assert!(text.contains(
            "faafo_api_http_requests_total{route=\"/v1/fractal/{uuid}\",method=\"GET\",status=\"200\"} 2"
        ));
        assert!(text.contains("le=\"0.001\"} 2"), "{text}");
        assert!(text.contains("le=\"0.05\"} 3"), "{text}");
        assert!(text.contains("_count{route=\"/v1/fractal/{uuid}\",method=\"GET\"} 3"));
        assert!(text.contains("faafo_api_fractals{status=\"done\"} 3"));
        assert!(text.contains("faafo_api_database_up 1"));
    }
}
