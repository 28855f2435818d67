//! The HTTP contract: authentication and roles, every error code, lists and filters,
//! candidates, idempotency, and the unauthenticated endpoints.
#![allow(clippy::unwrap_used)]

mod common;

use common::{ADMIN, Daemon, INTEGRATION, SUPERVISOR, conversation_in};
use reqwest::Method;
use serde_json::{Value, json};
use switchboard::domain::{Queue, Reason, Representative};
use switchboard::routing::{Policy, RoutingContext, ScorePart, Verdict};

/// Excludes representatives whose presence is not `available`, and every queue named
/// `Blocked`; ranks representatives by capacity (one part, with `explain`).
struct AvailableOnly;

impl Policy for AvailableOnly {
    fn version(&self) -> &str {
        "test-available-only"
    }

    fn representatives(&self, ctx: RoutingContext<'_>, reps: &[&Representative]) -> Vec<Verdict> {
        reps.iter()
            .map(|r| {
                if r.input.presence == switchboard::domain::Presence::Available {
                    let score = f64::from(r.input.capacity);
                    let part = ScorePart {
                        rule: "by-capacity".into(),
                        by: "capacity",
                        skill: None,
                        plugin: None,
                        value: Some(score),
                        weight: Some(1.0),
                        points: score,
                    };
                    Verdict::Eligible { score, parts: if ctx.explain { vec![part] } else { Vec::new() } }
                } else {
                    Verdict::Excluded {
                        reasons: vec![Reason {
                            rule: "available-only".into(),
                            detail: format!("presence `{}` is not one of available", r.input.presence.as_str()),
                        }],
                    }
                }
            })
            .collect()
    }

    fn queues(&self, _: RoutingContext<'_>, queues: &[&Queue]) -> Vec<Verdict> {
        queues.iter().map(|_| Verdict::eligible(0.0)).collect()
    }
}

on_both_backends! {
async fn missing_or_unknown_tokens_are_401_with_www_authenticate() {
    let daemon = Daemon::start().await;
    let c = &daemon.client;
    for token in [None, Some("nope"), Some("")] {
        let a = c.send(Method::GET, "/v1/conversations", token, &[], None).await.problem(401, "unauthorized");
        assert_eq!(a.headers.get("www-authenticate").unwrap(), "Bearer");
    }
    let a = c.send(Method::GET, "/v1/conversations", None, &[("authorization", "Basic YTpi")], None).await;
    a.problem(401, "unauthorized");
    // 401 comes before 413 and 400. The daemon answers without reading the 2 MiB body;
    // it then closes its side and drops what the client still sends, so the client
    // finishes sending and reads the 401 (not a broken pipe), every time.
    let big = vec![b'x'; 2 << 20];
    for attempt in 0..5 {
        let resp = reqwest::Client::new()
            .post(format!("{}/v1/conversations", c.base))
            .header("content-type", "application/json")
            .body(big.clone())
            .send()
            .await
            .unwrap_or_else(|e| panic!("attempt {attempt}: the 401 was not read: {e:?}"));
        assert_eq!(resp.status(), 401);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["code"], "unauthorized");
    }
}

async fn each_role_may_do_what_the_contract_says() {
    let daemon = Daemon::start().await;
    let c = &daemon.client;
    c.seed_directory().await;
    conversation_in(c, "c1", "open").await;
    // (method, path, body, roles allowed)
    let calls: Vec<(Method, &str, Value, &[&str])> = vec![
        (Method::GET, "/v1/conversations", Value::Null, &[SUPERVISOR, INTEGRATION, ADMIN]),
        (Method::GET, "/v1/representatives", Value::Null, &[SUPERVISOR, INTEGRATION, ADMIN]),
        (Method::GET, "/v1/queues/billing", Value::Null, &[SUPERVISOR, INTEGRATION, ADMIN]),
        (Method::POST, "/v1/conversations/c1/assign", json!({"queue": "billing"}), &[SUPERVISOR, ADMIN]),
        (Method::POST, "/v1/conversations/c1/transfer", json!({"queue": "billing"}), &[SUPERVISOR, ADMIN]),
        (Method::POST, "/v1/conversations/c1/release", json!({}), &[SUPERVISOR, ADMIN]),
        (
            Method::POST,
            "/v1/conversations",
            json!({"record": {"entity": "case", "id": "X"}, "queue": "billing"}),
            &[INTEGRATION, ADMIN],
        ),
        (Method::PUT, "/v1/queues/q9", json!({"name": "Q9"}), &[INTEGRATION, ADMIN]),
        (Method::PATCH, "/v1/representatives/ann", json!({"capacity": 4}), &[INTEGRATION, ADMIN]),
        (Method::POST, "/v1/conversations/c1/events", json!({"type": "hold"}), &[INTEGRATION, ADMIN]),
    ];
    for (method, path, body, allowed) in calls {
        for token in [SUPERVISOR, INTEGRATION, ADMIN] {
            let body = (!body.is_null()).then(|| body.to_string().into_bytes());
            let a = c.send(method.clone(), path, Some(token), &[], body).await;
            if allowed.contains(&token) {
                assert_ne!(a.status.as_u16(), 403, "{token} {method} {path}: {}", a.text);
                assert_ne!(a.status.as_u16(), 401, "{token} {method} {path}: {}", a.text);
            } else {
                a.problem(403, "forbidden");
            }
        }
    }
    // 403 comes before 413.
    let big = vec![b'x'; 2 << 20];
    c.send(Method::POST, "/v1/conversations", Some(SUPERVISOR), &[], Some(big)).await.problem(403, "forbidden");
}

async fn malformed_requests_are_400_with_a_useful_detail() {
    let daemon = Daemon::start().await;
    let c = &daemon.client;
    c.seed_directory().await;
    conversation_in(c, "c1", "open").await;
    let raw = |body: &str| Some(body.as_bytes().to_vec());
    // (method, path, body, token, a phrase the detail must contain)
    type Case<'a> = (Method, &'a str, Option<Vec<u8>>, &'a str, &'a str);
    let cases: Vec<Case> = vec![
        (Method::POST, "/v1/conversations/c1/assign", raw("{"), SUPERVISOR, "malformed JSON"),
        (Method::POST, "/v1/conversations/c1/assign", raw("[]"), SUPERVISOR, "JSON object"),
        (
            Method::POST,
            "/v1/conversations/c1/assign",
            raw(r#"{"queue":"billing","x":1}"#),
            SUPERVISOR,
            "unknown field `x`",
        ),
        (
            Method::POST,
            "/v1/conversations/c1/assign",
            raw(r#"{"queue":"billing","representative":"ann"}"#),
            SUPERVISOR,
            "not both",
        ),
        (Method::POST, "/v1/conversations/c1/assign", raw("{}"), SUPERVISOR, "give the target"),
        (Method::POST, "/v1/conversations/c1/assign", raw(r#"{"queue":"bad id"}"#), SUPERVISOR, "invalid id `bad id`"),
        (
            Method::POST,
            "/v1/conversations/c1/assign",
            raw(r#"{"queue":"billing","note":5}"#),
            SUPERVISOR,
            "invalid type",
        ),
        (Method::POST, "/v1/conversations/bad%20id/release", None, SUPERVISOR, "in the path"),
        (Method::POST, "/v1/conversations/%FF/release", None, SUPERVISOR, "UTF-8"),
        (Method::GET, "/v1/representatives/%C3", None, SUPERVISOR, "UTF-8"),
        (Method::PUT, "/v1/queues/q", raw(r#"{"name":"Q","priority":5.0}"#), INTEGRATION, "floating point"),
        (Method::PUT, "/v1/queues/q", raw(r#"{"name":"Q","priority":true}"#), INTEGRATION, "invalid type"),
        (Method::PUT, "/v1/queues/q", raw(r#"{"name":"Q","priority":-1}"#), INTEGRATION, "invalid value"),
        (Method::PUT, "/v1/queues/q", raw(r#"{"priority":1}"#), INTEGRATION, "missing field `name`"),
        (Method::PUT, "/v1/queues/q", raw(r#"{"name":"Q","version":3}"#), INTEGRATION, "unknown field `version`"),
        (
            Method::PUT,
            "/v1/representatives/r",
            raw(r#"{"name":"R","presence":"availble"}"#),
            INTEGRATION,
            "unknown variant `availble`",
        ),
        (Method::PUT, "/v1/representatives/r", raw(r#"{"name":"R","skills":{"a":11}}"#), INTEGRATION, "0-10"),
        (Method::PUT, "/v1/representatives/r", raw(r#"{"name":"R","queues":["ghost"]}"#), INTEGRATION, "queue `ghost`"),
        (
            Method::PUT,
            "/v1/representatives/r",
            raw(r#"{"name":"R","intents":[{"group":"g"}]}"#),
            INTEGRATION,
            "missing field `family`",
        ),
        (
            Method::PUT,
            "/v1/representatives/r",
            raw(r#"{"name":"R","attributes":{"a":[1]}}"#),
            INTEGRATION,
            "string, number or boolean",
        ),
        (Method::PATCH, "/v1/representatives/ann", raw(r#"{"capacity":null}"#), INTEGRATION, "null"),
        (
            Method::POST,
            "/v1/conversations",
            raw(r#"{"record":{"entity":"case","id":"X"},"queue":"ghost"}"#),
            INTEGRATION,
            "queue `ghost` does not exist",
        ),
        (
            Method::POST,
            "/v1/conversations",
            raw(r#"{"record":{"entity":"Case","id":"X"},"queue":"billing"}"#),
            INTEGRATION,
            "entity",
        ),
        (
            Method::POST,
            "/v1/conversations",
            raw(r#"{"record":{"id":"X"},"queue":"billing"}"#),
            INTEGRATION,
            "missing field `entity`",
        ),
        (
            Method::POST,
            "/v1/conversations",
            raw(r#"{"record":{"entity":"case","id":"X"},"queue":"billing","status":"open"}"#),
            INTEGRATION,
            "unknown field `status`",
        ),
        (
            Method::POST,
            "/v1/conversations/c1/release",
            raw(&format!(r#"{{"note":"{}"}}"#, "n".repeat(1001))),
            SUPERVISOR,
            "1001",
        ),
        (Method::GET, "/v1/conversations?stauts=open", None, SUPERVISOR, "unknown query parameter `stauts`"),
        (Method::GET, "/v1/conversations?status=gone", None, SUPERVISOR, "`status`"),
        (Method::GET, "/v1/conversations?queue=a&queue=b", None, SUPERVISOR, "only once"),
        (Method::GET, "/v1/conversations?limit=0", None, SUPERVISOR, "1 to 1000"),
        (Method::GET, "/v1/conversations?limit=1001", None, SUPERVISOR, "1 to 1000"),
        (Method::GET, "/v1/conversations?cursor=zzz", None, SUPERVISOR, "next_cursor"),
        (Method::GET, "/v1/representatives?presence=here", None, SUPERVISOR, "presence"),
        (Method::GET, "/v1/conversations/c1/candidates?target=queue", None, SUPERVISOR, "`action` is required"),
        (Method::GET, "/v1/conversations/c1/candidates?action=assign", None, SUPERVISOR, "`target` is required"),
        (
            Method::GET,
            "/v1/conversations/c1/candidates?action=assign&target=queue&skill=a",
            None,
            SUPERVISOR,
            "`skill`",
        ),
        (
            Method::GET,
            "/v1/conversations/c1/candidates?action=assign&target=representative&priority=1",
            None,
            SUPERVISOR,
            "`priority`",
        ),
    ];
    for (method, path, body, token, needle) in cases {
        let a = c.send(method.clone(), path, Some(token), &[], body).await.problem(400, "bad_request");
        let detail = a.json["detail"].as_str().unwrap();
        assert!(detail.contains(needle), "{method} {path}: `{detail}` lacks `{needle}`");
    }
    // Nothing changed.
    let conv = c.get("/v1/conversations/c1", SUPERVISOR).await.expect(200);
    assert_eq!(conv.json["version"], 1);
    c.get("/v1/representatives/r", SUPERVISOR).await.problem(404, "not_found");
    c.get("/v1/queues/q", SUPERVISOR).await.problem(404, "not_found");
}

async fn error_codes_and_their_order() {
    let daemon = Daemon::start().await;
    let c = &daemon.client;
    c.seed_directory().await;
    conversation_in(c, "c1", "open").await;
    // 404 conversation, before 412 and 409.
    c.post_with("/v1/conversations/ghost/release", SUPERVISOR, &[("if-match", "\"9\"")], json!({}))
        .await
        .problem(404, "not_found");
    // 412 before 409: c1 is open (release is 409) but the version is wrong.
    c.post_with("/v1/conversations/c1/release", SUPERVISOR, &[("if-match", "\"9\"")], json!({}))
        .await
        .problem(412, "version_mismatch");
    c.post_with("/v1/conversations/c1/release", SUPERVISOR, &[("if-match", "\"1\"")], json!({}))
        .await
        .problem(409, "invalid_transition");
    // 409 status before 404 target.
    conversation_in(c, "c2", "wrap_up").await;
    c.post("/v1/conversations/c2/transfer", SUPERVISOR, json!({"representative": "ghost"}))
        .await
        .problem(409, "invalid_transition");
    // 404 target.
    c.post("/v1/conversations/c1/assign", SUPERVISOR, json!({"representative": "ghost"}))
        .await
        .problem(404, "not_found");
    c.post("/v1/conversations/c1/assign", SUPERVISOR, json!({"queue": "ghost"})).await.problem(404, "not_found");
    // If-Match with the current version applies, and the ETag follows.
    let a = c
        .post_with(
            "/v1/conversations/c1/assign",
            SUPERVISOR,
            &[("if-match", "\"1\"")],
            json!({"representative": "ann"}),
        )
        .await
        .expect(200);
    assert_eq!(a.headers.get("etag").unwrap(), "\"2\"");
    c.post_with("/v1/conversations/c1/release", SUPERVISOR, &[("if-match", "not-a-version")], json!({}))
        .await
        .problem(400, "bad_request");
    // already_exists.
    c.post(
        "/v1/conversations",
        INTEGRATION,
        json!({"id": "c1", "record": {"entity": "case", "id": "X"}, "queue": "billing"}),
    )
    .await
    .problem(409, "already_exists");
    // 405, unknown paths, 413.
    c.send(Method::DELETE, "/v1/conversations/c1", Some(SUPERVISOR), &[], None)
        .await
        .problem(405, "method_not_allowed");
    c.send(Method::GET, "/v1/nothing", Some(SUPERVISOR), &[], None).await.problem(404, "not_found");
    let big = format!(r#"{{"name":"{}"}}"#, "x".repeat(1 << 20)).into_bytes();
    c.send(Method::PUT, "/v1/queues/big", Some(INTEGRATION), &[], Some(big)).await.problem(413, "payload_too_large");
    // 413 comes before 400 (bad path id and malformed body).
    let big = vec![b'{'; (1 << 20) + 1];
    c.send(Method::PUT, "/v1/queues/bad%20id", Some(INTEGRATION), &[], Some(big))
        .await
        .problem(413, "payload_too_large");
}

async fn rules_in_force_decide_eligibility_and_are_recorded() {
    let daemon = Daemon::start().await;
    let c = &daemon.client;
    c.seed_directory().await;
    conversation_in(c, "c1", "open").await;
    daemon.set_policy(AvailableOnly);
    let a = c.post("/v1/conversations/c1/assign", SUPERVISOR, json!({"representative": "bob"})).await;
    let a = a.problem(422, "not_eligible");
    assert_eq!(a.json["reasons"][0]["rule"], "available-only");
    assert_eq!(a.json["reasons"][0]["detail"], "presence `busy` is not one of available");
    assert_eq!(c.get("/v1/conversations/c1", SUPERVISOR).await.json["version"], 1, "unchanged");
    let cands =
        c.get("/v1/conversations/c1/candidates?action=assign&target=representative&explain=true", SUPERVISOR).await;
    let cands = cands.expect(200).json;
    assert_eq!(cands["ruleset"], "test-available-only");
    assert_eq!(
        cands["candidates"],
        json!([{"id": "ann", "name": "Ann Lee", "score": 3.0, "score_parts": [
            {"rule": "by-capacity", "by": "capacity", "value": 3.0, "weight": 1.0, "points": 3.0}]}])
    );
    assert_eq!(cands["excluded"][0]["id"], "bob");
    c.post("/v1/conversations/c1/assign", SUPERVISOR, json!({"representative": "ann"})).await.expect(200);
    let history = c.get("/v1/conversations/c1/history", SUPERVISOR).await.json;
    assert_eq!(history["events"][1]["ruleset"], "test-available-only");
}

async fn candidates_filter_rank_and_leave_out_the_holder() {
    let daemon = Daemon::start().await;
    let c = &daemon.client;
    c.seed_directory().await;
    c.put("/v1/representatives/abe", INTEGRATION, json!({"name": "Abe", "presence": "offline", "queues": ["billing"]}))
        .await
        .expect(201);
    conversation_in(c, "c1", "active").await;
    let ids = |v: &Value| -> Vec<String> {
        v["candidates"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap().to_owned()).collect()
    };
    let base = "/v1/conversations/c1/candidates?action=transfer&target=representative";
    let all = c.get(base, SUPERVISOR).await.expect(200).json;
    assert_eq!(ids(&all), ["abe", "bob"], "ann holds it; equal scores order by name");
    assert!(all.get("excluded").is_none(), "excluded only with explain=true");
    let cases = [
        ("&name=STO", vec!["bob"]),
        ("&queue=billing", vec!["abe"]),
        ("&skill=networking", vec!["bob"]),
        ("&skill=networking&skill=billing", vec![]),
        ("&presence=offline&presence=busy", vec!["abe", "bob"]),
        ("&presence=available", vec![]),
        ("&user_group=tier-1", vec!["bob"]),
        ("&intent_family=technical", vec!["bob"]),
        ("&intent_family=billing", vec![]),
        ("&queue=no-such-queue", vec![]),
    ];
    for (filter, want) in cases {
        let got = c.get(&format!("{base}{filter}"), SUPERVISOR).await.expect(200).json;
        assert_eq!(ids(&got), want, "{filter}");
    }
    let queues = "/v1/conversations/c1/candidates?action=transfer&target=queue";
    assert_eq!(ids(&c.get(queues, SUPERVISOR).await.expect(200).json), ["billing", "support"]);
    assert_eq!(ids(&c.get(&format!("{queues}&intent_based=true"), SUPERVISOR).await.json), ["support"]);
    assert_eq!(ids(&c.get(&format!("{queues}&priority=1"), SUPERVISOR).await.json), ["billing"]);
    assert_eq!(ids(&c.get(&format!("{queues}&name=bill"), SUPERVISOR).await.json), ["billing"]);
    // Assign is not allowed from `active`.
    c.get("/v1/conversations/c1/candidates?action=assign&target=queue", SUPERVISOR)
        .await
        .problem(409, "invalid_transition");
    c.get("/v1/conversations/ghost/candidates?action=assign&target=queue", SUPERVISOR).await.problem(404, "not_found");
}

async fn lists_are_paged_oldest_first_and_filtered() {
    let daemon = Daemon::start().await;
    let c = &daemon.client;
    c.seed_directory().await;
    for i in 0..7 {
        c.create(&format!("c{i}")).await;
    }
    c.post("/v1/conversations/c1/remove", SUPERVISOR, json!({})).await.expect(200);
    c.post("/v1/conversations/c2/assign", SUPERVISOR, json!({"representative": "ann"})).await.expect(200);
    c.post("/v1/conversations/c3/assign", SUPERVISOR, json!({"queue": "support"})).await.expect(200);
    let mut seen = Vec::new();
    let mut path = "/v1/conversations?limit=2".to_owned();
    loop {
        let page = c.get(&path, SUPERVISOR).await.expect(200).json;
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 2);
        seen.extend(items.iter().map(|i| i["id"].as_str().unwrap().to_owned()));
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v1/conversations?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, ["c0", "c2", "c3", "c4", "c5", "c6"], "closed is not in the default view");
    let ids = |path: &str| {
        let c = c.clone();
        let path = path.to_owned();
        async move {
            let v = c.get(&path, SUPERVISOR).await.expect(200).json;
            v["items"].as_array().unwrap().iter().map(|i| i["id"].as_str().unwrap().to_owned()).collect::<Vec<_>>()
        }
    };
    assert_eq!(ids("/v1/conversations?status=closed").await, ["c1"]);
    assert_eq!(ids("/v1/conversations?status=active&status=closed").await, ["c1", "c2"]);
    assert_eq!(ids("/v1/conversations?representative=ann").await, ["c2"]);
    assert_eq!(ids("/v1/conversations?queue=support").await, ["c3"]);
    assert_eq!(ids("/v1/conversations?entity=email").await, Vec::<String>::new());
    assert_eq!(ids("/v1/conversations?intent_based=true").await, Vec::<String>::new());
    assert_eq!(ids("/v1/conversations?intent_based=false&limit=1").await, ["c0"]);
    assert_eq!(ids("/v1/representatives?name=ann").await, ["ann"]);
    assert_eq!(ids("/v1/representatives?presence=busy&presence=available").await, ["ann", "bob"]);
    assert_eq!(ids("/v1/representatives?skill=billing&queue=billing&user_group=tier-2").await, ["ann"]);
    assert_eq!(ids("/v1/representatives?limit=1").await, ["ann"]);
    assert_eq!(ids("/v1/queues?intent_based=true").await, ["support"]);
    assert_eq!(ids("/v1/queues?priority=1").await, ["billing"]);
    let conv = c.get("/v1/conversations/c2", SUPERVISOR).await.expect(200);
    assert_eq!(conv.headers.get("etag").unwrap(), "\"2\"");
}

async fn directory_put_creates_then_replaces_and_patch_merges() {
    let daemon = Daemon::start().await;
    let c = &daemon.client;
    c.seed_directory().await;
    let a = c.put("/v1/representatives/zed", INTEGRATION, json!({"name": "Zed"})).await.expect(201);
    assert_eq!(a.headers.get("location").unwrap(), "/v1/representatives/zed");
    assert_eq!(a.json["presence"], "offline");
    assert_eq!(a.json["capacity"], 0);
    assert_eq!(a.json["free_capacity"], 0);
    assert_eq!(a.json["version"], 1);
    let a = c.put("/v1/representatives/zed", INTEGRATION, json!({"name": "Zed", "capacity": 2})).await.expect(200);
    assert_eq!(a.json["version"], 2);
    let a = c.patch("/v1/representatives/zed", INTEGRATION, json!({"presence": "available"})).await.expect(200);
    assert_eq!(a.json["capacity"], 2, "patch keeps the other fields");
    assert_eq!(a.json["presence"], "available");
    c.patch("/v1/representatives/ghost", INTEGRATION, json!({"capacity": 1})).await.problem(404, "not_found");
    let q = c.patch("/v1/queues/billing", INTEGRATION, json!({"priority": 7})).await.expect(200);
    assert_eq!(q.json["name"], "Billing");
    assert_eq!(q.json["priority"], 7);
    // Over-assignment is allowed and shows as negative free capacity.
    conversation_in(c, "c1", "active").await;
    c.patch("/v1/representatives/ann", INTEGRATION, json!({"capacity": 1})).await.expect(200);
    let ann = c.get("/v1/representatives/ann", SUPERVISOR).await.json;
    assert_eq!((ann["used_capacity"].as_i64(), ann["free_capacity"].as_i64()), (Some(2), Some(-1)));
}

async fn idempotency_keys_replay_the_first_answer() {
    let daemon = Daemon::start().await;
    let c = &daemon.client;
    c.seed_directory().await;
    let body = json!({"record": {"entity": "email", "id": "E-1"}, "queue": "billing"});
    let first = c.post_with("/v1/conversations", INTEGRATION, &[("idempotency-key", "k1")], body.clone()).await;
    let first = first.expect(201);
    // Same request, keys in another order: JSON-equal, so the first answer comes back.
    let reordered = json!({"queue": "billing", "record": {"id": "E-1", "entity": "email"}});
    let again = c.post_with("/v1/conversations", INTEGRATION, &[("idempotency-key", "k1")], reordered).await;
    assert_eq!(again.status.as_u16(), 201);
    assert_eq!(again.text, first.text);
    let all = c.get("/v1/conversations", SUPERVISOR).await.json;
    assert_eq!(all["items"].as_array().unwrap().len(), 1, "created once");
    // Same key, other request.
    let other = json!({"record": {"entity": "email", "id": "E-2"}, "queue": "billing"});
    c.post_with("/v1/conversations", INTEGRATION, &[("idempotency-key", "k1")], other)
        .await
        .problem(409, "idempotency_key_reused");
    // Keys are per token: the admin's k1 is another key.
    c.post_with("/v1/conversations", ADMIN, &[("idempotency-key", "k1")], body).await.expect(201);
    // Refusals are not remembered: the retry after fixing the state succeeds.
    let id = first.json["id"].as_str().unwrap();
    let release = format!("/v1/conversations/{id}/release");
    c.post_with(&release, SUPERVISOR, &[("idempotency-key", "r1")], json!({})).await.problem(409, "invalid_transition");
    c.event(id, json!({"type": "accept", "representative": "ann"})).await.expect(200);
    let r = c.post_with(&release, SUPERVISOR, &[("idempotency-key", "r1")], json!({})).await.expect(200);
    let r2 = c.post_with(&release, SUPERVISOR, &[("idempotency-key", "r1")], json!({})).await.expect(200);
    assert_eq!(r.text, r2.text);
    let history = c.get(&format!("/v1/conversations/{id}/history"), SUPERVISOR).await.json;
    assert_eq!(history["events"].as_array().unwrap().len(), 3, "created, accept, one release");
    c.post_with(&release, SUPERVISOR, &[("idempotency-key", "")], json!({})).await.problem(400, "bad_request");
}

async fn unauthenticated_endpoints() {
    let daemon = Daemon::start().await;
    let c = &daemon.client;
    let h = c.send(Method::GET, "/healthz", None, &[], None).await.expect(200);
    assert_eq!(h.json, json!({"status": "ok"}));
    c.seed_directory().await;
    conversation_in(c, "c1", "open").await;
    c.post("/v1/conversations/c1/remove", SUPERVISOR, json!({})).await.expect(200);
    let m = c.send(Method::GET, "/metrics", None, &[], None).await.expect(200);
    assert!(m.text.contains("http_requests_total"), "{}", m.text);
    assert!(m.text.contains(r#"route="/v1/conversations/{id}/remove""#), "{}", m.text);
    assert!(m.text.contains("http_request_duration_seconds"), "{}", m.text);
    assert!(m.text.contains(r#"switchboard_actions_total{action="remove",outcome="ok"}"#), "{}", m.text);
    let doc = c.send(Method::GET, "/openapi.json", None, &[], None).await.expect(200).json;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in
        ["/v1/conversations", "/v1/conversations/{id}/transfer", "/v1/conversations/{id}/candidates", "/v1/queues/{id}"]
    {
        assert!(doc["paths"].get(path).is_some(), "{path} missing from the OpenAPI document");
    }
    assert!(doc["components"]["schemas"].get("Conversation").is_some());
    // The copy in the repository is what the daemon serves.
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/openapi.json");
    let copy: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert!(
        copy == doc,
        "docs/openapi.json is stale: regenerate it with `cargo run -- openapi > docs/openapi.json`"
    );
    assert!(h.headers.get("x-request-id").is_some(), "every answer carries its request id");
}

async fn random_bytes_never_get_a_5xx() {
    let daemon = Daemon::start().await;
    let c = &daemon.client;
    c.seed_directory().await;
    conversation_in(c, "c1", "active").await;
    let paths = [
        "/v1/conversations",
        "/v1/conversations/c1",
        "/v1/conversations/c1/assign",
        "/v1/conversations/c1/transfer",
        "/v1/conversations/c1/release",
        "/v1/conversations/c1/remove",
        "/v1/conversations/c1/events",
        "/v1/conversations/c1/candidates",
        "/v1/representatives/ann",
        "/v1/queues/billing",
    ];
    // A small deterministic generator: the same bytes every run.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for round in 0..40u32 {
        for path in paths {
            let len = (next() % 300) as usize;
            let mut body: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if round.is_multiple_of(4) {
                // Valid JSON objects with random keys and values get further into the checks.
                body = format!(r#"{{"k{}": {}, "queue": "q{}"}}"#, next() % 5, next() % 3, next() % 3).into_bytes();
            }
            for (method, token) in [(Method::POST, ADMIN), (Method::PUT, ADMIN), (Method::PATCH, INTEGRATION)] {
                let a = c.send(method.clone(), path, Some(token), &[], Some(body.clone())).await;
                assert!(a.status.as_u16() < 500, "{method} {path}: {} {}", a.status, a.text);
            }
            let q = format!("{path}?{}", String::from_utf8_lossy(&body[..body.len().min(20)]).replace(['#', ' '], "x"));
            let a = c.send(Method::GET, &q, Some(SUPERVISOR), &[], None).await;
            assert!(a.status.as_u16() < 500, "GET {q}: {} {}", a.status, a.text);
        }
    }
    c.get("/healthz", SUPERVISOR).await.expect(200);
}

async fn the_directory_read_for_candidates_shows_every_change() {
    // Listing representatives decodes each one's document once per version; every
    // change must still show at once, in the list and in the candidates dialog.
    let d = Daemon::start().await;
    let c = &d.client;
    c.seed_directory().await;
    c.create("c1").await.expect(201);
    let ann = |list: &Value| list["items"].as_array().unwrap().iter().find(|r| r["id"] == "ann").cloned().unwrap();
    let candidate_names = |answer: &Value| -> Vec<String> {
        answer["candidates"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap().to_owned()).collect()
    };
    let dialog = "/v1/conversations/c1/candidates?action=assign&target=representative";

    let list = c.get("/v1/representatives", SUPERVISOR).await.expect(200).json;
    assert_eq!(ann(&list)["skills"], json!({"billing": 8}));
    assert!(candidate_names(&c.get(dialog, SUPERVISOR).await.expect(200).json).contains(&"Ann Lee".to_owned()));

    c.patch("/v1/representatives/ann", INTEGRATION, json!({"name": "Ann Novak", "skills": {"billing": 2}}))
        .await
        .expect(200);
    let list = c.get("/v1/representatives", SUPERVISOR).await.expect(200).json;
    assert_eq!((ann(&list)["name"].clone(), ann(&list)["skills"].clone()), (json!("Ann Novak"), json!({"billing": 2})));
    assert!(candidate_names(&c.get(dialog, SUPERVISOR).await.expect(200).json).contains(&"Ann Novak".to_owned()));

    c.put("/v1/representatives/ann", INTEGRATION, json!({"name": "Ann Costa", "presence": "available", "capacity": 3}))
        .await
        .expect(200);
    let list = c.get("/v1/representatives", SUPERVISOR).await.expect(200).json;
    assert_eq!((ann(&list)["name"].clone(), ann(&list)["skills"].clone()), (json!("Ann Costa"), json!({})));
    assert_eq!(ann(&list)["version"], 3);

    // Capacity is not part of the decoded document: it moves with every assignment.
    c.post("/v1/conversations/c1/assign", SUPERVISOR, json!({"representative": "ann"})).await.expect(200);
    let list = c.get("/v1/representatives", SUPERVISOR).await.expect(200).json;
    assert_eq!((ann(&list)["used_capacity"].clone(), ann(&list)["free_capacity"].clone()), (json!(2), json!(1)));
}

/// A parameter a route does not take is a `400`, on every route, after `401`/`403`; it
/// is never silently ignored (`?dry_run=true` must not release anything).
async fn query_parameters_a_route_does_not_take_are_refused() {
    let daemon = Daemon::start().await;
    let c = daemon.client.clone();
    c.seed_directory().await;
    c.create("c1").await;
    c.post("/v1/conversations/c1/assign", SUPERVISOR, json!({"representative": "ann"})).await.expect(200);
    let a =
        c.post("/v1/conversations/c1/release?dry_run=true", SUPERVISOR, json!({})).await.problem(400, "bad_request");
    assert!(a.json["detail"].as_str().unwrap().contains("`dry_run`"), "{}", a.text);
    assert_eq!(c.get("/v1/conversations/c1", SUPERVISOR).await.json["status"], "active", "nothing was released");
    c.get("/v1/conversations/c1?verbose=1", SUPERVISOR).await.problem(400, "bad_request");
    c.get("/v1/conversations/c1/history?x", SUPERVISOR).await.problem(400, "bad_request");
    c.put("/v1/queues/billing?force=true", INTEGRATION, json!({"name": "B"})).await.problem(400, "bad_request");
    c.get("/v1/rules?all=1", SUPERVISOR).await.problem(400, "bad_request");
    // Authentication is checked first.
    let anonymous = c.send(Method::POST, "/v1/conversations/c1/release?dry_run=true", None, &[], None).await;
    assert_eq!(anonymous.status.as_u16(), 401, "{}", anonymous.text);
    // An empty query string is no parameter.
    c.get("/v1/conversations/c1?", SUPERVISOR).await.expect(200);
}

/// The `Bearer` scheme is case-insensitive (RFC 7235).
async fn the_bearer_scheme_is_case_insensitive() {
    let daemon = Daemon::start().await;
    let c = daemon.client.clone();
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let auth = format!("{scheme} {SUPERVISOR}");
        let a = c.send(Method::GET, "/v1/rules", None, &[("authorization", &auth)], None).await;
        assert_eq!(a.status.as_u16(), 200, "{scheme}: {}", a.text);
    }
    let a = c.send(Method::GET, "/v1/rules", None, &[("authorization", &format!("Basic {SUPERVISOR}"))], None).await;
    assert_eq!(a.status.as_u16(), 401, "{}", a.text);
}
}
