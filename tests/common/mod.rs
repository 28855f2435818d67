//! Test harness: a daemon on a real socket with a real SQLite file, in-process or as
//! the real binary, and a small JSON client.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // shared by test crates that use parts of it

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode, header::HeaderMap};
use serde_json::{Value, json};
use switchboard::config::Config;
use switchboard::routing::Policy;

pub const SUPERVISOR: &str = "demo-supervisor";
pub const INTEGRATION: &str = "demo-integration";
pub const ADMIN: &str = "demo-admin";

/// The store a test's daemons run on. Tests written once run on both through
/// [`on_both_backends!`]; [`workdir`] makes a PostgreSQL database of the test's own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

thread_local! {
    static BACKEND: std::cell::Cell<Backend> = const { std::cell::Cell::new(Backend::Sqlite) };
    static DATABASES: std::cell::RefCell<Vec<PgDatabase>> = const { std::cell::RefCell::new(Vec::new()) };
}

pub fn backend() -> Backend {
    BACKEND.with(|b| b.get())
}

/// Set to skip the PostgreSQL half of the suite on a machine without PostgreSQL.
pub const NO_POSTGRES: &str = "SWITCHBOARD_TEST_NO_POSTGRES";

/// The server tests make their databases on: `SWITCHBOARD_TEST_POSTGRES`, else the local
/// one every machine of this project runs.
pub fn postgres_server() -> String {
    std::env::var("SWITCHBOARD_TEST_POSTGRES").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned())
}

/// Runs a test's future on `backend`, on a runtime of its own, then drops the
/// PostgreSQL databases it made (also when it panicked).
pub fn on_backend<F: std::future::Future<Output = ()>>(backend: Backend, test: F) {
    if backend == Backend::Postgres && std::env::var_os(NO_POSTGRES).is_some() {
        eprintln!("skipped: {NO_POSTGRES} is set, so this test does not run on PostgreSQL");
        return;
    }
    struct Cleanup;
    impl Drop for Cleanup {
        fn drop(&mut self) {
            DATABASES.with(|d| d.borrow_mut().clear());
        }
    }
    let _cleanup = Cleanup;
    BACKEND.with(|b| b.set(backend));
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(test);
}

/// Declares each `async fn name()` test once and runs it as `sqlite::name` and
/// `postgres::name`.
#[macro_export]
macro_rules! on_both_backends {
    ($( $(#[$attr:meta])* async fn $name:ident() $body:block )*) => {
        $( $(#[$attr])* async fn $name() $body )*
        mod sqlite {
            $( #[test] fn $name() { $crate::common::on_backend($crate::common::Backend::Sqlite, super::$name()) } )*
        }
        mod postgres {
            $( #[test] fn $name() { $crate::common::on_backend($crate::common::Backend::Postgres, super::$name()) } )*
        }
    };
}

/// A PostgreSQL database made for one test, dropped with this value.
pub struct PgDatabase {
    pub name: String,
    pub url: String,
}

fn on_own_runtime<T: Send + 'static>(f: impl std::future::Future<Output = T> + Send + 'static) -> T {
    std::thread::spawn(move || tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f))
        .join()
        .unwrap()
}

async fn admin_connection() -> tokio_postgres::Client {
    let server = postgres_server();
    let (client, connection) = match tokio_postgres::connect(&format!("{server}/postgres"), tokio_postgres::NoTls).await
    {
        Ok(c) => c,
        Err(e) => panic!(
            "PostgreSQL is not reachable at {server} ({e}). These tests need a real PostgreSQL 15: start it \
             with `pg_ctlcluster 15 main start` (trust authentication, user postgres), point \
             SWITCHBOARD_TEST_POSTGRES at another server, or set {NO_POSTGRES}=1 to skip the PostgreSQL \
             half of the suite on a machine without one"
        ),
    };
    tokio::spawn(connection);
    client
}

impl PgDatabase {
    /// A new, empty database on [`postgres_server`].
    pub fn create() -> Self {
        let name = format!("sb_test_{}", uuid::Uuid::new_v4().simple());
        let create = name.clone();
        on_own_runtime(async move {
            admin_connection().await.batch_execute(&format!("CREATE DATABASE {create}")).await.unwrap();
        });
        let url = format!("{}/{name}", postgres_server());
        Self { name, url }
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        // Never panics (it may run while a test unwinds): a database left behind is
        // reported, not fatal.
        let name = self.name.clone();
        let server = postgres_server();
        let result = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            runtime.block_on(async move {
                let (client, connection) =
                    tokio_postgres::connect(&format!("{server}/postgres"), tokio_postgres::NoTls).await.ok()?;
                tokio::spawn(connection);
                client.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await.ok()
            })
        })
        .join();
        if !matches!(result, Ok(Some(()))) {
            eprintln!("the test database {} could not be dropped; drop it by hand", self.name);
        }
    }
}

/// The `database` URL for a new test's daemons on the current backend; a PostgreSQL
/// database lives until the test ends.
pub fn database_url() -> String {
    match backend() {
        Backend::Sqlite => "sqlite://data/sb.db".to_owned(),
        Backend::Postgres => {
            let db = PgDatabase::create();
            let url = db.url.clone();
            DATABASES.with(|d| d.borrow_mut().push(db));
            url
        }
    }
}

/// A config with the three demo tokens; `extra` is appended.
pub fn config_text(extra: &str) -> String {
    config_for(&database_url(), extra)
}

/// A config on `database` with the three demo tokens; `extra` is appended.
pub fn config_for(database: &str, extra: &str) -> String {
    let token = |name: &str, role: &str| {
        let digest = switchboard::auth::sha256(name.as_bytes());
        format!("[[tokens]]\nname = \"{name}\"\nrole = \"{role}\"\nsha256 = \"{}\"\n", hex(&digest))
    };
    format!(
        "listen = \"127.0.0.1:0\"\ndatabase = \"{database}\"\n{extra}\n{}{}{}",
        token(SUPERVISOR, "supervisor"),
        token(INTEGRATION, "integration"),
        token(ADMIN, "admin")
    )
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An answer: status, headers, raw body and the body as JSON (Null when not JSON).
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub text: String,
    pub json: Value,
}

impl Answer {
    pub fn code(&self) -> &str {
        self.json["code"].as_str().unwrap_or("")
    }

    #[track_caller]
    pub fn expect(self, status: u16) -> Self {
        assert_eq!(self.status.as_u16(), status, "unexpected answer: {}", self.text);
        self
    }

    #[track_caller]
    pub fn problem(self, status: u16, code: &str) -> Self {
        assert_eq!(self.status.as_u16(), status, "unexpected answer: {}", self.text);
        assert_eq!(self.code(), code, "unexpected problem: {}", self.text);
        let ct = self.headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
        assert_eq!(ct, "application/problem+json", "{}", self.text);
        assert_eq!(self.json["status"], status, "{}", self.text);
        assert!(self.json["detail"].as_str().is_some_and(|d| !d.is_empty()), "{}", self.text);
        self
    }
}

/// A client of one daemon.
#[derive(Clone)]
pub struct Client {
    pub base: String,
    http: reqwest::Client,
}

impl Client {
    pub fn new(addr: SocketAddr) -> Self {
        Self { base: format!("http://{addr}"), http: reqwest::Client::new() }
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Answer {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b);
        }
        let resp = req.send().await.expect("request failed");
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("body");
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Answer { status, headers, text, json }
    }

    /// A POST whose transport may fail (a daemon killed under it): the status, or `None`.
    pub async fn try_post(&self, path: &str, token: &str, body: Value) -> Option<u16> {
        let req = self.http.post(format!("{}{path}", self.base)).bearer_auth(token);
        let resp = req.header("content-type", "application/json").body(body.to_string()).send().await.ok()?;
        let status = resp.status().as_u16();
        resp.bytes().await.ok()?;
        Some(status)
    }

    pub async fn get(&self, path: &str, token: &str) -> Answer {
        self.send(Method::GET, path, Some(token), &[], None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> Answer {
        self.send(Method::POST, path, Some(token), &[], Some(body.to_string().into_bytes())).await
    }

    pub async fn post_with(&self, path: &str, token: &str, headers: &[(&str, &str)], body: Value) -> Answer {
        self.send(Method::POST, path, Some(token), headers, Some(body.to_string().into_bytes())).await
    }

    pub async fn put(&self, path: &str, token: &str, body: Value) -> Answer {
        self.send(Method::PUT, path, Some(token), &[], Some(body.to_string().into_bytes())).await
    }

    pub async fn patch(&self, path: &str, token: &str, body: Value) -> Answer {
        self.send(Method::PATCH, path, Some(token), &[], Some(body.to_string().into_bytes())).await
    }

    /// Queues `billing` and `support`, representatives `ann` (capacity 3, billing) and
    /// `bob` (capacity 2, support).
    pub async fn seed_directory(&self) {
        self.put("/v1/queues/billing", INTEGRATION, json!({"name": "Billing", "priority": 1})).await.expect(201);
        self.put("/v1/queues/support", INTEGRATION, json!({"name": "Support", "priority": 2, "intent_based": true}))
            .await
            .expect(201);
        self.put(
            "/v1/representatives/ann",
            INTEGRATION,
            json!({"name": "Ann Lee", "presence": "available", "capacity": 3, "skills": {"billing": 8},
                   "queues": ["billing"], "user_groups": ["tier-2"],
                   "intents": [{"family": "billing", "group": "refunds"}]}),
        )
        .await
        .expect(201);
        self.put(
            "/v1/representatives/bob",
            INTEGRATION,
            json!({"name": "Bob Stone", "presence": "busy", "capacity": 2, "skills": {"networking": 5},
                   "queues": ["support"], "user_groups": ["tier-1"], "intents": [{"family": "technical"}]}),
        )
        .await
        .expect(201);
    }

    /// Creates conversation `id` in `billing`, 2 capacity units.
    pub async fn create(&self, id: &str) -> Answer {
        self.post(
            "/v1/conversations",
            INTEGRATION,
            json!({"id": id, "record": {"entity": "case", "id": "CAS-1"}, "queue": "billing", "capacity_units": 2}),
        )
        .await
        .expect(201)
    }

    pub async fn event(&self, id: &str, body: Value) -> Answer {
        self.post(&format!("/v1/conversations/{id}/events"), INTEGRATION, body).await
    }

    pub async fn used_capacity(&self, rep: &str) -> i64 {
        self.get(&format!("/v1/representatives/{rep}"), SUPERVISOR).await.expect(200).json["used_capacity"]
            .as_i64()
            .unwrap()
    }
}

/// A temp folder with a config (the demo tokens plus `extra`) and an empty `rules/`.
pub fn workdir(extra_config: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("switchboard.toml"), config_text(extra_config)).unwrap();
    std::fs::create_dir(dir.path().join("rules")).unwrap();
    dir
}

/// Copies the example rules of `rules/` into `dir/rules` and the example plugins, built
/// from source, into `dir/plugins_dir`: what `demo/run.sh` serves.
pub fn install_demo_rules(dir: &Path, plugins_dir: &str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::create_dir_all(dir.join("rules")).unwrap();
    for entry in std::fs::read_dir(root.join("rules")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            std::fs::copy(&path, dir.join("rules").join(path.file_name().unwrap())).unwrap();
        }
    }
    for (krate, plugin) in [("vip_scoring", "vip-scoring"), ("language_match", "language-match")] {
        install_plugin(&dir.join(plugins_dir), krate, plugin);
    }
}

/// A temp folder set up as the demo is (`demo/run.sh`): the demo tokens, the example
/// rules and plugins, and `seed` (`demo/seed.json` when `None`) loaded at first start.
pub fn demo_workdir(seed: Option<&Path>) -> tempfile::TempDir {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let seed = seed.map_or_else(|| root.join("demo/seed.json"), Path::to_path_buf);
    let seed = seed.to_str().unwrap().replace('\\', "\\\\").replace('"', "\\\"");
    let dir = workdir(&format!("seed = \"{seed}\"\nplugins_dir = \"plugins\"\nplugin_cache = \"cache\"\n"));
    install_demo_rules(dir.path(), "plugins");
    dir
}

/// An in-process daemon: the real router on a real socket over a real SQLite file.
pub struct Daemon {
    pub client: Client,
    pub dir: tempfile::TempDir,
    pub state: switchboard::http::AppState,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Daemon {
    pub async fn start() -> Self {
        Self::start_with("").await
    }

    pub async fn start_with(extra_config: &str) -> Self {
        Self::start_in(workdir(extra_config)).await
    }

    pub async fn start_in(dir: tempfile::TempDir) -> Self {
        let config = Config::load(&dir.path().join("switchboard.toml")).unwrap();
        let state = switchboard::daemon::build(&config).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = Client::new(listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let serve_state = state.clone();
        let task = tokio::spawn(async move {
            switchboard::daemon::serve(listener, serve_state, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        Self { client, dir, state, shutdown: Some(tx), task: Some(task) }
    }

    /// Puts `policy` in force, as a rules reload will.
    pub fn set_policy(&self, policy: impl Policy) {
        self.state.supervisor.routing().replace(Box::new(policy));
    }

    pub async fn stop(mut self) -> tempfile::TempDir {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
        // Let the store's writer thread finish and close the database.
        drop(self.state);
        self.dir
    }
}

/// The real `switchboard` binary, serving `config` from `dir`.
pub struct Process {
    pub child: Child,
    pub client: Client,
}

impl Process {
    pub fn spawn(dir: &Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .args(["serve", "--config"])
            .arg(dir.join("switchboard.toml"))
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addr) = switchboard::daemon::listening_address(&line)
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(addr.to_owned());
                }
            }
        });
        let addr = rx.recv_timeout(Duration::from_secs(60)).expect("the daemon did not log its address");
        Self { child, client: Client::new(addr.parse().unwrap()) }
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill").args([signal, &self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit, at most `limit`.
    pub fn wait(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "the daemon did not exit in time");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A conversation's state in one of the five statuses, held by `ann` where held.
pub async fn conversation_in(client: &Client, id: &str, status: &str) {
    client.create(id).await;
    let accept = json!({"type": "accept", "representative": "ann"});
    let steps: &[Value] = match status {
        "open" => &[],
        "active" => &[accept],
        "waiting" => &[accept, json!({"type": "hold"})],
        "wrap_up" => &[accept, json!({"type": "wrap_up"})],
        "closed" => &[accept, json!({"type": "resolve"})],
        other => panic!("no such status {other}"),
    };
    for step in steps {
        client.event(id, step.clone()).await.expect(200);
    }
    let got = client.get(&format!("/v1/conversations/{id}"), SUPERVISOR).await.expect(200);
    assert_eq!(got.json["status"], status);
}

/// Waits for `cond` with a deadline (no sleeps as synchronisation).
pub async fn eventually<F, Fut>(limit: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !cond().await {
        assert!(Instant::now() < deadline, "condition not met in time");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Builds the plugin workspace (example matchers and test guests) once per test
/// process with the real toolchain, and returns the folder of the built components.
pub fn built_plugins() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let root = Path::new(env!("CARGO_MANIFEST_DIR"));
            let status = Command::new(root.join("plugins/build.sh")).status().expect("running plugins/build.sh");
            assert!(status.success(), "plugins/build.sh failed");
            root.join("plugins/target/wasm32-wasip2/release")
        })
        .clone()
}

/// Builds the Python matchers of `plugins/python` once per test binary with
/// `plugins/build-python.sh` (componentize-py, from PyPI into a venv the first time) and
/// returns the folder of the components. Fails, saying what to install, without python3.
pub fn built_python_plugins() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            const INSTALL: &str = "install Python 3.10 or later with its venv module and pip (Debian: \
                                   `apt-get install -y python3 python3-venv python3-pip`) and let pip reach PyPI";
            let python = Command::new("python3").arg("--version").output();
            assert!(
                python.is_ok_and(|o| o.status.success()),
                "python3 is not installed: the Python matcher is built with componentize-py; {INSTALL}"
            );
            let root = Path::new(env!("CARGO_MANIFEST_DIR"));
            let status =
                Command::new(root.join("plugins/build-python.sh")).status().expect("running plugins/build-python.sh");
            assert!(status.success(), "plugins/build-python.sh failed (its output is above); {INSTALL}");
            root.join("plugins/target/python")
        })
        .clone()
}

/// Copies the built component `crate_name` into `dir` as `<plugin>.wasm`.
pub fn install_plugin(dir: &Path, crate_name: &str, plugin: &str) {
    std::fs::create_dir_all(dir).unwrap();
    let from = built_plugins().join(format!("{crate_name}.wasm"));
    std::fs::copy(&from, dir.join(format!("{plugin}.wasm"))).unwrap();
}
