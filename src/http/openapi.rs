//! The OpenAPI document, generated from the handlers' and types' annotations.

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{changes, conversations, directory, meta, rules};

#[derive(OpenApi)]
#[openapi(
    info(title = "Switchboard supervisor API", version = "1",
        description = "Routing of the Ongoing record conversations view: assign, transfer, release, remove."),
    paths(
        conversations::create, conversations::list, conversations::get, conversations::history,
        conversations::candidates, conversations::assign, conversations::transfer, conversations::release,
        conversations::remove, conversations::event,
        directory::put_representative, directory::patch_representative, directory::get_representative,
        directory::list_representatives, directory::put_queue, directory::patch_queue, directory::get_queue,
        directory::list_queues,
        rules::status, rules::reload, changes::list, changes::stream,
        meta::healthz, meta::metrics, meta::openapi,
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

pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
