//! Rows for `COPY … FROM STDIN (FORMAT csv)`.
//!
//! An upload appends its items in chunks (`simbatch_engine::service::CHUNK`).
//! Sent as CSV through `COPY`, the server parses plain text instead of nine
//! bound arrays and an `UNNEST`, which made the insert cheaper on the
//! benchmark (figures in the README). Every value is quoted, so commas, quotes, newlines and
//! backslashes in it need no other care; SQL NULL is the unquoted empty
//! field, which is how `COPY` reads NULL in CSV.

/// A CSV body being built, one row at a time.
#[derive(Debug, Default)]
pub(super) struct CsvRows {
    buf: Vec<u8>,
    /// Whether the current row has a field yet (a comma goes before the next).
    open: bool,
}

impl CsvRows {
    /// An empty body with room for `bytes`.
    pub fn with_capacity(bytes: usize) -> Self {
        Self {
            buf: Vec::with_capacity(bytes),
            open: false,
        }
    }

    fn sep(&mut self) {
        if self.open {
            self.buf.push(b',');
        }
        self.open = true;
    }

    /// Append a text field, or NULL for `None`.
    pub fn text(&mut self, value: Option<&str>) -> &mut Self {
        self.sep();
        if let Some(v) = value {
            self.buf.push(b'"');
            for part in v.split_inclusive('"') {
                self.buf.extend_from_slice(part.as_bytes());
                if part.ends_with('"') {
                    self.buf.push(b'"');
                }
            }
            self.buf.push(b'"');
        }
        self
    }

    /// Append an integer field.
    pub fn int(&mut self, value: i64) -> &mut Self {
        self.sep();
        self.buf.extend_from_slice(value.to_string().as_bytes());
        self
    }

    /// End the current row.
    pub fn end_row(&mut self) {
        self.buf.push(b'\n');
        self.open = false;
    }

    /// The body to send.
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(build: impl FnOnce(&mut CsvRows)) -> String {
        let mut r = CsvRows::default();
        build(&mut r);
        r.end_row();
        String::from_utf8(r.into_bytes()).unwrap()
    }

    #[test]
    fn values_are_quoted_and_quotes_doubled() {
        let line = row(|r| {
            r.int(-7).text(Some(r#"{"a":"b,c"}"#)).text(Some("x\ny\\z"));
        });
        assert_eq!(line, "-7,\"{\"\"a\"\":\"\"b,c\"\"}\",\"x\ny\\z\"\n");
    }

    #[test]
    fn null_is_empty_and_empty_text_is_quoted() {
        assert_eq!(
            row(|r| {
                r.text(None).text(Some("")).text(None);
            }),
            ",\"\",\n"
        );
    }

    #[test]
    fn rows_are_separated() {
        let mut r = CsvRows::default();
        r.int(1).text(Some("a"));
        r.end_row();
        r.int(2).text(Some("\"\""));
        r.end_row();
        assert_eq!(
            String::from_utf8(r.into_bytes()).unwrap(),
            "1,\"a\"\n2,\"\"\"\"\"\"\n"
        );
    }
}
