//! Span fields as JSON for the JSON log lines, written straight into the span's string.
//!
//! tracing-subscriber's `JsonFields` collects a span's fields into a map of
//! `serde_json::Value`s and serialises it, and on every `Span::record` parses the span's JSON
//! back into a map and writes it all again. Per request that was the largest single cost of
//! serving a read (a third of its instructions). This writes each field once, escaping as it
//! goes, and appends recorded fields to the object. A field recorded twice appears twice; the
//! log line reads the object back with serde_json, which keeps the later value. The lines
//! themselves are unchanged: the JSON event format reads these strings as it read
//! `JsonFields`'.

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing::span::Record;
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FormatFields, FormattedFields};

/// The [`FormatFields`] of the JSON log layer.
#[derive(Debug, Default)]
pub struct JsonSpanFields;

impl<'writer> FormatFields<'writer> for JsonSpanFields {
    fn format_fields<R: RecordFields>(&self, mut writer: Writer<'writer>, fields: R) -> fmt::Result {
        let mut object = Object { out: &mut writer, empty: true, result: Ok(()) };
        fields.record(&mut object);
        object.finish()
    }

    fn add_fields(&self, current: &'writer mut FormattedFields<Self>, fields: &Record<'_>) -> fmt::Result {
        let mut added = String::new();
        self.format_fields(Writer::new(&mut added), fields)?;
        let Some(added) = added.strip_prefix('{').filter(|rest| *rest != "}") else {
            return Ok(());
        };
        let current = &mut current.fields;
        if current.is_empty() || current == "{}" {
            current.clear();
            current.push('{');
        } else {
            // `{"a":1}` + `{"b":2}` → `{"a":1,"b":2}`
            current.pop();
            current.push(',');
        }
        current.push_str(added);
        Ok(())
    }
}

/// A JSON object being written, one member per field (named as `JsonFields` names them).
struct Object<'a, 'w> {
    out: &'a mut Writer<'w>,
    empty: bool,
    result: fmt::Result,
}

impl Object<'_, '_> {
    /// Writes `"name":` and then the value `write` writes.
    fn member(&mut self, field: &Field, write: impl FnOnce(&mut Writer<'_>) -> fmt::Result) {
        let name = field.name();
        if self.result.is_err() || name.starts_with("log.") {
            return;
        }
        let name = name.strip_prefix("r#").unwrap_or(name);
        self.result = (|| {
            self.out.write_char(if self.empty { '{' } else { ',' })?;
            self.empty = false;
            string(self.out, |w| w.write_str(name))?;
            self.out.write_char(':')?;
            write(self.out)
        })();
    }

    fn finish(self) -> fmt::Result {
        self.result?;
        self.out.write_str(if self.empty { "{}" } else { "}" })
    }
}

impl Visit for Object<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.member(field, |w| string(w, |e| e.write_str(value)));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.member(field, |w| string(w, |e| write!(e, "{value:?}")));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.member(field, |w| write!(w, "{value}"));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.member(field, |w| write!(w, "{value}"));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.member(field, |w| write!(w, "{value}"));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        // JSON has no NaN or infinity; serde_json writes them as null.
        self.member(field, |w| if value.is_finite() { write!(w, "{value}") } else { w.write_str("null") });
    }
}

/// A JSON string: `"`, what `write` writes escaped, `"`.
fn string(out: &mut Writer<'_>, write: impl FnOnce(&mut Escaped<'_, '_>) -> fmt::Result) -> fmt::Result {
    out.write_char('"')?;
    write(&mut Escaped(out))?;
    out.write_char('"')
}

/// Escapes what is written to it as the inside of a JSON string (as serde_json does).
struct Escaped<'a, 'w>(&'a mut Writer<'w>);

impl fmt::Write for Escaped<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        // Every byte that needs escaping is ASCII, so never inside a multi-byte character:
        // the runs between them are whole characters.
        let mut plain = 0;
        for (i, &b) in s.as_bytes().iter().enumerate() {
            let escape = match b {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                b'\n' => "\\n",
                b'\r' => "\\r",
                b'\t' => "\\t",
                0x08 => "\\b",
                0x0c => "\\f",
                0..=0x1f => "",
                _ => continue,
            };
            self.0.write_str(&s[plain..i])?;
            if escape.is_empty() {
                write!(self.0, "\\u{b:04x}")?;
            } else {
                self.0.write_str(escape)?;
            }
            plain = i + 1;
        }
        self.0.write_str(&s[plain..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    /// The fields of the one span `make` creates (and records into), as the JSON log layer
    /// keeps them.
    fn fields_of(make: impl FnOnce()) -> serde_json::Value {
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
        let sink = lines.clone();
        let layer = tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .fmt_fields(JsonSpanFields)
            .with_writer(move || Sink(sink.clone()));
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, make);
        let text = String::from_utf8(lines.lock().unwrap().clone()).unwrap();
        let line: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
        line["span"].clone()
    }

    struct Sink(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn span_fields_are_the_json_a_log_line_lists() {
        let tricky = "quote \" backslash \\ newline \n tab \t bell \u{7} é ✓";
        let span = fields_of(|| {
            let span = tracing::info_span!(
                "request",
                text = tricky,
                shown = %"a \"b\"",
                count = 42_u64,
                delta = -3_i64,
                ok = true,
                ratio = 0.5_f64,
                nan = f64::NAN,
                r#type = "raw",
                later = tracing::field::Empty,
                twice = "first",
            );
            span.record("later", "recorded");
            span.record("twice", "second");
            let _entered = span.enter();
            tracing::info!("inside");
        });
        assert_eq!(span["name"], "request");
        assert_eq!(span["text"], tricky);
        assert_eq!(span["shown"], "a \"b\"");
        assert_eq!(span["count"], 42);
        assert_eq!(span["delta"], -3);
        assert_eq!(span["ok"], true);
        assert_eq!(span["ratio"], 0.5);
        assert!(span["nan"].is_null());
        assert_eq!(span["type"], "raw");
        assert_eq!(span["later"], "recorded");
        assert_eq!(span["twice"], "second", "a value recorded later wins");
    }

    #[test]
    fn a_span_without_fields_is_an_empty_object() {
        let span = fields_of(|| {
            let span = tracing::info_span!("bare", later = tracing::field::Empty);
            let _entered = span.enter();
            tracing::info!("inside");
        });
        assert_eq!(span, serde_json::json!({"name": "bare"}));
    }
}
