//! Transport URLs: one string picks the broker and how to reach it.
//!
//! The syntax is oslo.messaging's:
//! `rabbit://user:pass@host:port[,user:pass@host2:port]/vhost?option=value`,
//! with `amqp://` as an alias, `amqps://` (or `?ssl=1`) for TLS, and
//! `memory://` (alias `fake://`) for the in-process broker, where the path
//! names an isolated broker (`memory:///tests-42`).
//!
//! Parsing is strict: a malformed URL is an error that names the wrong part,
//! and the password never appears in an error or in [`TransportUrl`]'s
//! `Display` output.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use percent_encoding::percent_decode_str;

/// Default AMQP port, used when a host gives none.
pub const DEFAULT_AMQP_PORT: u16 = 5672;
/// Default AMQPS (TLS) port, used when a TLS host gives none.
pub const DEFAULT_AMQPS_PORT: u16 = 5671;

/// Which kind of broker a URL points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    /// RabbitMQ (or any AMQP 0-9-1 broker) through lapin.
    Rabbit,
    /// The in-process broker: same semantics, nothing to install.
    Memory,
}

/// One broker host of a (possibly multi-host) RabbitMQ URL.
#[derive(Clone, PartialEq, Eq)]
pub struct BrokerHost {
    /// User name; `guest` when the URL gives none.
    pub username: String,
    /// Password; `guest` when the URL gives none. Never printed.
    pub password: String,
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl fmt::Debug for BrokerHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BrokerHost")
            .field("username", &self.username)
            .field("password", &"***")
            .field("host", &self.host)
            .field("port", &self.port)
            .finish()
    }
}

impl fmt::Display for BrokerHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "{}:***@[{}]:{}", self.username, self.host, self.port)
        } else {
            write!(f, "{}:***@{}:{}", self.username, self.host, self.port)
        }
    }
}

/// Driver options that may be given in the URL's query string.
///
/// Names follow oslo.messaging's `[oslo_messaging_rabbit]` options so a URL
/// copied from an OpenStack configuration keeps its meaning. Unknown names
/// are an error, as in oslo.
#[derive(Debug, Clone, PartialEq)]
pub struct UrlOptions {
    /// Use TLS (`ssl=1`, or the `amqps://` scheme).
    pub ssl: bool,
    /// AMQP heartbeat timeout (`heartbeat_timeout_threshold`, alias
    /// `heartbeat`). Default 60 s, as oslo; 0 takes the broker's value
    /// (RabbitMQ proposes 60 s), where oslo would turn heartbeats off:
    /// lapin follows a broker that wants them.
    pub heartbeat: Duration,
    /// TCP + AMQP handshake timeout per host (`connection_timeout`, seconds).
    pub connection_timeout: Duration,
    /// First reconnect delay (`rabbit_retry_interval`, seconds).
    pub retry_interval: Duration,
    /// Added to the delay on each failed attempt (`rabbit_retry_backoff`).
    pub retry_backoff: Duration,
    /// Longest delay between reconnect attempts (`rabbit_interval_max`).
    pub retry_interval_max: Duration,
    /// Declare topic exchanges and queues durable (`amqp_durable_queues`).
    pub durable_queues: bool,
    /// `x-expires` of reply and fanout queues (`rabbit_transient_queues_ttl`,
    /// seconds; 0 disables it).
    pub transient_queues_ttl: Duration,
}

impl Default for UrlOptions {
    fn default() -> Self {
        Self {
            ssl: false,
            heartbeat: Duration::from_secs(60),
            connection_timeout: Duration::from_secs(10),
            retry_interval: Duration::from_secs(1),
            retry_backoff: Duration::from_secs(2),
            retry_interval_max: Duration::from_secs(30),
            durable_queues: false,
            transient_queues_ttl: Duration::from_secs(1800),
        }
    }
}

/// A parsed transport URL.
#[derive(Debug, Clone, PartialEq)]
pub struct TransportUrl {
    /// The broker kind the scheme selects.
    pub kind: TransportKind,
    /// Failover list of RabbitMQ hosts (empty for `memory://`).
    pub hosts: Vec<BrokerHost>,
    /// Virtual host (`/` by default); for `memory://`, the broker's name.
    pub virtual_host: String,
    /// Options from the query string.
    pub options: UrlOptions,
}

/// Why a transport URL was refused; the message names the faulty part.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid transport URL '{url}': {reason}")]
pub struct TransportUrlError {
    /// The URL with any password replaced by `***`.
    pub url: String,
    /// What is wrong and where.
    pub reason: String,
}

impl TransportUrl {
    /// Parses a transport URL; see the module documentation for the syntax.
    pub fn parse(input: &str) -> Result<Self, TransportUrlError> {
        let fail = |reason: String| TransportUrlError {
            url: redact_url(input),
            reason,
        };
        let input = input.trim();
        let Some((scheme, rest)) = input.split_once("://") else {
            return Err(fail(
                "missing scheme: expected rabbit://, amqp://, amqps:// or memory://".into(),
            ));
        };
        let (kind, tls_scheme) = match scheme.to_ascii_lowercase().as_str() {
            "rabbit" | "amqp" | "kombu" => (TransportKind::Rabbit, false),
            "amqps" => (TransportKind::Rabbit, true),
            "memory" | "fake" => (TransportKind::Memory, false),
            other => {
                return Err(fail(format!(
                    "unknown scheme '{other}': expected rabbit, amqp, kombu, amqps, memory or fake"
                )));
            }
        };
        // A password's `/`, `?` or `,` must be percent-encoded, or the URL
        // would be cut there: refused, without echoing the password.
        if let Some(at) = rest.rfind('@') {
            let credentials = &rest[..at];
            if credentials.contains(['/', '?', '#']) || !one_user_info_per_host(credentials) {
                return Err(fail(
                    "a user name or password holds an unencoded '/', '?', '#' or ',' \
                     (or an '@' follows the host): percent-encode them (%2F, %3F, %23, %2C, %40)"
                        .into(),
                ));
            }
        }
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) => (r, Some(q)),
            None => (rest, None),
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, ""),
        };
        let virtual_host = decode(path, "virtual host").map_err(&fail)?;
        let mut options = UrlOptions {
            ssl: tls_scheme,
            ..UrlOptions::default()
        };
        if let Some(query) = query {
            parse_query(query, &mut options).map_err(&fail)?;
        }
        match kind {
            TransportKind::Memory => {
                if !authority.is_empty() {
                    return Err(fail(format!(
                        "the memory transport takes no host ('{authority}'): \
                         name an isolated broker with a path, e.g. memory:///{authority}"
                    )));
                }
                Ok(Self {
                    kind,
                    hosts: Vec::new(),
                    virtual_host,
                    options,
                })
            }
            TransportKind::Rabbit => {
                let default_port = if options.ssl {
                    DEFAULT_AMQPS_PORT
                } else {
                    DEFAULT_AMQP_PORT
                };
                let mut hosts = Vec::new();
                if authority.is_empty() {
                    hosts.push(BrokerHost {
                        username: "guest".into(),
                        password: "guest".into(),
                        host: "localhost".into(),
                        port: default_port,
                    });
                } else {
                    for (n, part) in authority.split(',').enumerate() {
                        hosts.push(parse_host(part, n + 1, default_port).map_err(&fail)?);
                    }
                }
                Ok(Self {
                    kind,
                    hosts,
                    virtual_host: if virtual_host.is_empty() {
                        "/".into()
                    } else {
                        virtual_host
                    },
                    options,
                })
            }
        }
    }
}

impl FromStr for TransportUrl {
    type Err = TransportUrlError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// What a vhost's name has encoded in a printed URL: all but RFC 3986's
/// unreserved characters, so `faafo-test` reads as written and `/` (the
/// default vhost) as `%2F`.
const VHOST_ENCODED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

impl fmt::Display for TransportUrl {
    /// Prints the URL with passwords replaced by `***`, safe for logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            TransportKind::Memory => write!(f, "memory:///{}", self.virtual_host),
            TransportKind::Rabbit => {
                f.write_str(if self.options.ssl {
                    "amqps://"
                } else {
                    "rabbit://"
                })?;
                for (i, h) in self.hosts.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{h}")?;
                }
                let vhost =
                    percent_encoding::utf8_percent_encode(&self.virtual_host, VHOST_ENCODED);
                write!(f, "/{vhost}")
            }
        }
    }
}

/// Replaces the password of every `user:password@` in a URL-like string by
/// `***`, so URLs can be logged or put in error messages. A string that is
/// not quite a URL (`mysql//root:pw@db`, `u:pw@host`) still has whatever
/// lies between the last `:` and the last `@` before the path masked.
///
/// The user info ends at the URL's last `@`: a password holding an
/// unencoded `/`, `?` or `,` (which a parser may take all the same) is
/// masked whole, not cut at that character and shown.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return redact_malformed(url);
    };
    let Some(at) = rest.rfind('@') else {
        // No user info: only the query's password parameters.
        return match rest.find(['/', '?']) {
            Some(i) => format!("{scheme}://{}{}", &rest[..i], redact_query(&rest[i..])),
            None => url.to_string(),
        };
    };
    let (credentials, after) = (&rest[..at], &rest[at + 1..]);
    let (hosts, tail) = match after.find(['/', '?']) {
        Some(i) => after.split_at(i),
        None => (after, ""),
    };
    let masked = |userinfo: &str| match userinfo.split_once(':') {
        Some((user, _)) => format!("{user}:***"),
        None => userinfo.to_string(),
    };
    // Anything but one user info per host (a `,` in a password) is masked
    // whole, user names and hosts before the last `@` included.
    let credentials = if one_user_info_per_host(credentials) {
        let pieces: Vec<&str> = credentials.split(',').collect();
        let (last, others) = pieces.split_last().unwrap_or((&"", &[]));
        others
            .iter()
            .map(|piece| match piece.rsplit_once('@') {
                Some((userinfo, host)) => format!("{}@{host}", masked(userinfo)),
                None => piece.to_string(),
            })
            .chain(std::iter::once(masked(last)))
            .collect::<Vec<_>>()
            .join(",")
    } else {
        "***".to_string()
    };
    format!("{scheme}://{credentials}@{hosts}{}", redact_query(tail))
}

/// Whether the text before a URL's last `@` is one user info per host:
/// with several hosts (`u:p@h1,u:p@h2`), each piece but the last is a whole
/// `user:password@host`. Not so when a password holds an unencoded `,`.
fn one_user_info_per_host(credentials: &str) -> bool {
    let mut pieces: Vec<&str> = credentials.split(',').collect();
    pieces.pop();
    pieces.iter().all(|piece| piece.contains('@'))
}

/// The path and query of a URL with the values of its password parameters
/// (`?password=`, as sqlx's PostgreSQL driver takes) masked.
fn redact_query(tail: &str) -> String {
    let Some((path, query)) = tail.split_once('?') else {
        return tail.to_string();
    };
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, _))
                if ["password", "pass", "passwd", "pwd", "sslpassword"]
                    .contains(&key.to_ascii_lowercase().as_str()) =>
            {
                format!("{key}=***")
            }
            _ => pair.to_string(),
        })
        .collect();
    format!("{path}?{}", pairs.join("&"))
}

/// [`redact_url`] for a string without `://`: it may still carry a password.
fn redact_malformed(text: &str) -> String {
    let Some(at) = text.rfind('@') else {
        return text.to_string();
    };
    match text[..at].rfind(':') {
        Some(colon) => format!("{}***{}", &text[..=colon], &text[at..]),
        None => text.to_string(),
    }
}

fn decode(s: &str, what: &str) -> Result<String, String> {
    percent_decode_str(s)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| format!("{what} is not valid UTF-8 after percent-decoding"))
}

fn parse_host(part: &str, n: usize, default_port: u16) -> Result<BrokerHost, String> {
    let (userinfo, hostport) = match part.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, part),
    };
    let (username, password) = match userinfo {
        None => ("guest".to_string(), "guest".to_string()),
        Some(u) => match u.split_once(':') {
            Some((user, pass)) => (
                decode(user, &format!("user name of host {n}"))?,
                decode(pass, &format!("password of host {n}"))?,
            ),
            None => (decode(u, &format!("user name of host {n}"))?, String::new()),
        },
    };
    if username.is_empty() && userinfo.is_some() {
        return Err(format!("host {n} has an empty user name before '@'"));
    }
    let (host, port) = if let Some(stripped) = hostport.strip_prefix('[') {
        let Some((h, after)) = stripped.split_once(']') else {
            return Err(format!("host {n}: '[' without closing ']' in '{hostport}'"));
        };
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return Err(format!("host {n}: unexpected '{after}' after ']'")),
        };
        (h.to_string(), port)
    } else {
        match hostport.split_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (hostport.to_string(), None),
        }
    };
    if host.is_empty() {
        return Err(format!("host {n} is empty (in '{}')", redact_host(part)));
    }
    if host
        .chars()
        .any(|c| c.is_whitespace() || matches!(c, '/' | '?' | '#' | '@'))
    {
        return Err(format!("host {n} '{host}' contains an invalid character"));
    }
    let port = match port {
        None => default_port,
        Some("") => return Err(format!("host {n} '{host}' has an empty port after ':'")),
        Some(p) => match p.parse::<u16>() {
            Ok(0) | Err(_) => {
                return Err(format!(
                    "port '{p}' of host {n} '{host}' is not a number between 1 and 65535"
                ));
            }
            Ok(port) => port,
        },
    };
    Ok(BrokerHost {
        username,
        password,
        host,
        port,
    })
}

fn redact_host(part: &str) -> String {
    match part.rsplit_once('@') {
        Some((u, h)) => format!("{}:***@{h}", u.split(':').next().unwrap_or("")),
        None => part.to_string(),
    }
}

fn parse_query(query: &str, options: &mut UrlOptions) -> Result<(), String> {
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = decode(value, &format!("value of option '{key}'"))?;
        // At most a year ([`MAX_TIMEOUT`]): a deadline further away would
        // overflow the clock (`Instant::now() + 1e19 s` panics).
        let seconds = |v: &str| -> Result<Duration, String> {
            v.parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && *s >= 0.0)
                .and_then(|s| Duration::try_from_secs_f64(s).ok())
                .filter(|d| *d <= super::MAX_TIMEOUT)
                .ok_or_else(|| {
                    format!(
                        "option '{key}' must be a number of seconds from 0 to {} (a year), got '{v}'",
                        super::MAX_TIMEOUT.as_secs()
                    )
                })
        };
        let boolean = |v: &str| -> Result<bool, String> {
            match v.to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => Ok(true),
                "0" | "false" | "no" | "off" => Ok(false),
                _ => Err(format!(
                    "option '{key}' must be a boolean (1/0, true/false), got '{v}'"
                )),
            }
        };
        match key {
            "ssl" | "rabbit_use_ssl" => options.ssl = boolean(&value)?,
            "heartbeat" | "heartbeat_timeout_threshold" => options.heartbeat = seconds(&value)?,
            "connection_timeout" => {
                options.connection_timeout = seconds(&value)?;
                if options.connection_timeout.is_zero() {
                    return Err(format!(
                        "option '{key}' must be more than 0 seconds: no connection could be made"
                    ));
                }
            }
            "rabbit_retry_interval" => options.retry_interval = seconds(&value)?,
            "rabbit_retry_backoff" => options.retry_backoff = seconds(&value)?,
            "rabbit_interval_max" => options.retry_interval_max = seconds(&value)?,
            "amqp_durable_queues" => options.durable_queues = boolean(&value)?,
            "rabbit_transient_queues_ttl" => options.transient_queues_ttl = seconds(&value)?,
            other => {
                return Err(format!(
                    "unknown option '{other}' in the query string (known: ssl, heartbeat, \
                     heartbeat_timeout_threshold, connection_timeout, rabbit_retry_interval, \
                     rabbit_retry_backoff, rabbit_interval_max, amqp_durable_queues, \
                     rabbit_transient_queues_ttl)"
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> TransportUrl {
        match TransportUrl::parse(s) {
            Ok(u) => u,
            Err(e) => panic!("{s} should parse: {e}"),
        }
    }

    fn reason(s: &str) -> String {
        match TransportUrl::parse(s) {
            Ok(u) => panic!("{s} should be refused, got {u:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn single_host_with_credentials_and_vhost() {
        let u = parse("rabbit://faafo:s%40cret@mq.example.org:5673/faafo");
        assert_eq!(u.kind, TransportKind::Rabbit);
        assert_eq!(u.hosts.len(), 1);
        assert_eq!(u.hosts[0].username, "faafo");
        assert_eq!(u.hosts[0].password, "s@cret");
        assert_eq!(u.hosts[0].host, "mq.example.org");
        assert_eq!(u.hosts[0].port, 5673);
        assert_eq!(u.virtual_host, "faafo");
        assert!(!u.options.ssl);
    }

    #[test]
    fn defaults_follow_oslo() {
        let u = parse("rabbit://");
        assert_eq!(u.hosts[0].host, "localhost");
        assert_eq!(u.hosts[0].port, 5672);
        assert_eq!(u.hosts[0].username, "guest");
        assert_eq!(u.virtual_host, "/");
        let u = parse("amqp://guest:guest@127.0.0.1:5672/");
        assert_eq!(u.virtual_host, "/");
        let u = parse("amqp://h/%2F");
        assert_eq!(u.virtual_host, "/");
        assert_eq!(u.options.heartbeat, Duration::from_secs(60));
    }

    #[test]
    fn failover_hosts_keep_their_order_and_credentials() {
        let u = parse("rabbit://a:pa@h1:5672,b:pb@h2,[::1]:5674/v");
        let hosts: Vec<_> = u
            .hosts
            .iter()
            .map(|h| (h.username.as_str(), h.host.as_str(), h.port))
            .collect();
        assert_eq!(
            hosts,
            vec![("a", "h1", 5672), ("b", "h2", 5672), ("guest", "::1", 5674)]
        );
        assert_eq!(u.hosts[1].password, "pb");
    }

    #[test]
    fn tls_by_scheme_or_option() {
        let u = parse("amqps://u:p@h/");
        assert!(u.options.ssl);
        assert_eq!(u.hosts[0].port, 5671);
        let u = parse("rabbit://u:p@h/?ssl=1");
        assert!(u.options.ssl);
    }

    #[test]
    fn query_options_are_parsed_and_unknown_ones_refused() {
        let u = parse(
            "rabbit://h/?heartbeat_timeout_threshold=10&rabbit_transient_queues_ttl=0&amqp_durable_queues=true",
        );
        assert_eq!(u.options.heartbeat, Duration::from_secs(10));
        assert_eq!(u.options.transient_queues_ttl, Duration::ZERO);
        assert!(u.options.durable_queues);
        assert!(reason("rabbit://h/?frobnicate=1").contains("unknown option 'frobnicate'"));
        assert!(reason("rabbit://h/?heartbeat=soon").contains("option 'heartbeat'"));
        assert!(reason("rabbit://h/?ssl=maybe").contains("option 'ssl'"));
        // Seconds past a year (the clock would overflow, or the parse
        // panic): refused.
        for huge in ["1e20", "1e19", "31536001"] {
            let r = reason(&format!("rabbit://h/?connection_timeout={huge}"));
            assert!(r.contains("from 0 to 31536000 (a year)"), "{huge}: {r}");
        }
        let u = parse("rabbit://h/?connection_timeout=31536000");
        assert_eq!(
            u.options.connection_timeout,
            Duration::from_secs(31_536_000)
        );
    }

    #[test]
    fn errors_name_the_wrong_part() {
        assert!(reason("localhost:5672").contains("missing scheme"));
        assert!(reason("http://h/").contains("unknown scheme 'http'"));
        let r = reason("rabbit://u:p@h:notaport/");
        assert!(r.contains("port 'notaport' of host 1 'h'"), "{r}");
        let r = reason("rabbit://u:p@h1,u:p@h2:99999/");
        assert!(r.contains("port '99999' of host 2 'h2'"), "{r}");
        assert!(reason("rabbit://u:p@h1,,h3/").contains("host 2 is empty"));
        assert!(reason("rabbit://u:p@:5672/").contains("host 1 is empty"));
        assert!(reason("rabbit://u:p@[::1/").contains("without closing"));
        assert!(reason("rabbit://u:p@h:/").contains("empty port"));
        assert!(reason("memory://somehost/").contains("takes no host"));
        assert!(reason("rabbit://u:p@h/%FF").contains("virtual host"));
    }

    #[test]
    fn errors_and_display_never_show_the_password() {
        let e = reason("rabbit://admin:hunter2@h:bad/");
        assert!(!e.contains("hunter2"), "{e}");
        assert!(e.contains("admin:***@"), "{e}");
        let u = parse("rabbit://admin:hunter2@h1,other:pw2@h2/v");
        let shown = u.to_string();
        assert!(
            !shown.contains("hunter2") && !shown.contains("pw2"),
            "{shown}"
        );
        assert_eq!(shown, "rabbit://admin:***@h1:5672,other:***@h2:5672/v");
        // The vhost as written (a log is grepped for it), but what a URL
        // cannot hold encoded, so the text parses back to the same vhost.
        for (url, shown) in [
            (
                "rabbit://h/faafo-test_1.a~b",
                "rabbit://guest:***@h:5672/faafo-test_1.a~b",
            ),
            ("rabbit://h/%2F", "rabbit://guest:***@h:5672/%2F"),
            (
                "rabbit://h/a%20b%3Fc",
                "rabbit://guest:***@h:5672/a%20b%3Fc",
            ),
        ] {
            let u = parse(url);
            assert_eq!(u.to_string(), shown);
            assert_eq!(parse(shown).virtual_host, u.virtual_host);
        }
        assert!(!format!("{u:?}").contains("hunter2"));
        assert_eq!(
            redact_url("mysql://root:toor@db:3306/faafo"),
            "mysql://root:***@db:3306/faafo"
        );
        // A password in the query (sqlx's PostgreSQL takes one there), or
        // one with an unencoded `/`.
        assert_eq!(
            redact_url("postgresql://faafo@db/faafo?sslmode=require&password=s3cret"),
            "postgresql://faafo@db/faafo?sslmode=require&password=***"
        );
        assert_eq!(
            redact_url("mysql://u:pa/ss@h:3306/db"),
            "mysql://u:***@h:3306/db"
        );
        assert_eq!(redact_url("rabbit://h/v?x=1"), "rabbit://h/v?x=1");
        // A password with an unencoded `,` or `?` (a database's parser
        // takes it): masked, not cut there and shown.
        for (typed, shown) in [
            (
                "postgresql://faafo:s3cr3t,X9@db/faafo",
                "postgresql://***@db/faafo",
            ),
            ("mysql://u:s3cr3t?X9@db/x", "mysql://u:***@db/x"),
            (
                "mysql://u:s3cr3t?X9@db/x?password=X9",
                "mysql://u:***@db/x?password=***",
            ),
            ("rabbit://a:s3cr3t@h1,b:s3cr3t,X9@h2/v", "rabbit://***@h2/v"),
        ] {
            assert_eq!(redact_url(typed), shown);
        }
        let e = reason("rabbit://h/?connection_timeout=0");
        assert!(e.contains("more than 0 seconds"), "{e}");
        // Refused by the parser, the password shown nowhere.
        for typed in [
            "rabbit://faafo:s3cr3t,X9@mq/v",
            "rabbit://faafo:s3cr3t/X9@mq/v",
            "rabbit://faafo:s3cr3t?X9@mq/v",
            "rabbit://faafo:s3cr3t#X9@mq/v",
        ] {
            let e = reason(typed);
            assert!(!e.contains("s3cr3t") && !e.contains("X9"), "{e}");
            assert!(e.contains("percent-encode"), "{e}");
        }
        // Not quite URLs: the password is masked all the same.
        for (typed, shown) in [
            ("mysql//root:toor@db/x", "mysql//root:***@db/x"),
            ("postgresql:/u:toor@h/x", "postgresql:/u:***@h/x"),
            ("u:toor@h", "u:***@h"),
            ("no-password@h", "no-password@h"),
            ("sqlite:faafo.db", "sqlite:faafo.db"),
        ] {
            assert_eq!(redact_url(typed), shown);
        }
    }

    #[test]
    fn memory_urls_name_isolated_brokers() {
        let u = parse("memory://");
        assert_eq!(u.kind, TransportKind::Memory);
        assert_eq!(u.virtual_host, "");
        let u = parse("fake:///tests-1");
        assert_eq!(u.kind, TransportKind::Memory);
        assert_eq!(u.virtual_host, "tests-1");
    }
}
