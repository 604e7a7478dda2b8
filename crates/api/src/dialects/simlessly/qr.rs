//! `acLink`: a presigned link to a profile's activation code as a QR PNG,
//! the way Simlessly's `needAcLink` hands out a QR image URL.
//!
//! The link is `/simlessly/files/qr/<tenant id>/<iccid>.png` with `expires`
//! and `signature` ([`crate::signed_url`]); anyone holding it may GET the
//! image, without headers, for [`LINK_TTL_SECS`]. The image is drawn when
//! downloaded from the profile as it is then, like the native
//! `GET /v1/profiles/{iccid}/qr.png`: a profile whose order was cancelled no
//! longer has a code to show (409).

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use simbatch_store::Tenant;

use super::envelope::{Code, Refusal};
use crate::signed_url::{self, LinkError, UrlSigner};
use crate::AppState;

/// How long a QR link stays valid (a link may travel by e-mail to the device owner).
pub const LINK_TTL_SECS: i64 = 7 * 24 * 3600;
/// Where QR images are served.
pub const PREFIX: &str = "/simlessly/files/qr";

/// The path of a profile's QR image (tenant ids and ICCIDs are URL-safe).
pub fn path(tenant_id: &str, iccid: &str) -> String {
    format!("{PREFIX}/{tenant_id}/{iccid}.png")
}

/// Whether `iccid` can be part of a link path (digits, with an optional final `F`).
fn link_safe(iccid: &str) -> bool {
    (18..=22).contains(&iccid.len()) && iccid.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// The absolute `acLink` of a profile, valid until `expires`; None when the
/// ICCID cannot be part of a link.
pub fn link(
    signer: &UrlSigner,
    origin: &str,
    tenant_id: &str,
    iccid: &str,
    expires: i64,
) -> Option<String> {
    link_safe(iccid).then(|| format!("{origin}{}", signer.sign(&path(tenant_id, iccid), expires)))
}

/// Serve the image behind a link: refused (403) when the signature is wrong
/// or expired.
pub async fn serve(
    st: &AppState,
    tenant_id: &str,
    file: &str,
    expires: Option<i64>,
    signature: &str,
) -> Result<Response, Refusal> {
    let invalid = |e: LinkError| Refusal::new(Code::InvalidLink, e.to_string());
    let iccid = file
        .strip_suffix(".png")
        .filter(|i| link_safe(i))
        .ok_or_else(|| invalid(LinkError::BadSignature))?;
    let expires = expires.ok_or_else(|| invalid(LinkError::BadSignature))?;
    let signer = signed_url::signer(st.store.as_ref()).await.map_err(|e| {
        tracing::error!(error = %e, "url signing key unavailable");
        Refusal::internal()
    })?;
    signer
        .verify(
            &path(tenant_id, iccid),
            expires,
            signature,
            signed_url::now_secs(),
        )
        .map_err(invalid)?;
    // The signature vouches for the tenant id; the service scopes by id.
    let tenant = Tenant {
        id: tenant_id.to_owned(),
        name: String::new(),
    };
    let profile = st
        .service
        .get_profile(&tenant, iccid)
        .await
        .map_err(|e| match e {
            simbatch_engine::service::ServiceError::NotFound(_) => {
                Refusal::new(Code::UnknownIccid, format!("no profile has ICCID {iccid}"))
            }
            other => other.into(),
        })?;
    if !profile.state.has_activation_code() {
        return Err(Refusal::new(
            Code::NoActivationCode,
            format!(
                "profile {iccid} is {}: it has no activation code to show",
                profile.state
            ),
        ));
    }
    let png = crate::native::profiles::qr_png_bytes(&format!("LPA:{}", profile.activation_code))
        .map_err(|e| {
            tracing::error!(error = %e, "QR rendering failed");
            Refusal::internal()
        })?;
    let mut resp = png.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("image/png"));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_name_the_profile_and_verify() {
        let s = UrlSigner::new(b"k");
        let l = link(&s, "http://h", "t1", "89860468152080349618", 100).unwrap();
        assert!(
            l.starts_with(
                "http://h/simlessly/files/qr/t1/89860468152080349618.png?expires=100&signature="
            ),
            "{l}"
        );
        let sig = l.rsplit('=').next().unwrap();
        assert!(s
            .verify(&path("t1", "89860468152080349618"), 100, sig, 99)
            .is_ok());
        assert!(link(&s, "", "t1", "../x", 100).is_none());
    }
}
