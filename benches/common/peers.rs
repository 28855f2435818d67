//! The peer evaluators of issue #6: the demo's representative-eligibility policy (every
//! file of `rules/` but `plugins.toml`) written in Cedar and in Rego, and the eligible set
//! each of the three evaluators (Switchboard, Cedar, Rego) finds for one conversation over
//! the same representatives. Shared by `benches/peers.rs` and `tests/peers.rs`. Only the
//! eligible set is compared: ranking is Switchboard's own.
//!
//! The demo rules, and how each peer says them:
//!
//! | rule (file) | when | requires |
//! | --- | --- | --- |
//! | `reachable-representatives` (presence.toml) | always | presence `available` or `busy` |
//! | `exact-skill-match` (skills.toml) | always | each conversation skill at its level or above; free capacity ≥ the conversation's units |
//! | `vip-cases-to-tier-2` (vip.toml) | entity `case` and attribute `customer_tier` gold or platinum | user group `tier-2` |
//! | `intent-handlers-only` (intents.toml) | the conversation carries an intent | handles the intent at group level |
//!
//! Both peers carry the `when` of each rule too, so they evaluate it per candidate where
//! Switchboard picks the applicable rules once per request.
//!
//! **Cedar.** The representative is the principal, the conversation the resource, and the
//! action `assign`. One `permit` lets every representative through and each rule is one
//! `forbid … when { <the rule's when> } unless { <its requirements> }`; a forbid overrides
//! a permit, so a representative is eligible when no applicable rule forbids it. Cedar has
//! no quantifier over a record's keys or a set's elements, so two requirements are given
//! as set containment over strings built when the entities are (the flattening):
//! - skills: a representative at level `L` of skill `s` holds `"s>=0"` … `"s>=L"` (levels
//!   are 0-10, so at most 11 strings a skill), the conversation needs `"s>=n"` for each
//!   skill `s` it asks at level `n`, and the requirement is `containsAll`;
//! - intents at group level: a representative holds `"f"` for each intent it handles, and
//!   `"f/g"` for one with group `g` or `"f/*"` for one without a group; a conversation of
//!   family `f` and group `g` accepts `{"f/g", "f/*"}`, one with no group `{"f"}`; the
//!   requirement is `containsAny`. That is Switchboard's group-level match: same family,
//!   and the same group unless either side has none.
//!
//! The strings cannot collide: ids (skills, families, groups) never contain `>`, `=`, `/`
//! or `*`.
//!
//! Other values map directly: presence as a string, free capacity as a `Long`, user
//! groups as a set of strings, the conversation's attributes as a record (integers as
//! `Long`, strings, booleans; a non-integer number has no Cedar equivalent and is left
//! out). Entities are built without a schema, once, outside the timed loop; the request
//! per representative is built inside it.
//!
//! **Rego.** No flattening: the representatives are `data.representatives` and the
//! conversation is `input`, both as the API serialises them. One set rule, `eligible`,
//! collects the ids of the representatives meeting every rule, so one evaluation answers
//! for the whole batch; each rule is a helper, and `every` is written as `not` of a
//! helper (`not lacks_skill(rep)`), which regorus' VM evaluates correctly (it mis-handled
//! `every` in an earlier attempt). It runs on regorus' interpreter and on its VM (RVM),
//! the policy compiled to a program once; the VM's default cap of 25,000 instructions an
//! evaluation (about 1,000 representatives here) is lifted.
#![allow(dead_code, clippy::expect_used)]

use std::str::FromStr;

use cedar_policy::{Authorizer, Context, Decision, Entities, EntityUid, PolicySet, Request};
use regorus::languages::rego::compiler::Compiler;
use regorus::rvm::RegoVM;
use serde_json::{Value as Json, json};
use switchboard::domain::{AttributeValue, Conversation, Representative, RoutingAction};
use switchboard::routing::RoutingContext;
use switchboard::rules::{self, RuleSet};

/// The demo policy in Cedar.
pub const CEDAR_POLICIES: &str = r#"
// Any representative may be given a conversation unless a rule below forbids it.
permit (
    principal is Representative,
    action in [Action::"assign", Action::"transfer"],
    resource is Conversation
);

// presence.toml
@id("reachable-representatives")
forbid (principal, action, resource)
unless { ["available", "busy"].contains(principal.presence) };

// skills.toml
@id("exact-skill-match")
forbid (principal, action, resource)
unless {
    principal.skill_levels.containsAll(resource.skill_needs) &&
    principal.free_capacity >= resource.capacity_units
};

// vip.toml
@id("vip-cases-to-tier-2")
forbid (principal, action, resource)
when {
    resource.entity == "case" &&
    resource.attributes has customer_tier &&
    ["gold", "platinum"].contains(resource.attributes.customer_tier)
}
unless { principal.user_groups.contains("tier-2") };

// intents.toml (handles_intent = "group")
@id("intent-handlers-only")
forbid (principal, action, resource)
when { resource.intent_based }
unless { principal.intent_keys.containsAny(resource.intent_keys) };
"#;

/// The demo policy in Rego.
pub const REGO_POLICY: &str = r#"
package switchboard

import rego.v1

# The ids of the representatives that every applicable rule lets through.
eligible contains rep.id if {
	some rep in data.representatives
	reachable(rep)
	meets_skills(rep)
	rep.free_capacity >= input.capacity_units
	vip_ok(rep)
	intent_ok(rep)
}

# presence.toml
reachable(rep) if rep.presence in {"available", "busy"}

# skills.toml (capacity is in `eligible`)
meets_skills(rep) if not lacks_skill(rep)

lacks_skill(rep) if {
	some skill, need in input.skills
	not rep.skills[skill] >= need
}

# vip.toml
vip_case if {
	input.record.entity == "case"
	input.attributes.customer_tier in {"gold", "platinum"}
}

vip_ok(_) if not vip_case

vip_ok(rep) if "tier-2" in rep.user_groups

# intents.toml (handles_intent = "group")
intent_ok(_) if not input.intent_based

intent_ok(rep) if {
	some e in rep.intents
	e.family == input.intent.family
	group_fits(e)
}

group_fits(_) if not input.intent.group

group_fits(e) if not e.group

group_fits(e) if e.group == input.intent.group
"#;

/// The Rego rule that holds the eligible set.
pub const REGO_ENTRY: &str = "data.switchboard.eligible";

/// The declarative demo rules: every file of `rules/` but `plugins.toml`.
pub fn demo_rules() -> RuleSet {
    let mut sources = rules::read_dir(std::path::Path::new("rules")).unwrap_or_else(|e| panic!("{e:?}"));
    sources.retain(|s| !s.name.ends_with("plugins.toml"));
    rules::compile(&sources).unwrap_or_else(|e| panic!("{e:?}"))
}

/// The context of an assignment of `conv`.
pub fn assign(conv: &Conversation) -> RoutingContext<'_> {
    RoutingContext {
        action: RoutingAction::Assign,
        conversation: conv,
        explain: false,
        now_ms: switchboard::clock::now_ms(),
    }
}

/// Switchboard's eligible set, sorted: the applicable rules, the candidate table and the
/// eligibility pass, as a request runs them.
pub fn switchboard_eligible(set: &RuleSet, conv: &Conversation, reps: &[Representative]) -> Vec<String> {
    let refs: Vec<&Representative> = reps.iter().collect();
    let table = set.representative_table(&refs);
    let mut out = Vec::new();
    set.eligible_representatives(&assign(conv), &table, &mut out);
    let mut ids: Vec<String> = reps.iter().zip(&out).filter(|(_, ok)| **ok).map(|(r, _)| r.id.to_string()).collect();
    ids.sort();
    ids
}

/// `"s>=0"` … `"s>=level"`: the skill strings a representative at `level` holds.
fn skill_levels(skill: &str, level: u8) -> impl Iterator<Item = String> + '_ {
    (0..=level).map(move |l| format!("{skill}>={l}"))
}

/// The Cedar entity of a representative.
fn cedar_representative(rep: &Representative) -> Json {
    let r = &rep.input;
    let skills: Vec<String> = r.skills.iter().flat_map(|(s, p)| skill_levels(s.as_str(), p.get())).collect();
    let mut intents = Vec::new();
    for i in &r.intents {
        intents.push(i.family.to_string());
        intents.push(match &i.group {
            Some(g) => format!("{}/{g}", i.family),
            None => format!("{}/*", i.family),
        });
    }
    json!({
        "uid": {"type": "Representative", "id": rep.id.as_str()},
        "attrs": {
            "presence": r.presence.as_str(),
            "free_capacity": rep.free_capacity,
            "skill_levels": skills,
            "user_groups": r.user_groups,
            "intent_keys": intents,
        },
        "parents": [],
    })
}

/// The Cedar entity of a conversation.
fn cedar_conversation(conv: &Conversation) -> Json {
    let needs: Vec<String> = conv.skills.iter().map(|(s, p)| format!("{s}>={}", p.get())).collect();
    let intent_keys: Vec<String> = match &conv.intent {
        Some(i) => match &i.group {
            Some(g) => vec![format!("{}/{g}", i.family), format!("{}/*", i.family)],
            None => vec![i.family.to_string()],
        },
        None => Vec::new(),
    };
    let mut attributes = serde_json::Map::new();
    for (k, v) in &conv.attributes {
        let v = match v {
            AttributeValue::Bool(b) => json!(b),
            AttributeValue::String(s) => json!(s),
            AttributeValue::Number(n) if n.is_i64() => json!(n),
            AttributeValue::Number(_) => continue,
        };
        attributes.insert(k.to_string(), v);
    }
    json!({
        "uid": {"type": "Conversation", "id": conv.id.as_str()},
        "attrs": {
            "entity": conv.record.entity.as_str(),
            "capacity_units": conv.capacity_units,
            "skill_needs": needs,
            "intent_based": conv.intent_based,
            "intent_keys": intent_keys,
            "attributes": attributes,
        },
        "parents": [],
    })
}

/// A Cedar entity uid.
fn uid(kind: &str, id: &str) -> EntityUid {
    EntityUid::from_str(&format!("{kind}::{}", json!(id))).expect("entity uid")
}

/// The Cedar side: the policies, the entities (representatives and the conversation), and
/// one uid per representative.
pub struct Cedar {
    authorizer: Authorizer,
    policies: PolicySet,
    entities: Entities,
    principals: Vec<EntityUid>,
    action: EntityUid,
    resource: EntityUid,
}

impl Cedar {
    /// Parses the policies and builds the entities of `conv` and `reps`.
    pub fn new(conv: &Conversation, reps: &[Representative]) -> Self {
        let policies = PolicySet::from_str(CEDAR_POLICIES).expect("Cedar policies");
        let mut entities: Vec<Json> = reps.iter().map(cedar_representative).collect();
        entities.push(cedar_conversation(conv));
        let entities = Entities::from_json_value(Json::Array(entities), None).expect("Cedar entities");
        Self {
            authorizer: Authorizer::new(),
            policies,
            entities,
            principals: reps.iter().map(|r| uid("Representative", r.id.as_str())).collect(),
            action: uid("Action", "assign"),
            resource: uid("Conversation", conv.id.as_str()),
        }
    }

    /// How many representatives there are.
    pub fn len(&self) -> usize {
        self.principals.len()
    }

    /// Cedar's answer for representative `i`: one request, one `is_authorized`.
    pub fn decide(&self, i: usize) -> cedar_policy::Response {
        let request = Request::new(
            self.principals[i].clone(),
            self.action.clone(),
            self.resource.clone(),
            Context::empty(),
            None,
        )
        .expect("Cedar request");
        self.authorizer.is_authorized(&request, &self.policies, &self.entities)
    }

    /// Whether representative `i` is eligible.
    pub fn allowed(&self, i: usize) -> bool {
        self.decide(i).decision() == Decision::Allow
    }

    /// The eligible set, sorted. Panics if a policy failed to evaluate for anyone (Cedar
    /// skips a policy that errs, which would silently let a representative through).
    pub fn eligible(&self) -> Vec<String> {
        let mut ids = Vec::new();
        for i in 0..self.len() {
            let response = self.decide(i);
            let errors: Vec<String> = response.diagnostics().errors().map(ToString::to_string).collect();
            assert!(errors.is_empty(), "Cedar errors for {}: {errors:?}", self.principals[i]);
            if response.decision() == Decision::Allow {
                ids.push(self.principals[i].id().unescaped().to_owned());
            }
        }
        ids.sort();
        ids
    }
}

/// The Rego side: the policy with the representatives as data and the conversation as
/// input, on the interpreter and compiled for the VM.
pub struct Rego {
    engine: regorus::Engine,
    vm: RegoVM,
    input: regorus::Value,
}

impl Rego {
    /// Loads the policy and data, and compiles the policy for the VM.
    pub fn new(conv: &Conversation, reps: &[Representative]) -> Self {
        let data = regorus::Value::from(json!({ "representatives": reps }));
        let input = regorus::Value::from(serde_json::to_value(conv).expect("conversation as JSON"));
        let mut engine = regorus::Engine::new();
        engine.add_policy("switchboard.rego".into(), REGO_POLICY.into()).expect("Rego policy");
        engine.add_data(data.clone()).expect("Rego data");
        engine.set_input(input.clone());
        let compiled = engine.compile_with_entrypoint(&regorus::Rc::from(REGO_ENTRY)).expect("Rego compiled policy");
        let program = Compiler::compile_from_policy(&compiled, &[REGO_ENTRY]).expect("RVM program");
        let mut vm = RegoVM::new_with_policy(compiled);
        // The VM stops after 25,000 instructions by default: too few for a large batch.
        vm.set_max_instructions(usize::MAX);
        vm.load_program(program);
        vm.set_data(data).expect("RVM data");
        vm.set_input(input.clone());
        Self { engine, vm, input }
    }

    /// One evaluation of the eligible set on the VM.
    pub fn run_vm(&mut self) -> regorus::Value {
        self.vm.set_input(self.input.clone());
        self.vm.execute_entry_point_by_name(REGO_ENTRY).expect("RVM evaluation")
    }

    /// One evaluation of the eligible set on the interpreter.
    pub fn run_interpreter(&mut self) -> regorus::Value {
        self.engine.set_input(self.input.clone());
        self.engine.eval_rule(REGO_ENTRY.into()).expect("Rego evaluation")
    }

    /// The eligible set on the VM, sorted.
    pub fn eligible_vm(&mut self) -> Vec<String> {
        ids(&self.run_vm())
    }

    /// The eligible set on the interpreter, sorted.
    pub fn eligible_interpreter(&mut self) -> Vec<String> {
        ids(&self.run_interpreter())
    }
}

/// The ids in a Rego set of strings, sorted (an undefined rule is the empty set).
fn ids(value: &regorus::Value) -> Vec<String> {
    if *value == regorus::Value::Undefined {
        return Vec::new();
    }
    let set = value.as_set().unwrap_or_else(|e| panic!("Rego answered {value}, not a set: {e}"));
    let mut ids: Vec<String> = set.iter().map(|v| v.as_string().expect("an id").to_string()).collect();
    ids.sort();
    ids
}

/// The eligible set of each evaluator, by name.
pub fn all_eligible(set: &RuleSet, conv: &Conversation, reps: &[Representative]) -> Vec<(&'static str, Vec<String>)> {
    let mut rego = Rego::new(conv, reps);
    vec![
        ("switchboard", switchboard_eligible(set, conv, reps)),
        ("cedar", Cedar::new(conv, reps).eligible()),
        ("rego_vm", rego.eligible_vm()),
        ("rego_interpreter", rego.eligible_interpreter()),
    ]
}

/// Panics, naming the ids on which they differ, unless every evaluator found the same
/// eligible set; returns that set.
pub fn assert_agree(set: &RuleSet, conv: &Conversation, reps: &[Representative], label: &str) -> Vec<String> {
    let all = all_eligible(set, conv, reps);
    let (_, reference) = &all[0];
    for (name, ids) in &all[1..] {
        if ids != reference {
            let only_sb: Vec<&String> = reference.iter().filter(|i| !ids.contains(i)).collect();
            let only_peer: Vec<&String> = ids.iter().filter(|i| !reference.contains(i)).collect();
            panic!(
                "{label}: {name} disagrees with switchboard ({} vs {} eligible)\n  only switchboard: {only_sb:?}\n  only {name}: {only_peer:?}",
                reference.len(),
                ids.len()
            );
        }
    }
    reference.clone()
}
