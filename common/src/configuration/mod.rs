//! Configuration in the spirit of oslo.config, on the `config` crate.
//!
//! One INI layout serves every faafo program: a `[DEFAULT]` section with
//! what they share (broker and database URLs, logging) and a section per
//! concern (`[api]`, `[worker]`, `[producer]`, `[messaging]`, `[database]`).
//! Values come from, in increasing priority: the defaults, the
//! `--config-file` files in order, the `*.conf` files of `--config-dir` in
//! name order, and environment variables `FAAFO_<SECTION>__<KEY>` (e.g.
//! `FAAFO_DEFAULT__TRANSPORT_URL`, `FAAFO_API__BIND_PORT`).
//!
//! Parsing is strict: an unknown section or key, a wrong type or a bad URL
//! stops start-up with one line that names the file, the section, the key
//! and what was expected. Every option is declared once, with its default
//! and help, by [`config_section!`](crate::config_section!), which also writes the sample files
//! (`--print-sample-config`).

mod names;
mod sample;
mod sections;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer};

pub use sample::{OptionDoc, SampleValue, Section, SectionDoc, sample_config};
pub use sections::*;

/// Prefix of environment overrides.
pub const ENV_PREFIX: &str = "FAAFO_";

/// Why the configuration was refused; `Display` is the one line to print.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin}: {message}")]
pub struct ConfigError {
    /// The file (or environment variable) the problem is in.
    pub origin: String,
    /// What is wrong, naming the section and key.
    pub message: String,
}

impl ConfigError {
    fn new(origin: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            origin: one_line(&origin.into()),
            message: one_line(&message.into()),
        }
    }
}

/// Escapes control characters (a section name may hold a newline), so an
/// error stays one line.
pub fn one_line(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_string();
    }
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_debug().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Where configuration comes from; flattened into every program's CLI.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ConfigArgs {
    /// An INI configuration file; repeat it, later files win.
    #[arg(long = "config-file", value_name = "PATH", global = true)]
    pub config_files: Vec<PathBuf>,
    /// A directory whose *.conf files are read after --config-file, in name order.
    #[arg(long = "config-dir", value_name = "DIR", global = true)]
    pub config_dir: Option<PathBuf>,
}

impl ConfigArgs {
    /// The files to read, in order.
    pub fn files(&self) -> Result<Vec<PathBuf>, ConfigError> {
        let mut files = self.config_files.clone();
        if let Some(dir) = &self.config_dir {
            let entries = std::fs::read_dir(dir).map_err(|e| {
                ConfigError::new(
                    dir.display().to_string(),
                    format!("cannot read the config directory: {e}"),
                )
            })?;
            let mut confs: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "conf"))
                // Hidden files are editors' (Emacs's `.#api.conf` lock, a
                // dangling link) and skipped, as oslo.config's glob does.
                .filter(|p| {
                    p.file_name()
                        .is_some_and(|n| !n.to_string_lossy().starts_with('.'))
                })
                .collect();
            confs.sort();
            files.extend(confs);
        }
        Ok(files)
    }

    /// Loads and validates the configuration.
    pub fn load(&self) -> Result<FaafoConfig, ConfigError> {
        self.load_with(Vec::new())
    }

    /// Loads and validates the configuration with what the command line
    /// gives for some of its options: they win over the files and the
    /// environment, and the whole is checked after them, so that a bad
    /// value they replace is no error.
    pub fn load_with(
        &self,
        command_line: Vec<CommandLineValue>,
    ) -> Result<FaafoConfig, ConfigError> {
        load_layers(&self.files()?, faafo_variables()?, command_line)
    }
}

/// An option of the files given on the command line (`--endpoint-url`),
/// for [`ConfigArgs::load_with`].
#[derive(Debug, Clone)]
pub struct CommandLineValue {
    /// The flag, which errors name as the value's origin.
    pub flag: &'static str,
    /// The option's section (`DEFAULT`, `api`, ...).
    pub section: &'static str,
    /// The option's key in it.
    pub key: &'static str,
    /// The value, as it would be written in a file.
    pub value: String,
}

impl CommandLineValue {
    /// `--endpoint-url`: `[DEFAULT] endpoint_url`.
    pub fn endpoint_url(value: String) -> Self {
        Self {
            flag: "--endpoint-url",
            section: "DEFAULT",
            key: "endpoint_url",
            value,
        }
    }

    /// `--token`: `[DEFAULT] auth_token`.
    pub fn auth_token(value: String) -> Self {
        Self {
            flag: "--token",
            section: "DEFAULT",
            key: "auth_token",
            value,
        }
    }
}

/// The `FAAFO_*` variables of the environment. Others are not read (one
/// that is not UTF-8, which `std::env::vars` panics on, is no concern of
/// faafo's); a `FAAFO_*` one that is not UTF-8 is an error.
fn faafo_variables() -> Result<Vec<(String, String)>, ConfigError> {
    let mut variables = Vec::new();
    for (key, value) in std::env::vars_os() {
        let Some(key) = key.to_str().filter(|k| k.starts_with(ENV_PREFIX)) else {
            continue;
        };
        let value = value
            .into_string()
            .map_err(|_| ConfigError::new(key, "the value is not UTF-8 text"))?;
        variables.push((key.to_string(), value));
    }
    Ok(variables)
}

/// Parses one configuration file's text as if it were the only file, with
/// no environment: what `check-config` does to a file, without the file.
pub fn parse_str(text: &str, origin: &str) -> Result<FaafoConfig, ConfigError> {
    names::check_ini(text).map_err(|m| ConfigError::new(origin, m))?;
    let single = config::Config::builder()
        .add_source(config::File::from_str(text, config::FileFormat::Ini))
        .build()
        .map_err(|e| ConfigError::new(origin, format!("not a valid INI file: {}", clean(&e))))?;
    let endpoint_set = is_set(&single, ENDPOINT_URL);
    let mut parsed = deserialize(single).map_err(|m| ConfigError::new(origin, m))?;
    if !endpoint_set {
        parsed.endpoint_url_from_api();
    }
    parsed
        .validate()
        .map_err(|e| ConfigError::new(origin, e.message))?;
    Ok(parsed)
}

/// Loads `files` (later wins) and the `FAAFO_*` variables among `env`.
pub fn load_from(
    files: &[PathBuf],
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<FaafoConfig, ConfigError> {
    load_layers(files, env, Vec::new())
}

/// [`load_from`], then `command_line` over both.
fn load_layers(
    files: &[PathBuf],
    env: impl IntoIterator<Item = (String, String)>,
    command_line: Vec<CommandLineValue>,
) -> Result<FaafoConfig, ConfigError> {
    let mut builder = config::Config::builder();
    let mut file_configs = Vec::new();
    for file in files {
        let origin = file.display().to_string();
        let text = std::fs::read_to_string(file)
            .map_err(|e| ConfigError::new(&origin, format!("cannot read the file: {e}")))?;
        names::check_ini(&text).map_err(|m| ConfigError::new(&origin, m))?;
        // Each file must be valid on its own, so an error can name it.
        let alone = config::Config::builder()
            .add_source(config::File::from_str(&text, config::FileFormat::Ini))
            .build()
            .map_err(|e| {
                ConfigError::new(&origin, format!("not a valid INI file: {}", clean(&e)))
            })?;
        deserialize(alone.clone()).map_err(|m| ConfigError::new(&origin, m))?;
        file_configs.push((origin, alone));
        builder = builder.add_source(config::File::from_str(&text, config::FileFormat::Ini));
    }
    // Over the files: the environment's values, then the command line's,
    // each as `(section.key, value, where it comes from)`.
    let mut overrides = Vec::new();
    for (name, value) in env {
        let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let Some((section, key)) = rest.split_once("__") else {
            // Not faafo's form: another program's (a test's, Vagrant's), or
            // an option misnamed, which would be ignored without a word.
            if let Some(meant) = meant_variable(rest) {
                return Err(ConfigError::new(
                    format!("environment variable {}", names::shown(&name)),
                    format!(
                        "not read: faafo's variables are {ENV_PREFIX}<SECTION>__<KEY>, with two \
                         underscores after the section; did you mean {meant}?"
                    ),
                ));
            }
            continue;
        };
        let section = if section.eq_ignore_ascii_case("default") {
            "DEFAULT".to_string()
        } else {
            section.to_ascii_lowercase()
        };
        let key = key.to_ascii_lowercase();
        let origin = format!("environment variable {}", names::shown(&name));
        names::check(&section)
            .and_then(|()| names::check(&key))
            .map_err(|m| ConfigError::new(&origin, m))?;
        overrides.push((format!("{section}.{key}"), value, origin));
    }
    overrides.extend(command_line.into_iter().map(|given| {
        (
            format!("{}.{}", given.section, given.key),
            given.value,
            format!("the command line's {}", given.flag),
        )
    }));
    for (key, value, origin) in &overrides {
        // Each valid on its own, so an error can name where it came from.
        let single = config::Config::builder()
            .set_override(key.as_str(), value.as_str())
            .map_err(|e| ConfigError::new(origin, clean(&e)))?
            .build()
            .map_err(|e| ConfigError::new(origin, clean(&e)))?;
        deserialize(single).map_err(|m| ConfigError::new(origin, m))?;
        builder = builder
            .set_override(key.as_str(), value.as_str())
            .map_err(|e| ConfigError::new("environment", clean(&e)))?;
    }
    let merged = builder
        .build()
        .map_err(|e| ConfigError::new("configuration", clean(&e)))?;
    let endpoint_set = is_set(&merged, ENDPOINT_URL);
    let mut config = deserialize(merged).map_err(|m| ConfigError::new("configuration", m))?;
    if !endpoint_set {
        config.endpoint_url_from_api();
    }
    config.check().map_err(|invalid| {
        // Name the last source that set the offending key (or, when none
        // did, the key it goes with: a max_width below the default min_width).
        let set_by = |key: String| {
            overrides
                .iter()
                .rev()
                .find(|(k, _, _)| *k == key)
                .map(|(_, _, origin)| origin.clone())
                .or_else(|| {
                    file_configs
                        .iter()
                        .rev()
                        .find(|(_, c)| is_set(c, &key))
                        .map(|(origin, _)| origin.clone())
                })
        };
        let origin = set_by(format!("{}.{}", invalid.section, invalid.key))
            .or_else(|| {
                invalid
                    .related
                    .and_then(|related| set_by(format!("{}.{related}", invalid.section)))
            })
            .unwrap_or_else(|| "configuration".to_string());
        ConfigError::new(
            origin,
            format!("[{}] {}: {}", invalid.section, invalid.key, invalid.message),
        )
    })?;
    Ok(config)
}

/// The variables a `FAAFO_` one without `__` was meant to be, when it
/// names an option: its key alone (`FAAFO_ENDPOINT_URL`), or its section
/// and key with one underscore between (`FAAFO_API_BIND_PORT`). `None`
/// for any other name (the tests' `FAAFO_TEST_TRANSPORT_URL`).
fn meant_variable(rest: &str) -> Option<String> {
    let rest = rest.to_ascii_lowercase();
    let mut meant = Vec::new();
    for section in FaafoConfig::section_docs() {
        let prefix = format!("{}_", section.name().to_ascii_lowercase());
        for option in section.options() {
            let key = rest.strip_prefix(&prefix).unwrap_or(&rest);
            if key == option.key {
                meant.push(format!(
                    "{ENV_PREFIX}{}__{}",
                    section.name().to_ascii_uppercase(),
                    option.key.to_ascii_uppercase()
                ));
            }
        }
    }
    (!meant.is_empty()).then(|| meant.join(" or "))
}

/// The key of `[DEFAULT] endpoint_url`, whose default depends on `[api]`.
const ENDPOINT_URL: &str = "DEFAULT.endpoint_url";

/// Whether a file or variable among `config`'s sources sets `key`
/// (`section.option`); the defaults are not among them.
fn is_set(config: &config::Config, key: &str) -> bool {
    config.get::<config::Value>(key).is_ok()
}

/// Deserializes, turning serde's wording into "[section] key: ...".
fn deserialize(config: config::Config) -> Result<FaafoConfig, String> {
    refuse_words_as_numbers(&config)?;
    config
        .try_deserialize::<FaafoConfig>()
        .map_err(|e| describe(&e))
}

/// The words the config crate reads as 1 or 0 where a number is expected.
const BOOLEAN_WORDS: [&str; 6] = ["true", "false", "yes", "no", "on", "off"];

/// Refuses a boolean's word given for a number: the config crate reads
/// `yes`, `on` and `true` as 1 (and `no`, `off`, `false` as 0), so
/// `max_attempts = yes` would quietly mean one attempt, where oslo.config,
/// and a reader, take it for the mistake it is.
fn refuse_words_as_numbers(config: &config::Config) -> Result<(), String> {
    for section in FaafoConfig::section_docs() {
        for option in section.options().iter().filter(|o| o.number) {
            let key = format!("{}.{}", section.name(), option.key);
            let Ok(value) = config.get::<config::Value>(&key) else {
                continue;
            };
            if let config::ValueKind::String(text) = &value.kind
                && BOOLEAN_WORDS.contains(&text.to_lowercase().as_str())
            {
                return Err(format!(
                    "[{}] {}: {}",
                    section.name(),
                    option.key,
                    not_a_number(&format!("'{text}'"), option)
                ));
            }
        }
    }
    Ok(())
}

fn clean(e: &config::ConfigError) -> String {
    e.to_string()
}

/// Rewrites a config-crate error as "[section] key: what was expected".
fn describe(e: &config::ConfigError) -> String {
    let text = e.to_string();
    // "unknown field `x`, expected one of `a`, `b` for key `api`"
    if let Some(rest) = text.strip_prefix("unknown field `") {
        let (field, rest) = rest.split_once('`').unwrap_or((rest, ""));
        let (expected, key) = match rest.rsplit_once(" for key `") {
            Some((exp, key)) => (exp, key.trim_end_matches('`')),
            None => (rest, ""),
        };
        let known = expected
            .trim_start_matches(", expected ")
            .trim_start_matches("one of ")
            .replace('`', "");
        return if key.is_empty() {
            format!("unknown section [{field}] (known sections: {known})")
        } else {
            format!("[{key}] unknown option '{field}' (known options: {known})")
        };
    }
    // "invalid type: string \"80x\", expected an integer for key `api.bind_port` in b.conf"
    if let Some((what, key)) = text.split_once(" for key `") {
        let key = key.split('`').next().unwrap_or(key);
        let (section, option) = key.split_once('.').unwrap_or(("DEFAULT", key));
        let what = explain_value(section, option, what).unwrap_or_else(|| what.to_string());
        return format!("[{section}] {option}: {what}");
    }
    text
}

/// Serde's wording of a value of the wrong type or out of its type's range
/// (`invalid type: string "-1", expected an integer`, ``invalid type:
/// 64-bit unsigned integer `70000`, expected an unsigned 16 bit integer``),
/// in words: the value and what the option takes. `None`: not such an error.
fn explain_value(section: &str, option: &str, what: &str) -> Option<String> {
    let rest = what
        .strip_prefix("invalid type: ")
        .or_else(|| what.strip_prefix("invalid value: "))?;
    let (got, expected) = rest.rsplit_once(", expected ")?;
    // The value: a string is shown quoted and escaped, a number in backquotes.
    let value = match got.split_once('"') {
        Some((_, quoted)) => quoted.strip_suffix('"')?,
        None => got.split('`').nth(1)?,
    };
    let number = value.trim().parse::<i128>().is_ok();
    let shown = if number {
        value.trim().to_string()
    } else {
        format!("'{value}'")
    };
    let doc = FaafoConfig::section_docs()
        .iter()
        .find(|s| s.name() == section)
        .and_then(|s| s.options().iter().find(|o| o.key == option).cloned());
    if let Some(doc) = doc.filter(|d| d.whole_range.is_some()) {
        return Some(not_a_number(&shown, &doc));
    }
    match expected {
        "a boolean" => Some(format!(
            "{shown} is not a boolean (true/false, yes/no, on/off or 1/0, in any case)"
        )),
        "a floating point" => Some(format!("{shown} is not a number")),
        _ => None,
    }
}

/// "`shown` is not ...": what number option `option` takes, in words.
fn not_a_number(shown: &str, option: &OptionDoc) -> String {
    match option.whole_range {
        Some((low, high))
            if option.key.ends_with("port") && (low, high) == (0, u16::MAX.into()) =>
        {
            format!("{shown} is not a port number ({low}-{high})")
        }
        // The type's bound is no limit a reader needs (the option's own,
        // if any, is checked with the others).
        Some((0, u64::MAX)) => format!("{shown} is not a whole number (0 or more)"),
        Some((low, high)) => format!("{shown} is not a whole number from {low} to {high}"),
        None => format!("{shown} is not a number"),
    }
}

/// A comma-separated list (`a, b, c`), as oslo.config's ListOpt.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommaList(pub Vec<String>);

impl<'de> Deserialize<'de> for CommaList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            List(Vec<String>),
        }
        Ok(match Raw::deserialize(deserializer)? {
            Raw::Text(s) => CommaList(
                s.split(',')
                    .map(|p| p.trim().to_string())
                    .filter(|p| !p.is_empty())
                    .collect(),
            ),
            Raw::List(v) => CommaList(v),
        })
    }
}

impl fmt::Display for CommaList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join(", "))
    }
}

/// Where faafo keeps its data when `state_path` is not set:
/// `$XDG_DATA_HOME/faafo`, `~/.local/share/faafo`, or `./faafo-data`. A
/// relative `XDG_DATA_HOME` is ignored, as the XDG base directory
/// specification says: the data would follow the working directory.
pub fn default_state_path() -> PathBuf {
    if let Some(xdg) = std::env::var_os("XDG_DATA_HOME").filter(|v| Path::new(v).is_absolute()) {
        return Path::new(&xdg).join("faafo");
    }
    if let Some(home) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        return Path::new(&home).join(".local/share/faafo");
    }
    PathBuf::from("faafo-data")
}

/// This machine's host name (the default worker server name), or `localhost`.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| "localhost".into())
}

/// Sorted `FAAFO_*` environment, for diagnostics.
pub fn faafo_environment() -> BTreeMap<String, String> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .filter(|(k, _)| k.starts_with(ENV_PREFIX))
        .collect()
}

#[cfg(test)]
mod tests;
