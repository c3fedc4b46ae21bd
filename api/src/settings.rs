//! What faafo-api takes from the configuration, parsed once at start-up.

use std::path::PathBuf;

use faafo_common::configuration::FaafoConfig;

use crate::domain::Limits;

/// Who may do what.
#[derive(Clone, PartialEq, Eq)]
pub enum AuthPolicy {
    /// Anyone may read and write (`auth_strategy = noauth`).
    NoAuth,
    /// Writes need an `X-Auth-Token` among `tokens`; reads too with
    /// `protect_reads`.
    Token {
        /// Accepted tokens.
        tokens: Vec<String>,
        /// Whether reads need a token too.
        protect_reads: bool,
    },
}

impl std::fmt::Debug for AuthPolicy {
    /// Never shows the tokens.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuthPolicy::NoAuth => f.write_str("NoAuth"),
            AuthPolicy::Token {
                tokens,
                protect_reads,
            } => f
                .debug_struct("Token")
                .field("tokens", &format_args!("<{} tokens>", tokens.len()))
                .field("protect_reads", protect_reads)
                .finish(),
        }
    }
}

/// Where images are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageStoreKind {
    /// In the `fractal_image` table.
    Database,
    /// As files in this directory.
    Filesystem(PathBuf),
}

/// The API's settings.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// Who may do what.
    pub auth: AuthPolicy,
    /// Caps on new fractals.
    pub limits: Limits,
    /// Default page size.
    pub results_per_page: u32,
    /// Largest page size.
    pub max_results_per_page: u32,
    /// Largest request body, bytes.
    pub max_body_size: usize,
    /// Where images are kept.
    pub image_store: ImageStoreKind,
}

impl ApiSettings {
    /// The settings of a (validated) configuration.
    pub fn from_config(config: &FaafoConfig) -> Self {
        let api = &config.api;
        let auth = if api.auth_strategy == "token" {
            AuthPolicy::Token {
                tokens: api.auth_tokens.0.clone(),
                protect_reads: api.protect_reads,
            }
        } else {
            AuthPolicy::NoAuth
        };
        let image_store = if api.image_store == "filesystem" {
            ImageStoreKind::Filesystem(if api.image_dir.is_empty() {
                config.state_path().join("images")
            } else {
                PathBuf::from(&api.image_dir)
            })
        } else {
            ImageStoreKind::Database
        };
        Self {
            auth,
            limits: Limits {
                pixel_limit: config.default.pixel_limit,
                iteration_limit: config.default.iteration_limit,
            },
            results_per_page: api.results_per_page,
            max_results_per_page: api.max_results_per_page,
            max_body_size: usize::try_from(api.max_body_size).unwrap_or(usize::MAX),
            image_store,
        }
    }
}
