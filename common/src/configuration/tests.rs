use std::path::PathBuf;

use super::*;

fn file(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, text).expect("write");
    path
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn defaults_are_the_documented_ones() {
    let config = load_from(&[], env(&[])).expect("defaults load");
    assert_eq!(config.default.transport_url, "memory://");
    assert_eq!(config.api.bind_port, 5000);
    assert_eq!(config.producer.max_width, 1024);
    assert_eq!(config.producer.min_xa, -1.0);
    assert_eq!(config.worker.exec_timeout, 600);
    assert!(config.database_url().starts_with("sqlite://"));
}

#[test]
fn later_files_win_and_environment_wins_over_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = file(
        &dir,
        "a.conf",
        "[DEFAULT]\ntransport_url = rabbit://faafo:pw@mq:5672/\ndebug = true\n\n[api]\nbind_port = 8000\nauth_tokens = a, b ,c\n",
    );
    let b = file(&dir, "b.conf", "[api]\nbind_port = 9000\n");
    let config = load_from(&[a.clone(), b.clone()], env(&[])).expect("loads");
    assert_eq!(config.api.bind_port, 9000);
    assert!(config.default.debug);
    assert_eq!(config.api.auth_tokens.0, vec!["a", "b", "c"]);
    let config = load_from(
        &[a, b],
        env(&[
            ("FAAFO_API__BIND_PORT", "7000"),
            ("FAAFO_DEFAULT__DEBUG", "false"),
            ("OTHER_VAR", "x"),
        ]),
    )
    .expect("loads");
    assert_eq!(config.api.bind_port, 7000);
    assert!(!config.default.debug);
}

#[test]
fn a_config_dir_is_read_in_name_order_after_the_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let conf_d = dir.path().join("conf.d");
    std::fs::create_dir(&conf_d).expect("mkdir");
    std::fs::write(conf_d.join("20-b.conf"), "[api]\nbind_port = 2\n").expect("write");
    std::fs::write(conf_d.join("10-a.conf"), "[api]\nbind_port = 1\n").expect("write");
    std::fs::write(conf_d.join("ignored.txt"), "[api]\nbind_port = 3\n").expect("write");
    // An editor's lock file: hidden, a dangling link, skipped.
    std::os::unix::fs::symlink("nobody@host.1234", conf_d.join(".#20-b.conf")).expect("link");
    std::fs::write(conf_d.join(".30-hidden.conf"), "[api]\nbind_port = 4\n").expect("write");
    let main = file(&dir, "main.conf", "[api]\nbind_port = 9\n");
    let args = ConfigArgs {
        config_files: vec![main],
        config_dir: Some(conf_d),
    };
    let files = args.files().expect("files");
    assert_eq!(files.len(), 3);
    assert_eq!(load_from(&files, env(&[])).expect("load").api.bind_port, 2);
}

#[test]
fn errors_name_the_file_section_key_and_expectation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = [
        ("[api]\nbind_prt = 1\n", "[api] unknown option 'bind_prt'"),
        ("[apy]\nbind_port = 1\n", "unknown section [apy]"),
        // Not an unknown section [transport_url], as `config` reads it.
        (
            "transport_url = rabbit://h/\n[api]\nbind_port = 1\n",
            "option 'transport_url' is outside any section: put it under [DEFAULT] \
             (or the section it belongs to)",
        ),
        // A value of the wrong type or out of range, in words: the value
        // and the range the option takes, not serde's types.
        (
            "[api]\nbind_port = eighty\n",
            "[api] bind_port: 'eighty' is not a port number (0-65535)",
        ),
        (
            "[api]\nbind_port = 70000\n",
            "[api] bind_port: 70000 is not a port number (0-65535)",
        ),
        (
            "[api]\nbind_port = -1\n",
            "[api] bind_port: -1 is not a port number (0-65535)",
        ),
        (
            "[api]\nresults_per_page = -3\n",
            "[api] results_per_page: -3 is not a whole number from 0 to 4294967295",
        ),
        (
            "[api]\nresults_per_page = 5000000000\n",
            "[api] results_per_page: 5000000000 is not a whole number from 0 to 4294967295",
        ),
        (
            "[api]\nmax_body_size = 18446744073709551616\n",
            "[api] max_body_size: 18446744073709551616 is not a whole number (0 or more)",
        ),
        (
            "[worker]\nexec_timeout = 1.5\n",
            "[worker] exec_timeout: '1.5' is not a whole number (0 or more)",
        ),
        (
            "[producer]\ninterval = soon\n",
            "[producer] interval: 'soon' is not a number",
        ),
        // A boolean's word for a number: the config crate would read 1 or 0.
        (
            "[producer]\nmax_attempts = yes\n",
            "[producer] max_attempts: 'yes' is not a whole number from 0 to 4294967295",
        ),
        (
            "[api]\nbind_port = Off\n",
            "[api] bind_port: 'Off' is not a port number (0-65535)",
        ),
        (
            "[producer]\ninterval = true\n",
            "[producer] interval: 'true' is not a number",
        ),
        (
            "[DEFAULT]\ndebug = maybe\n",
            "[DEFAULT] debug: 'maybe' is not a boolean (true/false, yes/no, on/off or 1/0, in any case)",
        ),
    ];
    for (text, expected) in cases {
        let path = file(&dir, "bad.conf", text);
        let err = load_from(std::slice::from_ref(&path), env(&[]))
            .expect_err(text)
            .to_string();
        assert!(err.starts_with(&path.display().to_string()), "{err}");
        assert!(err.contains(expected), "{text:?} gave: {err}");
        assert!(!err.contains('\n'), "one line: {err}");
    }
    let err = load_from(&[], env(&[("FAAFO_API__BIND_PORT", "x")]))
        .expect_err("env")
        .to_string();
    assert!(
        err.starts_with("environment variable FAAFO_API__BIND_PORT: [api] bind_port"),
        "{err}"
    );
    let err = load_from(&[], env(&[("FAAFO_API__BIND_PORT", "-1")]))
        .expect_err("env")
        .to_string();
    assert_eq!(
        err,
        "environment variable FAAFO_API__BIND_PORT: [api] bind_port: -1 is not a port number (0-65535)"
    );
    let err = load_from(&[], env(&[("FAAFO_WORKER__EXEC_TIMEOUT", "on")]))
        .expect_err("env")
        .to_string();
    assert_eq!(
        err,
        "environment variable FAAFO_WORKER__EXEC_TIMEOUT: [worker] exec_timeout: 'on' is not a whole number (0 or more)"
    );
    let err = load_from(&[dir.path().join("missing.conf")], env(&[]))
        .expect_err("missing")
        .to_string();
    assert!(err.contains("missing.conf: cannot read the file"), "{err}");
}

#[test]
fn semantic_errors_are_caught_without_showing_passwords() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = [
        (
            "[DEFAULT]\ntransport_url = rabbit://u:hunter22@h:99999/\n",
            "[DEFAULT] transport_url: port '99999'",
        ),
        (
            "[DEFAULT]\ndatabase_url = oracle://u:hunter22@h/db\n",
            "[DEFAULT] database_url",
        ),
        // Typos in a URL still hide its password.
        (
            "[DEFAULT]\ndatabase_url = mysql//root:hunter22@h/x\n",
            "got 'mysql//root:***@h/x'",
        ),
        (
            "[DEFAULT]\ndatabase_url = postgresql:/u:hunter22@h/x\n",
            "got 'postgresql:/u:***@h/x'",
        ),
        (
            "[messaging]\nmax_message_size = 0\n",
            "[messaging] max_message_size: must be at least 65536 bytes",
        ),
        (
            "[api]\nmax_body_size = 100\n",
            "[api] max_body_size: must be at least 65536 bytes",
        ),
        (
            "[DEFAULT]\niteration_limit = 1000000000\n",
            "[DEFAULT] iteration_limit: must be 1 to 10000000",
        ),
        (
            "[DEFAULT]\nendpoint_url = https://api.example.org\n",
            "[DEFAULT] endpoint_url: expected an http:// URL",
        ),
        (
            "[DEFAULT]\nendpoint_url = ftp://u:hunter22@h/\n",
            "[DEFAULT] endpoint_url: expected an http:// URL (faafo's client speaks plain HTTP; put TLS in a proxy beside it), got 'ftp://u:***@h/'",
        ),
        // No scheme at all: the fix is said.
        (
            "[DEFAULT]\nendpoint_url = 127.0.0.1:5000\n",
            "[DEFAULT] endpoint_url: expected an http:// URL, got '127.0.0.1:5000': write http://127.0.0.1:5000",
        ),
        // Each of several endpoints is checked, its password hidden.
        (
            "[DEFAULT]\nendpoint_url = http://a:5000,https://u:hunter22@b/\n",
            "[DEFAULT] endpoint_url: expected an http:// URL (faafo's client speaks plain HTTP; put TLS in a proxy beside it), got 'https://u:***@b/'",
        ),
        (
            "[DEFAULT]\nendpoint_url = http://a:5000,,http://b:5000\n",
            "[DEFAULT] endpoint_url: invalid faafo API endpoint : it is empty",
        ),
        (
            "[DEFAULT]\nendpoint_url = http://:5000\n",
            "[DEFAULT] endpoint_url: invalid faafo API endpoint http://:5000",
        ),
        ("[DEFAULT]\nrpc_codec = xml\n", "[DEFAULT] rpc_codec"),
        (
            "[api]\nbind_host = 0.0.0.0:5000\n",
            "[api] bind_host: expected an IP address or a host name",
        ),
        ("[api]\nbind_host =\n", "[api] bind_host"),
        ("[api]\nbind_host = http://h\n", "[api] bind_host"),
        ("[api]\nbind_host = a b\n", "[api] bind_host"),
        // No shell expands a `~` (it made a directory named `~`).
        (
            "[DEFAULT]\nstate_path = ~/faafo-data\n",
            "[DEFAULT] state_path: \"~/faafo-data\": `~` is not expanded here",
        ),
        (
            "[DEFAULT]\ndatabase_url = sqlite://~/faafo.db\n",
            "[DEFAULT] database_url: \"~/faafo.db\": `~` is not expanded",
        ),
        (
            "[api]\nimage_dir = ~/images\n",
            "[api] image_dir: \"~/images\"",
        ),
        ("[DEFAULT]\nlog_file = ~x/faafo.log\n", "[DEFAULT] log_file"),
        (
            "[worker]\nfilesystem_store_datadir = ~/png\n",
            "[worker] filesystem_store_datadir",
        ),
        // Not INI: the line, in words.
        (
            "garbage line without equals\n",
            "line 1: 'garbage line without equals' is neither a [section] nor an option (name = value)",
        ),
        (
            "[api]\nbind_port = 5000\n\n[worker\n",
            "line 4: '[worker' is neither a [section] nor an option (name = value)",
        ),
        (
            "[api] # the API\nbind_port = 5000\n",
            "line 1: '[api] # the API': a comment must be on a line of its own",
        ),
        ("[api]\n= 5000\n", "not a valid INI file: line 2: "),
        // The reader would keep only the second [api]: refused instead.
        (
            "[api]\nbind_port = 5615\n[DEFAULT]\ndebug = true\n[api]\nresults_per_page = 5\n",
            "section [api] appears twice: put its options in one [api] section",
        ),
        (
            "[api]\nauth_strategy = token\n",
            "[api] auth_strategy: token needs at least one token",
        ),
        (
            "[api]\nimage_store = s3\n",
            "[api] image_store: expected one of database, filesystem",
        ),
        (
            "[producer]\nmin_width = 2000\n",
            "[producer] min_width: 2000 is larger than max_width (1024)",
        ),
        // Each min_ names its own max_.
        (
            "[producer]\nmin_width = 900\nmax_width = 100\n",
            "[producer] min_width: 900 is larger than max_width (100)",
        ),
        (
            "[producer]\nmin_tasks = 9\nmax_tasks = 3\n",
            "[producer] min_tasks: 9 is larger than max_tasks (3)",
        ),
        (
            "[producer]\nmin_height = 900\nmax_height = 100\n",
            "[producer] min_height: 900 is larger than max_height (100)",
        ),
        (
            "[producer]\nmin_iterations = 900\nmax_iterations = 100\n",
            "[producer] min_iterations: 900 is larger than max_iterations (100)",
        ),
        // Only the max_ set (below the default min_): the file is named.
        (
            "[producer]\nmax_width = 100\n",
            "[producer] min_width: 256 is larger than max_width (100)",
        ),
        (
            "[DEFAULT]\nlog_file = /var/log/faafo/\n",
            "[DEFAULT] log_file: \"/var/log/faafo/\" names a directory: give a file's path in it",
        ),
        (
            "[api]\nmax_results_per_page = 5\n",
            "[api] results_per_page: must be between 1 and max_results_per_page (5)",
        ),
        (
            "[producer]\nmin_iterations = 11\n",
            "[producer] min_iterations: must be at least 12 (a worker draws no Julia constant for fewer), got 11",
        ),
        (
            "[producer]\nmin_height = 1\n",
            "[producer] min_height: widths and heights must be at least 2, got 1",
        ),
        (
            "[producer]\nmax_in_flight = 0\n",
            "[producer] max_in_flight: must be at least 1",
        ),
        ("[producer]\ninterval = 0\n", "[producer] interval"),
        (
            "[worker]\nexec_timeout = 0\n",
            "[worker] exec_timeout: must be at least 1 (seconds)",
        ),
        (
            "[producer]\ncall_timeout = 0\n",
            "[producer] call_timeout: must be at least 1 (seconds)",
        ),
        (
            "[producer]\ntask_timeout = 0\n",
            "[producer] task_timeout: must be at least 1 (seconds)",
        ),
        (
            "[producer]\nrecovery_interval = 0\n",
            "[producer] recovery_interval: must be at least 1 (seconds)",
        ),
        (
            "[database]\nquery_timeout = 0\n",
            "[database] query_timeout: must be between 1 and 2147483 seconds (PostgreSQL's limit, about 24 days), got 0",
        ),
        (
            "[database]\nquery_timeout = 2147484\n",
            "[database] query_timeout: must be between 1 and 2147483 seconds",
        ),
        (
            "[worker]\nexecutor_size = 4\nprefetch = 2\n",
            "[worker] prefetch: must be at least executor_size (4), got 2",
        ),
        (
            "[worker]\nrender_threads = 10000000\n",
            "[worker] render_threads: must be at most 1024, got 10000000",
        ),
        (
            "[worker]\nexecutor_size = 100000000\n",
            "[worker] executor_size: must be at most 65535, got 100000000",
        ),
        (
            "[producer]\ncall_timeout = 18446744073709551615\n",
            "[producer] call_timeout: must be at most 31536000 seconds (a year)",
        ),
        (
            "[producer]\ninterval = 1e300\n",
            "[producer] interval: must be at most 31536000 seconds (a year)",
        ),
        (
            "[producer]\npoll_interval = 1e20\n",
            "[producer] poll_interval: must be at most",
        ),
        (
            "[producer]\npoll_interval = -1\n",
            "[producer] poll_interval: must be a positive number of seconds",
        ),
        (
            "[producer]\nmax_tasks = 4000000000\n",
            "[producer] max_tasks: must be at most 100000 (a batch is held in memory), got 4000000000",
        ),
        (
            "[producer]\nmax_in_flight = 18446744073709551615\n",
            "[producer] max_in_flight: must be at most 65535, got 18446744073709551615",
        ),
        (
            "[worker]\nprefetch = 65536\n",
            "[worker] prefetch: must be at most 65535, got 65536",
        ),
    ];
    for (text, expected) in cases {
        let path = file(&dir, "bad.conf", text);
        let err = load_from(std::slice::from_ref(&path), env(&[]))
            .expect_err(text)
            .to_string();
        assert!(err.contains(expected), "{text:?} gave: {err}");
        assert!(
            err.starts_with(&path.display().to_string()),
            "names the file: {err}"
        );
        assert!(!err.contains("hunter22"), "password shown: {err}");
    }
}

#[test]
fn the_sample_documents_every_option_and_loads_back() {
    let sample = FaafoConfig::sample();
    for key in [
        "transport_url",
        "bind_port",
        "exec_timeout",
        "max_in_flight",
        "call_monitor_timeout",
    ] {
        assert!(sample.contains(&format!("#{key} = ")), "{key} missing");
    }
    // Uncommented, the sample is a valid configuration equal to the defaults.
    let uncommented: String = sample
        .lines()
        .map(|l| match l.strip_prefix('#') {
            Some(rest) if rest.contains(" = ") && !rest.starts_with(' ') => rest.to_string(),
            _ => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = file(&dir, "sample.conf", &uncommented);
    let loaded = load_from(&[path], env(&[])).expect("sample loads");
    assert_eq!(loaded, FaafoConfig::default());
}

#[test]
fn the_shipped_samples_are_current_and_valid() {
    let etc = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../etc/faafo");
    let shipped = std::fs::read_to_string(etc.join("faafo.conf")).expect("etc/faafo/faafo.conf");
    assert_eq!(
        shipped,
        FaafoConfig::sample(),
        "etc/faafo/faafo.conf is out of date: regenerate it with `faafo-worker --print-sample-config > etc/faafo/faafo.conf`"
    );
    for name in ["faafo.conf", "api.conf", "worker.conf", "producer.conf"] {
        load_from(&[etc.join(name)], env(&[])).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn names_the_config_crate_would_read_as_array_paths_are_refused() {
    // Each of these made `config` allocate an array of tens of millions of
    // entries (the first is what the parse_config fuzz target found).
    let texts = [
        "2-0[28888088]=\0\0\u{0}8\0\0",
        "x[99999999] = 1\n",
        "[x[99999999]]\nkey = 1\n",
        "a\\x005b99999999\\x005d = 1\n",
    ];
    for text in texts {
        let err = parse_str(text, "fuzz.conf").expect_err(text).to_string();
        assert!(
            err.starts_with("fuzz.conf: ") && err.contains("is not a section or option name"),
            "{text:?} gave: {err}"
        );
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let path = file(
        &dir,
        "bad.conf",
        "[DEFAULT]\ndebug = true\n[api[99999999]]\nbind_port = 1\n",
    );
    let err = load_from(std::slice::from_ref(&path), env(&[]))
        .expect_err("refused")
        .to_string();
    assert!(
        err.contains("bad.conf: 'api[99999999") && err.contains("is not a section"),
        "{err}"
    );
    let err = load_from(&[], env(&[("FAAFO_API__BIND_PORT[99999999]", "1")]))
        .expect_err("refused")
        .to_string();
    assert!(
        err.contains("environment variable FAAFO_API__BIND_PORT[99999999]")
            && err.contains("is not a section or option name"),
        "{err}"
    );
    // Plain names still work.
    let config = parse_str(
        "[DEFAULT]\ndebug = true\n[api]\nbind_port = 5001\n",
        "ok.conf",
    )
    .expect("plain names");
    assert_eq!(config.api.bind_port, 5001);
}

#[test]
fn booleans_take_the_documented_words_in_any_case() {
    for (word, value) in [
        ("true", true),
        ("TRUE", true),
        ("yes", true),
        ("On", true),
        ("1", true),
        ("false", false),
        ("No", false),
        ("OFF", false),
        ("0", false),
    ] {
        let config = parse_str(&format!("[DEFAULT]\ndebug = {word}\n"), "b.conf")
            .unwrap_or_else(|e| panic!("{word}: {e}"));
        assert_eq!(config.default.debug, value, "{word}");
    }
    for word in ["y", "n", "2", "t", ""] {
        parse_str(&format!("[DEFAULT]\ndebug = {word}\n"), "b.conf").expect_err(word);
    }
}

#[test]
fn endpoint_url_follows_the_api_of_the_same_configuration_unless_set() {
    let dir = tempfile::tempdir().expect("tempdir");
    assert_eq!(
        load_from(&[], env(&[]))
            .expect("defaults")
            .default
            .endpoint_url,
        "http://127.0.0.1:5000"
    );
    for (api, expected) in [
        ("bind_port = 5751\n", "http://127.0.0.1:5751"),
        (
            "bind_host = 0.0.0.0\nbind_port = 5751\n",
            "http://127.0.0.1:5751",
        ),
        ("bind_host = ::\nbind_port = 5751\n", "http://[::1]:5751"),
        ("bind_host = ::1\nbind_port = 5751\n", "http://[::1]:5751"),
        ("bind_host = [::1]\nbind_port = 5751\n", "http://[::1]:5751"),
        (
            "bind_host = 10.1.2.3\nbind_port = 5751\n",
            "http://10.1.2.3:5751",
        ),
        (
            "bind_host = api.example.org\n",
            "http://api.example.org:5000",
        ),
        // A port picked at start cannot be known: the default stays.
        ("bind_port = 0\n", "http://127.0.0.1:5000"),
    ] {
        let text = format!("[api]\n{api}");
        let path = file(&dir, "one.conf", &text);
        let config = load_from(&[path], env(&[])).expect(&text);
        assert_eq!(config.default.endpoint_url, expected, "{text}");
        let config = parse_str(&text, "one.conf").expect(&text);
        assert_eq!(
            config.default.endpoint_url, expected,
            "check-config: {text}"
        );
    }
    // An endpoint_url set anywhere wins: in the same file, in an earlier
    // one, in the environment.
    let both = file(
        &dir,
        "both.conf",
        "[DEFAULT]\nendpoint_url = http://lb:80\n\n[api]\nbind_port = 5751\n",
    );
    assert_eq!(
        load_from(&[both], env(&[]))
            .expect("both")
            .default
            .endpoint_url,
        "http://lb:80"
    );
    let client = file(
        &dir,
        "client.conf",
        "[DEFAULT]\nendpoint_url = http://lb:80\n",
    );
    let api = file(&dir, "api.conf", "[api]\nbind_port = 5751\n");
    assert_eq!(
        load_from(&[client, api.clone()], env(&[]))
            .expect("two files")
            .default
            .endpoint_url,
        "http://lb:80"
    );
    let config = load_from(
        std::slice::from_ref(&api),
        env(&[("FAAFO_DEFAULT__ENDPOINT_URL", "http://env:81")]),
    )
    .expect("environment");
    assert_eq!(config.default.endpoint_url, "http://env:81");
    let config = load_from(&[], env(&[("FAAFO_API__BIND_PORT", "5752")])).expect("env port");
    assert_eq!(config.default.endpoint_url, "http://127.0.0.1:5752");
}

/// A value of the command line (`--endpoint-url`) replaces a bad one of
/// the environment or the files instead of failing on it, and is checked
/// itself, named as the command line's.
#[test]
fn the_command_line_wins_and_is_checked() {
    let endpoint = |value: &str| vec![CommandLineValue::endpoint_url(value.into())];
    let bad = env(&[("FAAFO_DEFAULT__ENDPOINT_URL", "ftp://api")]);
    assert!(load_from(&[], bad.clone()).is_err());
    let config = load_layers(&[], bad.clone(), endpoint("http://127.0.0.1:5000"))
        .expect("the command line's endpoint wins");
    assert_eq!(config.default.endpoint_url, "http://127.0.0.1:5000");
    let err = load_layers(&[], env(&[]), endpoint("ftp://api"))
        .expect_err("a bad endpoint on the command line")
        .to_string();
    assert!(
        err.contains("--endpoint-url") && err.contains("endpoint_url"),
        "{err}"
    );
}

/// docs/configuration.md documents every transport scheme the loader takes
/// (those its error lists), and the boolean words it takes.
#[test]
fn the_documentation_names_every_scheme_and_boolean_word() {
    let doc_path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/configuration.md");
    let doc = std::fs::read_to_string(&doc_path).expect("docs/configuration.md");
    let err = parse_str("[DEFAULT]\ntransport_url = x://h/\n", "t.conf")
        .expect_err("unknown scheme")
        .to_string();
    let schemes = err.rsplit_once("expected ").expect("a list").1;
    let schemes: Vec<&str> = schemes
        .split([',', ' '])
        .filter(|w| !w.is_empty() && *w != "or")
        .collect();
    assert!(
        schemes.contains(&"fake") && schemes.contains(&"amqps"),
        "{err}"
    );
    for scheme in schemes {
        assert!(
            doc.contains(&format!("`{scheme}://`")),
            "{scheme}:// undocumented"
        );
        // Each is accepted, but TLS, which this build does not have.
        let url = if matches!(scheme, "memory" | "fake") {
            format!("{scheme}://")
        } else {
            format!("{scheme}://u:p@h/")
        };
        let parsed = parse_str(&format!("[DEFAULT]\ntransport_url = {url}\n"), "t.conf");
        if scheme == "amqps" {
            let err = parsed.expect_err("amqps:// refused").to_string();
            assert!(
                err.contains("TLS (amqps:// or ssl=1) is not supported"),
                "{err}"
            );
        } else {
            parsed.unwrap_or_else(|e| panic!("{url}: {e}"));
        }
    }
    let err = parse_str(
        "[DEFAULT]\ntransport_url = rabbit://u:p@h/?ssl=1\n",
        "t.conf",
    )
    .expect_err("ssl=1 refused")
    .to_string();
    assert!(err.contains("[DEFAULT] transport_url: TLS"), "{err}");
    for word in [
        "`yes`",
        "`on`",
        "`1`",
        "`no`",
        "`off`",
        "`0`",
        "in any case",
    ] {
        assert!(doc.contains(word), "booleans: {word} undocumented");
    }
}

#[test]
fn check_config_names_what_each_program_would_use_without_passwords() {
    let config = parse_str(
        "[DEFAULT]\n\
         transport_url = rabbit://faafo:s3cret@mq.example.org:5672/faafo\n\
         database_url = postgresql://faafo:s3cret@db.example.org/faafo\n\
         endpoint_url = http://api1:5000,http://faafo:s3cret@api2:5000\n\
         [api]\nbind_host = 0.0.0.0\n\
         [worker]\nserver_name = w1\n",
        "test.conf",
    )
    .expect("valid");
    let api = config.check_summary("faafo-api");
    assert_eq!(
        api,
        "faafo-api: the configuration is valid (database postgresql://faafo:***@db.example.org/faafo, listening on 0.0.0.0:5000)\n"
    );
    let worker = config.check_summary("faafo-worker");
    assert_eq!(
        worker,
        "faafo-worker: the configuration is valid (broker rabbit://faafo:***@mq.example.org:5672/faafo, topic tasks as w1)\n"
    );
    let producer = config.check_summary("faafo-producer");
    assert_eq!(
        producer,
        "faafo-producer: the configuration is valid (broker rabbit://faafo:***@mq.example.org:5672/faafo, topic tasks, API http://api1:5000,http://faafo:***@api2:5000)\n"
    );
    let all = config.check_summary("faafo");
    for part in [
        "database postgresql://",
        "listening on",
        "broker rabbit://",
        "API http://api1",
    ] {
        assert!(all.contains(part), "{all}");
    }
    for line in [api, worker, producer, all] {
        assert!(!line.contains("s3cret"), "{line}");
    }
}

#[test]
fn every_host_the_resolver_takes_is_a_bind_host() {
    for host in [
        "0.0.0.0",
        "::",
        "[::1]",
        "localhost",
        "faafo_api",
        "api.example.org.",
        "fe80::1%eth0",
    ] {
        let mut config = FaafoConfig::default();
        config.api.bind_host = host.into();
        config
            .validate()
            .unwrap_or_else(|e| panic!("{host} refused: {e}"));
    }
}

/// A variable that names an option without faafo's `__` is an error that
/// says the name it was meant to have; it was ignored without a word.
/// Other `FAAFO_` variables (the tests', Vagrant's) are not faafo's
/// options and are left alone.
#[test]
fn a_misnamed_variable_is_refused_with_its_right_name() {
    for (name, meant) in [
        (
            "FAAFO_ENDPOINT_URL",
            "did you mean FAAFO_DEFAULT__ENDPOINT_URL?",
        ),
        ("FAAFO_API_BIND_PORT", "did you mean FAAFO_API__BIND_PORT?"),
        (
            "FAAFO_producer_max_in_flight",
            "did you mean FAAFO_PRODUCER__MAX_IN_FLIGHT?",
        ),
    ] {
        let err = load_from(&[], env(&[(name, "1")]))
            .expect_err(name)
            .to_string();
        assert!(
            err.starts_with(&format!("environment variable {name}: not read: ")),
            "{err}"
        );
        assert!(err.ends_with(meant), "{name} gave: {err}");
    }
    let config = load_from(
        &[],
        env(&[
            ("FAAFO_TEST_TRANSPORT_URL", "amqp://elsewhere/"),
            ("FAAFO_WORKERS", "4"),
        ]),
    )
    .expect("variables that name no option");
    assert_eq!(
        config.default.transport_url,
        FaafoConfig::default().default.transport_url
    );
}
