//! What routing rules decide: every kind of condition and requirement, ranking,
//! explanations, and the rules in force over HTTP (reload, 422, history).
#![allow(clippy::unwrap_used)]

mod common;

use common::{ADMIN, Daemon, INTEGRATION, SUPERVISOR, conversation_in};
use serde_json::{Value, json};
use switchboard::domain::{Conversation, Id, Queue, Representative, RoutingAction};
use switchboard::routing::{Policy, RoutingContext, Verdict};
use switchboard::rules::{self, RuleSet, Source};

fn ruleset(text: &str) -> RuleSet {
    rules::compile(&[Source { name: "t.toml".into(), text: text.into() }]).unwrap_or_else(|e| panic!("{e:?}"))
}

fn conv(json: Value) -> Conversation {
    let mut base = json!({"id": "c", "record": {"entity": "case", "id": "R"}, "queue": "billing"});
    base.as_object_mut().unwrap().extend(json.as_object().unwrap().clone());
    let input = serde_json::from_value(base.clone()).unwrap();
    Conversation::create(Id::parse("c").unwrap(), input, String::new())
}

fn rep(id: &str, json: Value, used: i64) -> Representative {
    let mut base = json!({"name": id});
    base.as_object_mut().unwrap().extend(json.as_object().unwrap().clone());
    Representative::new(Id::parse(id).unwrap(), serde_json::from_value(base).unwrap(), used, 1, String::new())
}

fn queue(id: &str, json: Value) -> Queue {
    let mut base = json!({"name": id});
    base.as_object_mut().unwrap().extend(json.as_object().unwrap().clone());
    Queue {
        id: Id::parse(id).unwrap(),
        input: serde_json::from_value(base).unwrap(),
        version: 1,
        updated_at: String::new(),
    }
}

/// Which of `reps` the rules let through for `action`.
fn eligible(set: &RuleSet, action: RoutingAction, c: &Conversation, reps: &[Representative]) -> Vec<String> {
    let refs: Vec<&Representative> = reps.iter().collect();
    let ctx = RoutingContext { action, conversation: c, explain: true, now_ms: switchboard::clock::now_ms() };
    set.representatives(ctx, &refs)
        .into_iter()
        .zip(reps)
        .filter(|(v, _)| matches!(v, Verdict::Eligible { .. }))
        .map(|(_, r)| r.id.to_string())
        .collect()
}

#[test]
fn each_representative_requirement() {
    let c = conv(json!({"skills": {"billing": 5}, "capacity_units": 2,
        "intent": {"family": "billing", "group": "refunds", "intent": "late"}}));
    // (require, representatives (id, fields, used capacity), the eligible ones)
    type Case<'a> = (&'a str, Vec<(&'a str, Value, i64)>, Vec<&'a str>);
    let cases: Vec<Case> = vec![
        (
            "presence = [\"available\", \"busy\"]",
            vec![("a", json!({"presence": "available"}), 0), ("b", json!({"presence": "away"}), 0)],
            vec!["a"],
        ),
        (
            "conversation_skills = true",
            vec![
                ("a", json!({"skills": {"billing": 5}}), 0),
                ("b", json!({"skills": {"billing": 4}}), 0),
                ("c", json!({"skills": {"english": 9}}), 0),
            ],
            vec!["a"],
        ),
        (
            "skills = { english = 7, billing = 2 }",
            vec![
                ("a", json!({"skills": {"billing": 5, "english": 7}}), 0),
                ("b", json!({"skills": {"english": 9}}), 0),
            ],
            vec!["a"],
        ),
        (
            "capacity_for_conversation = true",
            vec![("a", json!({"capacity": 3}), 1), ("b", json!({"capacity": 3}), 2)],
            vec!["a"],
        ),
        ("min_free_capacity = 1", vec![("a", json!({"capacity": 1}), 0), ("b", json!({"capacity": 1}), 1)], vec!["a"]),
        (
            "user_groups_any = [\"t1\", \"t2\"]",
            vec![("a", json!({"user_groups": ["t2"]}), 0), ("b", json!({"user_groups": ["t3"]}), 0)],
            vec!["a"],
        ),
        (
            "user_groups_all = [\"t1\", \"t2\"]",
            vec![("a", json!({"user_groups": ["t2", "t1"]}), 0), ("b", json!({"user_groups": ["t2"]}), 0)],
            vec!["a"],
        ),
        (
            "member_of_conversation_queue = true",
            vec![("a", json!({"queues": ["billing"]}), 0), ("b", json!({"queues": []}), 0)],
            vec!["a"],
        ),
        (
            "member_of_any = [\"vip\"]",
            vec![("a", json!({"queues": ["billing", "vip"]}), 0), ("b", json!({"queues": ["billing"]}), 0)],
            vec!["a"],
        ),
        (
            "handles_intent = \"family\"",
            vec![
                ("a", json!({"intents": [{"family": "billing", "group": "invoices"}]}), 0),
                ("b", json!({"intents": [{"family": "tech"}]}), 0),
            ],
            vec!["a"],
        ),
        (
            "handles_intent = \"group\"",
            vec![
                ("a", json!({"intents": [{"family": "billing"}]}), 0),
                ("b", json!({"intents": [{"family": "billing", "group": "invoices"}]}), 0),
                ("c", json!({"intents": [{"family": "billing", "group": "refunds", "intent": "other"}]}), 0),
            ],
            vec!["a", "c"],
        ),
        (
            "handles_intent = \"intent\"",
            vec![
                ("a", json!({"intents": [{"family": "billing", "group": "refunds"}]}), 0),
                ("b", json!({"intents": [{"family": "billing", "group": "refunds", "intent": "other"}]}), 0),
                ("c", json!({"intents": [{"family": "billing", "group": "refunds", "intent": "late"}]}), 0),
            ],
            vec!["a", "c"],
        ),
        (
            "attributes = { site = { equals = \"lisbon\" }, seniority = { gte = 2 } }",
            vec![
                ("a", json!({"attributes": {"site": "lisbon", "seniority": 3}}), 0),
                ("b", json!({"attributes": {"site": "lisbon", "seniority": 1}}), 0),
                ("c", json!({"attributes": {"site": "madrid", "seniority": 5}}), 0),
                ("d", json!({"attributes": {"seniority": 5}}), 0),
            ],
            vec!["a"],
        ),
        (
            "attributes = { remote = { exists = false } }",
            vec![("a", json!({}), 0), ("b", json!({"attributes": {"remote": true}}), 0)],
            vec!["a"],
        ),
    ];
    for (require, reps, want) in cases {
        let set = ruleset(&format!("[[rule]]\nid = \"r\"\ntarget = \"representative\"\nrequire = {{ {require} }}\n"));
        let reps: Vec<Representative> = reps.into_iter().map(|(id, j, used)| rep(id, j, used)).collect();
        assert_eq!(eligible(&set, RoutingAction::Assign, &c, &reps), want, "{require}");
    }
}

#[test]
fn when_decides_where_a_rule_applies() {
    let reps = vec![rep("offline", json!({}), 0)];
    let rule = |when: &str| {
        ruleset(&format!(
            "[[rule]]\nid = \"r\"\ntarget = \"representative\"\nwhen = {{ {when} }}\nrequire = {{ presence = [\"available\"] }}\n"
        ))
    };
    let gold_case = conv(json!({"priority": 2, "attributes": {"tier": "gold", "age": 40},
        "intent": {"family": "billing", "group": "refunds"}}));
    // (when, action, applies?)
    let cases = [
        ("action = [\"transfer\"]", RoutingAction::Assign, false),
        ("action = [\"transfer\"]", RoutingAction::Transfer, true),
        ("entity = [\"email\"]", RoutingAction::Assign, false),
        ("entity = [\"case\", \"email\"]", RoutingAction::Assign, true),
        ("queue = [\"billing\"]", RoutingAction::Assign, true),
        ("queue = [\"vip\"]", RoutingAction::Assign, false),
        ("priority = { min = 3 }", RoutingAction::Assign, false),
        ("priority = { min = 1, max = 2 }", RoutingAction::Assign, true),
        ("intent = { family = \"billing\" }", RoutingAction::Assign, true),
        ("intent = { family = \"billing\", group = \"invoices\" }", RoutingAction::Assign, false),
        ("intent_based = false", RoutingAction::Assign, false),
        ("attributes = { tier = { one_of = [\"gold\", \"platinum\"] } }", RoutingAction::Assign, true),
        ("attributes = { tier = { equals = \"silver\" } }", RoutingAction::Assign, false),
        ("attributes = { age = { gt = 30, lt = 50 } }", RoutingAction::Assign, true),
        ("attributes = { age = { lte = 39 } }", RoutingAction::Assign, false),
        ("attributes = { vip = { exists = true } }", RoutingAction::Assign, false),
    ];
    for (when, action, applies) in cases {
        let got = eligible(&rule(when), action, &gold_case, &reps).is_empty();
        assert_eq!(got, applies, "{when} with {action:?}");
    }
}

#[test]
fn every_applicable_rule_must_hold_and_scores_add_up() {
    let set = ruleset(
        r#"
[[rule]]
id = "reachable"
target = "representative"
require = { presence = ["available", "busy"] }
[[rule.rank]]
by = "free_capacity"
weight = 2.0

[[rule]]
id = "billing"
target = "representative"
require = { skills = { billing = 3 } }
[[rule.rank]]
by = "skill"
skill = "billing"
[[rule.rank]]
by = "skill_match"
weight = 0.5
"#,
    );
    let c = conv(json!({"skills": {"billing": 4}}));
    let reps = [
        rep("a", json!({"presence": "available", "capacity": 3, "skills": {"billing": 4}}), 1),
        rep("b", json!({"presence": "busy", "capacity": 1, "skills": {"billing": 9}}), 0),
        rep("c", json!({"presence": "away", "capacity": 9, "skills": {"billing": 9}}), 0),
        rep("d", json!({"presence": "available", "capacity": 9, "skills": {"billing": 2}}), 0),
    ];
    let refs: Vec<&Representative> = reps.iter().collect();
    let verdicts = set.representatives(
        RoutingContext {
            action: RoutingAction::Assign,
            conversation: &c,
            explain: true,
            now_ms: switchboard::clock::now_ms(),
        },
        &refs,
    );
    // a: 2×2 free + 4 skill + 0.5×0 = 8; b: 2×1 + 9 + 0.5×(−5) = 8.5
    assert_eq!(
        parts_of(&verdicts[0]),
        (
            8.0,
            vec![
                ("reachable", "free_capacity", 2.0, 4.0),
                ("billing", "skill", 4.0, 4.0),
                ("billing", "skill_match", 0.0, 0.0)
            ]
        )
    );
    assert_eq!(
        parts_of(&verdicts[1]),
        (
            8.5,
            vec![
                ("reachable", "free_capacity", 1.0, 2.0),
                ("billing", "skill", 9.0, 9.0),
                ("billing", "skill_match", -5.0, -2.5)
            ]
        )
    );
    match &verdicts[3] {
        Verdict::Excluded { reasons } => {
            assert_eq!(reasons.len(), 1);
            assert_eq!(reasons[0].rule, "billing");
            assert_eq!(reasons[0].detail, "skill `billing` is 2, below 3");
        }
        other => panic!("{other:?}"),
    }
    match &verdicts[2] {
        Verdict::Excluded { reasons } => assert_eq!(reasons[0].detail, "presence `away` is not one of available, busy"),
        other => panic!("{other:?}"),
    }
}

/// An eligible verdict's score and its parts as (rule, by, value, points), checking the
/// parts add up to the score.
fn parts_of(v: &Verdict) -> (f64, Vec<(&str, &str, f64, f64)>) {
    let Verdict::Eligible { score, parts } = v else { panic!("not eligible: {v:?}") };
    let sum: f64 = parts.iter().map(|p| p.points).sum();
    assert!((sum - score).abs() < 1e-9, "parts {parts:?} do not add up to {score}");
    (*score, parts.iter().map(|p| (p.rule.as_str(), p.by, p.value.unwrap_or(f64::NAN), p.points)).collect())
}

#[test]
fn queue_requirements_and_ranking() {
    let set = ruleset(
        r#"
[[rule]]
id = "queues"
target = "queue"
require = { intent_based = false, priority = { max = 2 }, names = ["Billing", "VIP", "Night"] }
[[rule.rank]]
by = "queue_priority"
"#,
    );
    let c = conv(json!({}));
    let qs = [
        queue("billing", json!({"name": "Billing", "priority": 2})),
        queue("vip", json!({"name": "VIP", "priority": 0})),
        queue("night", json!({"name": "Night", "priority": 5})),
        queue("intents", json!({"name": "Billing", "intent_based": true})),
        queue("other", json!({"name": "Other"})),
    ];
    let refs: Vec<&Queue> = qs.iter().collect();
    let v = set.queues(
        RoutingContext {
            action: RoutingAction::Transfer,
            conversation: &c,
            explain: true,
            now_ms: switchboard::clock::now_ms(),
        },
        &refs,
    );
    assert_eq!(parts_of(&v[0]), (-2.0, vec![("queues", "queue_priority", -2.0, -2.0)]));
    assert_eq!(parts_of(&v[1]), (0.0, vec![("queues", "queue_priority", 0.0, 0.0)]));
    let detail = |v: &Verdict| match v {
        Verdict::Excluded { reasons } => reasons.iter().map(|r| r.detail.clone()).collect::<Vec<_>>(),
        other => panic!("{other:?}"),
    };
    assert_eq!(detail(&v[2]), ["priority 5 is outside 2 or less"]);
    assert_eq!(detail(&v[3]), ["queue `intents` is intent-based"]);
    assert_eq!(detail(&v[4]), ["name `Other` is not one of Billing, VIP, Night"]);
}

fn write_rules(daemon: &Daemon, name: &str, text: &str) {
    std::fs::write(daemon.dir.path().join("rules").join(name), text).unwrap();
}

#[tokio::test]
async fn rules_in_force_over_http_reload_and_history() {
    let daemon = Daemon::start().await;
    let c = &daemon.client;
    c.seed_directory().await;
    conversation_in(c, "c1", "open").await;
    let status = c.get("/v1/rules", SUPERVISOR).await.expect(200).json;
    assert_eq!(status["version"], "empty");
    assert_eq!(status["last_error"], Value::Null);

    write_rules(
        &daemon,
        "presence.toml",
        "[[rule]]\nid = \"available-only\"\ntarget = \"representative\"\nrequire = { presence = [\"available\"] }\n",
    );
    // Only admins reload.
    c.post("/v1/rules/reload", SUPERVISOR, json!({})).await.problem(403, "forbidden");
    c.post("/v1/rules/reload", INTEGRATION, json!({})).await.problem(403, "forbidden");
    let reloaded = c.post("/v1/rules/reload", ADMIN, json!({})).await.expect(200).json;
    let version = reloaded["version"].as_str().unwrap().to_owned();
    assert_ne!(version, "empty");
    assert_eq!(reloaded["files"], json!(["rules/presence.toml"]));
    assert_eq!(reloaded["rules"], json!(["available-only"]));

    let cands =
        c.get("/v1/conversations/c1/candidates?action=assign&target=representative&explain=true", SUPERVISOR).await;
    let cands = cands.expect(200).json;
    assert_eq!(cands["ruleset"], version.as_str());
    assert_eq!(cands["candidates"][0]["id"], "ann");
    assert_eq!(
        cands["excluded"],
        json!([{"id": "bob", "name": "Bob Stone", "reasons": [
        {"rule": "available-only", "detail": "presence `busy` is not one of available"}]}])
    );
    let refused = c.post("/v1/conversations/c1/assign", SUPERVISOR, json!({"representative": "bob"})).await;
    let refused = refused.problem(422, "not_eligible");
    assert_eq!(refused.json["reasons"][0]["rule"], "available-only");
    c.post("/v1/conversations/c1/assign", SUPERVISOR, json!({"representative": "ann"})).await.expect(200);
    let history = c.get("/v1/conversations/c1/history", SUPERVISOR).await.json;
    assert_eq!(history["events"][1]["ruleset"], version.as_str());

    // An invalid reload keeps the rules in force and says why.
    write_rules(
        &daemon,
        "broken.toml",
        "[[rule]]\nid = \"x\"\ntarget = \"representative\"\nrequire = { presence = [\"availble\"] }\n",
    );
    let failed = c.post("/v1/rules/reload", ADMIN, json!({})).await.problem(422, "invalid_rules");
    assert_eq!(failed.json["errors"][0]["file"], "rules/broken.toml");
    assert_eq!(failed.json["errors"][0]["line"], 4);
    assert_eq!(failed.json["errors"][0]["column"], 25);
    let status = c.get("/v1/rules", SUPERVISOR).await.json;
    assert_eq!(status["version"], version.as_str(), "the rules in force are unchanged");
    assert_eq!(status["last_error"]["file"], "rules/broken.toml");
    assert_eq!(status["last_error"]["line"], 4);
    assert!(status["last_error"]["message"].as_str().unwrap().contains("unknown variant `availble`"));
    conversation_in(c, "c2", "open").await;
    c.post("/v1/conversations/c2/assign", SUPERVISOR, json!({"representative": "bob"}))
        .await
        .problem(422, "not_eligible");

    // Fixed: the next reload clears last_error.
    std::fs::remove_file(daemon.dir.path().join("rules/broken.toml")).unwrap();
    let ok = c.post("/v1/rules/reload", ADMIN, json!({})).await.expect(200).json;
    assert_eq!(ok["last_error"], Value::Null);
    assert_eq!(ok["version"], version.as_str(), "same files, same version");
}

/// Which of `reps` the rules let through at `now` (RFC 3339), and the reasons of the rest.
fn at_time(set: &RuleSet, c: &Conversation, reps: &[Representative], now: &str) -> Vec<Verdict> {
    let refs: Vec<&Representative> = reps.iter().collect();
    let now_ms = switchboard::clock::parse_ms(now).unwrap();
    set.representatives(RoutingContext { action: RoutingAction::Assign, conversation: c, explain: true, now_ms }, &refs)
}

#[test]
fn waiting_minutes_relax_a_rule_as_the_conversation_waits() {
    let set = ruleset(
        r#"
[[rule]]
id = "tier-2-first"
target = "representative"
[rule.when]
waiting_minutes = { max = 4 }
[rule.require]
user_groups_any = ["tier-2"]
"#,
    );
    let mut c = conv(json!({}));
    c.queued_at = Some("2026-12-07T10:00:00.000Z".into());
    let reps = [rep("t1", json!({"user_groups": ["tier-1"]}), 0), rep("t2", json!({"user_groups": ["tier-2"]}), 0)];
    let eligible = |now| -> Vec<bool> {
        at_time(&set, &c, &reps, now).iter().map(|v| matches!(v, Verdict::Eligible { .. })).collect()
    };
    assert_eq!(eligible("2026-12-07T10:04:59Z"), [false, true], "minute 4: tier-2 only");
    assert_eq!(eligible("2026-12-07T10:05:00Z"), [true, true], "minute 5: anyone");
    // The explanation says which time condition made the rule apply.
    let Verdict::Excluded { reasons } = &at_time(&set, &c, &reps, "2026-12-07T10:03:10Z")[0] else { panic!() };
    assert!(reasons[0].detail.ends_with("(applies: waiting 3 min, at most 4)"), "{reasons:?}");
    // Release puts it back in its queue: waiting counts again from then (the store sets
    // queued_at; without one, created_at stands in).
    let mut old = c.clone();
    old.queued_at = None;
    old.created_at = "2026-12-07T09:00:00.000Z".into();
    assert_eq!(old.waiting_minutes(switchboard::clock::parse_ms("2026-12-07T10:00:00Z").unwrap()), 60);
}

#[test]
fn opening_hours_in_a_time_zone_including_a_window_past_midnight() {
    let set = ruleset(
        r#"
[[rule]]
id = "lisbon-office-hours"
target = "representative"
[rule.when]
hours = { zone = "Europe/Lisbon", days = ["mon", "tue", "wed", "thu", "fri"], from = "09:00", to = "18:00" }
[rule.require]
attributes = { site = { one_of = ["lisbon"] } }

[[rule]]
id = "night-shift"
target = "representative"
[rule.when]
hours = { zone = "America/New_York", days = ["fri"], from = "22:00", to = "06:00" }
[rule.require]
user_groups_any = ["night"]
"#,
    );
    let c = conv(json!({}));
    let reps = [
        rep("lis", json!({"attributes": {"site": "lisbon"}, "user_groups": ["night"]}), 0),
        rep("mad", json!({"attributes": {"site": "madrid"}}), 0),
    ];
    let mad = |now| matches!(at_time(&set, &c, &reps, now)[1], Verdict::Eligible { .. });
    // 2026-07-06 is a Monday; Lisbon is UTC+1 in summer.
    assert!(!mad("2026-07-06T08:30:00Z"), "09:30 in Lisbon: office hours, Lisbon only");
    assert!(mad("2026-07-06T07:30:00Z"), "08:30 in Lisbon: before opening");
    assert!(mad("2026-07-06T17:00:00Z"), "18:00 in Lisbon: closed (the end is not inside)");
    assert!(mad("2026-07-11T10:00:00Z"), "a Saturday");
    // Winter: UTC+0. 2026-12-07 is a Monday.
    assert!(!mad("2026-12-07T17:59:00Z"), "17:59 in Lisbon in December");
    // Friday 22:00 to Saturday 06:00 in New York (UTC-4 in July): Saturday 03:00 local.
    assert!(!mad("2026-07-11T07:00:00Z"), "the night after a Friday, still in the window");
    assert!(mad("2026-07-12T07:00:00Z"), "the night after a Saturday is not");
    let Verdict::Excluded { reasons } = &at_time(&set, &c, &reps, "2026-07-06T08:30:00Z")[1] else { panic!() };
    assert!(
        reasons[0].detail.ends_with("(applies: Mon 09:30 within mon,tue,wed,thu,fri 09:00-18:00 Europe/Lisbon)"),
        "{reasons:?}"
    );
}

#[tokio::test]
async fn a_conversation_starts_waiting_again_when_it_reenters_a_queue() {
    let daemon = Daemon::start().await;
    let c = &daemon.client;
    c.seed_directory().await;
    let created = c.create("w1").await.expect(201).json;
    assert_eq!(created["queued_at"], created["created_at"], "created: it waits from then");
    let queued = |v: &Value| v["queued_at"].as_str().unwrap().to_owned();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let held = c.post("/v1/conversations/w1/assign", SUPERVISOR, json!({"representative": "ann"})).await.expect(200);
    assert_eq!(queued(&held.json), queued(&created), "held: no longer waiting, the mark is kept");
    let released = c.post("/v1/conversations/w1/release", SUPERVISOR, json!({})).await.expect(200).json;
    assert!(queued(&released) > queued(&created), "released: back in its queue, waiting from now: {released}");
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let moved = c.post("/v1/conversations/w1/assign", SUPERVISOR, json!({"queue": "support"})).await.expect(200).json;
    assert!(queued(&moved) > queued(&released), "moved to another queue: waiting from now: {moved}");
}
