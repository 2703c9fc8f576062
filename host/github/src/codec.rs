//! Encodings shared by the record formats: names made safe for git ref names and tree paths,
//! ISO-8601 timestamps (the seeds' shapes carry them next to the exact milliseconds), and task
//! payload bytes as JSON. Pure functions; nothing here does I/O or reads a clock.

use base64::Engine;
use serde_json::{Value, json};

/// Every byte but `A-Z a-z 0-9 -` becomes `_XX` (hex), which makes any string a valid single
/// git ref component and tree path segment (no `/`, `.`, `..`, `~^:?*[\`, spaces, `.lock`) that
/// also needs no escaping in a URL path (GitHub would decode a `%`). Empty becomes `_`.
pub fn enc(s: &str) -> String {
    if s.is_empty() {
        return "_".to_string();
    }
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' {
            out.push(b as char);
        } else {
            out.push_str(&format!("_{b:02X}"));
        }
    }
    out
}

pub fn dec(s: &str) -> String {
    if s == "_" {
        return String::new();
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'_'
            && i + 2 < b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Milliseconds since the epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn iso(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let milli = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{milli:03}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

/// Payload bytes as JSON: `{"json": v}` when they are a JSON document (what the HTTP API and
/// the issue template submit), `{"text": s}` for other UTF-8, `{"base64": b}` otherwise.
pub fn bytes_to_json(b: &[u8]) -> Value {
    if let Ok(v) = serde_json::from_slice::<Value>(b)
        && serde_json::to_vec(&v).is_ok_and(|again| again == b)
    {
        return json!({ "json": v });
    }
    match std::str::from_utf8(b) {
        Ok(s) => json!({ "text": s }),
        Err(_) => json!({ "base64": base64::engine::general_purpose::STANDARD.encode(b) }),
    }
}

pub fn json_to_bytes(v: &Value) -> Option<Vec<u8>> {
    if let Some(j) = v.get("json") {
        return serde_json::to_vec(j).ok();
    }
    if let Some(t) = v.get("text").and_then(Value::as_str) {
        return Some(t.as_bytes().to_vec());
    }
    let b = v.get("base64").and_then(Value::as_str)?;
    base64::engine::general_purpose::STANDARD.decode(b).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_roundtrip_and_are_ref_safe() {
        for s in ["a", "task%x", "a/b", "..", "x.lock", "sp ace", "ü", ""] {
            let e = enc(s);
            assert_eq!(dec(&e), s);
            assert!(!e.contains('/') && !e.contains('.') && !e.is_empty(), "{e}");
        }
    }

    #[test]
    fn iso_formats_known_instants() {
        assert_eq!(iso(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso(1_735_689_600_123), "2025-01-01T00:00:00.123Z");
        assert_eq!(iso(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn payloads_roundtrip_exactly() {
        for b in [&b"{\"a\":1}"[..], b"{ \"a\": 1 }", b"plain", &[0xff, 0, 1]] {
            assert_eq!(json_to_bytes(&bytes_to_json(b)).unwrap(), b);
        }
    }
}
