//! A datastore_search page read as it arrives: the JSON answer is scanned byte by byte, the
//! `result.records` string (CSV or TSV text) is unescaped on the fly and its rows checked and
//! copied with `\n` line ends, so no page is ever held whole: memory is the same for 5,000 rows
//! a page as for 32,000.

/// Checks and copies delimited text fed in pieces: `\r\n` line ends become `\n`, quoted values
/// (line breaks and all) are copied whole, each row must have `fields` values.
#[derive(Debug)]
pub struct DelimitedNormaliser {
    delimiter: u8,
    fields: usize,
    in_quotes: bool,
    /// A quote seen inside a quoted value: `""` (a quote) or the value's end, told by what follows.
    quote_pending: bool,
    cr_pending: bool,
    separators: usize,
    row_has_bytes: bool,
    rows: u64,
    /// Where the last complete row ends in the output being filled.
    rows_end: usize,
}

impl DelimitedNormaliser {
    pub fn new(delimiter: u8, fields: usize) -> Self {
        DelimitedNormaliser {
            delimiter,
            fields,
            in_quotes: false,
            quote_pending: false,
            cr_pending: false,
            separators: 0,
            row_has_bytes: false,
            rows: 0,
            rows_end: 0,
        }
    }

    /// How much of the output holds whole rows (the rest is a row still arriving).
    pub fn rows_end(&self) -> usize {
        self.rows_end
    }

    /// The caller moved the first `n` bytes of the output on.
    pub fn consumed(&mut self, n: usize) {
        self.rows_end -= n.min(self.rows_end);
    }

    fn end_row(&mut self) -> Result<(), String> {
        if self.separators + 1 != self.fields {
            return Err(format!(
                "row {} has {} values for {} fields",
                self.rows + 1,
                self.separators + 1,
                self.fields
            ));
        }
        self.rows += 1;
        self.separators = 0;
        self.row_has_bytes = false;
        Ok(())
    }

    pub fn feed(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        let mut i = 0;
        let n = data.len();
        while i < n {
            if self.in_quotes {
                if self.quote_pending {
                    self.quote_pending = false;
                    if data[i] == b'"' {
                        out.push(b'"');
                        i += 1;
                        continue;
                    }
                    self.in_quotes = false;
                    continue;
                }
                match data[i..].iter().position(|&b| b == b'"') {
                    None => {
                        out.extend_from_slice(&data[i..]);
                        return Ok(());
                    }
                    Some(k) => {
                        out.extend_from_slice(&data[i..=i + k]);
                        self.quote_pending = true;
                        i += k + 1;
                    }
                }
                continue;
            }
            if self.cr_pending {
                self.cr_pending = false;
                if data[i] != b'\n' {
                    // A lone CR outside quotes is kept, as the csv module writes it.
                    out.push(b'\r');
                    self.row_has_bytes = true;
                }
                continue;
            }
            let delimiter = self.delimiter;
            let run = data[i..]
                .iter()
                .position(|&b| b == b'"' || b == b'\r' || b == b'\n' || b == delimiter)
                .unwrap_or(n - i);
            if run > 0 {
                out.extend_from_slice(&data[i..i + run]);
                self.row_has_bytes = true;
                i += run;
                continue;
            }
            match data[i] {
                b'"' => {
                    self.in_quotes = true;
                    self.row_has_bytes = true;
                    out.push(b'"');
                }
                b'\r' => self.cr_pending = true,
                b'\n' => {
                    self.end_row()?;
                    out.push(b'\n');
                    self.rows_end = out.len();
                }
                _ => {
                    self.separators += 1;
                    self.row_has_bytes = true;
                    out.push(delimiter);
                }
            }
            i += 1;
        }
        Ok(())
    }

    /// Ends the text (a last row without its line end is completed); returns the rows.
    pub fn finish(mut self, out: &mut Vec<u8>) -> Result<u64, String> {
        if self.in_quotes && !self.quote_pending {
            return Err(format!(
                "row {} has an unterminated quoted value",
                self.rows + 1
            ));
        }
        if self.cr_pending {
            self.row_has_bytes = true;
        }
        if self.row_has_bytes || self.separators > 0 {
            self.end_row()?;
            out.push(b'\n');
        }
        Ok(self.rows)
    }
}

/// Checks and copies a whole delimited text at once; returns it and its row count.
pub fn normalise_delimited(
    text: &[u8],
    delimiter: u8,
    fields: usize,
) -> Result<(Vec<u8>, u64), String> {
    let mut out = Vec::with_capacity(text.len() + 1);
    let mut normaliser = DelimitedNormaliser::new(delimiter, fields);
    normaliser.feed(text, &mut out)?;
    let rows = normaliser.finish(&mut out)?;
    Ok((out, rows))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Container {
    Object,
    Array,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// A value is next.
    Value,
    /// In an object, after `{` or `,`: a key or (after `{`) the end.
    KeyOrEnd,
    Key,
    KeyEscape,
    Colon,
    /// After a value: `,` or the container's end.
    AfterValue,
    Text,
    TextEscape,
    TextUnicode,
    Literal,
    Done,
}

/// Scans a datastore_search answer for `result.records` and streams that string's decoded
/// bytes through a `DelimitedNormaliser`. Everything else is checked for shape and skipped,
/// except `success`, which must be `true`.
pub struct RecordsScanner {
    state: State,
    stack: Vec<Container>,
    /// The key of each open object's current member (empty for arrays).
    keys: Vec<Vec<u8>>,
    key: Vec<u8>,
    literal: Vec<u8>,
    /// Whether the string being read is the records.
    streaming: bool,
    unicode: u32,
    unicode_digits: u8,
    high_surrogate: Option<u32>,
    success: Option<bool>,
    found_records: bool,
    decoded: Vec<u8>,
    normaliser: DelimitedNormaliser,
}

impl RecordsScanner {
    pub fn new(delimiter: u8, fields: usize) -> Self {
        RecordsScanner {
            state: State::Value,
            stack: Vec::new(),
            keys: Vec::new(),
            key: Vec::new(),
            literal: Vec::new(),
            streaming: false,
            unicode: 0,
            unicode_digits: 0,
            high_surrogate: None,
            success: None,
            found_records: false,
            decoded: Vec::with_capacity(64 * 1024),
            normaliser: DelimitedNormaliser::new(delimiter, fields),
        }
    }

    fn at(&self, path: &[&[u8]]) -> bool {
        self.stack.len() == path.len()
            && self.stack.iter().all(|c| *c == Container::Object)
            && self.keys.iter().zip(path).all(|(k, p)| k.as_slice() == *p)
    }

    fn value_ended(&mut self) {
        self.state = if self.stack.is_empty() {
            State::Done
        } else {
            State::AfterValue
        };
    }

    fn decoded_char(&mut self, c: u32) -> Result<(), String> {
        let ch = char::from_u32(c).ok_or_else(|| format!("\\u{c:04x} is not a character"))?;
        if self.streaming {
            let mut buf = [0u8; 4];
            self.decoded
                .extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
        }
        Ok(())
    }

    /// Feeds the next bytes of the answer; record text goes to `out`.
    pub fn feed(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        let mut i = 0;
        let n = data.len();
        while i < n {
            let b = data[i];
            match self.state {
                State::Text => {
                    // Copy the run up to the next quote or escape in one go.
                    let run = data[i..]
                        .iter()
                        .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
                        .unwrap_or(n - i);
                    if self.streaming {
                        self.decoded.extend_from_slice(&data[i..i + run]);
                    }
                    i += run;
                    if i == n {
                        break;
                    }
                    match data[i] {
                        b'"' => {
                            if self.streaming {
                                self.flush_decoded(out)?;
                                self.streaming = false;
                            }
                            self.value_ended();
                        }
                        b'\\' => self.state = State::TextEscape,
                        _ => return Err("a control character inside a JSON string".into()),
                    }
                    i += 1;
                    continue;
                }
                State::TextEscape => {
                    let c = match b {
                        b'"' => Some(b'"'),
                        b'\\' => Some(b'\\'),
                        b'/' => Some(b'/'),
                        b'b' => Some(0x08),
                        b'f' => Some(0x0c),
                        b'n' => Some(b'\n'),
                        b'r' => Some(b'\r'),
                        b't' => Some(b'\t'),
                        b'u' => None,
                        other => return Err(format!("\\{} is not a JSON escape", other as char)),
                    };
                    match c {
                        Some(c) => {
                            if self.high_surrogate.take().is_some() {
                                return Err("a lone UTF-16 surrogate".into());
                            }
                            if self.streaming {
                                self.decoded.push(c);
                            }
                            self.state = State::Text;
                        }
                        None => {
                            self.unicode = 0;
                            self.unicode_digits = 0;
                            self.state = State::TextUnicode;
                        }
                    }
                }
                State::TextUnicode => {
                    let digit = (b as char)
                        .to_digit(16)
                        .ok_or("a \\u escape needs four hex digits")?;
                    self.unicode = self.unicode * 16 + digit;
                    self.unicode_digits += 1;
                    if self.unicode_digits == 4 {
                        let u = self.unicode;
                        match (self.high_surrogate.take(), u) {
                            (None, 0xD800..=0xDBFF) => self.high_surrogate = Some(u),
                            (Some(high), 0xDC00..=0xDFFF) => {
                                self.decoded_char(0x10000 + ((high - 0xD800) << 10) + (u - 0xDC00))?
                            }
                            (Some(_), _) | (None, 0xDC00..=0xDFFF) => {
                                return Err("a lone UTF-16 surrogate".into());
                            }
                            (None, c) => self.decoded_char(c)?,
                        }
                        self.state = State::Text;
                    }
                }
                State::Key => match b {
                    b'"' => {
                        if let Some(k) = self.keys.last_mut() {
                            *k = std::mem::take(&mut self.key);
                        }
                        self.state = State::Colon;
                    }
                    b'\\' => self.state = State::KeyEscape,
                    _ => self.key.push(b),
                },
                State::KeyEscape => {
                    // Keys that matter here have no escapes; keep the escaped byte as it is.
                    self.key.push(b);
                    self.state = State::Key;
                }
                State::Literal => {
                    if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'+' | b'-') {
                        self.literal.push(b);
                    } else {
                        self.end_literal()?;
                        continue; // this byte belongs to what follows
                    }
                }
                _ if b.is_ascii_whitespace() => {}
                State::Value => {
                    let records = self.at(&[b"result", b"records"]);
                    match b {
                        b'{' => {
                            if records {
                                return Err("records are an object, not text".into());
                            }
                            self.stack.push(Container::Object);
                            self.keys.push(Vec::new());
                            self.state = State::KeyOrEnd;
                        }
                        b'[' => {
                            if records {
                                return Err("records are a list, not delimited text".into());
                            }
                            self.stack.push(Container::Array);
                            self.keys.push(Vec::new());
                            self.state = State::Value;
                        }
                        b']' if self.stack.last() == Some(&Container::Array) => {
                            self.close(Container::Array)?;
                        }
                        b'"' => {
                            self.streaming = records;
                            if records {
                                self.found_records = true;
                            }
                            self.state = State::Text;
                        }
                        b'-' | b'0'..=b'9' | b't' | b'f' | b'n' => {
                            if records {
                                return Err("records are not text".into());
                            }
                            self.literal.clear();
                            self.literal.push(b);
                            self.state = State::Literal;
                        }
                        other => {
                            return Err(format!(
                                "unexpected {:?} where a value belongs",
                                other as char
                            ));
                        }
                    }
                }
                State::KeyOrEnd => match b {
                    b'"' => {
                        self.key.clear();
                        self.state = State::Key;
                    }
                    b'}' => self.close(Container::Object)?,
                    other => {
                        return Err(format!(
                            "unexpected {:?} where a key belongs",
                            other as char
                        ));
                    }
                },
                State::Colon => match b {
                    b':' => self.state = State::Value,
                    other => return Err(format!("unexpected {:?} after a key", other as char)),
                },
                State::AfterValue => match (b, self.stack.last()) {
                    (b',', Some(Container::Object)) => {
                        self.key.clear();
                        self.state = State::KeyOrEnd;
                    }
                    (b',', Some(Container::Array)) => self.state = State::Value,
                    (b'}', Some(Container::Object)) => self.close(Container::Object)?,
                    (b']', Some(Container::Array)) => self.close(Container::Array)?,
                    (other, _) => {
                        return Err(format!("unexpected {:?} after a value", other as char));
                    }
                },
                State::Done => return Err("more after the JSON answer".into()),
            }
            i += 1;
        }
        if self.streaming {
            self.flush_decoded(out)?;
        }
        Ok(())
    }

    fn flush_decoded(&mut self, out: &mut Vec<u8>) -> Result<(), String> {
        let result = self.normaliser.feed(&self.decoded, out);
        self.decoded.clear();
        result
    }

    fn close(&mut self, container: Container) -> Result<(), String> {
        if self.stack.pop() != Some(container) {
            return Err("brackets do not match".into());
        }
        self.keys.pop();
        self.value_ended();
        Ok(())
    }

    fn end_literal(&mut self) -> Result<(), String> {
        let literal = std::mem::take(&mut self.literal);
        let valid = match literal.as_slice() {
            b"true" | b"false" | b"null" => true,
            number => std::str::from_utf8(number).is_ok_and(|s| s.parse::<f64>().is_ok()),
        };
        if !valid {
            return Err(format!(
                "{:?} is not a JSON value",
                String::from_utf8_lossy(&literal)
            ));
        }
        if self.at(&[b"success"]) {
            self.success = Some(literal == b"true");
        }
        self.value_ended();
        Ok(())
    }

    /// How much of the output holds whole rows.
    pub fn rows_end(&self) -> usize {
        self.normaliser.rows_end()
    }

    /// The caller moved the first `n` bytes of the output on.
    pub fn consumed(&mut self, n: usize) {
        self.normaliser.consumed(n);
    }

    /// Ends the answer; returns the rows the records held.
    pub fn finish(mut self, out: &mut Vec<u8>) -> Result<u64, String> {
        if self.state == State::Literal {
            self.end_literal()?;
        }
        if self.state != State::Done {
            return Err("the answer ends before its JSON does".into());
        }
        if self.success != Some(true) {
            return Err("the answer does not say success: true".into());
        }
        if !self.found_records {
            return Err("the answer has no result.records".into());
        }
        self.normaliser.finish(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(answer: &[u8], piece: usize) -> Result<(Vec<u8>, u64), String> {
        let mut scanner = RecordsScanner::new(b',', 3);
        let mut out = Vec::new();
        for chunk in answer.chunks(piece) {
            scanner.feed(chunk, &mut out)?;
        }
        let rows = scanner.finish(&mut out)?;
        Ok((out, rows))
    }

    #[test]
    fn records_stream_out_of_the_answer_in_any_pieces() {
        let records = "1,\"a, \"\"b\"\"\r\nline\",é😀\r\n2,,\"x\"\r\n";
        let answer = serde_json::json!({
            "help": "https://x/api/3/action/help_show?name=datastore_search",
            "success": true,
            "result": {"fields": [{"id": "_id", "type": "int"}], "total": 2, "limit": 2.5e0,
                       "records": records, "_links": {"next": "/x"}, "nested": [[], {}, null, -1]}
        })
        .to_string()
        .replace("é", "\\u00e9")
        .replace("😀", "\\ud83d\\ude00");
        for piece in [1, 2, 3, 7, 64, 100_000] {
            let (out, rows) = scan(answer.as_bytes(), piece).unwrap();
            assert_eq!(rows, 2, "pieces of {piece}");
            assert_eq!(
                String::from_utf8(out).unwrap(),
                "1,\"a, \"\"b\"\"\r\nline\",é😀\n2,,\"x\"\n"
            );
        }
    }

    #[test]
    fn whole_rows_are_told_from_a_row_still_arriving() {
        let mut n = DelimitedNormaliser::new(b',', 2);
        let mut out = Vec::new();
        n.feed(b"1,\"a\nb\"\r\n2,x", &mut out).unwrap();
        assert_eq!(&out[..n.rows_end()], b"1,\"a\nb\"\n");
        out.drain(..n.rows_end());
        n.consumed(8);
        assert_eq!(n.rows_end(), 0);
        n.feed(b"y\r\n", &mut out).unwrap();
        assert_eq!(&out[..n.rows_end()], b"2,xy\n");
    }

    #[test]
    fn answers_that_are_not_pages_are_errors() {
        for bad in [
            &br#"{"success": false, "error": {"message": "x"}}"#[..],
            br#"{"success": true, "result": {"records": [{"a": 1}]}}"#,
            br#"{"success": true, "result": {"records": "1,2,3\n"#,
            br#"{"success": true, "result": {"records": "1,2\n"}}"#,
            br#"{"success": true, "result": {"records": "1,\"2,3\n"}}"#,
            br#"{"success": true, "result": {}}"#,
            br#"<html>502</html>"#,
            br#"{"success": tru, "result": {"records": ""}}"#,
        ] {
            assert!(scan(bad, 5).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn delimited_text_is_copied_with_unix_line_ends_and_checked() {
        let page = b"1,\"a, \"\"b\"\"\r\nline two\",x\r\n2,,y\r\n";
        let (out, rows) = normalise_delimited(page, b',', 3).unwrap();
        assert_eq!(rows, 2);
        assert_eq!(out, b"1,\"a, \"\"b\"\"\r\nline two\",x\n2,,y\n");
        assert_eq!(
            normalise_delimited(b"1,2\n3,4", b',', 2).unwrap().1,
            2,
            "a last row without its line end"
        );
        assert!(
            normalise_delimited(b"1,2\n3\n", b',', 2).is_err(),
            "a short row"
        );
        assert!(
            normalise_delimited(b"1,\"open\n", b',', 2).is_err(),
            "an unterminated quote"
        );
        assert_eq!(normalise_delimited(b"", b',', 2).unwrap().1, 0);
        assert_eq!(
            normalise_delimited(b"a\tb\r\n", b'\t', 2).unwrap().0,
            b"a\tb\n"
        );
    }
}
