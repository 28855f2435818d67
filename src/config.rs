//! The daemon's configuration file (TOML). Relative paths resolve against the file's
//! folder; unknown keys are errors that name the key, file, line and column.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::auth::{Role, TokenEntry, Tokens};

/// A configuration error, located in its file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read the config file: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}:{line}:{column}: {message}")]
    Invalid { path: String, line: usize, column: usize, message: String },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default = "default_listen")]
    listen: toml::Spanned<String>,
    #[serde(default = "default_database")]
    database: String,
    #[serde(default = "default_rules_dir")]
    rules_dir: PathBuf,
    #[serde(default = "default_plugins_dir")]
    plugins_dir: PathBuf,
    /// Demo data (JSON) loaded into a database that is empty at start.
    #[serde(default)]
    seed: Option<PathBuf>,
    /// Where compiled plugin code is cached between restarts.
    #[serde(default = "default_plugin_cache")]
    plugin_cache: PathBuf,
    /// Sandbox limits of plugin calls.
    #[serde(default)]
    plugin_limits: crate::plugins::Limits,
    /// Timeouts and connection limits of the HTTP server.
    #[serde(default)]
    server_limits: Option<toml::Spanned<crate::http::ServerLimits>>,
    /// Reload when files in `rules_dir` or `plugins_dir` change.
    #[serde(default = "yes")]
    watch: bool,
    /// Days decision records are kept (`switchboard replay` reads them).
    #[serde(default = "default_decision_retention_days")]
    decision_retention_days: toml::Spanned<u32>,
    #[serde(default)]
    tokens: Vec<toml::Spanned<TokenFile>>,
}

fn default_decision_retention_days() -> toml::Spanned<u32> {
    toml::Spanned::new(0..0, 30)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenFile {
    name: String,
    role: Role,
    sha256: toml::Spanned<String>,
}

fn default_listen() -> toml::Spanned<String> {
    toml::Spanned::new(0..0, "127.0.0.1:7878".to_owned())
}
fn default_database() -> String {
    "sqlite://data/switchboard.db".to_owned()
}
fn default_rules_dir() -> PathBuf {
    "rules".into()
}
fn default_plugins_dir() -> PathBuf {
    "plugins/dist".into()
}
fn yes() -> bool {
    true
}
fn default_plugin_cache() -> PathBuf {
    "data/plugin-cache".into()
}

/// The configuration, with paths resolved.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// `sqlite://PATH`; PATH relative to `base`.
    pub database: String,
    /// The config file's folder.
    pub base: PathBuf,
    pub rules_dir: PathBuf,
    pub plugins_dir: PathBuf,
    pub seed: Option<PathBuf>,
    pub plugin_cache: PathBuf,
    pub plugin_limits: crate::plugins::Limits,
    pub server_limits: crate::http::ServerLimits,
    pub watch: bool,
    /// How long decision records are kept.
    pub decision_retention: std::time::Duration,
    pub tokens: Tokens,
}

/// Where `key = ...` starts in the table whose header is at `table`: the first line of
/// that table (before the next header) that assigns `key`.
fn key_offset(src: &str, table: usize, key: &str) -> Option<usize> {
    let mut offset = table;
    for (i, line) in src.get(table..)?.split_inclusive('\n').enumerate() {
        let trimmed = line.trim_start();
        if i > 0 && trimmed.starts_with('[') {
            return None;
        }
        if let Some(rest) = trimmed.strip_prefix(key)
            && rest.trim_start().starts_with('=')
        {
            return Some(offset + (line.len() - trimmed.len()));
        }
        offset += line.len();
    }
    None
}

fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let before = &src[..offset.min(src.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

impl Config {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let shown = path.display().to_string();
        let src = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: shown.clone(), source })?;
        let folder = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        // Absolute, so paths derived from it stay right whatever the working directory.
        let base = std::path::absolute(folder).map_err(|source| ConfigError::Read { path: shown.clone(), source })?;
        Self::parse(&src, &shown, &base)
    }

    pub fn parse(src: &str, path: &str, base: &Path) -> Result<Self, ConfigError> {
        let invalid = |offset: usize, message: String| {
            let (line, column) = line_col(src, offset);
            ConfigError::Invalid { path: path.to_owned(), line, column, message }
        };
        let file: File =
            toml::from_str(src).map_err(|e| invalid(e.span().map_or(0, |s| s.start), e.message().trim().to_owned()))?;
        let listen = file.listen.get_ref().parse().map_err(|_| {
            invalid(
                file.listen.span().start,
                format!("invalid listen address `{}` (expected IP:PORT, e.g. 127.0.0.1:7878)", file.listen.get_ref()),
            )
        })?;
        let server_limits = match file.server_limits {
            Some(limits) => {
                let span = limits.span();
                let limits = limits.into_inner();
                if let Some((keys, problem)) = limits.problems().into_iter().next() {
                    // At the key the file sets (the first that it does), else the table.
                    let at = keys.iter().find_map(|k| key_offset(src, span.start, k)).unwrap_or(span.start);
                    return Err(invalid(at, format!("[server_limits]: {problem}")));
                }
                limits
            }
            None => crate::http::ServerLimits::default(),
        };
        let days = *file.decision_retention_days.get_ref();
        if !(1..=3650).contains(&days) {
            return Err(invalid(
                file.decision_retention_days.span().start,
                format!("decision_retention_days = {days} is out of range (1 to 3650 days; the default is 30)"),
            ));
        }
        let mut tokens = Vec::new();
        for t in file.tokens {
            let span = t.span();
            let t = t.into_inner();
            let digest = t.sha256.get_ref();
            let mut sha256 = [0u8; 32];
            hex::decode_to_slice(digest, &mut sha256).map_err(|_| {
                invalid(
                    t.sha256.span().start,
                    format!(
                        "token `{}`: sha256 must be 64 hex digits (make one with `switchboard token new --name {} --role {}`)",
                        t.name, t.name, t.role.as_str()
                    ),
                )
            })?;
            if t.name.trim().is_empty() {
                return Err(invalid(span.start, "a token's name must not be empty".to_owned()));
            }
            if let Some(first) = tokens.iter().find(|e: &&TokenEntry| e.sha256 == sha256) {
                return Err(invalid(
                    t.sha256.span().start,
                    format!(
                        "token `{}` has the same sha256 as token `{}`: one bearer token would be both (give each its own token: `switchboard token new --name {} --role {}`)",
                        t.name,
                        first.name,
                        t.name,
                        t.role.as_str()
                    ),
                ));
            }
            tokens.push(TokenEntry { name: t.name, role: t.role, sha256 });
        }
        Ok(Config {
            listen,
            database: file.database,
            base: base.to_owned(),
            rules_dir: base.join(file.rules_dir),
            plugins_dir: base.join(file.plugins_dir),
            seed: file.seed.map(|s| base.join(s)),
            plugin_cache: base.join(file.plugin_cache),
            plugin_limits: file.plugin_limits,
            server_limits,
            watch: file.watch,
            decision_retention: std::time::Duration::from_secs(u64::from(days) * 86_400),
            tokens: Tokens::new(tokens),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(src: &str) -> Result<Config, ConfigError> {
        Config::parse(src, "sb.toml", Path::new("/etc/sb"))
    }

    #[test]
    fn unknown_keys_name_the_key_file_line_and_column() {
        let err = parse("listen = \"127.0.0.1:0\"\nlisten_port = 3\n").unwrap_err().to_string();
        assert!(err.starts_with("sb.toml:2:1: unknown field `listen_port`"), "{err}");
    }

    #[test]
    fn paths_resolve_against_the_config_folder() {
        let c = parse("rules_dir = \"r\"\n").unwrap();
        assert_eq!(c.rules_dir, Path::new("/etc/sb/r"));
        assert_eq!(c.listen.to_string(), "127.0.0.1:7878");
    }

    #[test]
    fn bad_roles_and_digests_are_located() {
        let err = parse("[[tokens]]\nname = \"a\"\nrole = \"boss\"\nsha256 = \"00\"\n").unwrap_err().to_string();
        assert!(err.starts_with("sb.toml:3:8: unknown variant `boss`"), "{err}");
        let err = parse("[[tokens]]\nname = \"a\"\nrole = \"admin\"\nsha256 = \"00\"\n").unwrap_err().to_string();
        assert!(err.starts_with("sb.toml:4:10: token `a`: sha256 must be 64 hex digits"), "{err}");
    }

    #[test]
    fn server_limits_default_and_are_checked() {
        let c = parse("").unwrap();
        assert_eq!(c.server_limits, crate::http::ServerLimits::default());
        let c = parse("[server_limits]\nshutdown_timeout_ms = 2500\n").unwrap();
        assert_eq!(c.server_limits.shutdown_timeout_ms, 2500);
        assert_eq!(c.server_limits.header_timeout_ms, 10_000);
        let err = parse("[server_limits]\nheader_timeout = 5\n").unwrap_err().to_string();
        assert!(err.starts_with("sb.toml:2:1: unknown field `header_timeout`"), "{err}");
        let err =
            parse("\n[server_limits]\nshutdown_timeout_ms = 5\n  body_timeout_ms = 90000\n").unwrap_err().to_string();
        assert!(
            err.starts_with(
                "sb.toml:4:3: [server_limits]: `body_timeout_ms` (90000) must be less than `request_timeout_ms` (60000)"
            ),
            "{err}"
        );
        // Only the other key of the pair is in the file: it is the one pointed at.
        let err = parse("[server_limits]\nrequest_timeout_ms = 10\n").unwrap_err().to_string();
        assert!(err.starts_with("sb.toml:2:1: [server_limits]: `body_timeout_ms` (30000)"), "{err}");
        let err =
            parse("listen = \"127.0.0.1:1\"\n\n[server_limits]\n# slots\nmax_connections=0\n").unwrap_err().to_string();
        assert!(err.starts_with("sb.toml:5:1: [server_limits]: `max_connections` must be at least 1"), "{err}");
    }

    #[test]
    fn two_tokens_with_one_digest_are_refused() {
        let digest = "ab".repeat(32);
        let text = format!(
            "[[tokens]]\nname = \"a\"\nrole = \"admin\"\nsha256 = \"{digest}\"\n\
             [[tokens]]\nname = \"b\"\nrole = \"supervisor\"\nsha256 = \"{digest}\"\n"
        );
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.starts_with("sb.toml:8:10: token `b` has the same sha256 as token `a`"), "{err}");
    }
}
