//! Extractors whose every failure is a [`Problem`]: a JSON body that names the
//! offending field, and a query string likewise.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, web};
use serde::de::DeserializeOwned;

use crate::web::problem::{FieldViolation, Problem};

/// A JSON request body. Unlike actix's own, its errors name the field at fault:
/// - not JSON (`Content-Type`): 415 `unsupported_media_type`;
/// - larger than the configured payload limit: 413 `payload_too_large`;
/// - not well-formed JSON: 400 `malformed_json`;
/// - a value of the wrong type or a missing field: 422 `validation_failed`.
#[derive(Debug)]
pub struct Json<T>(pub T);

/// Marks an error response written in a format the caller dictates (a
/// payment provider's notify reply, such as WeChat Pay's
/// `{"code": "FAIL"}`): put it in the response's extensions and the app
/// leaves the response as it is, instead of making it a problem+json.
#[derive(Debug, Clone, Copy)]
pub struct CallerFormat;

impl<T> Json<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T: DeserializeOwned + 'static> FromRequest for Json<T> {
    type Error = Problem;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Problem>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let media_type_ok = is_json(req);
        let body = web::Bytes::from_request(req, payload);
        Box::pin(async move {
            if !media_type_ok {
                return Err(Problem::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_media_type",
                    "Unsupported media type",
                )
                .with_detail("The request body must be JSON (Content-Type: application/json)."));
            }
            let bytes = body.await.map_err(|e| body_problem(&e))?;
            parse_json(&bytes).map(Json)
        })
    }
}

/// The problem of a request body that could not be read, in words for the
/// client (never the reader's internals).
pub fn body_problem(error: &actix_web::Error) -> Problem {
    use actix_web::error::PayloadError;
    let status = error.as_response_error().status_code();
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        return Problem::for_status(status).with_detail("The request body is too large.");
    }
    let detail = match error.as_error::<PayloadError>() {
        // What the server's body deadline reports.
        Some(PayloadError::Io(e)) if e.kind() == std::io::ErrorKind::TimedOut => {
            return Problem::for_status(StatusCode::REQUEST_TIMEOUT)
                .with_detail("The request body did not arrive in time; the connection is closed.");
        }
        // A decoder's failure arrives as an incomplete body with its cause.
        Some(PayloadError::EncodingCorrupted | PayloadError::Incomplete(Some(_))) => {
            "The request body could not be decoded as its Content-Encoding says."
        }
        Some(PayloadError::Incomplete(None)) => "The request body ended before it was complete.",
        _ => "The request body could not be read.",
    };
    Problem::new(
        StatusCode::BAD_REQUEST,
        "unreadable_body",
        "Unreadable request body",
    )
    .with_detail(detail)
}

fn is_json(req: &HttpRequest) -> bool {
    let Some(value) = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Deserialises a JSON document, naming the field at fault when it does not fit `T`.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    let malformed = |e: serde_json::Error| {
        Problem::new(StatusCode::BAD_REQUEST, "malformed_json", "Malformed JSON")
            .with_detail(format!("The request body is not valid JSON: {e}"))
    };
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        if inner.is_syntax() || inner.is_eof() || inner.is_io() {
            return malformed(inner);
        }
        Problem::validation(vec![violation_at(
            &path,
            strip_position(&inner.to_string()),
        )])
    })?;
    de.end().map_err(malformed)?;
    // serde reads a struct from an array of its fields' values too (`[5]`
    // for `{"newStock": 5}`); every body of this API is a JSON object.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        return Err(Problem::validation(vec![FieldViolation::new(
            "body",
            "must be a JSON object",
        )]));
    }
    Ok(value)
}

/// serde reports a missing field at its parent's path; name the field itself.
fn violation_at(path: &str, message: String) -> FieldViolation {
    let parent = if path == "." { "" } else { path };
    if let Some(field) = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.strip_suffix('`'))
    {
        let field = if parent.is_empty() {
            field.to_owned()
        } else {
            format!("{parent}.{field}")
        };
        return FieldViolation::new(field, "is required");
    }
    let field = if parent.is_empty() {
        "body".to_owned()
    } else {
        parent.to_owned()
    };
    FieldViolation::new(field, message)
}

/// serde_json appends " at line L column C"; the field name says more.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

/// A query string whose errors name the parameter at fault (400 `invalid_query`).
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<T: DeserializeOwned> FromRequest for Query<T> {
    type Error = Problem;
    type Future = std::future::Ready<Result<Self, Problem>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(parse_query(req.query_string()).map(Query))
    }
}

/// Deserialises a query string, naming the parameter at fault.
pub fn parse_query<T: DeserializeOwned>(query: &str) -> Result<T, Problem> {
    let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
    serde_path_to_error::deserialize(de).map_err(|error| {
        let path = error.path().to_string();
        let message = error.into_inner().to_string();
        let violation = violation_at(&path, message);
        let violation =
            FieldViolation::new(violation.field.replace("body", "query"), violation.message);
        invalid_query(vec![violation])
    })
}

/// 400: a query parameter has an invalid value.
pub fn invalid_query(errors: Vec<FieldViolation>) -> Problem {
    Problem::new(
        StatusCode::BAD_REQUEST,
        "invalid_query",
        "Invalid query parameter",
    )
    .with_detail("A query parameter has an invalid value.")
    .with_errors(errors)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "camelCase")]
    #[allow(dead_code)]
    struct Body {
        new_stock: i64,
        items: Vec<Item>,
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Item {
        quantity: u32,
    }

    #[test]
    fn malformed_json_is_400() {
        let p = parse_json::<Body>(b"{\"newStock\": ").unwrap_err();
        assert_eq!((p.status, p.code.as_str()), (400, "malformed_json"));
        let p = parse_json::<Body>(b"{\"newStock\": 1, \"items\": []} trailing").unwrap_err();
        assert_eq!(p.code, "malformed_json");
    }

    #[test]
    fn wrong_types_name_the_field() {
        let p = parse_json::<Body>(br#"{"newStock": "ten", "items": []}"#).unwrap_err();
        assert_eq!((p.status, p.errors[0].field.as_str()), (422, "newStock"));
        let p = parse_json::<Body>(br#"{"newStock": 1, "items": [{"quantity": -1}]}"#).unwrap_err();
        assert_eq!(p.errors[0].field, "items[0].quantity");
        assert!(!p.errors[0].message.contains("line"));
    }

    #[test]
    fn missing_fields_name_the_field() {
        let p = parse_json::<Body>(br#"{"items": []}"#).unwrap_err();
        assert_eq!(p.errors[0].field, "newStock");
        assert_eq!(p.errors[0].message, "is required");
        let p = parse_json::<Body>(br#"[1]"#).unwrap_err();
        assert_eq!(p.errors[0].field, "body");
    }

    #[test]
    fn a_struct_is_never_read_from_an_array() {
        #[derive(Debug, Deserialize)]
        #[serde(rename_all = "camelCase")]
        #[allow(dead_code)]
        struct Stock {
            new_stock: i64,
        }
        // serde alone would take `[5]` as `{"newStock": 5}`.
        let p = parse_json::<Stock>(b"[5]").unwrap_err();
        assert_eq!((p.status, p.errors[0].field.as_str()), (422, "body"));
        assert!(parse_json::<Stock>(br#"{"newStock": 5}"#).is_ok());
        // Unknown fields, arrays of arrays included, are still ignored.
        assert!(parse_json::<Stock>(br#"{"newStock": 5, "x": [[1]]}"#).is_ok());
    }

    #[test]
    fn query_errors_name_the_parameter() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Q {
            limit: Option<u32>,
        }
        let p = parse_query::<Q>("limit=abc").unwrap_err();
        assert_eq!(
            (p.status, p.code.as_str(), p.errors[0].field.as_str()),
            (400, "invalid_query", "limit")
        );
        assert!(parse_query::<Q>("").is_ok());
    }

    #[test]
    fn constant_time_eq_compares_bytes() {
        use crate::web::auth::constant_time_eq;
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret!"));
    }
}

/// Deserialises a JSON integer the way JSON Schema defines one: `5` and
/// `5.0` are the same integer; `5.5`, `1e300` and strings are not integers.
/// Use on every `integer` field of a request body
/// (`#[serde(deserialize_with = "shared_kernel::web::extract::json_integer")]`).
pub fn json_integer<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    struct IntegerVisitor;

    impl serde::de::Visitor<'_> for IntegerVisitor {
        type Value = i64;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an integer")
        }

        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<i64, E> {
            Ok(v)
        }

        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<i64, E> {
            i64::try_from(v).map_err(|_| E::custom("is out of range"))
        }

        fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<i64, E> {
            // 2^63 is exactly representable; anything at or above it does not fit.
            const LIMIT: f64 = 9_223_372_036_854_775_808.0;
            if v.fract() != 0.0 || !v.is_finite() {
                Err(E::invalid_type(serde::de::Unexpected::Float(v), &self))
            } else if !(-LIMIT..LIMIT).contains(&v) {
                Err(E::custom("is out of range"))
            } else {
                #[allow(clippy::cast_possible_truncation)]
                Ok(v as i64)
            }
        }
    }

    deserializer.deserialize_any(IntegerVisitor)
}

#[cfg(test)]
mod integer_tests {
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    struct N {
        #[serde(deserialize_with = "super::json_integer")]
        n: i64,
    }

    fn parse(json: &str) -> Result<i64, String> {
        serde_json::from_str::<N>(json)
            .map(|n| n.n)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn integers_in_any_json_spelling() {
        assert_eq!(parse(r#"{"n": 42}"#), Ok(42));
        assert_eq!(parse(r#"{"n": -7}"#), Ok(-7));
        assert_eq!(parse(r#"{"n": 9605.0}"#), Ok(9605));
        assert_eq!(parse(r#"{"n": 1e3}"#), Ok(1000));
    }

    #[test]
    fn non_integers_are_refused() {
        for bad in [
            r#"{"n": 2.5}"#,
            r#"{"n": "3"}"#,
            r#"{"n": null}"#,
            r#"{"n": true}"#,
            r#"{"n": 1e300}"#,
            r#"{"n": 99999999999999999999}"#,
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
