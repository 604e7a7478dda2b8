//! The OpenAPI 3.1 document of the native API.

use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::error::{Problem, ProblemItem};
use crate::native::{self, batches, downloads, events, sims, webhooks};

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let c = openapi.components.get_or_insert_with(Default::default);
        c.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-API-Key",
                "The token <key_id>.<secret>",
            ))),
        );
        c.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("Authorization: Bearer <key_id>.<secret>"))
                    .build(),
            ),
        );
    }
}

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "simbatch",
        description = "SIM and eSIM batch provisioning: the native API. Errors are RFC 9457 problem+json.",
    ),
    paths(
        batches::submit, batches::list, batches::get, batches::items, batches::cancel, batches::retry,
        downloads::batch_export, downloads::operations, downloads::operation_template,
        sims::list, sims::get, sims::history, sims::action, downloads::sims_export,
        events::list,
        webhooks::create, webhooks::list, webhooks::get, webhooks::delete, webhooks::deliveries,
        crate::healthz, crate::readyz, crate::openapi_json,
    ),
    components(schemas(
        Problem, ProblemItem,
        native::BatchDto, native::ItemDto, native::ItemErrorDto, native::RejectedItemDto,
        native::SimDto, native::HistoryDto, native::EventDto, native::WebhookDto, native::DeliveryDto,
        native::BatchPage, native::ItemPage, native::SimPage, native::HistoryPage, native::EventPage,
        native::WebhookList, native::DeliveryList,
        batches::SubmitBatchBody, batches::SubmitResponse, sims::SimOrderResponse, sims::SimAction,
        webhooks::CreateWebhookBody, crate::Health,
        downloads::OperationDto, downloads::FieldDto,
    )),
    modifiers(&Security),
    tags(
        (name = "batches", description = "Submit and follow batches of orders"),
        (name = "sims", description = "SIMs, their history, single-SIM orders"),
        (name = "events", description = "The event feed"),
        (name = "webhooks", description = "Signed event deliveries"),
        (name = "health", description = "Liveness, readiness, this document"),
    )
)]
pub struct ApiDoc;

/// The document as pretty JSON (what `/openapi.json` serves).
pub fn spec_json() -> String {
    ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|_| "{}".into())
}
