//! The deployment (`ansible/`, the `Vagrantfile`), checked as far as a
//! machine without VMs or containers allows:
//!
//! - `ansible-playbook --syntax-check` of the playbooks with both example
//!   inventories, and `ansible-lint` (production profile) on `ansible/`;
//! - every configuration template, rendered by ansible on this machine
//!   through the roles' own tasks and variables (`ansible/tests/render-configs.yml`),
//!   is accepted by `check-config`;
//! - the Vagrantfile defines the inventory groups the playbook uses, and
//!   docs/configuration.md documents every option.
//!
//! The playbook itself needs real hosts (or the Vagrantfile's VMs): it is
//! not run here.
//!
//! The tools live in a Python virtualenv made once under cargo's
//! `CARGO_TARGET_TMPDIR` (later runs reuse it): ansible-core and
//! ansible-lint from PyPI, and the collections the roles use
//! (community.mysql, community.postgresql, community.rabbitmq) taken from the
//! `ansible` community package on PyPI, since Galaxy may be out of reach.
//! Without python3 or PyPI these tests fail, saying so. A first run takes
//! two to three minutes (the virtualenv, then ansible-lint); later runs take
//! about half a minute, most of it ansible-lint.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const ANSIBLE_CORE: &str = "ansible-core==2.19.14";
const ANSIBLE_LINT: &str = "ansible-lint==26.10.1";
/// The community package, downloaded only for its copies of the
/// collections below (the same versions as ansible/requirements.yml).
const ANSIBLE: &str = "ansible==12.3.0";
const COLLECTIONS: &[&str] = &[
    "community/mysql",
    "community/postgresql",
    "community/rabbitmq",
];
/// Extracts the collections named by argv[3:] from the wheel in argv[1]
/// into argv[2].
const EXTRACT_COLLECTIONS: &str = r#"
import glob, sys, zipfile
wheel, = glob.glob(sys.argv[1] + '/ansible-*.whl')
wanted = tuple('ansible_collections/' + c + '/' for c in sys.argv[3:])
found = set()
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        if name.startswith(wanted):
            z.extract(name, sys.argv[2])
            found.add('/'.join(name.split('/')[1:3]))
missing = set(sys.argv[3:]) - found
assert not missing, f'not in {wheel}: {missing}'
"#;
/// Names the cache: a change of any pin makes a new one.
const TOOLS_NAME: &str = "ansible-tools-2.19.14-26.10.1-12.3.0";

/// `faafo-producer`: the binary built with these tests. faafo-api,
/// faafo-worker and faafo-producer load their files with the same
/// `faafo_common::configuration` loader (every section, strict about unknown
/// keys and bad values), so its `check-config` validates the files of every
/// program.
const CHECK_CONFIG_BINARY: &str = env!("CARGO_BIN_EXE_faafo-producer");

/// `faafo`, whose `check-config` stands in for faafo-api's: it accepts a
/// file without a broker (the API uses none), which faafo-producer's (and
/// faafo-worker's) refuses.
const API_CHECK_CONFIG_BINARY: &str = env!("CARGO_BIN_EXE_faafo");

fn ansible_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../ansible")
}

/// The virtualenv and the collections.
struct Tools {
    venv: PathBuf,
    collections: PathBuf,
    root: PathBuf,
}

/// Runs `command` with its output in files (no pipe can fill up), killing it
/// after `limit`. Returns the status and the combined output.
fn run_logged(command: &mut Command, what: &str, limit: Duration) -> (ExitStatus, String) {
    static SEQ: AtomicUsize = AtomicUsize::new(0);
    let logs = Path::new(env!("CARGO_TARGET_TMPDIR")).join("deployment-logs");
    fs::create_dir_all(&logs).expect("log directory");
    let log = logs.join(format!(
        "{}-{}.log",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let file = fs::File::create(&log).expect("log file");
    let mut child = command
        .stdin(Stdio::null())
        .stdout(file.try_clone().expect("log file"))
        .stderr(file)
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: cannot start {:?}: {e}", command.get_program()));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{what}: still running after {limit:?}, killed; its output:\n{}",
                read_lossy(&log)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let output = read_lossy(&log);
    let _ = fs::remove_file(&log);
    (status, output)
}

fn read_lossy(path: &Path) -> String {
    let mut bytes = Vec::new();
    if let Ok(mut file) = fs::File::open(path) {
        let _ = file.read_to_end(&mut bytes);
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Runs a setup step in `staging`; a failure removes `staging` and says
/// what is needed.
fn setup_step(command: &mut Command, what: &str, staging: &Path) {
    let (status, output) = run_logged(command, what, Duration::from_secs(900));
    if !status.success() {
        let _ = fs::remove_dir_all(staging);
        panic!(
            "{what} failed ({status}). These tests need python3 with venv and pip, and PyPI \
             (to install {ANSIBLE_CORE}, {ANSIBLE_LINT} and download {ANSIBLE}):\n{output}"
        );
    }
}

/// Makes the tools once: in a staging directory, renamed into place when
/// complete, so concurrent test runs never see a half-made one.
fn tools() -> &'static Tools {
    static TOOLS: OnceLock<Tools> = OnceLock::new();
    TOOLS.get_or_init(|| {
        let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join(TOOLS_NAME);
        let tools = Tools {
            venv: root.join("venv"),
            collections: root.join("collections"),
            root: root.clone(),
        };
        if root.join(".complete").exists() {
            return tools;
        }
        let staging = root.with_file_name(format!("{TOOLS_NAME}.staging-{}", std::process::id()));
        let _ = fs::remove_dir_all(&staging);
        fs::create_dir_all(&staging).expect("staging directory");
        let venv = staging.join("venv");
        let python = venv.join("bin/python");
        let python3 = std::env::var_os("PYTHON3").unwrap_or_else(|| "python3".into());
        if let Err(e) = Command::new(&python3).arg("--version").output() {
            let _ = fs::remove_dir_all(&staging);
            panic!("python3 is needed to make the ansible virtualenv, and cannot be run: {e}");
        }
        setup_step(
            Command::new(&python3).args(["-m", "venv"]).arg(&venv),
            "python3 -m venv",
            &staging,
        );
        let pip = |args: &[&str]| {
            let mut command = Command::new(&python);
            command
                .args(["-m", "pip", "--disable-pip-version-check", "--no-input"])
                .args(args);
            command
        };
        setup_step(
            &mut pip(&["install", "--quiet", ANSIBLE_CORE, ANSIBLE_LINT]),
            "pip install ansible-core ansible-lint",
            &staging,
        );
        let download = staging.join("download");
        setup_step(
            pip(&[
                "download",
                "--quiet",
                "--no-deps",
                "--only-binary=:all:",
                ANSIBLE,
            ])
            .arg("--dest")
            .arg(&download),
            "pip download ansible",
            &staging,
        );
        // Keep only the collections the roles use (a few MB of the wheel's
        // hundreds), where ANSIBLE_COLLECTIONS_PATH will find them.
        setup_step(
            Command::new(&python)
                .args(["-c", EXTRACT_COLLECTIONS])
                .arg(&download)
                .arg(staging.join("collections"))
                .args(COLLECTIONS),
            "extracting the collections",
            &staging,
        );
        fs::remove_dir_all(&download).expect("remove the download");
        // The scripts in venv/bin name their interpreter by its path: point
        // them at where the venv will be once renamed.
        let (from, to) = (staging.display().to_string(), root.display().to_string());
        for entry in fs::read_dir(venv.join("bin")).expect("venv/bin") {
            let path = entry.expect("venv/bin entry").path();
            if path.is_symlink() || !path.is_file() {
                continue;
            }
            let Ok(text) = fs::read_to_string(&path) else {
                continue;
            };
            if text.starts_with("#!") && text.contains(&from) {
                fs::write(&path, text.replace(&from, &to)).expect("rewrite a venv script");
            }
        }
        fs::write(
            staging.join(".complete"),
            format!("{ANSIBLE_CORE} {ANSIBLE_LINT} {ANSIBLE}\n"),
        )
        .expect("marker");
        if fs::rename(&staging, &root).is_err() {
            // Another run finished first: use its tools.
            let _ = fs::remove_dir_all(&staging);
            assert!(
                root.join(".complete").exists(),
                "cannot move {} to {}",
                staging.display(),
                root.display()
            );
        }
        tools
    })
}

impl Tools {
    /// A command of the venv, run in ansible/ with only our collections.
    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(self.venv.join("bin").join(program));
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut paths = vec![self.venv.join("bin")];
        paths.extend(std::env::split_paths(&path));
        command
            .current_dir(ansible_dir())
            .env("PATH", std::env::join_paths(paths).expect("PATH"))
            .env("ANSIBLE_CONFIG", ansible_dir().join("ansible.cfg"))
            .env("ANSIBLE_COLLECTIONS_PATH", &self.collections)
            .env("ANSIBLE_HOME", self.root.join("ansible-home"))
            .env("XDG_CACHE_HOME", self.root.join("cache"))
            .env("ANSIBLE_NOCOLOR", "1")
            .env("NO_COLOR", "1")
            .env("LC_ALL", "C.UTF-8")
            .env_remove("ANSIBLE_INVENTORY")
            .env_remove("VIRTUAL_ENV");
        command
    }

    /// Runs a tool; on failure, fails the test with its output.
    fn run(&self, program: &str, args: &[&str]) -> String {
        let mut command = self.command(program);
        command.args(args);
        let what = format!("{program} {}", args.join(" "));
        let (status, output) = run_logged(&mut command, &what, Duration::from_secs(600));
        assert!(status.success(), "`{what}` failed ({status}):\n{output}");
        output
    }
}

/// A fresh directory under cargo's test directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let path = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("deployment-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).expect("temporary directory");
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[test]
fn playbooks_pass_the_syntax_check_with_both_example_inventories() {
    let tools = tools();
    let playbooks = ["site.yml", "tests/render-configs.yml"];
    for inventory in ["single", "multi"] {
        let inventory = format!("inventories/{inventory}/hosts.yml");
        let mut args = vec!["-i", &inventory, "--syntax-check"];
        args.extend(playbooks);
        let output = tools.run("ansible-playbook", &args);
        for playbook in playbooks {
            assert!(
                output.contains(&format!("playbook: {playbook}")),
                "unexpected syntax-check output:\n{output}"
            );
        }
    }
}

/// ansible-lint (production profile) passes on ansible/. It takes half a
/// minute: it runs a syntax check per role and playbook.
#[test]
fn ansible_lint_passes_with_the_production_profile() {
    let tools = tools();
    let output = tools.run("ansible-lint", &["--offline", "--profile", "production"]);
    assert!(
        output.contains("Passed"),
        "ansible-lint said no failure, but did not say it passed:\n{output}"
    );
}

/// The configuration files of one rendering.
struct Rendered {
    dir: TempDir,
}

impl Rendered {
    /// Renders the configuration of every host of `inventory` with extra
    /// variables `extra` (JSON), each file validated by `check-config`
    /// before it is written (the roles' `validate`).
    fn new(name: &str, inventory: &str, extra: &str) -> Self {
        let dir = TempDir::new(name);
        let vars = format!(
            r#"{{"faafo_render_dir": "{dir}", "faafo_credentials_dir": "{dir}/credentials",
                "ansible_connection": "local", "ansible_python_interpreter": "{python}",
                "faafo_restart_on_change": false,
                "faafo_api_check_config_binary": "{api_bin}",
                "faafo_worker_check_config_binary": "{bin}",
                "faafo_producer_check_config_binary": "{bin}"}}"#,
            dir = dir.0.display(),
            python = tools().venv.join("bin/python").display(),
            bin = CHECK_CONFIG_BINARY,
            api_bin = API_CHECK_CONFIG_BINARY,
        );
        let inventory = format!("inventories/{inventory}/hosts.yml");
        tools().run(
            "ansible-playbook",
            &[
                "-i",
                &inventory,
                "tests/render-configs.yml",
                "-e",
                &vars,
                "-e",
                extra,
            ],
        );
        Self { dir }
    }

    fn path(&self, host: &str, file: &str) -> PathBuf {
        self.dir.0.join(host).join(file)
    }

    fn text(&self, host: &str, file: &str) -> String {
        let path = self.path(host, file);
        fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{} was not rendered: {e}", path.display()))
    }

    /// A host's rendered systemd unit.
    fn unit(&self, host: &str, unit: &str) -> String {
        let path = self.dir.0.join("units").join(host).join(unit);
        fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{} was not rendered: {e}", path.display()))
    }

    fn credential(&self, name: &str) -> String {
        fs::read_to_string(self.dir.0.join("credentials").join(name))
            .unwrap_or_else(|e| panic!("credential {name} was not generated: {e}"))
            .trim()
            .to_string()
    }

    /// The files rendered for each host, sorted.
    fn files(&self) -> Vec<(String, Vec<String>)> {
        let mut hosts = Vec::new();
        for entry in fs::read_dir(&self.dir.0).expect("render directory") {
            let entry = entry.expect("entry");
            let host = entry.file_name().to_string_lossy().into_owned();
            if host == "credentials" || host == "units" {
                continue;
            }
            let mut files: Vec<String> = fs::read_dir(entry.path())
                .expect("host directory")
                .map(|f| f.expect("file").file_name().to_string_lossy().into_owned())
                .collect();
            files.sort();
            hosts.push((host, files));
        }
        hosts.sort();
        hosts
    }

    /// Runs `check-config` on every rendered file; each must pass.
    fn check_all(&self) {
        for (host, files) in self.files() {
            for file in files {
                let path = self.path(&host, &file);
                let (ok, output) = check_config(&path);
                assert!(
                    ok,
                    "check-config refused {host}'s {file}:\n{output}\n--- the file:\n{}",
                    self.text(&host, &file)
                );
            }
        }
    }
}

/// `faafo-producer check-config --config-file path` (`faafo` for an
/// api.conf), without FAAFO_* variables of the environment.
fn check_config(path: &Path) -> (bool, String) {
    let api = path.file_name().is_some_and(|name| name == "api.conf");
    let mut command = Command::new(if api {
        API_CHECK_CONFIG_BINARY
    } else {
        CHECK_CONFIG_BINARY
    });
    command.args(["check-config", "--config-file"]).arg(path);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("FAAFO_") {
            command.env_remove(key);
        }
    }
    let (status, output) = run_logged(&mut command, "check-config", Duration::from_secs(60));
    (status.success(), output)
}

fn file_mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).expect("metadata").permissions().mode() & 0o777
}

#[test]
fn single_host_configurations_are_accepted_by_check_config() {
    let rendered = Rendered::new("single", "single", "{}");
    let host = "faafo.example.org";
    assert_eq!(
        rendered.files(),
        vec![(
            host.to_string(),
            vec![
                "api.conf".into(),
                "producer.conf".into(),
                "worker.conf".into()
            ]
        )]
    );
    rendered.check_all();

    // Generated secrets, the same in every file; MariaDB by default; the
    // programs reach each other on the host's faafo_address.
    let rabbit = rendered.credential("rabbitmq-faafo");
    let database = rendered.credential("database-faafo");
    let token = rendered.credential("api-token");
    assert_eq!(rabbit.len(), 32);
    assert!(rabbit.chars().all(|c| c.is_ascii_alphanumeric()));
    let transport = format!("transport_url = rabbit://faafo:{rabbit}@127.0.0.1:5672/faafo\n");
    let api = rendered.text(host, "api.conf");
    let worker = rendered.text(host, "worker.conf");
    let producer = rendered.text(host, "producer.conf");
    assert!(api.contains(&format!(
        "database_url = mysql://faafo:{database}@127.0.0.1:3306/faafo\n"
    )));
    assert!(api.contains("auth_strategy = token\n"));
    assert!(api.contains(&format!("auth_tokens = {token}\n")));
    assert!(worker.contains(&transport), "{worker}");
    assert!(producer.contains(&transport), "{producer}");
    assert!(producer.contains(&format!("auth_token = {token}\n")));
    assert!(producer.contains("endpoint_url = http://127.0.0.1:5000\n"));
    for file in ["api.conf", "worker.conf", "producer.conf"] {
        assert_eq!(
            file_mode(&rendered.path(host, file)),
            0o640,
            "{file} holds passwords: mode 0640"
        );
    }

    // The units: stop timeouts from the settings, no extra writable path.
    let worker_unit = rendered.unit(host, "faafo-worker.service");
    assert!(
        worker_unit.contains("\nTimeoutStopSec=60\n"),
        "{worker_unit}"
    );
    assert!(!worker_unit.contains("ReadWritePaths"), "{worker_unit}");
    let producer_unit = rendered.unit(host, "faafo-producer.service");
    assert!(
        producer_unit.contains("\nTimeoutStopSec=60\n"),
        "{producer_unit}"
    );
    let api_unit = rendered.unit(host, "faafo-api.service");
    assert!(api_unit.contains("ExecStart="), "{api_unit}");

    // The check is not a formality: a key the programs do not know is refused.
    let broken = rendered.path(host, "broken.conf");
    // (In the file's own [worker] section: a second [worker] would be
    // refused for appearing twice.)
    assert!(worker.contains("[worker]\n"), "{worker}");
    let with_typo = worker.replacen("[worker]\n", "[worker]\nno_such_option = 1\n", 1);
    fs::write(&broken, with_typo).expect("write");
    let (ok, output) = check_config(&broken);
    assert!(!ok, "check-config accepted an unknown option:\n{output}");
    assert!(output.contains("no_such_option"), "{output}");
}

/// The multi-host inventory, with the settings the single-host test leaves
/// at their defaults changed, and options added through the *_extra_config
/// variables.
#[test]
fn multi_host_configurations_with_other_settings_are_accepted_by_check_config() {
    let extra = r#"{
        "faafo_api_auth_strategy": "noauth",
        "faafo_api_image_store": "filesystem",
        "faafo_api_image_dir": "/srv/faafo/images",
        "faafo_rabbitmq_password": "r/a:b@c%d,e?f#g",
        "faafo_database_password": "d/b:p@s s",
        "faafo_log_format": "json",
        "faafo_debug": true,
        "faafo_worker_executor_size": 2,
        "faafo_extra_config": {"DEFAULT": {"pixel_limit": 4194304},
                               "messaging": {"call_monitor_timeout": 120}},
        "faafo_producer_extra_config": {"producer": {"min_width": 512, "max_width": 2048,
                                                     "interval": 2.5}},
        "faafo_api_extra_config": {"api": {"protect_reads": false, "max_results_per_page": 50}},
        "faafo_worker_extra_config": {"worker": {"exec_timeout": 1800, "shutdown_grace": 120}}
    }"#;
    let rendered = Rendered::new("multi", "multi", extra);
    let expect = |files: &[&str]| files.iter().map(|f| f.to_string()).collect::<Vec<_>>();
    assert_eq!(
        rendered.files(),
        vec![
            (
                "api1.example.org".into(),
                expect(&["api.conf", "producer.conf"])
            ),
            ("api2.example.org".into(), expect(&["api.conf"])),
            ("worker1.example.org".into(), expect(&["worker.conf"])),
            ("worker2.example.org".into(), expect(&["worker.conf"])),
            ("worker3.example.org".into(), expect(&["worker.conf"])),
        ]
    );
    rendered.check_all();

    // PostgreSQL (the inventory's choice) and RabbitMQ on the services host's
    // private address; the producer uses the first API host. Passwords of
    // one's own are percent-encoded in the URLs (check_all had check-config
    // parse them).
    let database = "d%2Fb%3Ap%40s%20s";
    let rabbit = "r%2Fa%3Ab%40c%25d%2Ce%3Ff%23g";
    for api in ["api1.example.org", "api2.example.org"] {
        let text = rendered.text(api, "api.conf");
        for needle in [
            &format!("database_url = postgresql://faafo:{database}@10.0.0.10:5432/faafo\n"),
            "auth_strategy = noauth\n",
            "auth_tokens = \n",
            "image_store = filesystem\n",
            "image_dir = /srv/faafo/images\n",
            "log_format = json\n",
            "debug = true\n",
            "pixel_limit = 4194304\n",
            "[messaging]\ncall_monitor_timeout = 120\n",
            "protect_reads = false\n",
            "max_results_per_page = 50\n",
        ] {
            assert!(
                text.contains(needle),
                "{api}'s api.conf lacks {needle:?}:\n{text}"
            );
        }
    }
    for worker in [
        "worker1.example.org",
        "worker2.example.org",
        "worker3.example.org",
    ] {
        let text = rendered.text(worker, "worker.conf");
        for needle in [
            &format!("transport_url = rabbit://faafo:{rabbit}@10.0.0.10:5672/faafo\n"),
            "executor_size = 2\n",
            "[messaging]\ncall_monitor_timeout = 120\n",
        ] {
            assert!(
                text.contains(needle),
                "{worker}'s worker.conf lacks {needle:?}:\n{text}"
            );
        }
    }
    // The units follow: an image directory outside the state directory is
    // writable, and a worker's shutdown_grace set through *_extra_config
    // sets its stop timeout (systemd must not kill a worker still within
    // its grace).
    for api in ["api1.example.org", "api2.example.org"] {
        let unit = rendered.unit(api, "faafo-api.service");
        assert!(
            unit.contains("\nReadWritePaths=/srv/faafo/images\n"),
            "{unit}"
        );
    }
    let worker_unit = rendered.unit("worker1.example.org", "faafo-worker.service");
    assert!(
        worker_unit.contains("\nTimeoutStopSec=150\n"),
        "{worker_unit}"
    );
    let producer = rendered.text("api1.example.org", "producer.conf");
    for needle in [
        "endpoint_url = http://10.0.0.11:5000,http://10.0.0.12:5000\n",
        "auth_token = \n",
        "min_width = 512\n",
        "max_width = 2048\n",
        "interval = 2.5\n",
    ] {
        assert!(
            producer.contains(needle),
            "producer.conf lacks {needle:?}:\n{producer}"
        );
    }
}

#[test]
fn vagrantfile_provisions_the_playbook_groups() {
    let vagrantfile =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../Vagrantfile"))
            .expect("the Vagrantfile at the repository's root");
    assert!(vagrantfile.contains("ansible/site.yml"));
    for group in ["\"services\"", "\"api\"", "\"workers\"", "\"producer\""] {
        assert!(
            vagrantfile.contains(group),
            "the Vagrantfile does not define the inventory group {group}"
        );
    }
    assert!(vagrantfile.contains("faafo_address"));
}

/// docs/configuration.md has a row for every option `--print-sample-config`
/// prints, under its section.
#[test]
fn configuration_doc_lists_every_option() {
    let doc_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/configuration.md");
    let doc = fs::read_to_string(&doc_path).expect("docs/configuration.md");
    let (status, sample) = run_logged(
        Command::new(CHECK_CONFIG_BINARY).arg("--print-sample-config"),
        "--print-sample-config",
        Duration::from_secs(60),
    );
    assert!(status.success(), "{sample}");
    let mut section = String::new();
    let mut missing = Vec::new();
    for line in sample.lines() {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_string();
            continue;
        }
        let Some((key, _)) = line
            .strip_prefix('#')
            .and_then(|l| l.split_once(" ="))
            .filter(|(k, _)| !k.contains(' '))
        else {
            continue;
        };
        let heading = format!("### `[{section}]`");
        let part = doc
            .split_once(&heading)
            .map(|(_, rest)| rest.split("\n### ").next().unwrap_or_default())
            .unwrap_or_else(|| panic!("{} has no heading {heading}", doc_path.display()));
        if !part.contains(&format!("| `{key}` |")) {
            missing.push(format!("[{section}] {key}"));
        }
    }
    assert!(
        missing.is_empty(),
        "docs/configuration.md lacks {missing:?}: regenerate its tables from --print-sample-config"
    );
}
