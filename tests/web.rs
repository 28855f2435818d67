//! The supervisor's web view: the page and its assets as the daemon serves them,
//! `GET /v1/me`, and the page itself driven in a real Chromium (tests/browser/e2e.mjs)
//! against the real binary with the demo data.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{ADMIN, Daemon, INTEGRATION, Process, SUPERVISOR, demo_workdir};
use reqwest::Method;
use serde_json::{Value, json};

/// Set to skip the browser test on a machine without Chromium or Node.js.
const NO_BROWSER: &str = "SWITCHBOARD_TEST_NO_BROWSER";
const CHROMIUM: &str = "/usr/bin/chromium";
/// The page's own files, uncompressed, at most.
const ASSET_BUDGET: usize = 150 * 1024;

const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                      connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn header<'a>(answer: &'a common::Answer, name: &str) -> &'a str {
    answer.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

/// The names after `marker` up to `end` in `text` (`"/assets/` ... `"` in the page,
/// `from './` ... `'` in a module).
fn names_after(text: &str, marker: &str, end: char) -> Vec<String> {
    text.split(marker).skip(1).map(|part| part.split(end).next().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn the_page_needs_no_token_and_carries_a_strict_policy() {
    let d = Daemon::start().await;
    let c = &d.client;
    let page = c.send(Method::GET, "/", None, &[], None).await.expect(200);
    assert_eq!(header(&page, "content-type"), "text/html; charset=utf-8");
    assert_eq!(header(&page, "content-security-policy"), POLICY);
    assert_eq!(header(&page, "x-content-type-options"), "nosniff");
    assert_eq!(header(&page, "cache-control"), "no-cache");
    let etag = header(&page, "etag").to_owned();
    assert!(etag.starts_with('"') && etag.len() > 10, "{etag}");
    // No inline script or style: the policy would block them, so the page must not need them.
    let html = &page.text;
    assert!(html.contains("<script type=\"module\" src=\"/assets/app.js\"></script>"), "{html}");
    assert_eq!(html.matches("<script").count(), 1, "one script, loaded from /assets");
    assert!(
        !html.contains("<style") && !html.contains(" style=") && !html.contains(" onclick="),
        "inline style or handler"
    );
    assert!(!html.contains("http://") && !html.contains("https://"), "the page loads nothing from elsewhere");

    // A browser's revalidation: 304 without a body while the binary serves the same bytes.
    let again = c.send(Method::GET, "/", None, &[("if-none-match", &etag)], None).await.expect(304);
    assert!(again.text.is_empty());
    assert_eq!(header(&again, "etag"), etag);
    c.send(Method::GET, "/", None, &[("if-none-match", "\"other\"")], None).await.expect(200);
    // A token is not needed, and one that is sent changes nothing.
    c.send(Method::GET, "/", Some("not-a-token"), &[], None).await.expect(200);
    d.stop().await;
}

#[tokio::test]
async fn every_asset_is_served_with_its_type_and_all_fit_the_budget() {
    let d = Daemon::start().await;
    let c = &d.client;
    let page = c.send(Method::GET, "/", None, &[], None).await.expect(200);
    // What the page names, then what each module imports, transitively.
    let mut names = names_after(&page.text, "\"/assets/", '"');
    let mut seen = std::collections::HashSet::new();
    names.retain(|n| seen.insert(n.clone()));
    let mut total = page.text.len();
    let mut i = 0;
    while i < names.len() {
        let name = names[i].clone();
        i += 1;
        let a = c.send(Method::GET, &format!("/assets/{name}"), None, &[], None).await.expect(200);
        let wanted = match name.rsplit('.').next().unwrap() {
            "js" => "text/javascript; charset=utf-8",
            "css" => "text/css; charset=utf-8",
            "svg" => "image/svg+xml",
            other => panic!("an asset of unexpected kind `{other}`: {name}"),
        };
        assert_eq!(header(&a, "content-type"), wanted, "{name}");
        assert_eq!(header(&a, "x-content-type-options"), "nosniff", "{name}");
        let etag = header(&a, "etag").to_owned();
        assert!(etag.starts_with('"'), "{name}");
        c.send(Method::GET, &format!("/assets/{name}"), None, &[("if-none-match", &etag)], None).await.expect(304);
        total += a.text.len();
        if name.ends_with(".js") {
            for import in names_after(&a.text, "from './", '\'') {
                if !names.contains(&import) {
                    names.push(import);
                }
            }
        }
    }
    for expected in ["app.css", "app.js", "icon.svg", "grid.js", "live.js", "dialogs.js"] {
        assert!(names.iter().any(|n| n == expected), "{expected} is not referenced: {names:?}");
    }
    // Everything in web/ is served (and so counted): nothing ships that the page does not load.
    let on_disk = std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("web/assets")).unwrap().count();
    assert_eq!(names.len(), on_disk, "served {names:?}");
    assert!(total <= ASSET_BUDGET, "the web view's files are {total} bytes, over the budget of {ASSET_BUDGET}");
    println!("web view assets: {total} bytes uncompressed in {} files", names.len() + 1);
    d.stop().await;
}

#[tokio::test]
async fn web_routes_keep_the_api_conventions() {
    let d = Daemon::start().await;
    let c = &d.client;
    c.send(Method::GET, "/assets/nope.js", None, &[], None).await.problem(404, "not_found");
    c.send(Method::GET, "/assets/..%2Fsrc%2Fmain.rs", None, &[], None).await.problem(404, "not_found");
    c.send(Method::GET, "/assets/a/b.js", None, &[], None).await.problem(404, "not_found");
    c.send(Method::GET, "/index.html", None, &[], None).await.problem(404, "not_found");
    c.send(Method::GET, "/?view=1", None, &[], None).await.problem(400, "bad_request");
    c.send(Method::GET, "/assets/app.js?v=2", None, &[], None).await.problem(400, "bad_request");
    c.send(Method::POST, "/", None, &[], Some(b"{}".to_vec())).await.problem(405, "method_not_allowed");
    c.send(Method::DELETE, "/assets/app.js", None, &[], None).await.problem(405, "method_not_allowed");
    // The OpenAPI document describes them.
    let doc = c.send(Method::GET, "/openapi.json", None, &[], None).await.expect(200).json;
    for path in ["/", "/assets/{file}", "/v1/me"] {
        assert!(doc["paths"][path]["get"].is_object(), "{path} is not in the OpenAPI document");
    }
    assert!(doc["paths"]["/"]["get"].get("security").is_none(), "the page needs no token");
    d.stop().await;
}

#[tokio::test]
async fn me_names_the_token_and_what_its_role_may_do() {
    let d = Daemon::start().await;
    let c = &d.client;
    for (token, role, supervise, integrate, administer) in [
        (SUPERVISOR, "supervisor", true, false, false),
        (INTEGRATION, "integration", false, true, false),
        (ADMIN, "admin", true, true, true),
    ] {
        let me = c.get("/v1/me", token).await.expect(200);
        assert_eq!(header(&me, "content-type"), "application/json");
        assert_eq!(
            me.json,
            json!({"name": token, "role": role,
                   "may": {"supervise": supervise, "integrate": integrate, "administer": administer}})
        );
    }
    let none = c.send(Method::GET, "/v1/me", None, &[], None).await.problem(401, "unauthorized");
    assert_eq!(header(&none, "www-authenticate"), "Bearer");
    c.get("/v1/me", "demo-nobody").await.problem(401, "unauthorized");
    c.get("/v1/me?role=admin", SUPERVISOR).await.problem(400, "bad_request");
    c.send(Method::POST, "/v1/me", Some(SUPERVISOR), &[], None).await.problem(405, "method_not_allowed");
    d.stop().await;
}

#[tokio::test]
async fn a_feed_page_tells_where_to_start_following() {
    let d = Daemon::start().await;
    let c = &d.client;
    let empty = c.get("/v1/changes?limit=1", SUPERVISOR).await.expect(200).json;
    assert_eq!((empty["head"].as_u64(), empty["next_after"].as_u64()), (Some(0), Some(0)), "{empty}");
    c.seed_directory().await;
    c.create("c1").await;
    let all = c.get("/v1/changes?limit=1000", SUPERVISOR).await.expect(200).json;
    let last = all["items"].as_array().unwrap().last().unwrap()["position"].as_u64().unwrap();
    let first = c.get("/v1/changes?limit=1", SUPERVISOR).await.expect(200).json;
    assert_eq!(first["items"].as_array().unwrap().len(), 1);
    assert_eq!(first["head"].as_u64(), Some(last), "head is the last position, whatever the page: {first}");
    // Following the stream from `head` brings the next change and nothing before it.
    let after = c.get(&format!("/v1/changes?after={last}"), SUPERVISOR).await.expect(200).json;
    assert_eq!(after["items"], json!([]));
    d.stop().await;
}

// ---- the page in Chromium

fn tool_missing(what: &str, how: &str) -> ! {
    panic!(
        "{what}. The web view's browser test needs Chromium at {CHROMIUM} and Node.js 20 with npm: {how}. \
         On a machine without them set {NO_BROWSER}=1 to skip this test (CI never sets it)."
    )
}

fn command_works(program: &str, arg: &str) -> bool {
    Command::new(program).arg(arg).output().is_ok_and(|o| o.status.success())
}

/// A seed of the demo's queues and representatives with `n` ongoing conversations.
fn many_conversations_seed(dir: &Path, n: usize) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut seed: Value = serde_json::from_str(&std::fs::read_to_string(root.join("demo/seed.json")).unwrap()).unwrap();
    let queues = ["billing", "tech-support", "vip", "intents"];
    let entities = ["case", "email", "activity"];
    let conversations: Vec<Value> = (0..n)
        .map(|i| {
            let mut c = json!({
                "id": format!("p-{i:04}"),
                "record": {"entity": entities[i % 3], "id": format!("REC-{:05}", 10_000 + i),
                           "title": format!("Customer request number {i} about an order")},
                "queue": queues[i % 4],
                "priority": i % 5,
            });
            if i % 4 == 3 {
                c["intent"] = json!({"family": "technical", "group": "devices"});
            }
            c
        })
        .collect();
    seed["conversations"] = Value::Array(conversations);
    seed["events"] = json!([]);
    let path = dir.join("seed-many.json");
    std::fs::write(&path, seed.to_string()).unwrap();
    path
}

#[test]
fn the_web_view_works_in_a_real_browser() {
    if std::env::var_os(NO_BROWSER).is_some() {
        eprintln!("skipped: {NO_BROWSER} is set, so the web view is not tested in a browser");
        return;
    }
    if !Path::new(CHROMIUM).exists() {
        tool_missing(
            &format!("Chromium is not installed at {CHROMIUM}"),
            "install it with `apt-get install -y chromium` (Debian)",
        );
    }
    if !command_works("node", "--version") || !command_works("npm", "--version") {
        tool_missing("Node.js or npm is not on PATH", "install Node.js 20 (it comes with npm)");
    }
    let browser_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    if !browser_dir.join("node_modules/playwright-core").exists() {
        let out =
            Command::new("npm").args(["ci", "--no-audit", "--no-fund"]).current_dir(&browser_dir).output().unwrap();
        assert!(
            out.status.success(),
            "`npm ci` in tests/browser failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // The demo, as demo/run.sh serves it, and a daemon with 1,000 ongoing conversations.
    let demo_dir = demo_workdir(None);
    let demo = Process::spawn(demo_dir.path());
    let scratch = tempfile::tempdir().unwrap();
    let many = many_conversations_seed(scratch.path(), 1000);
    let perf_dir = demo_workdir(Some(&many));
    let perf = Process::spawn(perf_dir.path());

    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("web");
    std::fs::create_dir_all(&shots).unwrap();
    let out = Command::new("node")
        .arg("e2e.mjs")
        .current_dir(&browser_dir)
        .env("SB_URL", &demo.client.base)
        .env("SB_PERF_URL", &perf.client.base)
        .env("SB_SUPERVISOR_TOKEN", SUPERVISOR)
        .env("SB_INTEGRATION_TOKEN", INTEGRATION)
        .env("SB_CHROMIUM", CHROMIUM)
        .env("SB_SCREENSHOTS", &shots)
        .env("SB_RULES_DIR", demo_dir.path().join("rules"))
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    println!("{stdout}");
    assert!(out.status.success(), "the browser test failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("first render of 1000 conversations"), "{stdout}");
    println!("screenshots in {}", shots.display());
}
