//! The flags of `switchboard bench`, and the parsers that turn them into values with
//! errors that say what is wrong and how to write it instead.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// Flags of `switchboard bench`.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "\
Without --target, a daemon of this same binary is started on 127.0.0.1:0 over a fresh \
temporary SQLite file, with the rules of ./rules and the plugins of ./plugins/dist when \
they exist (else none), and stopped at the end.

With --target, the records are created under a per-run id prefix (bench-<seed>-<run>-...) and \
nothing else is touched; at the end the run closes its conversations and sets its \
representatives offline. The token needs the admin role, or pass a supervisor token as --token \
and an integration token as --integration-token.

Several daemons on one database: repeat --target (or give a comma-separated list). Every \
target is checked (it answers, it knows the tokens); the records are created and cleaned up \
through the first, and each target must see them (they share its database). The load is \
spread over the targets: closed-loop worker w sends every call to target w mod N; open-loop \
calls go to the targets in turn.

Exit status: 0 when every call was answered 2xx or with an expected refusal (409, 412, 422); \
1 when any call failed (5xx, another 4xx, transport) or the run could not be set up.")]
pub struct Args {
    /// A running daemon to drive (http://HOST:PORT) instead of starting one; repeat it, or
    /// give a comma-separated list, for several daemons that share one database.
    #[arg(long, value_name = "URL", value_parser = parse_target, value_delimiter = ',')]
    pub target: Vec<reqwest::Url>,
    /// Bearer token for --target: admin, or supervisor with --integration-token.
    #[arg(long, env = "SWITCHBOARD_TOKEN", hide_env_values = true, requires = "target")]
    pub token: Option<String>,
    /// Integration token for --target, when --token is a supervisor's.
    #[arg(long, env = "SWITCHBOARD_INTEGRATION_TOKEN", hide_env_values = true, requires = "target")]
    pub integration_token: Option<String>,
    /// Representatives to create.
    #[arg(long, value_name = "N", default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub representatives: u32,
    /// Queues to create.
    #[arg(long, value_name = "M", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub queues: u32,
    /// Conversations open at the start (each remove is followed by a create, so the pool stays this size).
    #[arg(long, value_name = "K", default_value_t = 2000, value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    pub conversations: u32,
    /// Seed of the synthetic contact center and of the workers' choices.
    #[arg(long, value_name = "S", default_value_t = 42)]
    pub seed: u64,
    /// Calls in flight at once (one worker each); with --rate, at most this many in flight.
    #[arg(long, value_name = "C", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub concurrency: u32,
    /// Open loop: start this many calls per second on a fixed schedule, whatever became of
    /// the ones before, instead of --concurrency workers each waiting for its answer.
    #[arg(long, value_name = "R", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub rate: Option<u32>,
    /// The `limit` of the candidates calls: how many the dialog asks for (1 to 1000), or
    /// `all` to leave it out and get every eligible representative.
    #[arg(long, value_name = "N|all", default_value = "50", value_parser = parse_limit)]
    pub limit: Limit,
    /// How long to measure, e.g. 30s, 500ms, 2m.
    #[arg(long, value_name = "TIME", default_value = "30s", value_parser = parse_run_duration)]
    pub duration: Duration,
    /// Load before measuring starts (not counted), e.g. 2s; 0s for none.
    #[arg(long, value_name = "TIME", default_value = "3s", value_parser = parse_warmup)]
    pub warmup: Duration,
    /// Weights of the kinds of call, e.g. candidates=50,assign=15,transfer=15,release=10,remove=10.
    #[arg(long, value_name = "KIND=W,...", default_value = "candidates=50,assign=15,transfer=15,release=10,remove=10", value_parser = parse_mix)]
    pub mix: Mix,
    /// A second group of calls, paced at --background-rate whatever the main load does,
    /// reported as rows of their own, e.g. put_queue=1,create=1.
    #[arg(long, value_name = "KIND=W,...", value_parser = parse_mix, requires = "background_rate")]
    pub background: Option<Mix>,
    /// Calls per second of the --background group (open loop).
    #[arg(long, value_name = "R", requires = "background", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub background_rate: Option<u32>,
    /// After populating, stop the daemon started here and start it again over the same
    /// database; report the start-up time to `listening on` and its memory (RSS) after.
    #[arg(long, conflicts_with = "target")]
    pub restart: bool,
    /// Wall-clock budget of one plugin call for the daemon started here, e.g. 100ms
    /// (default: the daemon's own, 5ms).
    #[arg(long, value_name = "TIME", conflicts_with = "target", value_parser = parse_plugin_deadline)]
    pub plugin_deadline: Option<Duration>,
    /// Fuel (WebAssembly instructions) of one plugin call for the daemon started here, on
    /// top of the per-candidate fuel (default: the daemon's own, 5000000).
    #[arg(long, value_name = "N", conflicts_with = "target", value_parser = clap::value_parser!(u64).range(1..))]
    pub plugin_fuel: Option<u64>,
    /// Rules folder for the daemon started here (default: ./rules when it exists, else none).
    #[arg(long, value_name = "DIR", conflicts_with = "target")]
    pub rules: Option<PathBuf>,
    /// Plugins folder for the daemon started here (default: ./plugins/dist when it exists, else none).
    #[arg(long, value_name = "DIR", conflicts_with = "target")]
    pub plugins: Option<PathBuf>,
    /// Print one JSON document to stdout instead of the table (no progress bar).
    #[arg(long)]
    pub json: bool,
}

/// A kind of call the workers make, chosen by the weights of the mix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// `GET /v1/conversations/{id}/candidates`: the Assign and Transfer dialogs.
    Candidates,
    Assign,
    Transfer,
    Release,
    /// Remove, then a create that keeps the pool of open conversations at its size.
    Remove,
    /// `POST /v1/conversations`: a new conversation, which joins the pool (also the
    /// replacement after each remove).
    Create,
    /// `PUT /v1/queues/{id}`: one of the run's queues, with its body or its priority changed.
    PutQueue,
    /// `POST /v1/conversations/bulk`: up to 20 held conversations released at once.
    Bulk,
    /// `POST /v1/queues/{id}/distribute`: up to 20 of a run queue's open conversations
    /// to their best candidates.
    Distribute,
}

impl Kind {
    pub const ALL: [Kind; 9] = [
        Kind::Candidates,
        Kind::Assign,
        Kind::Transfer,
        Kind::Release,
        Kind::Remove,
        Kind::Create,
        Kind::PutQueue,
        Kind::Bulk,
        Kind::Distribute,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Candidates => "candidates",
            Kind::Assign => "assign",
            Kind::Transfer => "transfer",
            Kind::Release => "release",
            Kind::Remove => "remove",
            Kind::Create => "create",
            Kind::PutQueue => "put_queue",
            Kind::Bulk => "bulk",
            Kind::Distribute => "distribute",
        }
    }

    /// Whether a call of this kind acts on one of the run's conversations.
    pub fn needs_conversation(self) -> bool {
        !matches!(self, Kind::Create | Kind::PutQueue | Kind::Bulk | Kind::Distribute)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Weights of the kinds of call; a kind not named has weight 0.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mix {
    weights: [u32; Kind::ALL.len()],
}

impl Mix {
    pub fn weight(&self, kind: Kind) -> u32 {
        self.weights[kind as usize]
    }

    pub fn total(&self) -> u64 {
        self.weights.iter().map(|&w| u64::from(w)).sum()
    }

    /// The kind whose share of the total covers `ticket` (0 ≤ ticket < total).
    pub fn pick(&self, mut ticket: u64) -> Kind {
        for kind in Kind::ALL {
            let w = u64::from(self.weight(kind));
            if ticket < w {
                return kind;
            }
            ticket -= w;
        }
        Kind::Candidates
    }
}

impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> =
            Kind::ALL.iter().filter(|&&k| self.weight(k) > 0).map(|k| format!("{k}={}", self.weight(*k))).collect();
        f.write_str(&parts.join(","))
    }
}

const KINDS: &str = "candidates, assign, transfer, release, remove, create, put_queue";

/// `candidates=50,assign=15,...`: every kind at most once, integer weights, at least one above 0.
pub fn parse_mix(s: &str) -> Result<Mix, String> {
    let mut weights = [0u32; Kind::ALL.len()];
    let mut seen = [false; Kind::ALL.len()];
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((name, weight)) = part.split_once('=') else {
            return Err(format!("`{part}` is not KIND=WEIGHT (e.g. candidates=50,assign=15)"));
        };
        let name = name.trim();
        let Some(kind) = Kind::ALL.into_iter().find(|k| k.as_str() == name) else {
            return Err(format!("unknown kind `{name}` (expected one of: {KINDS})"));
        };
        let weight: u32 = weight.trim().parse().map_err(|_| {
            format!("the weight of `{name}` must be a whole number from 0 to 1000000, not `{}`", weight.trim())
        })?;
        if weight > 1_000_000 {
            return Err(format!("the weight of `{name}` must be a whole number from 0 to 1000000, not `{weight}`"));
        }
        if std::mem::replace(&mut seen[kind as usize], true) {
            return Err(format!("`{name}` is given twice"));
        }
        weights[kind as usize] = weight;
    }
    let mix = Mix { weights };
    if mix.total() == 0 {
        return Err(format!("give at least one kind a weight above 0 (kinds: {KINDS})"));
    }
    Ok(mix)
}

/// `30s`, `500ms`, `2m`, `1h`, `1.5s`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let hint = "write a number and a unit, e.g. 30s, 500ms or 2m";
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    if number.is_empty() {
        return Err(format!("`{s}` is not a duration: {hint}"));
    }
    let value: f64 = number.parse().map_err(|_| format!("`{s}` is not a duration: {hint}"))?;
    let seconds = match unit.trim() {
        "ms" => value / 1000.0,
        "s" => value,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        "" => return Err(format!("`{s}` has no unit: {hint}")),
        other => return Err(format!("unknown unit `{other}` in `{s}`: {hint}")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| format!("`{s}` is out of range: {hint}"))
}

/// The `limit` of the candidates calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    At(u32),
    /// No `limit` parameter: every eligible representative.
    All,
}

impl Limit {
    /// The query parameter to append, with its `&`; empty for `all`.
    pub fn query(self) -> String {
        match self {
            Limit::At(n) => format!("&limit={n}"),
            Limit::All => String::new(),
        }
    }

    pub fn to_json(self) -> serde_json::Value {
        match self {
            Limit::At(n) => n.into(),
            Limit::All => "all".into(),
        }
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Limit::At(n) => write!(f, "{n}"),
            Limit::All => f.write_str("all"),
        }
    }
}

/// `1` to `1000` (the API's bounds), or `all`.
pub fn parse_limit(s: &str) -> Result<Limit, String> {
    let s = s.trim();
    if s == "all" {
        return Ok(Limit::All);
    }
    match s.parse::<u32>() {
        Ok(n) if (1..=1000).contains(&n) => Ok(Limit::At(n)),
        _ => Err(format!(
            "`{s}` is not a limit: give a whole number from 1 to 1000 (what the API accepts), or `all` for every eligible representative"
        )),
    }
}

const DAY: Duration = Duration::from_secs(24 * 3600);

fn parse_run_duration(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d < Duration::from_millis(100) {
        return Err(format!("`{s}` is too short to measure: give at least 100ms, e.g. 30s"));
    }
    if d > DAY {
        return Err(format!("`{s}` is longer than a day: give at most 24h"));
    }
    Ok(d)
}

fn parse_warmup(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d > DAY {
        return Err(format!("`{s}` is longer than a day: give at most 24h (or 0s for no warmup)"));
    }
    Ok(d)
}

fn parse_plugin_deadline(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d < Duration::from_millis(1) || d > Duration::from_secs(60) {
        return Err(format!("`{s}` is not a plugin deadline: give 1ms to 60s, e.g. 100ms"));
    }
    Ok(d)
}

fn parse_target(s: &str) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(s)
        .map_err(|e| format!("`{s}` is not a URL ({e}): give the daemon's address, e.g. http://127.0.0.1:7878"))?;
    if url.scheme() != "http" {
        return Err(format!(
            "`{s}`: only http:// is supported (this build has no TLS); bench the daemon on its plain listen address"
        ));
    }
    if url.host_str().is_none() {
        return Err(format!("`{s}` names no host: give e.g. http://127.0.0.1:7878"));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_need_a_unit() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert!(parse_duration("30").unwrap_err().contains("has no unit"));
        assert!(parse_duration("xyz").unwrap_err().contains("not a duration"));
        assert!(parse_duration("3d").unwrap_err().contains("unknown unit `d`"));
        assert!(parse_run_duration("0s").unwrap_err().contains("too short"));
        assert_eq!(parse_warmup("0s").unwrap(), Duration::ZERO);
    }

    #[test]
    fn mixes_name_known_kinds_once() {
        let mix = parse_mix("candidates=50,assign=15,transfer=15,release=10,remove=10").unwrap();
        assert_eq!(mix.total(), 100);
        assert_eq!(mix.pick(0), Kind::Candidates);
        assert_eq!(mix.pick(49), Kind::Candidates);
        assert_eq!(mix.pick(50), Kind::Assign);
        assert_eq!(mix.pick(99), Kind::Remove);
        assert_eq!(mix.to_string(), "candidates=50,assign=15,transfer=15,release=10,remove=10");
        assert_eq!(parse_mix("assign=1").unwrap().pick(0), Kind::Assign);
        assert!(parse_mix("asign=1").unwrap_err().contains("unknown kind `asign`"));
        assert!(parse_mix("assign=1,assign=2").unwrap_err().contains("twice"));
        assert!(parse_mix("assign=x").unwrap_err().contains("whole number"));
        assert!(parse_mix("assign").unwrap_err().contains("KIND=WEIGHT"));
        assert!(parse_mix("assign=0").unwrap_err().contains("at least one"));
        let writes = parse_mix("put_queue=1,create=1").unwrap();
        assert_eq!((writes.pick(0), writes.pick(1)), (Kind::Create, Kind::PutQueue));
        assert!(!Kind::PutQueue.needs_conversation() && Kind::Remove.needs_conversation());
        let batches = parse_mix("bulk=1,distribute=3").unwrap();
        assert_eq!(
            (batches.pick(0), batches.pick(1), batches.pick(3)),
            (Kind::Bulk, Kind::Distribute, Kind::Distribute)
        );
        assert_eq!(batches.to_string(), "bulk=1,distribute=3");
    }

    #[test]
    fn limits_are_the_apis_or_all() {
        assert_eq!(parse_limit("50").unwrap(), Limit::At(50));
        assert_eq!(parse_limit("all").unwrap(), Limit::All);
        assert_eq!(Limit::At(50).query(), "&limit=50");
        assert_eq!(Limit::All.query(), "");
        for bad in ["0", "1001", "many", "-1"] {
            assert!(parse_limit(bad).unwrap_err().contains("from 1 to 1000"), "{bad}");
        }
        assert!(parse_plugin_deadline("0ms").unwrap_err().contains("1ms to 60s"));
        assert_eq!(parse_plugin_deadline("100ms").unwrap(), Duration::from_millis(100));
    }

    #[test]
    fn targets_repeat_or_come_as_a_list() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            args: Args,
        }
        let parse = |argv: &[&str]| {
            <Cli as clap::Parser>::try_parse_from([&["bench"], argv].concat())
                .map(|c| c.args.target.iter().map(|u| u.as_str().trim_end_matches('/').to_owned()).collect::<Vec<_>>())
        };
        let two = ["http://127.0.0.1:1", "http://127.0.0.1:2"];
        assert_eq!(parse(&["--target", two[0], "--target", two[1], "--token", "t"]).unwrap(), two);
        assert_eq!(parse(&["--target", "http://127.0.0.1:1,http://127.0.0.1:2", "--token", "t"]).unwrap(), two);
        assert!(parse(&[]).unwrap().is_empty());
        let e = parse(&["--target", "http://127.0.0.1:1,https://x", "--token", "t"]).unwrap_err().to_string();
        assert!(e.contains("only http://"), "{e}");
        assert!(parse(&["--target", two[0], "--restart"]).is_err(), "--restart needs a daemon started here");
    }

    #[test]
    fn targets_are_plain_http() {
        assert!(parse_target("http://127.0.0.1:7878").is_ok());
        assert!(parse_target("https://x").unwrap_err().contains("only http://"));
        assert!(parse_target("localhost").unwrap_err().contains("not a URL"));
    }
}
