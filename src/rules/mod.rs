//! Declarative TOML routing rules: loading, validation, compilation, evaluation.
//!
//! [`load_dir`] reads every `*.toml` file of `rules_dir` (hidden files skipped),
//! validates them all (reporting every error with file, line and column), and compiles
//! them into a [`RuleSet`], an immutable [`Policy`](crate::routing::Policy) the
//! routing snapshot swaps in as a whole. The format is documented in `docs/rules.md`.

mod compile;
mod eval;
pub mod schema;

use std::path::Path;

use serde::Serialize;

use crate::plugins::PluginSet;

pub use compile::Source;
pub use eval::{PluginVerdicts, RepPass, RepTable, Rule, RuleSet, TableRows};

/// A rule-file error: where, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error, utoipa::ToSchema)]
#[error("{file}:{line}:{column}: {message}")]
pub struct RuleError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl RuleError {
    /// An error at byte `offset` of `text`.
    pub fn at(file: &str, text: &str, offset: usize, message: String) -> Self {
        let before = &text[..offset.min(text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        Self { file: file.to_owned(), line, column, message }
    }

    /// `file:line:column`.
    pub fn location(&self) -> String {
        format!("{}:{}:{}", self.file, self.line, self.column)
    }
}

/// The version of a set of rule files: a digest of their names and contents.
pub fn version_of(sources: &[Source]) -> String {
    if sources.is_empty() {
        return crate::routing::Unrestricted::VERSION.to_owned();
    }
    let mut text = Vec::new();
    for s in sources {
        text.extend_from_slice(s.name.as_bytes());
        text.push(0);
        text.extend_from_slice(s.text.as_bytes());
        text.push(0);
    }
    hex::encode(&crate::auth::sha256(&text)[..6])
}

/// Whether a file in `rules_dir` is a rule file: `*.toml`, not hidden (editor swap and
/// backup files, Kubernetes' `..data` folders).
pub fn is_rule_file(name: &str) -> bool {
    name.ends_with(".toml") && !name.starts_with('.')
}

/// Reads the rule files of `dir`, sorted by name. Errors name the folder or file.
pub fn read_dir(dir: &Path) -> Result<Vec<Source>, Vec<RuleError>> {
    let (sources, errors) = read_sources(dir);
    if errors.is_empty() { Ok(sources) } else { Err(errors) }
}

/// The rule files of `dir` that could be read, sorted by name, and an error for each
/// that could not (or for the folder itself).
fn read_sources(dir: &Path) -> (Vec<Source>, Vec<RuleError>) {
    let shown_dir = dir.display().to_string();
    let fail = |file: &str, message: String| RuleError { file: file.to_owned(), line: 1, column: 1, message };
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            let message = format!("cannot read the rules folder: {e} (create it, or set `rules_dir` in the config)");
            return (Vec::new(), vec![fail(&shown_dir, message)]);
        }
    };
    let prefix = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| is_rule_file(n))
        .collect();
    names.sort();
    let mut sources = Vec::new();
    let mut errors = Vec::new();
    for name in names {
        let path = dir.join(&name);
        let shown = if prefix.is_empty() { name.clone() } else { format!("{prefix}/{name}") };
        // Follows symlinks; a folder named `*.toml` is not a rule file.
        if path.metadata().map(|m| !m.is_file()).unwrap_or(false) {
            continue;
        }
        match std::fs::read_to_string(&path) {
            Ok(text) => sources.push(Source { name: shown, text }),
            Err(e) => errors.push(fail(&shown, format!("cannot read the rule file: {e}"))),
        }
    }
    (sources, errors)
}

/// Validates and compiles rule files that name no plugins.
pub fn compile(sources: &[Source]) -> Result<RuleSet, Vec<RuleError>> {
    compile_with(sources, &PluginSet::default())
}

/// Validates and compiles rule files against the loaded plugins. The version covers
/// the rule files and the plugins' contents.
pub fn compile_with(sources: &[Source], plugins: &PluginSet) -> Result<RuleSet, Vec<RuleError>> {
    let mut version = version_of(sources);
    let shas: Vec<&str> = plugins.iter().map(|p| p.sha256.as_str()).collect();
    if !shas.is_empty() {
        let all = format!("{version}\0{}", shas.join("\0"));
        version = hex::encode(&crate::auth::sha256(all.as_bytes())[..6]);
    }
    compile::compile(sources, version, plugins)
}

/// Reads, validates and compiles the rule files of `dir`. A file that cannot be read
/// does not hide the errors of the others: all come back, in file order.
pub fn load_dir(dir: &Path, plugins: &PluginSet) -> Result<RuleSet, Vec<RuleError>> {
    load_dir_with_sources(dir, plugins).map(|(rules, _)| rules)
}

/// As [`load_dir`], with the rule files the set was compiled from.
pub fn load_dir_with_sources(dir: &Path, plugins: &PluginSet) -> Result<(RuleSet, Vec<Source>), Vec<RuleError>> {
    let (sources, mut errors) = read_sources(dir);
    match compile_with(&sources, plugins) {
        Ok(rules) if errors.is_empty() => Ok((rules, sources)),
        Ok(_) => Err(errors),
        Err(more) => {
            errors.extend(more);
            // Stable: each file's own errors keep their order.
            errors.sort_by(|a, b| a.file.cmp(&b.file));
            Err(errors)
        }
    }
}

/// The JSON Schema of rule files, for editors.
pub fn json_schema() -> String {
    let schema = schemars::schema_for!(schema::RuleFile);
    // Keys sorted whatever serde_json's features are: another crate in the build
    // (cedar-policy in the peer benches) may turn on `preserve_order`.
    // Sorting a plain Value then printing it through `Schema` keeps schemars' own order
    // for the top-level keys (`$schema`, `title`, ...) as in a build without it.
    let mut value = schema.to_value();
    value.sort_all_objects();
    schemars::Schema::try_from(value).ok().and_then(|s| serde_json::to_string_pretty(&s).ok()).unwrap_or_default()
        + "\n"
}
