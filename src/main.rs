//! The `switchboard` command: `serve`, `migrate`, `check`, `test`, `replay`, `schema`, `openapi`, `bench`,
//! `plugin inspect`, `plugin new`, `plugin test`, `token new`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use switchboard::auth::Role;
use switchboard::config::Config;
use switchboard::daemon;

#[derive(Parser)]
#[command(name = "switchboard", version, about = "Routing engine for contact-center supervisors")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start the daemon.
    Serve {
        /// The config file (TOML).
        #[arg(long, default_value = "switchboard.toml")]
        config: PathBuf,
        /// Overrides `listen` from the config file.
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// Create or upgrade the database's schema (`serve` does it too), then exit.
    Migrate {
        /// The config file (TOML) naming `database`.
        #[arg(long, default_value = "switchboard.toml")]
        config: PathBuf,
    },
    /// Validate the routing rules (like `nginx -t`): exit 0 with a summary, or 1 with every error.
    Check {
        /// The config file (TOML) naming `rules_dir` and `plugins_dir`.
        #[arg(long, default_value = "switchboard.toml")]
        config: PathBuf,
        /// Check this rules folder (a draft) instead of the config's `rules_dir`, with the config's plugins.
        #[arg(long)]
        rules: Option<PathBuf>,
    },
    /// Run the rule tests of `<rules>/tests/*.toml`: one line per test, a diff per failure; exit 1 on failure.
    Test {
        /// The config file (TOML) naming `rules_dir` and `plugins_dir`.
        #[arg(long, default_value = "switchboard.toml")]
        config: PathBuf,
        /// Test this rules folder (a draft) instead of the config's `rules_dir`; its `tests/` are run.
        #[arg(long)]
        rules: Option<PathBuf>,
        /// Run only the tests whose name or file contains this text.
        #[arg(long)]
        filter: Option<String>,
        /// `text` (default) or `json` (for tooling).
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Evaluate past assign and transfer decisions under a draft of the rules: what it would refuse, by rule.
    Replay {
        /// The config file (TOML) naming `database` and `plugins_dir`.
        #[arg(long, default_value = "switchboard.toml")]
        config: PathBuf,
        /// The draft rules folder.
        #[arg(long)]
        rules: PathBuf,
        /// Decisions made at or after this time (RFC 3339; default: the oldest kept).
        #[arg(long)]
        since: Option<String>,
        /// Decisions made before this time (RFC 3339; default: now).
        #[arg(long)]
        until: Option<String>,
        /// `text` (default) or `json` (for tooling).
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Print the JSON Schema of rule files (for editors; `rules/schema.json` is this output).
    Schema,
    /// Print the OpenAPI 3 document the daemon serves at `/openapi.json` (`docs/openapi.json` is this output).
    Openapi,
    /// Benchmark routing over real HTTP: a synthetic contact center, a mix of calls, latency percentiles.
    Bench(Box<switchboard::bench::Args>),
    /// Matcher plugins: start one, test it on a fixture, look inside a component before installing it.
    Plugin {
        #[command(subcommand)]
        command: PluginCmd,
    },
    /// Manage bearer tokens.
    Token {
        #[command(subcommand)]
        command: TokenCmd,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Format {
    Text,
    Json,
}

#[derive(Subcommand)]
enum PluginCmd {
    /// Make a matcher crate in the plugins workspace that builds as it stands, with a fixture
    /// for `plugin test` and a README of the commands that build, test and install it.
    New {
        /// Its name (crate, folder and plugin): lowercase letters, digits and `-`.
        name: String,
        /// The plugins workspace: the folder of its Cargo.toml, whose `members` get the crate.
        #[arg(long, default_value = "plugins")]
        dir: PathBuf,
    },
    /// Run a component on a fixture through the daemon's plugin host and limits: each
    /// candidate's verdict, the time of a call, fuel and memory; exit 1 when the plugin fails
    /// or an expectation of the fixture is not met.
    Test {
        /// The component (`.wasm`).
        file: PathBuf,
        /// The fixture (TOML): conversation, candidates, config, expectations (plugins/README.md).
        #[arg(long)]
        fixture: PathBuf,
        /// The config given to `init` (JSON), instead of the fixture's `config`.
        #[arg(long)]
        config: Option<String>,
        /// How many times the batch is judged; the time shown is the median.
        #[arg(long, default_value_t = 25)]
        repeat: usize,
        /// A daemon config file whose `[plugin_limits]` apply (default: the default limits).
        #[arg(long)]
        config_file: Option<PathBuf>,
        /// `text` (default) or `json`.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// What a component exports, its size and digest, whether this daemon loads it, and the
    /// request fields its `init` asks for with a config; exit 1 when it cannot be used.
    Inspect {
        /// The component (`.wasm`).
        file: PathBuf,
        /// A rule's `[rule.plugin] config`, as JSON, to run `init` with.
        #[arg(long)]
        config: Option<String>,
        /// `text` (default) or `json`.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
}

#[derive(Subcommand)]
enum TokenCmd {
    /// Print a fresh random token once, and the `[[tokens]]` stanza that holds its SHA-256.
    New {
        /// The actor recorded in history.
        #[arg(long)]
        name: String,
        #[arg(long, value_enum)]
        role: Role,
    },
}

/// The config, with `rules` (a draft folder) in place of its `rules_dir` when given.
fn config_with_rules(path: &std::path::Path, rules: Option<PathBuf>) -> anyhow::Result<Config> {
    let mut config = Config::load(path)?;
    if let Some(rules) = rules {
        anyhow::ensure!(rules.is_dir(), "--rules `{}` is not a folder of rule files", rules.display());
        config.rules_dir = rules;
    }
    Ok(config)
}

/// Loads the rules and plugins `config` names, or every error of them.
fn load_routing(config: &Config) -> anyhow::Result<switchboard::routing::Routing> {
    Ok(switchboard::routing::Routing::load(daemon::sources(config)?).map_err(daemon::RulesInvalid)?)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(cli.command, Cmd::Plugin { command: PluginCmd::Test { .. } }) {
        // `plugin test` reports the guest's output and failures itself; the log shows warnings.
        use tracing_subscriber::prelude::*;
        let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
            tracing_subscriber::EnvFilter::new(
                "warn,switchboard::plugins::guest_io=off,switchboard::plugins::failure=off",
            )
        });
        let log = tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
        tracing_subscriber::registry().with(log.with_filter(filter)).init();
    } else {
        tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
            )
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init();
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Cmd::Check { config, rules } => {
            let config = config_with_rules(&config, rules)?;
            let routing = load_routing(&config)?;
            let status = routing.status();
            let plugins: Vec<String> = status.plugins.iter().map(|p| p.name.clone()).collect();
            switchboard::outln!(
                "ok: {} rules in {} files from {}, {} plugins ({}), version {}",
                status.rules.len(),
                status.files.len(),
                config.rules_dir.display(),
                plugins.len(),
                if plugins.is_empty() { "none".to_owned() } else { plugins.join(", ") },
                status.version
            );
            Ok(())
        }
        Cmd::Test { config, rules, filter, format } => {
            let config = config_with_rules(&config, rules)?;
            let routing = load_routing(&config)?;
            let report = switchboard::ruletest::run(&routing.snapshot(), &config.rules_dir, filter.as_deref())
                .map_err(|errors| {
                    let lines: Vec<String> = errors.iter().map(|e| format!("  {e}")).collect();
                    anyhow::anyhow!("the rule tests are invalid ({} errors):\n{}", errors.len(), lines.join("\n"))
                })?;
            match format {
                Format::Text => switchboard::out!("{}", report.text()),
                Format::Json => switchboard::outln!("{}", serde_json::to_string_pretty(&report)?),
            }
            anyhow::ensure!(report.failed == 0, "{} of {} rule tests failed", report.failed, report.tests.len());
            anyhow::ensure!(!report.tests.is_empty(), "no rule test matched the filter");
            Ok(())
        }
        Cmd::Migrate { config } => {
            let config = Config::load(&config)?;
            let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            let version = runtime
                .block_on(switchboard::store::migrate(&config.database, &config.base))
                .with_context(|| format!("migrating the database `{}`", config.database))?;
            switchboard::outln!("ok: the database `{}` is at schema version {version}", config.database);
            Ok(())
        }
        Cmd::Replay { config, rules, since, until, format } => {
            let time = |flag: &str, t: Option<String>, default: i64| -> anyhow::Result<i64> {
                match t {
                    None => Ok(default),
                    Some(t) => switchboard::clock::parse_ms(&t).ok_or_else(|| {
                        anyhow::anyhow!("--{flag} `{t}` is not an RFC 3339 time (e.g. 2026-12-01T00:00:00Z)")
                    }),
                }
            };
            let since_ms = time("since", since, 0)?;
            let until_ms = time("until", until, switchboard::clock::now_ms() + 1)?;
            let config = config_with_rules(&config, Some(rules))?;
            if let Some(path) = config.database.strip_prefix("sqlite://") {
                let path = config.base.join(path);
                anyhow::ensure!(path.exists(), "no database at `{}`: replay reads an existing one", path.display());
            }
            let routing = load_routing(&config)?;
            let draft = routing.snapshot();
            let plugins = routing.plugins();
            let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            let report = runtime.block_on(async {
                let store = switchboard::store::open(&config.database, &config.base)
                    .await
                    .with_context(|| format!("opening the database `{}`", config.database))?;
                let report =
                    switchboard::replay::run(store.as_ref(), draft.as_ref().as_ref(), &plugins, since_ms, until_ms)
                        .await
                        .context("reading the decision records")?;
                anyhow::Ok(report)
            })?;
            match format {
                Format::Text => switchboard::out!("{}", report.text()),
                Format::Json => switchboard::outln!("{}", serde_json::to_string_pretty(&report)?),
            }
            Ok(())
        }
        Cmd::Plugin { command: PluginCmd::Inspect { file, config, format } } => {
            let host = switchboard::plugins::PluginHost::new(switchboard::plugins::Limits::default(), None)
                .context("starting the plugin engine")?;
            let inspection = host.inspect(&file, config.as_deref()).map_err(|e| anyhow::anyhow!("{e}"))?;
            match format {
                Format::Json => switchboard::outln!("{}", serde_json::to_string_pretty(&inspection)?),
                Format::Text => {
                    let i = &inspection;
                    switchboard::outln!("plugin    `{}` when installed as {}.wasm", i.name, i.name);
                    switchboard::outln!("file      {} bytes, sha256 {}", i.bytes, i.sha256);
                    switchboard::outln!(
                        "exports   {}",
                        if i.exports.is_empty() { "(none)".to_owned() } else { i.exports.join(", ") }
                    );
                    match &i.loadable {
                        Ok(()) => switchboard::outln!("loads     yes: this daemon calls {}", i.expected),
                        Err(why) => switchboard::outln!("loads     no: {why}"),
                    }
                    match &i.needs {
                        None if i.loadable.is_ok() => {
                            switchboard::outln!("needs     (give --config JSON to run init and see what it asks for)")
                        }
                        None => {}
                        Some(Ok(needs)) if needs.is_empty() => {
                            switchboard::outln!("needs     nothing beyond the conversation")
                        }
                        Some(Ok(needs)) => switchboard::outln!("needs     {}", needs.join(", ")),
                        Some(Err(why)) => switchboard::outln!("init      refused: {why}"),
                    }
                }
            }
            anyhow::ensure!(inspection.loadable.is_ok(), "this daemon cannot load `{}`", file.display());
            anyhow::ensure!(!matches!(inspection.needs, Some(Err(_))), "init refused the config");
            Ok(())
        }
        Cmd::Plugin { command: PluginCmd::New { name, dir } } => {
            let created = switchboard::scaffold::create(&name, &dir)?;
            switchboard::outln!("created {}", created.dir.display());
            for file in &created.files {
                switchboard::outln!("  {}", file.display());
            }
            switchboard::outln!(
                "\nnext, from the repository's root (also in {}):",
                created.dir.join("README.md").display()
            );
            for command in &created.next {
                switchboard::outln!("  {command}");
            }
            Ok(())
        }
        Cmd::Plugin { command: PluginCmd::Test { file, fixture, config, repeat, config_file, format } } => {
            use switchboard::plugintest;
            let limits = match config_file {
                Some(path) => Config::load(&path)?.plugin_limits,
                None => switchboard::plugins::Limits::default(),
            };
            let config = config.as_deref().map(plugintest::config_arg).transpose()?;
            let fixture = plugintest::read(&fixture)?;
            let options = plugintest::Options { config, repeat, limits };
            let report = plugintest::run(&file, &fixture, &options)?;
            match format {
                Format::Text => switchboard::out!("{}", report.text()),
                Format::Json => switchboard::outln!("{}", serde_json::to_string_pretty(&report)?),
            }
            if let Some(e) = report.error.as_ref().filter(|_| !report.passed) {
                anyhow::bail!("plugin `{}` failed ({}): {}", report.plugin, e.stage, e.what);
            }
            anyhow::ensure!(
                report.passed,
                "{} of {} expectations of {} failed",
                report.failures.len(),
                report.expectations,
                report.fixture
            );
            Ok(())
        }
        Cmd::Openapi => {
            switchboard::outln!("{}", serde_json::to_string_pretty(&switchboard::http::openapi::document())?);
            Ok(())
        }
        Cmd::Schema => {
            switchboard::out!("{}", switchboard::rules::json_schema());
            Ok(())
        }
        Cmd::Serve { config, listen } => {
            let mut config = Config::load(&config)?;
            if let Some(addr) = listen {
                config.listen = addr;
            }
            let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            runtime.block_on(async {
                let state = daemon::build(&config).await?;
                let listener = tokio::net::TcpListener::bind(config.listen)
                    .await
                    .with_context(|| format!("binding {}", config.listen))?;
                daemon::serve(listener, state, daemon::shutdown_signal()).await
            })
        }
        Cmd::Bench(args) => switchboard::bench::run(*args),
        Cmd::Token { command: TokenCmd::New { name, role } } => {
            let (token, digest) = switchboard::auth::new_token().context("reading the OS random source")?;
            switchboard::outln!("token: {token}");
            switchboard::outln!("(shown once: give it to `{name}`; the daemon keeps only its SHA-256)");
            switchboard::outln!();
            switchboard::outln!("[[tokens]]");
            switchboard::outln!("name = {}", toml_string(&name));
            switchboard::outln!("role = \"{}\"", role.as_str());
            switchboard::outln!("sha256 = \"{digest}\"");
            Ok(())
        }
    }
}

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}
