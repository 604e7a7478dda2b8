//! Streamed CSV and NDJSON uploads, read line by line and never collected.
//!
//! - Lines end with `\n` (an optional `\r` before it is dropped); blank lines
//!   are skipped and do not count as items.
//! - A line longer than [`MAX_LINE`] is skipped to its end and recorded as a
//!   REJECTED item (`line_too_long`), so indexes stay aligned.
//! - CSV: the first line is the header (field names; an unknown or repeated
//!   column is 400 `unknown_column` / `malformed_csv`). Each later line is one
//!   item; a row that cannot be read is a REJECTED item (`malformed_row`).
//!   Quoted fields may contain commas and quotes, not line breaks. A cell of
//!   an object field (custom fields, services) holds that object as JSON.
//! - NDJSON: each line is one JSON object; a line that is not one is a
//!   REJECTED item (`malformed_json` / `invalid_type`).
//! - Both ignore `result_*` columns and keys: those are what an export adds
//!   (see [`super::export`]), so an export uploads again as it is.
//! - CSV: a cell an export guarded against formula injection (`'` before a
//!   leading `=`, `+`, `-`, `@`, tab or CR) loses that one quote again
//!   (see [`super::formula`]).

use axum::body::{Body, BodyDataStream};
use bytes::{Buf, BytesMut};
use futures::StreamExt;
use serde_json::{Map, Value};
use simbatch_core::operation::FieldKind;
use simbatch_core::{Operation, Rejection};
use simbatch_engine::service::{BatchWriter, ServiceError, SubmitReport};

use super::export::RESULT_PREFIX;
use crate::error::ApiError;

/// Longest line accepted.
pub const MAX_LINE: usize = 64 * 1024;

/// The upload's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `text/csv`.
    Csv,
    /// `application/x-ndjson`.
    Ndjson,
}

enum Line {
    Text(Vec<u8>),
    TooLong,
}

struct Lines {
    stream: BodyDataStream,
    buf: BytesMut,
    eof: bool,
}

impl Lines {
    fn new(body: Body) -> Self {
        Self {
            stream: body.into_data_stream(),
            buf: BytesMut::new(),
            eof: false,
        }
    }

    /// The next line (without its end), or None at the end of the body.
    async fn next(&mut self) -> Result<Option<Line>, ApiError> {
        let mut too_long = false;
        loop {
            if let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
                let mut line = self.buf.split_to(pos + 1);
                if too_long {
                    return Ok(Some(Line::TooLong));
                }
                line.truncate(pos);
                if line.last() == Some(&b'\r') {
                    line.truncate(pos - 1);
                }
                if line.len() > MAX_LINE {
                    return Ok(Some(Line::TooLong));
                }
                return Ok(Some(Line::Text(line.to_vec())));
            }
            if self.buf.len() > MAX_LINE {
                // Discard what we have and keep discarding to the line's end.
                too_long = true;
                self.buf.clear();
            }
            if self.eof {
                if too_long {
                    return Ok(Some(Line::TooLong));
                }
                if self.buf.is_empty() {
                    return Ok(None);
                }
                let mut line = std::mem::take(&mut self.buf);
                if line.last() == Some(&b'\r') {
                    line.truncate(line.len() - 1);
                }
                return Ok(Some(Line::Text(line.to_vec())));
            }
            match self.stream.next().await {
                Some(Ok(chunk)) => self.buf.extend_from_slice(chunk.chunk()),
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "upload body failed");
                    return Err(ApiError::bad_request(
                        "malformed_body",
                        "the request body could not be read to its end",
                    ));
                }
                None => self.eof = true,
            }
        }
    }
}

fn is_blank(line: &[u8]) -> bool {
    line.iter().all(u8::is_ascii_whitespace)
}

fn too_long() -> Rejection {
    Rejection {
        field: None,
        code: "line_too_long".into(),
        reason: format!("the line exceeds {} KiB", MAX_LINE / 1024),
    }
}

fn malformed(code: &str, reason: impl Into<String>) -> Rejection {
    Rejection {
        field: None,
        code: code.into(),
        reason: reason.into(),
    }
}

/// Splits CSV lines into fields with `csv_core` (RFC 4180 quoting, no line
/// breaks inside fields). One reader serves a whole upload: building its
/// DFA costs more than reading a line, and a reader built per line made a
/// 1,000,000-row upload spend 70% of its time there.
struct CsvLines {
    reader: csv_core::Reader,
    out: Vec<u8>,
    ends: Vec<usize>,
}

impl Default for CsvLines {
    fn default() -> Self {
        // `csv_core::Reader::default()` leaves the DFA unbuilt; `new` builds it.
        Self {
            reader: csv_core::Reader::new(),
            out: Vec::new(),
            ends: Vec::new(),
        }
    }
}

impl CsvLines {
    /// The fields of `line`; None if it is not UTF-8. Like the `csv` crate,
    /// stray quotes are read leniently rather than refused.
    fn parse(&mut self, line: &[u8]) -> Option<Vec<String>> {
        std::str::from_utf8(line).ok()?;
        self.reader.reset();
        // Unquoting never makes a field longer, and there are at most len + 1 fields,
        // so one call reads the whole line and a second (empty input) ends the record.
        self.out.resize(line.len(), 0);
        self.ends.resize(line.len() + 1, 0);
        let (out, ends) = (&mut self.out[..], &mut self.ends[..]);
        let (_, nin, written, nends) = self.reader.read_record(line, out, ends);
        if nin != line.len() {
            return None;
        }
        let (_, _, more, more_ends) =
            self.reader
                .read_record(&[], &mut out[written..], &mut ends[nends..]);
        let (written, nends) = (written + more, nends + more_ends);
        let out = &out[..written];
        let mut start = 0;
        let mut fields = Vec::with_capacity(nends.max(1));
        for &end in &ends[..nends] {
            fields.push(String::from_utf8_lossy(&out[start..end]).into_owned());
            start = end;
        }
        if fields.is_empty() {
            fields.push(String::new());
        }
        Some(fields)
    }
}

/// Check a CSV header against the operation's fields (all fields and
/// `operation` for a mixed batch).
fn check_header(cols: &[String], op: Option<Operation>) -> Result<(), ApiError> {
    let known = |c: &str| {
        c.starts_with(RESULT_PREFIX)
            || match op {
                Some(op) => op.fields().iter().any(|f| f.name == c),
                None => {
                    c == "operation"
                        || Operation::ALL
                            .iter()
                            .any(|o| o.fields().iter().any(|f| f.name == c))
                }
            }
    };
    for (i, c) in cols.iter().enumerate() {
        if c.is_empty() || !known(c) {
            let name = simbatch_core::ids::clip(c);
            let what = op.map_or("any operation".to_owned(), |o| o.to_string());
            return Err(ApiError::bad_request(
                "unknown_column",
                format!("column {} '{name}' is not a field of {what}", i + 1),
            )
            .with_error(None, Some(&name), "unknown_column", "unknown column"));
        }
        if cols[..i].contains(c) {
            return Err(ApiError::bad_request(
                "malformed_csv",
                format!("column '{}' appears twice", simbatch_core::ids::clip(c)),
            ));
        }
    }
    Ok(())
}

/// Read the whole body into `writer` and finish it. On any fatal error the
/// writer is aborted, so no half batch is left to run.
pub async fn run(
    format: Format,
    op: Option<Operation>,
    body: Body,
    mut writer: BatchWriter,
) -> Result<SubmitReport, ApiError> {
    match feed(format, op, body, &mut writer).await {
        Ok(()) => Ok(writer.finish().await?),
        Err(e) => {
            writer.abort().await;
            Err(e)
        }
    }
}

async fn feed(
    format: Format,
    op: Option<Operation>,
    body: Body,
    w: &mut BatchWriter,
) -> Result<(), ApiError> {
    let mut lines = Lines::new(body);
    let mut header: Option<Vec<String>> = None;
    let mut csv = CsvLines::default();
    while let Some(line) = lines.next().await? {
        let line = match line {
            Line::TooLong => {
                if format == Format::Csv && header.is_none() {
                    return Err(ApiError::bad_request(
                        "line_too_long",
                        "the CSV header line is too long",
                    ));
                }
                w.push_rejected(too_long()).await.map_err(svc)?;
                continue;
            }
            Line::Text(t) => t,
        };
        if is_blank(&line) {
            continue;
        }
        match format {
            Format::Ndjson => {
                let rej = match serde_json::from_slice::<Value>(&line) {
                    Ok(Value::Object(mut m)) => {
                        m.retain(|k, _| !k.starts_with(RESULT_PREFIX));
                        w.push(m).await.map_err(svc)?;
                        continue;
                    }
                    Ok(_) => malformed("invalid_type", "the line must be a JSON object"),
                    Err(e) => malformed("malformed_json", format!("invalid JSON: {e}")),
                };
                w.push_rejected(rej).await.map_err(svc)?;
            }
            Format::Csv => {
                let Some(h) = &header else {
                    let line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&line);
                    let cols: Vec<String> = csv
                        .parse(line)
                        .ok_or_else(|| {
                            ApiError::bad_request("malformed_csv", "the header line is not CSV")
                        })?
                        .into_iter()
                        .map(|c| c.trim().to_owned())
                        .collect();
                    check_header(&cols, op)?;
                    header = Some(cols);
                    continue;
                };
                let Some(rec) = csv.parse(&line) else {
                    w.push_rejected(malformed(
                        "malformed_row",
                        "the row is not valid CSV (UTF-8, quotes closed)",
                    ))
                    .await
                    .map_err(svc)?;
                    continue;
                };
                if rec.len() != h.len() {
                    w.push_rejected(malformed(
                        "malformed_row",
                        format!("the row has {} fields, the header {}", rec.len(), h.len()),
                    ))
                    .await
                    .map_err(svc)?;
                    continue;
                }
                let map: Map<String, Value> = h
                    .iter()
                    .zip(rec)
                    .filter(|(name, _)| !name.starts_with(RESULT_PREFIX))
                    .map(|(name, cell)| (name.clone(), csv_cell(op, name, cell)))
                    .collect();
                w.push(map).await.map_err(svc)?;
            }
        }
    }
    if format == Format::Csv && header.is_none() {
        return Err(ServiceError::EmptyBatch.into());
    }
    Ok(())
}

/// A CSV cell as a JSON value (formula guard removed): text, except in an object field, where a cell
/// holding a JSON object is that object (anything else stays text, and the
/// item is then rejected naming the field).
fn csv_cell(op: Option<Operation>, name: &str, cell: String) -> Value {
    let cell = super::formula::unguard(cell);
    let is_object = |o: &Operation| {
        o.fields()
            .iter()
            .any(|f| f.name == name && f.kind == FieldKind::Object)
    };
    let object_field = match op {
        Some(o) => is_object(&o),
        None => Operation::ALL.iter().any(is_object),
    };
    if object_field && cell.trim_start().starts_with('{') {
        if let Ok(v @ Value::Object(_)) = serde_json::from_str::<Value>(&cell) {
            return v;
        }
    }
    Value::String(cell)
}

fn svc(e: ServiceError) -> ApiError {
    e.into()
}

#[cfg(test)]
mod tests {
    use super::CsvLines;

    fn p(line: &[u8]) -> Option<Vec<String>> {
        CsvLines::default().parse(line)
    }

    fn v(xs: &[&str]) -> Option<Vec<String>> {
        Some(xs.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn csv_lines() {
        assert_eq!(p(b"a,b,c"), v(&["a", "b", "c"]));
        assert_eq!(p(b""), v(&[""]));
        assert_eq!(p(b"a,,"), v(&["a", "", ""]));
        assert_eq!(p(b"\"x, \"\"y\"\"\",z"), v(&["x, \"y\"", "z"]));
        assert_eq!(p(b"\"\",1"), v(&["", "1"]));
        assert_eq!(p(b"\"open"), v(&["open"]), "lenient, as the csv crate");
        assert_eq!(p(b"\xff,a"), None);
    }

    #[test]
    fn one_reader_reads_every_line_as_a_fresh_one_would() {
        let lines: [&[u8]; 8] = [
            b"a,b,c",
            b"\"open",
            b"x,y",
            b"",
            b"\"x, \"\"y\"\"\",z",
            b"\xff,a",
            b"a,,",
            b"longer,line,with,more,fields,than,before",
        ];
        let mut csv = CsvLines::default();
        for line in lines {
            assert_eq!(
                csv.parse(line),
                p(line),
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
    }
}
