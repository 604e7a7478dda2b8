//! The OpenAPI 3.1 document of the native API.

use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::error::{Problem, ProblemItem};
use crate::native::{
    self, batch_counts, batches, downloads, esim, events, profiles, sims, webhooks,
};

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

/// Every authenticated operation may answer 429 when a rate limit is set.
struct RateLimited;

impl Modify for RateLimited {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::header::HeaderBuilder;
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder, Type};
        let text = |d: &str| {
            HeaderBuilder::new()
                .schema(utoipa::openapi::schema::Object::with_type(Type::String))
                .description(Some(d))
                .build()
        };
        let resp = ResponseBuilder::new()
            .description("Over this tenant's rate limit (`rate_limited`)")
            .content(
                crate::error::PROBLEM_JSON,
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("Problem")))
                    .build(),
            )
            .header(
                "Retry-After",
                text("Seconds until a request is admitted again"),
            )
            .header(
                "RateLimit",
                text("\"tenant\";r=<requests left>;t=<seconds until the quota is full>"),
            )
            .header(
                "RateLimit-Policy",
                text("\"tenant\";q=<burst>;w=<window seconds>"),
            )
            .build();
        for item in openapi.paths.paths.values_mut() {
            for op in [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.patch,
                &mut item.delete,
            ]
            .into_iter()
            .flatten()
            {
                if op.security.as_ref().is_some_and(|s| !s.is_empty()) {
                    op.responses
                        .responses
                        .insert("429".into(), resp.clone().into());
                }
            }
        }
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
        batches::submit, batches::list, batch_counts::counts, batches::get, batches::items, batches::cancel, batches::retry,
        downloads::batch_export, downloads::operations, downloads::operation_template,
        sims::list, sims::get, sims::history, sims::action, downloads::sims_export,
        events::list,
        profiles::get, profiles::qr_png,
        webhooks::create, webhooks::list, webhooks::get, webhooks::delete, webhooks::deliveries,
        esim::add, esim::list, esim::get, esim::package,
        crate::healthz, crate::readyz, crate::openapi_json, crate::ops::metrics::scrape,
    ),
    components(schemas(
        Problem, ProblemItem,
        native::BatchDto, native::ItemDto, native::ItemErrorDto, native::RejectedItemDto,
        native::SimDto, native::HistoryDto, native::EventDto, native::WebhookDto, native::DeliveryDto,
        native::BatchPage, native::ItemPage, native::SimPage, native::HistoryPage, native::EventPage,
        native::WebhookList, native::DeliveryList,
        batch_counts::BatchCountsDto, batch_counts::BatchStateCounts,
        batches::SubmitBatchBody, batches::SubmitResponse, sims::SimOrderResponse, sims::SimAction,
        webhooks::CreateWebhookBody, crate::Health, profiles::ProfileDto,
        downloads::OperationDto, downloads::FieldDto,
        esim::TemplateDto, esim::TemplateProfileDto, esim::TemplateList,
    )),
    modifiers(&Security, &RateLimited),
    tags(
        (name = "batches", description = "Submit and follow batches of orders"),
        (name = "sims", description = "SIMs, their history, single-SIM orders"),
        (name = "events", description = "The event feed"),
        (name = "profiles", description = "eSIM profiles: SGP.22 state, activation code, QR code"),
        (name = "webhooks", description = "Signed event deliveries"),
        (name = "esim", description = "Profile templates (SAIP) and personalised profile packages"),
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
