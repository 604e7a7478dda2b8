//! The batch result file behind `resultUrl`: an XLSX of every item, served
//! from a presigned link ([`crate::signed_url`]) that needs no headers.
//!
//! The link is `/simlessly/files/results/<tenant id>/<batchCode>.xlsx`
//! with `expires` and `signature`; it is valid for [`LINK_TTL_SECS`]. Each
//! `batch/info` answer carries a fresh link, and the file shows the batch as
//! it is when downloaded.

use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use rust_xlsxwriter::{Format, Workbook, Worksheet, XlsxError};

use super::wire::ItemView;

/// How long a result link stays valid.
pub const LINK_TTL_SECS: i64 = 3600;
/// Where result files are served.
pub const PREFIX: &str = "/simlessly/files/results";
/// XLSX media type.
pub const XLSX: &str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";

/// The path of a batch's result file (tenant id and batch code are URL-safe).
pub fn path(tenant_id: &str, batch_code: &str) -> String {
    format!("{PREFIX}/{tenant_id}/{batch_code}.xlsx")
}

/// `scheme://host` of the request (honouring `X-Forwarded-Proto` and
/// `X-Forwarded-Host` from a proxy), or empty when unknown (a relative link).
pub fn origin(headers: &HeaderMap) -> String {
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(',').next().unwrap_or("").trim().to_owned())
            .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_graphic()))
    };
    let host = get("x-forwarded-host").or_else(|| get(header::HOST.as_str()));
    let proto = get("x-forwarded-proto")
        .filter(|p| p == "http" || p == "https")
        .unwrap_or_else(|| "http".to_owned());
    host.map(|h| format!("{proto}://{h}")).unwrap_or_default()
}

/// The workbook: one row per item, in request order.
pub fn workbook(batch_code: &str, items: &[ItemView]) -> Result<Vec<u8>, XlsxError> {
    let mut wb = Workbook::new();
    let bold = Format::new().set_bold();
    let ws = wb.add_worksheet();
    ws.set_name("results")?;
    let heads = [
        "batchCode",
        "iccid",
        "eid",
        "success",
        "activationCode",
        "errorReason",
        "errorCode",
    ];
    for (c, h) in heads.iter().enumerate() {
        ws.write_string_with_format(0, c as u16, *h, &bold)?;
    }
    for (r, it) in items.iter().enumerate() {
        let row = r as u32 + 1;
        text(ws, row, 0, batch_code)?;
        text(ws, row, 1, &it.iccid)?;
        text(ws, row, 2, it.eid.as_deref().unwrap_or(""))?;
        ws.write_boolean(row, 3, it.success)?;
        text(ws, row, 4, it.activation_code.as_deref().unwrap_or(""))?;
        text(ws, row, 5, &it.error_reason)?;
        text(ws, row, 6, it.error_code.as_deref().unwrap_or(""))?;
    }
    ws.set_column_width(1, 24)?;
    ws.set_column_width(4, 60)?;
    ws.set_column_width(5, 60)?;
    wb.save_to_buffer()
}

/// A text cell: always a string cell, never a formula. Text a spreadsheet
/// would read as a formula once edited (an error reason echoing input) also
/// gets the quote-prefix style, as the native exports do.
fn text(ws: &mut Worksheet, row: u32, col: u16, v: &str) -> Result<(), XlsxError> {
    if crate::native::formula::is_risky(v) {
        ws.write_string_with_format(row, col, v, &Format::new().set_quote_prefix())?;
    } else {
        ws.write_string(row, col, v)?;
    }
    Ok(())
}

/// The file as an attachment.
pub fn attachment(batch_code: &str, bytes: Vec<u8>) -> Response {
    let mut resp = bytes.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(XLSX));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{batch_code}.xlsx\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use simbatch_core::ItemStatus;

    #[test]
    fn workbook_is_a_zip() {
        let items = vec![ItemView {
            success: true,
            error_reason: String::new(),
            error_code: None,
            iccid: "89860468152080349618".into(),
            eid: None,
            activation_code: Some("1$smdp.example$ABC".into()),
            status: ItemStatus::Completed,
            ac_link: None,
        }];
        let bytes = workbook("B1", &items).unwrap();
        assert_eq!(&bytes[..2], b"PK");
    }

    #[test]
    fn formula_like_text_stays_text() {
        use calamine::{Data, Reader, Xlsx};
        let items = vec![ItemView {
            success: false,
            error_reason: "=HYPERLINK(\"http://x\")".into(),
            error_code: Some("iccid_invalid_length".into()),
            iccid: "@SUM(A1)".into(),
            eid: None,
            activation_code: None,
            status: ItemStatus::Failed,
            ac_link: None,
        }];
        let bytes = workbook("B1", &items).unwrap();
        let mut book: Xlsx<_> =
            calamine::open_workbook_from_rs(std::io::Cursor::new(bytes)).unwrap();
        let rows = book.worksheet_range("results").unwrap();
        assert_eq!(rows.get((1, 1)), Some(&Data::String("@SUM(A1)".into())));
        assert_eq!(
            rows.get((1, 5)),
            Some(&Data::String("=HYPERLINK(\"http://x\")".into()))
        );
        assert_eq!(rows.get((1, 3)), Some(&Data::Bool(false)));
        let formulas = book.worksheet_formula("results").unwrap();
        assert!(formulas.used_cells().all(|(_, _, f)| f.is_empty()));
    }

    #[test]
    fn origin_prefers_the_proxy_headers() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("10.0.0.1:8080"));
        assert_eq!(origin(&h), "http://10.0.0.1:8080");
        h.insert(
            "x-forwarded-host",
            HeaderValue::from_static("api.example.com"),
        );
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        assert_eq!(origin(&h), "https://api.example.com");
        assert_eq!(origin(&HeaderMap::new()), "");
    }
}
