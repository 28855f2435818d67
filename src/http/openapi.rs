//! The OpenAPI document, generated from the handlers' and types' annotations.

use serde_json::{Map, Value};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{bulk, changes, conversations, directory, distribute, me, meta, rules, stats, web};

#[derive(OpenApi)]
#[openapi(
    info(title = "Switchboard supervisor API", version = "1",
        description = "Routing of the Ongoing record conversations view: assign, transfer, release, remove."),
    paths(
        conversations::create, conversations::list, conversations::get, conversations::history,
        conversations::candidates, conversations::assign, conversations::transfer, conversations::release,
        conversations::remove, conversations::event, bulk::bulk,
        directory::put_representative, directory::patch_representative, directory::get_representative,
        directory::list_representatives, directory::put_queue, directory::patch_queue, directory::get_queue,
        directory::list_queues, stats::queue, stats::all, distribute::distribute,
        rules::status, rules::reload, changes::list, changes::stream,
        me::me, meta::healthz, meta::metrics, meta::openapi, web::page, web::asset,
    ),
    modifiers(&Bearer)
)]
struct ApiDoc;

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("bearer", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
    }
}

/// The document as served: utoipa's, with serde's `flatten` rendered as one object.
pub fn document() -> Value {
    let mut doc = match serde_json::to_value(ApiDoc::openapi()) {
        Ok(doc) => doc,
        Err(e) => {
            tracing::error!(error = %e, "rendering the OpenAPI document failed");
            return Value::Null;
        }
    };
    let schemas = doc.pointer("/components/schemas").cloned().unwrap_or(Value::Null);
    merge_closed_all_of(&mut doc, &schemas);
    doc
}

/// utoipa renders a `#[serde(flatten)]`ed input (`Representative` holds a
/// `RepresentativeInput`) as `allOf: [{$ref: Input}, {the other fields}]`. The inputs are
/// closed (`additionalProperties: false`: the API refuses unknown fields), so no object
/// could match every part, and each answer would break its own schema. Such an `allOf`
/// becomes one object with the properties and required fields of all its parts.
fn merge_closed_all_of(value: &mut Value, schemas: &Value) {
    match value {
        Value::Object(map) => {
            if let Some(Value::Array(parts)) = map.get("allOf")
                && parts.iter().any(|p| resolve(p, schemas)["additionalProperties"] == Value::Bool(false))
            {
                let mut properties = Map::new();
                let mut required: Vec<Value> = Vec::new();
                for part in parts {
                    let part = resolve(part, schemas);
                    if let Some(Value::Object(p)) = part.get("properties") {
                        properties.extend(p.iter().map(|(k, v)| (k.clone(), v.clone())));
                    }
                    if let Some(Value::Array(r)) = part.get("required") {
                        required.extend(r.iter().filter(|name| !required.contains(name)).cloned().collect::<Vec<_>>());
                    }
                }
                map.remove("allOf");
                map.insert("type".to_owned(), Value::from("object"));
                map.insert("properties".to_owned(), Value::Object(properties));
                map.insert("required".to_owned(), Value::Array(required));
            }
            for v in map.values_mut() {
                merge_closed_all_of(v, schemas);
            }
        }
        Value::Array(items) => {
            for v in items {
                merge_closed_all_of(v, schemas);
            }
        }
        _ => {}
    }
}

/// `part` itself, or the component schema it refers to.
fn resolve<'a>(part: &'a Value, schemas: &'a Value) -> &'a Value {
    match part.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix("#/components/schemas/")) {
        Some(name) => &schemas[name],
        None => part,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_with_a_flattened_input_are_one_open_object() {
        let doc = document();
        let schemas = &doc["components"]["schemas"];
        for (name, input, own) in
            [("Representative", "RepresentativeInput", "free_capacity"), ("Queue", "QueueInput", "version")]
        {
            let s = &schemas[name];
            assert!(s.get("allOf").is_none(), "{name}: {s}");
            assert_eq!(s["type"], "object", "{name}");
            assert!(s["properties"].get("name").is_some() && s["properties"].get(own).is_some(), "{name}: {s}");
            assert!(s["required"].as_array().unwrap().contains(&Value::from("id")), "{name}: {s}");
            assert!(s.get("additionalProperties").is_none(), "{name}: answers may grow fields");
            assert_eq!(schemas[input]["additionalProperties"], false, "{input} stays closed");
        }
        // The lists' items are merged too.
        let items = &schemas["ListView_Representative"]["properties"]["items"]["items"];
        assert!(items.get("allOf").is_none() && items["properties"].get("used_capacity").is_some(), "{items}");
    }

    #[test]
    fn what_the_api_refuses_the_document_does_not_offer() {
        let doc = document();
        let schemas = &doc["components"]["schemas"];
        for patch in ["QueuePatch", "RepresentativePatch"] {
            let text = schemas[patch]["properties"].to_string();
            assert!(!text.contains("\"null\""), "{patch} offers null, which a PATCH refuses: {text}");
        }
        let params = doc["paths"]["/v1/conversations/{id}/candidates"]["get"]["parameters"].as_array().unwrap();
        let action = &params.iter().find(|p| p["name"] == "action").unwrap()["schema"];
        assert_eq!(resolve(action, schemas)["enum"], serde_json::json!(["assign", "transfer"]), "{action}");
        let id = &params.iter().find(|p| p["name"] == "id").unwrap()["schema"];
        assert_eq!(id["pattern"], "^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$");
    }

    #[test]
    fn unsigned_fields_state_their_whole_range() {
        let doc = document();
        let priority = &doc["components"]["schemas"]["QueueInput"]["properties"]["priority"];
        assert_eq!(
            (priority["format"].as_str(), priority["maximum"].as_f64()),
            (Some("int64"), Some(f64::from(u32::MAX)))
        );
        let params = doc["paths"]["/v1/queues"]["get"]["parameters"].as_array().unwrap();
        let limit = params.iter().find(|p| p["name"] == "limit").unwrap();
        assert_eq!(
            (limit["schema"]["minimum"].as_f64(), limit["schema"]["maximum"].as_f64()),
            (Some(1.0), Some(1000.0))
        );
    }
}
