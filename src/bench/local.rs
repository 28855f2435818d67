//! The daemon a bench run starts when it is given no `--target`: this same binary as a
//! child process (`switchboard serve`), so what is measured is exactly what operators
//! run, in its own process with its own async runtime, over real HTTP on 127.0.0.1:0.
//! Its folder is a fresh temporary directory (config, SQLite file, plugin cache) removed
//! at the end; its log is kept in memory and shown if it fails to start. `--restart`
//! stops it (SIGTERM, as an operator would) and starts it again over the same folder.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// Where a folder given to the daemon came from, for the summary.
#[derive(Clone, Debug)]
pub struct Folder {
    /// `None`: no folder, an empty one is used.
    pub path: Option<PathBuf>,
    /// How it was chosen: `--rules`, `default ./rules`, ...
    pub how: String,
}

impl Folder {
    /// `flag` when given; else `default` when it is a folder in the working directory; else none.
    pub fn choose(given: Option<&Path>, flag: &str, default: &str) -> anyhow::Result<Self> {
        if let Some(dir) = given {
            if !dir.is_dir() {
                bail!(
                    "{flag} {}: no such folder (give the folder that holds the {})",
                    dir.display(),
                    if flag == "--rules" { "*.toml rule files" } else { "*.wasm plugin components" }
                );
            }
            let path = std::path::absolute(dir).with_context(|| format!("{flag} {}", dir.display()))?;
            return Ok(Self { path: Some(path), how: flag.to_owned() });
        }
        if Path::new(default).is_dir() {
            let path = std::path::absolute(default).with_context(|| format!("./{default}"))?;
            return Ok(Self { path: Some(path), how: format!("default ./{default}") });
        }
        Ok(Self { path: None, how: format!("none: no ./{default} here; pass {flag} DIR") })
    }

    pub fn describe(&self) -> String {
        match &self.path {
            Some(p) => format!("{} ({})", p.display(), self.how),
            None => self.how.clone(),
        }
    }
}

/// A `switchboard serve` child process.
pub struct LocalDaemon {
    child: Child,
    pub base: String,
    /// An admin token made for this run.
    pub token: String,
    log: Arc<Mutex<VecDeque<String>>>,
    config: PathBuf,
    rules: Folder,
    _dir: tempfile::TempDir,
}

const LOG_LINES: usize = 200;

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

impl LocalDaemon {
    /// Starts the daemon and waits until it listens; gives up when `interrupted` is set
    /// (Ctrl-C), killing it. `plugin_deadline` and `plugin_fuel` override the daemon's
    /// budgets of a plugin call.
    pub fn start(
        rules: &Folder,
        plugins: &Folder,
        (plugin_deadline, plugin_fuel): (Option<Duration>, Option<u64>),
        interrupted: &AtomicBool,
    ) -> anyhow::Result<Self> {
        let dir =
            tempfile::Builder::new().prefix("switchboard-bench-").tempdir().context("making a temporary folder")?;
        let folder = |f: &Folder, name: &str| -> anyhow::Result<PathBuf> {
            match &f.path {
                Some(p) => Ok(p.clone()),
                None => {
                    let empty = dir.path().join(name);
                    std::fs::create_dir(&empty).with_context(|| format!("making {}", empty.display()))?;
                    Ok(empty)
                }
            }
        };
        let rules_dir = folder(rules, "rules")?;
        let plugins_dir = folder(plugins, "plugins")?;
        let (token, digest) = crate::auth::new_token().context("reading the OS random source")?;
        let mut limits = String::new();
        if plugin_deadline.is_some() || plugin_fuel.is_some() {
            limits.push_str("\n[plugin_limits]\n");
        }
        if let Some(d) = plugin_deadline {
            limits.push_str(&format!("deadline_ms = {}\n", d.as_millis().max(1)));
        }
        if let Some(fuel) = plugin_fuel {
            limits.push_str(&format!("fuel = {fuel}\n"));
        }
        let config = format!(
            "listen = \"127.0.0.1:0\"\ndatabase = \"sqlite://bench.db\"\nrules_dir = {}\nplugins_dir = {}\n\
             plugin_cache = \"plugin-cache\"\nwatch = false\n\n[[tokens]]\nname = \"bench\"\nrole = \"admin\"\nsha256 = \"{digest}\"\n{limits}",
            toml_string(&rules_dir.to_string_lossy()),
            toml_string(&plugins_dir.to_string_lossy()),
        );
        let config_path = dir.path().join("switchboard.toml");
        std::fs::write(&config_path, config).with_context(|| format!("writing {}", config_path.display()))?;
        let (child, log, rx) = spawn(&config_path)?;
        let mut daemon =
            Self { child, base: String::new(), token, log, config: config_path, rules: rules.clone(), _dir: dir };
        daemon.wait_listening(&rx, interrupted)?;
        Ok(daemon)
    }

    /// Stops the daemon (SIGTERM, then waits for it to exit) and starts it again over the
    /// same folder and database; how long from starting the process to `listening on`.
    pub fn restart(&mut self, interrupted: &AtomicBool) -> anyhow::Result<Duration> {
        self.terminate()?;
        let started = Instant::now();
        let (child, log, rx) = spawn(&self.config)?;
        (self.child, self.log) = (child, log);
        self.wait_listening(&rx, interrupted)?;
        Ok(started.elapsed())
    }

    /// SIGTERM, the daemon's graceful shutdown; a kill after 60 s.
    fn terminate(&mut self) -> anyhow::Result<()> {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().context("running `kill -TERM`")?;
        if !sent.success() {
            bail!("could not signal the daemon (pid {pid}) to stop: `kill -TERM {pid}` exited with {sent}");
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.child.try_wait().context("waiting for the daemon")?.is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                bail!("the daemon did not stop within 60 s of SIGTERM; killed it");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }

    /// Waits for the `listening on` line (sent on `rx`), the daemon's exit, a timeout or
    /// an interrupt.
    fn wait_listening(
        &mut self,
        rx: &std::sync::mpsc::Receiver<String>,
        interrupted: &AtomicBool,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(addr) => {
                    self.base = format!("http://{addr}");
                    return Ok(());
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    if interrupted.load(Ordering::Relaxed) {
                        bail!("interrupted while the daemon was starting");
                    }
                    if let Some(status) = self.child.try_wait().context("waiting for the daemon")? {
                        return Err(self.failed(&format!("the daemon exited ({status}) before listening")));
                    }
                    if Instant::now() > deadline {
                        return Err(self.failed("the daemon did not listen within 180 s"));
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    // Its stderr closed: it is exiting. Let the reader store the last lines.
                    let status = self.child.wait().context("waiting for the daemon")?;
                    std::thread::sleep(Duration::from_millis(50));
                    return Err(self.failed(&format!("the daemon exited ({status}) before listening")));
                }
            }
        }
    }

    fn failed(&self, what: &str) -> anyhow::Error {
        let log: Vec<String> = self.log.lock().unwrap_or_else(|e| e.into_inner()).iter().cloned().collect();
        let mut text = format!("{what}; its log:\n");
        for line in &log {
            text.push_str("  | ");
            text.push_str(line);
            text.push('\n');
        }
        if log.iter().any(|l| l.contains("is not loaded")) {
            text.push_str(&format!(
                "hint: the rules in {} use plugins that are not built. Run `plugins/build.sh` (it fills plugins/dist), \
                 pass --plugins DIR with the built components, or pass --rules DIR with rules that need no plugins.",
                self.rules.path.as_deref().map_or_else(|| "use".to_owned(), |p| p.display().to_string())
            ));
        }
        anyhow::anyhow!(text.trim_end().to_owned())
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops the daemon. Its data is thrown away, so there is nothing to finish: kill it.
    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for LocalDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `serve` child of this binary over `config`: the process, its last log lines, and a
/// channel that receives its address once it logs `listening on`.
type Spawned = (Child, Arc<Mutex<VecDeque<String>>>, std::sync::mpsc::Receiver<String>);

fn spawn(config: &Path) -> anyhow::Result<Spawned> {
    let exe = std::env::current_exe().context("finding the switchboard binary")?;
    let mut command = Command::new(&exe);
    command
        .args(["serve", "--config"])
        .arg(config)
        // Start-up lines and problems only: per-request logging would cost the daemon time.
        .env("RUST_LOG", "warn,switchboard::daemon=info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // Its own process group: Ctrl-C stops the bench (which then reports and stops the
    // daemon) rather than the daemon under a run still in flight.
    #[cfg(unix)]
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let mut child = command.spawn().with_context(|| format!("starting {} serve", exe.display()))?;

    let log = Arc::new(Mutex::new(VecDeque::new()));
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    if let Some(stderr) = child.stderr.take() {
        let log = log.clone();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addr) = crate::daemon::listening_address(&line)
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(addr.to_owned());
                }
                let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
                if log.len() == LOG_LINES {
                    log.pop_front();
                }
                log.push_back(line);
            }
        });
    }
    Ok((child, log, rx))
}

/// A process's resident memory (VmRSS) in MiB; Linux only.
pub fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: f64 =
        status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kib / 1024.0)
}

/// CPU seconds (user + system) a process has used so far; Linux only.
pub fn cpu_seconds(pid: Option<u32>) -> Option<f64> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/stat"),
        None => "/proc/self/stat".to_owned(),
    };
    let stat = std::fs::read_to_string(path).ok()?;
    // Fields after the command name (which may hold spaces), from field 3 on.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // USER_HZ: 100 on every Linux the kernel ABI exposes to userspace.
    Some((utime + stime) / 100.0)
}
