//! Streamed exports of a batch's items and of the SIM list: CSV, NDJSON, XLSX.
//!
//! Rows are read through the [`Service`] one page (1,000 rows) at a time and
//! written out as they come, so memory stays bounded at any size:
//! - CSV and NDJSON are encoded page by page straight into the response body;
//! - XLSX is built by `rust_xlsxwriter` in constant-memory mode on a blocking
//!   thread (rows spill to a temporary file), and its zip container is then
//!   streamed into the response through a bounded channel.
//!
//! An item export carries the operation's parameter columns (never a secret)
//! followed by `result_*` columns. The CSV and NDJSON importers ignore
//! `result_*` columns, so an export re-imports as a new batch unchanged.
//!
//! Text that a spreadsheet could run as a formula is guarded in CSV and XLSX
//! (see [`super::formula`]); the CSV importer undoes the guard.

use std::io::{self, Write};
use std::sync::Arc;

use axum::body::Body;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::stream::{self, Stream};
use serde::Deserialize;
use serde_json::{Map, Value};
use simbatch_core::{ItemStatus, Operation};
use simbatch_engine::service::{Service, ServiceError};
use simbatch_store::{BatchRecord, ItemFilter, ItemRecord, SimFilter, SimRecord, Tenant};
use tokio::sync::mpsc;
use utoipa::{IntoParams, ToSchema};

use super::rfc3339;
use crate::error::ApiError;

/// Rows read per page from the store.
const PAGE: i64 = 1000;

/// Prefix of the result columns an importer ignores.
pub const RESULT_PREFIX: &str = "result_";

/// Data rows per XLSX worksheet (Excel's limit is 1,048,576 including the header).
const XLSX_ROWS_PER_SHEET: u32 = 1_048_575;

/// An export's file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Comma-separated values with one header row.
    Csv,
    /// One JSON object per line.
    Ndjson,
    /// An Excel workbook, IDs stored as text.
    Xlsx,
}

impl Format {
    /// Parse the `format` query value (default CSV).
    pub fn parse(v: Option<&str>) -> Result<Self, ApiError> {
        match v.map(str::trim) {
            None | Some("csv") => Ok(Self::Csv),
            Some("ndjson") => Ok(Self::Ndjson),
            Some("xlsx") => Ok(Self::Xlsx),
            Some(_) => Err(ApiError::bad_request(
                "invalid_query",
                "format must be csv, ndjson or xlsx",
            )),
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Self::Csv => "text/csv; charset=utf-8",
            Self::Ndjson => "application/x-ndjson",
            Self::Xlsx => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        }
    }

    fn extension(self) -> &'static str {
        match self {
            Self::Csv => "csv",
            Self::Ndjson => "ndjson",
            Self::Xlsx => "xlsx",
        }
    }
}

/// Which items of a batch to export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection {
    /// Every item.
    All,
    /// Items in exactly this status.
    Status(ItemStatus),
    /// Items that will not run or did not run: APPROVED, PROCESSING, CANCELED.
    Unprocessed,
}

impl Selection {
    /// Parse the `status` query value: an item status, `succeeded` (COMPLETED)
    /// or `unprocessed`.
    pub fn parse(v: Option<&str>) -> Result<Self, ApiError> {
        let Some(v) = v.map(str::trim).filter(|v| !v.is_empty()) else {
            return Ok(Self::All);
        };
        match v.to_ascii_lowercase().as_str() {
            "succeeded" => return Ok(Self::Status(ItemStatus::Completed)),
            "unprocessed" => return Ok(Self::Unprocessed),
            _ => {}
        }
        ItemStatus::parse(&v.to_ascii_uppercase())
            .map(Self::Status)
            .ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_query",
                    "status must be an item status (completed, failed, rejected, canceled, \
                     approved, processing), succeeded or unprocessed",
                )
            })
    }

    fn filter(self) -> Option<ItemStatus> {
        match self {
            Self::Status(s) => Some(s),
            Self::All | Self::Unprocessed => None,
        }
    }

    fn keeps(self, s: ItemStatus) -> bool {
        match self {
            Self::All => true,
            Self::Status(want) => s == want,
            Self::Unprocessed => matches!(
                s,
                ItemStatus::Approved | ItemStatus::Processing | ItemStatus::Canceled
            ),
        }
    }

    fn label(self) -> String {
        match self {
            Self::All => "all".into(),
            Self::Status(s) => s.as_str().to_ascii_lowercase(),
            Self::Unprocessed => "unprocessed".into(),
        }
    }
}

/// Query of the export endpoints.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    /// `csv` (default), `ndjson` or `xlsx`.
    pub format: Option<String>,
    /// An item status, `succeeded` (COMPLETED) or `unprocessed` (APPROVED,
    /// PROCESSING, CANCELED); default every item.
    pub status: Option<String>,
}

/// Query of the SIM export (its filters are those of `GET /v1/sims`).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FormatQuery {
    /// `csv` (default), `ndjson` or `xlsx`.
    pub format: Option<String>,
}

/// How a column is typed in a spreadsheet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Text, even when it looks like a number (ICCIDs, IMSIs, MSISDNs).
    Text,
    /// A whole number.
    Integer,
    /// A point in time (Unix ms).
    Time,
    /// True or false.
    Bool,
}

/// One cell of an exported row.
#[derive(Debug, Clone, PartialEq)]
enum Cell {
    Empty,
    Text(String),
    Integer(i64),
    Time(i64),
    Bool(bool),
}

impl Cell {
    fn from_json(v: Option<&Value>) -> Self {
        match v {
            None | Some(Value::Null) => Self::Empty,
            Some(Value::String(s)) => Self::Text(s.clone()),
            Some(Value::Bool(b)) => Self::Bool(*b),
            Some(Value::Number(n)) => n
                .as_i64()
                .map(Self::Integer)
                .unwrap_or_else(|| Self::Text(n.to_string())),
            Some(other) => Self::Text(other.to_string()),
        }
    }

    fn text(v: Option<&str>) -> Self {
        v.map_or(Self::Empty, |s| Self::Text(s.to_owned()))
    }

    fn csv(&self) -> String {
        match self {
            Self::Empty => String::new(),
            Self::Text(s) => super::formula::guard(s),
            Self::Integer(i) => i.to_string(),
            Self::Time(ms) => rfc3339(*ms),
            Self::Bool(b) => b.to_string(),
        }
    }

    fn json(&self) -> Option<Value> {
        match self {
            Self::Empty => None,
            Self::Text(s) => {
                // Objects (custom fields, services) were flattened to JSON text.
                if s.starts_with('{') {
                    if let Ok(v @ Value::Object(_)) = serde_json::from_str(s) {
                        return Some(v);
                    }
                }
                Some(Value::String(s.clone()))
            }
            Self::Integer(i) => Some((*i).into()),
            Self::Time(ms) => Some(Value::String(rfc3339(*ms))),
            Self::Bool(b) => Some((*b).into()),
        }
    }
}

/// A column: its header and type.
#[derive(Debug, Clone)]
struct Column {
    name: String,
    kind: Kind,
}

fn col(name: &str, kind: Kind) -> Column {
    Column {
        name: name.to_owned(),
        kind,
    }
}

/// What is exported, read page by page.
#[derive(Clone)]
enum Source {
    Items {
        service: Arc<Service>,
        tenant: Tenant,
        batch: Arc<BatchRecord>,
        selection: Selection,
        params: Arc<Vec<&'static str>>,
    },
    Sims {
        service: Arc<Service>,
        tenant: Tenant,
        filter: SimFilter,
    },
}

impl Source {
    fn columns(&self) -> Vec<Column> {
        match self {
            Self::Items { batch, params, .. } => {
                let mut cols = Vec::new();
                if batch.operation.is_none() {
                    cols.push(col("operation", Kind::Text));
                }
                cols.extend(params.iter().map(|p| col(p, Kind::Text)));
                cols.extend([
                    col("result_index", Kind::Integer),
                    col("result_status", Kind::Text),
                    col("result_field", Kind::Text),
                    col("result_code", Kind::Text),
                    col("result_reason", Kind::Text),
                    col("result_data", Kind::Text),
                    col("result_updated_at", Kind::Time),
                ]);
                cols
            }
            Self::Sims { .. } => vec![
                col("iccid", Kind::Text),
                col("imsi", Kind::Text),
                col("msisdn", Kind::Text),
                col("eid", Kind::Text),
                col("imei", Kind::Text),
                col("status", Kind::Text),
                col("subscription_state", Kind::Text),
                col("blocked", Kind::Bool),
                col("rate_plan", Kind::Text),
                col("supplementary_plans", Kind::Text),
                col("apn_status", Kind::Text),
                col("services", Kind::Text),
                col("custom_fields", Kind::Text),
                col("has_ki", Kind::Bool),
                col("created_at", Kind::Time),
                col("updated_at", Kind::Time),
            ],
        }
    }

    /// One page of rows after `cursor`, and the next cursor (None at the end).
    async fn page(
        &self,
        cursor: Option<String>,
    ) -> Result<(Vec<Vec<Cell>>, Option<String>), ServiceError> {
        match self {
            Self::Items {
                service,
                tenant,
                batch,
                selection,
                params,
            } => {
                let filter = ItemFilter {
                    status: selection.filter(),
                    after_seq: cursor.and_then(|c| c.parse().ok()),
                    limit: PAGE,
                };
                let page = service.list_items(tenant, &batch.id, filter).await?;
                let rows = page
                    .data
                    .iter()
                    .filter(|i| selection.keeps(i.status))
                    .map(|i| item_row(i, batch.operation.is_none(), params))
                    .collect();
                Ok((rows, page.next_cursor))
            }
            Self::Sims {
                service,
                tenant,
                filter,
            } => {
                let mut f = filter.clone();
                f.after_iccid = cursor;
                f.limit = PAGE;
                let page = service.list_sims(tenant, f).await?;
                Ok((page.data.iter().map(sim_row).collect(), page.next_cursor))
            }
        }
    }
}

/// The non-secret parameter columns of an item export: the operation's own,
/// or for a mixed batch those of every operation (each once, catalogue order).
fn param_columns(op: Option<Operation>) -> Vec<&'static str> {
    let ops: Vec<Operation> = match op {
        Some(op) => vec![op],
        None => Operation::ALL.to_vec(),
    };
    let mut names: Vec<&'static str> = Vec::new();
    for f in ops.iter().flat_map(|o| o.fields().iter()) {
        if !f.is_secret() && !names.contains(&f.name) {
            names.push(f.name);
        }
    }
    names
}

fn item_row(i: &ItemRecord, mixed: bool, params: &[&'static str]) -> Vec<Cell> {
    let mut row = Vec::with_capacity(params.len() + 8);
    if mixed {
        row.push(Cell::text(i.operation.map(|o| o.as_str())));
    }
    for p in params {
        let v = i.params.get(*p);
        if *p == "iccid" && v.is_none() && !i.iccid.is_empty() {
            row.push(Cell::Text(i.iccid.clone()));
        } else {
            row.push(Cell::from_json(v));
        }
    }
    row.extend([
        Cell::Integer(i.seq),
        Cell::Text(i.status.as_str().to_owned()),
        Cell::text(i.error_field.as_deref()),
        Cell::text(i.error_code.as_deref()),
        Cell::text(i.error_reason.as_deref()),
        Cell::from_json(i.result.as_ref()),
        Cell::Time(i.updated_at),
    ]);
    row
}

fn sim_row(s: &SimRecord) -> Vec<Cell> {
    let sim = &s.sim;
    let json_or_empty = |empty: bool, v: Value| {
        if empty {
            Cell::Empty
        } else {
            Cell::Text(v.to_string())
        }
    };
    vec![
        Cell::Text(sim.iccid.clone()),
        Cell::text(sim.imsi.as_deref()),
        Cell::text(sim.msisdn.as_deref()),
        Cell::text(sim.eid.as_deref()),
        Cell::text(sim.imei.as_deref()),
        Cell::Text(sim.status.as_str().to_owned()),
        Cell::text(sim.subscription_state.map(|s| s.as_str())),
        Cell::Bool(sim.blocked),
        Cell::text(sim.rate_plan.as_deref()),
        Cell::text(
            Some(sim.supplementary_plans.join(";"))
                .filter(|s| !s.is_empty())
                .as_deref(),
        ),
        Cell::text(sim.apn_status.as_deref()),
        json_or_empty(
            sim.services.is_empty(),
            Value::Object(sim.services.clone().into_iter().collect()),
        ),
        json_or_empty(
            sim.custom_fields.is_empty(),
            serde_json::to_value(&sim.custom_fields).unwrap_or_default(),
        ),
        Cell::Bool(s.has_ki),
        Cell::Time(s.created_at),
        Cell::Time(s.updated_at),
    ]
}

/// Export a batch's items (the batch must belong to the tenant).
pub async fn batch_items(
    service: Arc<Service>,
    tenant: Tenant,
    batch_id: &str,
    format: Format,
    selection: Selection,
) -> Result<Response, ApiError> {
    let batch = service.get_batch(&tenant, batch_id).await?;
    let name = format!(
        "batch-{}-{}.{}",
        batch.id,
        selection.label(),
        format.extension()
    );
    let params = param_columns(batch.operation);
    let source = Source::Items {
        service,
        tenant,
        batch: Arc::new(batch),
        selection,
        params: Arc::new(params),
    };
    Ok(respond(source, format, &name))
}

/// Export the tenant's SIMs matching `filter`.
pub fn sims(service: Arc<Service>, tenant: Tenant, filter: SimFilter, format: Format) -> Response {
    let name = format!("sims.{}", format.extension());
    respond(
        Source::Sims {
            service,
            tenant,
            filter,
        },
        format,
        &name,
    )
}

fn respond(source: Source, format: Format, filename: &str) -> Response {
    let body = match format {
        Format::Csv | Format::Ndjson => Body::from_stream(text_stream(source, format)),
        Format::Xlsx => Body::from_stream(xlsx_stream(source)),
    };
    (
        [
            (header::CONTENT_TYPE, format.content_type().to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{filename}\""),
            ),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        body,
    )
        .into_response()
}

/// Paging state of a text export.
struct TextState {
    source: Source,
    columns: Vec<Column>,
    cursor: Option<String>,
    started: bool,
    done: bool,
}

fn text_stream(source: Source, format: Format) -> impl Stream<Item = io::Result<Bytes>> {
    let columns = source.columns();
    let state = TextState {
        source,
        columns,
        cursor: None,
        started: false,
        done: false,
    };
    stream::try_unfold(state, move |mut st| async move {
        if st.done {
            return Ok(None);
        }
        let mut out = Vec::with_capacity(64 * 1024);
        if !st.started && format == Format::Csv {
            write_csv_row(&mut out, st.columns.iter().map(|c| c.name.clone()))?;
        }
        st.started = true;
        let (rows, next) = st.source.page(st.cursor.take()).await.map_err(|e| {
            tracing::warn!(error = %e, "export stopped: a page could not be read");
            io::Error::other("export page failed")
        })?;
        for row in &rows {
            match format {
                Format::Csv => write_csv_row(&mut out, row.iter().map(Cell::csv))?,
                _ => write_ndjson_row(&mut out, &st.columns, row)?,
            }
        }
        st.done = next.is_none();
        st.cursor = next;
        Ok(Some((Bytes::from(out), st)))
    })
}

fn write_csv_row(out: &mut Vec<u8>, fields: impl Iterator<Item = String>) -> io::Result<()> {
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(out);
    w.write_record(fields).map_err(io::Error::other)?;
    w.flush()
}

fn write_ndjson_row(out: &mut Vec<u8>, columns: &[Column], row: &[Cell]) -> io::Result<()> {
    let obj: Map<String, Value> = columns
        .iter()
        .zip(row)
        .filter_map(|(c, cell)| cell.json().map(|v| (c.name.clone(), v)))
        .collect();
    serde_json::to_writer(&mut *out, &obj)?;
    out.push(b'\n');
    Ok(())
}

/// A `Write` that hands 64 KiB chunks to the response body; it fails with
/// `BrokenPipe` once the client has gone.
struct ChannelWriter {
    tx: mpsc::Sender<io::Result<Bytes>>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    const CHUNK: usize = 64 * 1024;

    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(
            &mut self.buf,
            Vec::with_capacity(Self::CHUNK),
        ));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= Self::CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

fn xlsx_stream(source: Source) -> impl Stream<Item = io::Result<Bytes>> {
    let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(4);
    let handle = tokio::runtime::Handle::current();
    let err_tx = tx.clone();
    tokio::task::spawn_blocking(move || {
        let mut w = ChannelWriter {
            tx,
            buf: Vec::with_capacity(ChannelWriter::CHUNK),
        };
        if let Err(e) = write_xlsx(&handle, &source, &mut w) {
            tracing::warn!(error = %e, "XLSX export stopped");
            let _ = err_tx.blocking_send(Err(io::Error::other("XLSX export failed")));
        }
    });
    stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) })
}

/// Build the workbook page by page on this blocking thread, then stream it.
fn write_xlsx(
    handle: &tokio::runtime::Handle,
    source: &Source,
    out: &mut ChannelWriter,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    use rust_xlsxwriter::{ExcelDateTime, Format as XFormat, Workbook};

    let columns = source.columns();
    let bold = XFormat::new().set_bold();
    let text = XFormat::new().set_num_format("@");
    // Text that a spreadsheet could take for a formula once edited.
    let guarded = XFormat::new().set_num_format("@").set_quote_prefix();
    let when = XFormat::new().set_num_format("yyyy-mm-dd hh:mm:ss");
    let mut wb = Workbook::new();
    let mut sheet_no = 0u32;
    let mut row_no = XLSX_ROWS_PER_SHEET; // forces the first sheet
    let mut cursor = None;
    loop {
        let (rows, next) = handle.block_on(source.page(cursor.take()))?;
        for row in rows {
            if row_no >= XLSX_ROWS_PER_SHEET {
                sheet_no += 1;
                let ws = wb.add_worksheet_with_constant_memory()?;
                ws.set_name(format!("export-{sheet_no}"))?;
                for (c, column) in columns.iter().enumerate() {
                    let c = c as u16;
                    ws.write_string_with_format(0, c, &column.name, &bold)?;
                    let width = match column.kind {
                        Kind::Text => 22.0,
                        Kind::Time => 20.0,
                        Kind::Integer | Kind::Bool => 12.0,
                    };
                    ws.set_column_width(c, width)?;
                    if column.kind == Kind::Text {
                        ws.set_column_format(c, &text)?;
                    }
                }
                ws.set_freeze_panes(1, 0)?;
                row_no = 0;
            }
            row_no += 1;
            let ws = wb.worksheet_from_index(sheet_no as usize - 1)?;
            for (c, cell) in row.iter().enumerate() {
                let c = c as u16;
                match cell {
                    Cell::Empty => {}
                    Cell::Text(s) => {
                        let f = if super::formula::is_risky(s) {
                            &guarded
                        } else {
                            &text
                        };
                        ws.write_string_with_format(row_no, c, s, f)?;
                    }
                    Cell::Integer(i) => {
                        ws.write_number(row_no, c, *i as f64)?;
                    }
                    Cell::Bool(b) => {
                        ws.write_boolean(row_no, c, *b)?;
                    }
                    Cell::Time(ms) => {
                        let t = ExcelDateTime::from_timestamp(ms.div_euclid(1000))?;
                        ws.write_datetime_with_format(row_no, c, &t, &when)?;
                    }
                }
            }
        }
        cursor = next;
        if cursor.is_none() {
            break;
        }
    }
    if sheet_no == 0 {
        // No rows: still a workbook with the header.
        let ws = wb.add_worksheet();
        ws.set_name("export-1")?;
        for (c, column) in columns.iter().enumerate() {
            ws.write_string_with_format(0, c as u16, &column.name, &bold)?;
        }
    }
    wb.save_to_writer(&mut *out)?;
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_parses_groups_and_statuses() {
        assert_eq!(Selection::parse(None).unwrap(), Selection::All);
        assert_eq!(
            Selection::parse(Some("succeeded")).unwrap(),
            Selection::Status(ItemStatus::Completed)
        );
        assert_eq!(
            Selection::parse(Some("FAILED")).unwrap(),
            Selection::Status(ItemStatus::Failed)
        );
        assert_eq!(
            Selection::parse(Some("unprocessed")).unwrap(),
            Selection::Unprocessed
        );
        assert!(Selection::parse(Some("bogus")).is_err());
        assert!(Selection::Unprocessed.keeps(ItemStatus::Canceled));
        assert!(!Selection::Unprocessed.keeps(ItemStatus::Failed));
    }

    #[test]
    fn formats_parse() {
        assert_eq!(Format::parse(None).unwrap(), Format::Csv);
        assert_eq!(Format::parse(Some("xlsx")).unwrap(), Format::Xlsx);
        assert!(Format::parse(Some("pdf")).is_err());
    }

    #[test]
    fn item_columns_never_include_secrets() {
        for op in Operation::ALL {
            let cols = param_columns(Some(op));
            assert!(
                !cols.iter().any(|c| ["ki", "opc", "cc", "op"].contains(c)),
                "{op}: {cols:?}"
            );
        }
        let all = param_columns(None);
        assert_eq!(all.iter().filter(|c| **c == "iccid").count(), 1);
    }

    #[test]
    fn csv_text_cells_are_guarded_other_cells_are_not() {
        assert_eq!(
            Cell::Text("=HYPERLINK(\"x\")".into()).csv(),
            "'=HYPERLINK(\"x\")"
        );
        assert_eq!(Cell::Text("plan-a".into()).csv(), "plan-a");
        assert_eq!(Cell::Integer(-5).csv(), "-5");
        assert_eq!(Cell::Bool(true).csv(), "true");
    }

    #[test]
    fn csv_cells_quote_commas() {
        let mut out = Vec::new();
        write_csv_row(&mut out, ["a,b".to_owned(), "c".to_owned()].into_iter()).unwrap();
        assert_eq!(out, b"\"a,b\",c\r\n");
    }
}
