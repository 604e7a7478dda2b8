//! `/v1/profiles`: read an eSIM profile, and its activation code as a QR code.
//!
//! A profile is shown with its SGP.22 state, matching ID, activation code,
//! SM-DP+ address, EID and times. Its confirmation code (or the hash of it)
//! and the SIM's Ki are never part of the answer.

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use simbatch_core::ProfileState;
use simbatch_store::ProfileRecord;
use utoipa::ToSchema;

use super::rfc3339;
use crate::auth::Auth;
use crate::error::{ApiError, ApiResult, Problem};
use crate::AppState;

/// Media type of the QR code.
pub const PNG: &str = "image/png";
/// Pixels per QR module.
const MODULE_PX: usize = 8;
/// Light modules around the symbol (ISO/IEC 18004 asks for 4).
const QUIET_ZONE: usize = 4;

/// An eSIM profile.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProfileDto {
    /// ICCID.
    pub iccid: String,
    /// SGP.22 state at the SM-DP+.
    pub state: ProfileState,
    /// Matching ID.
    pub matching_id: String,
    /// The activation code `1$<SM-DP+>$<matching ID>[$<OID>][$1]`; null until
    /// the order is confirmed (AVAILABLE, ALLOCATED, LINKED, ERROR, UNAVAILABLE).
    pub activation_code: Option<String>,
    /// SM-DP+ address of the activation code.
    pub smdp_address: Option<String>,
    /// EID the profile is linked to (by DownloadOrder or ConfirmOrder).
    pub eid: Option<String>,
    /// Template (profile type) it was generated from.
    pub template: Option<String>,
    /// Whether the user must enter a confirmation code.
    pub confirmation_code_required: bool,
    /// When an unused profile expires (RFC 3339).
    pub expires_at: Option<String>,
    /// Creation (RFC 3339).
    pub created_at: String,
    /// Last change (RFC 3339).
    pub updated_at: String,
}

impl From<ProfileRecord> for ProfileDto {
    fn from(p: ProfileRecord) -> Self {
        let smdp_address = p.smdp_address();
        Self {
            activation_code: p.state.has_activation_code().then_some(p.activation_code),
            smdp_address,
            iccid: p.iccid,
            state: p.state,
            matching_id: p.matching_id,
            eid: p.eid,
            template: p.template,
            confirmation_code_required: p.confirmation_code_required,
            expires_at: p.expires_at.map(rfc3339),
            created_at: rfc3339(p.created_at),
            updated_at: rfc3339(p.updated_at),
        }
    }
}

/// Read an eSIM profile (never its confirmation code).
#[utoipa::path(
    get, path = "/v1/profiles/{iccid}", tag = "profiles",
    params(("iccid" = String, Path, description = "ICCID")),
    responses(
        (status = 200, description = "The profile", body = ProfileDto),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No profile with this ICCID for this tenant", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal error", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []), ("bearer" = []))
)]
pub async fn get(
    State(st): State<AppState>,
    Auth(tenant): Auth,
    Path(iccid): Path<String>,
) -> ApiResult<Json<ProfileDto>> {
    Ok(Json(st.service.get_profile(&tenant, &iccid).await?.into()))
}

/// The activation code as a PNG QR code of `LPA:<activation code>`, as an
/// LPA scans it.
#[utoipa::path(
    get, path = "/v1/profiles/{iccid}/qr.png", tag = "profiles",
    params(("iccid" = String, Path, description = "ICCID")),
    responses(
        (status = 200, description = "PNG image of the QR code", content_type = "image/png", body = Vec<u8>),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No profile with this ICCID for this tenant", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The profile has no activation code in its state", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal error", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []), ("bearer" = []))
)]
pub async fn qr_png(
    State(st): State<AppState>,
    Auth(tenant): Auth,
    Path(iccid): Path<String>,
) -> ApiResult<Response> {
    let p = st.service.get_profile(&tenant, &iccid).await?;
    if !p.state.has_activation_code() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!(
                "profile {} is {}: it has no activation code until its order is confirmed",
                p.iccid, p.state
            ),
        ));
    }
    let png = qr_png_bytes(&format!("LPA:{}", p.activation_code)).map_err(|e| {
        tracing::error!(error = %e, "QR rendering failed");
        ApiError::internal()
    })?;
    Ok((
        [
            (header::CONTENT_TYPE, PNG),
            (header::CACHE_CONTROL, "private, no-store"),
        ],
        png,
    )
        .into_response())
}

/// Render `text` as a black-on-white QR code PNG (8-bit greyscale), with a
/// quiet zone of four modules. Error correction level M.
pub fn qr_png_bytes(text: &str) -> Result<Vec<u8>, String> {
    let code = qrcode::QrCode::with_error_correction_level(text, qrcode::EcLevel::M)
        .map_err(|e| e.to_string())?;
    let modules = code.width();
    let colors = code.to_colors();
    let side = (modules + 2 * QUIET_ZONE) * MODULE_PX;
    let mut pixels = vec![255u8; side * side];
    for (i, c) in colors.iter().enumerate() {
        if *c != qrcode::Color::Dark {
            continue;
        }
        let (mx, my) = (i % modules + QUIET_ZONE, i / modules + QUIET_ZONE);
        for y in my * MODULE_PX..(my + 1) * MODULE_PX {
            pixels[y * side + mx * MODULE_PX..y * side + (mx + 1) * MODULE_PX].fill(0);
        }
    }
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, side as u32, side as u32);
    enc.set_color(png::ColorType::Grayscale);
    enc.set_depth(png::BitDepth::Eight);
    let mut w = enc.write_header().map_err(|e| e.to_string())?;
    w.write_image_data(&pixels).map_err(|e| e.to_string())?;
    w.finish().map_err(|e| e.to_string())?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_a_png_with_quiet_zone() {
        let png =
            qr_png_bytes("LPA:1$smdp.example.com$0123456789ABCDEF0123456789ABCDEF$$1").unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        let decoder = png::Decoder::new(std::io::Cursor::new(&png));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!(info.width, info.height);
        assert_eq!(info.width as usize % MODULE_PX, 0);
        // The quiet zone is white, the finder pattern's corner is black.
        let side = info.width as usize;
        assert!(buf[..side * QUIET_ZONE * MODULE_PX]
            .iter()
            .all(|p| *p == 255));
        let corner = QUIET_ZONE * MODULE_PX;
        assert_eq!(buf[corner * side + corner], 0);
    }
}
