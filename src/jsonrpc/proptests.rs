//! Property tests of the JSON-RPC parser: it never panics, what it accepts re-serializes to
//! itself, its fast path agrees with the exact path, and it tells syntax errors from shape errors
//! as an independent model of JSON-RPC 2.0 says it should.
//!
//! Crate-private because the fast path is only comparable with `Payload::parse_exact` here.
//! `PROPTEST_CASES=10000 cargo test --lib jsonrpc::proptests` searches longer.

use super::*;
use proptest::prelude::*;
use proptest::test_runner::Config;
use serde_json::{Map, json};

/// 256 cases (proptest's default, or `PROPTEST_CASES`), nothing written to the source tree.
fn config() -> Config {
    Config {
        failure_persistence: None,
        ..Config::default()
    }
}

/// Strings with the characters that break framings and escapers: CR, LF, NUL, U+2028/9, NEL,
/// quotes, backslashes, non-BMP.
fn tricky_string() -> impl Strategy<Value = String> {
    let tricky = prop::sample::select(vec![
        '\r', '\n', '\0', '\u{2028}', '\u{2029}', '\u{85}', '"', '\\', '/', ' ', '\t', 'a', 'é',
        '😀', '\u{7f}', '\u{feff}',
    ]);
    prop_oneof![
        prop::collection::vec(tricky, 0..12).prop_map(|chars| chars.into_iter().collect()),
        any::<String>(),
        Just(String::new()),
    ]
}

fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        short_double().prop_map(Value::from),
        Just(json!(0.1)),
        Just(json!(-0.0)),
    ]
}

/// Doubles with at most 10 significant digits and a decimal exponent within ±20: serde_json
/// reads those back bit for bit even without its `float_roundtrip` feature (see
/// `doubles_survive_a_round_trip_bit_for_bit` for the others).
fn short_double() -> impl Strategy<Value = f64> {
    (-999_999_999i64..=999_999_999, -20i32..=20)
        .prop_map(|(mantissa, exponent)| format!("{mantissa}e{exponent}").parse().unwrap_or(0.0))
}

/// Equality of payloads, tolerating a few ULPs of drift in doubles (`float_roundtrip` is on, so
/// none is expected; `doubles_survive_a_round_trip_bit_for_bit` holds that exactly).
fn same_up_to_double_drift(a: &Payload, b: &Payload) -> bool {
    fn same(a: &Value, b: &Value) -> bool {
        match (a, b) {
            (Value::Number(x), Value::Number(y)) if x.is_f64() && y.is_f64() => {
                let (x, y) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
                x == y || (x - y).abs() <= x.abs().max(y.abs()) * 4.0 * f64::EPSILON
            }
            (Value::Array(x), Value::Array(y)) => {
                x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y))
            }
            (Value::Object(x), Value::Object(y)) => {
                x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
            }
            (x, y) => x == y,
        }
    }
    let tree = |p: &Payload| serde_json::to_value(p.messages()).unwrap_or_default();
    matches!(
        (a, b),
        (Payload::Single(_), Payload::Single(_)) | (Payload::Batch(_), Payload::Batch(_))
    ) && same(&tree(a), &tree(b))
}

/// Any JSON value, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number(),
        tricky_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((tricky_string(), inner), 0..4)
                .prop_map(|members| Value::Object(members.into_iter().collect())),
        ]
    })
}

fn id() -> impl Strategy<Value = Id> {
    prop_oneof![
        any::<i64>().prop_map(Id::Number),
        tricky_string().prop_map(|s| Id::String(s.into())),
    ]
}

fn params() -> impl Strategy<Value = Option<Value>> {
    prop::option::of(json_value().prop_map(|v| match v {
        v @ (Value::Object(_) | Value::Array(_)) => v,
        other => json!({ "value": other }),
    }))
}

fn error_object() -> impl Strategy<Value = ErrorObject> {
    (
        any::<i32>(),
        tricky_string(),
        // `"data": null` reads back as no data, so only non-null data is generated.
        prop::option::of(json_value().prop_filter("not null", |v| !v.is_null())),
    )
        .prop_map(|(code, message, data)| ErrorObject {
            code: ErrorCode(code),
            message,
            data,
        })
}

/// Any valid message.
fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        (id(), tricky_string(), params())
            .prop_map(|(id, method, params)| Message::request(id, method, params)),
        (tricky_string(), params())
            .prop_map(|(method, params)| Message::notification(method, params)),
        (id(), json_value()).prop_map(|(id, result)| Message::result(id, result)),
        (prop::option::of(id()), error_object()).prop_map(|(id, error)| Message::error(id, error)),
    ]
}

fn payload() -> impl Strategy<Value = Payload> {
    prop_oneof![
        message().prop_map(Payload::Single),
        prop::collection::vec(message(), 1..5).prop_map(Payload::Batch),
    ]
}

/// A payload's wire form, built from [`Message::to_bytes`] as the transport sends messages.
fn to_wire(payload: &Payload) -> Vec<u8> {
    match payload {
        Payload::Single(message) => message.to_bytes().to_vec(),
        Payload::Batch(messages) => {
            let mut out = b"[".to_vec();
            for (i, message) in messages.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(&message.to_bytes());
            }
            out.push(b']');
            out
        }
    }
}

/// Values close to JSON-RPC messages: objects built from the envelope's member names with values
/// of every kind, right and wrong, plus arrays in the envelope's member order (what a positional
/// deserializer would take for an envelope).
fn near_message() -> impl Strategy<Value = Value> {
    let member_value = |name: &'static str| {
        let right = match name {
            "jsonrpc" => Just(json!("2.0")).boxed(),
            "id" => id().prop_map(|id| id.to_value()).boxed(),
            "method" => tricky_string().prop_map(Value::String).boxed(),
            "params" => params().prop_map(|p| p.unwrap_or(Value::Null)).boxed(),
            "result" => json_value().boxed(),
            _ => error_object()
                .prop_map(|e| serde_json::to_value(e).unwrap_or_default())
                .boxed(),
        };
        let wrong = prop_oneof![
            Just(Value::Null),
            Just(json!("1.0")),
            Just(json!(1.5)),
            Just(json!(true)),
            Just(json!([-32000, "positional error"])),
            Just(json!({ "code": "x", "message": 1 })),
            Just(json!({ "message": "no code" })),
            json_value(),
        ];
        prop_oneof![3 => right, 1 => wrong]
    };
    let names = ["jsonrpc", "id", "method", "params", "result", "error"];
    let members: Vec<_> = names
        .iter()
        .map(|&name| prop::option::weighted(0.6, member_value(name)).prop_map(move |v| (name, v)))
        .collect();
    let object = (members, prop::option::of((tricky_string(), json_value()))).prop_map(
        |(members, extra)| {
            let mut object = Map::new();
            if let Some((name, value)) = extra {
                object.insert(name, value);
            }
            for (name, value) in members {
                if let Some(value) = value {
                    object.insert(name.to_owned(), value);
                }
            }
            Value::Object(object)
        },
    );
    let positional = prop::collection::vec(
        prop_oneof![
            Just(json!("2.0")),
            Just(json!(1)),
            Just(json!("ping")),
            Just(json!({})),
            Just(Value::Null),
            Just(json!({ "code": 1, "message": "m" })),
        ],
        0..7,
    )
    .prop_map(Value::Array);
    prop_oneof![6 => object, 1 => positional, 1 => json_value()]
}

/// Near messages alone or in a batch.
fn near_payload() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => near_message(),
        1 => prop::collection::vec(near_message(), 0..4).prop_map(Value::Array),
    ]
}

/// JSON-RPC 2.0 as MCP uses it, written from the specification rather than from the parser:
/// the payload a value is, or `None` for a shape error.
fn model(value: &Value) -> Option<Payload> {
    match value {
        Value::Array(items) if !items.is_empty() => items
            .iter()
            .map(model_message)
            .collect::<Option<Vec<_>>>()
            .map(Payload::Batch),
        Value::Array(_) => None,
        other => model_message(other).map(Payload::Single),
    }
}

fn model_message(value: &Value) -> Option<Message> {
    let object = value.as_object()?;
    if object.get("jsonrpc")?.as_str()? != "2.0" {
        return None;
    }
    let read_id = |v: &Value| match v {
        Value::Number(n) => n.as_i64().map(Id::Number),
        Value::String(s) => Some(Id::String(s.as_str().into())),
        _ => None,
    };
    if let Some(method) = object.get("method") {
        let method = method.as_str()?.to_owned();
        let params = match object.get("params") {
            None => None,
            Some(p) if p.is_object() || p.is_array() => Some(p.clone()),
            Some(_) => return None,
        };
        return Some(match object.get("id") {
            None => Message::notification(method, params),
            Some(id) => Message::request(read_id(id)?, method, params),
        });
    }
    if let Some(result) = object.get("result") {
        return Some(Message::result(read_id(object.get("id")?)?, result.clone()));
    }
    // "error": an object with an integer code and a string message.
    let (code, message, data) = match object.get("error")? {
        Value::Object(error) => (error.get("code")?, error.get("message")?, error.get("data")),
        _ => return None,
    };
    let code = i32::try_from(code.as_i64()?).ok()?;
    let message = message.as_str()?.to_owned();
    let data = data.filter(|d| !d.is_null()).cloned();
    let id = object.get("id").and_then(read_id);
    Some(Message::error(
        id,
        ErrorObject {
            code: ErrorCode(code),
            message,
            data,
        },
    ))
}

/// Bytes that are not JSON: random bytes, truncated or extended JSON, invalid UTF-8.
fn not_json() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..64),
        (json_value(), any::<prop::sample::Index>()).prop_map(|(v, cut)| {
            let bytes = serde_json::to_vec(&v).unwrap_or_default();
            bytes[..cut.index(bytes.len().max(1)).min(bytes.len())].to_vec()
        }),
        (
            near_payload(),
            prop::sample::select(vec![&b"x"[..], b",", b"}", b"\xff", b"{"])
        )
            .prop_map(|(v, tail)| {
                let mut bytes = serde_json::to_vec(&v).unwrap_or_default();
                bytes.extend_from_slice(tail);
                bytes
            }),
    ]
    .prop_filter("not JSON", |b| serde_json::from_slice::<Value>(b).is_err())
}

/// Wire bytes of near payloads, compact or pretty, sometimes mangled.
fn wire_bytes() -> impl Strategy<Value = Vec<u8>> {
    let mangle = (any::<prop::sample::Index>(), any::<u8>(), 0..3u8);
    (near_payload(), any::<bool>(), prop::option::of(mangle)).prop_map(|(value, pretty, mangle)| {
        let mut bytes = if pretty {
            serde_json::to_vec_pretty(&value)
        } else {
            serde_json::to_vec(&value)
        }
        .unwrap_or_default();
        if let Some((at, byte, how)) = mangle
            && !bytes.is_empty()
        {
            let at = at.index(bytes.len());
            match how {
                0 => bytes[at] = byte,
                1 => bytes.insert(at, byte),
                _ => {
                    bytes.remove(at);
                }
            }
        }
        bytes
    })
}

proptest! {
    #![proptest_config(config())]

    /// Every valid message parses to exactly what was serialized.
    #[test]
    fn valid_payloads_parse_to_what_was_sent(payload in payload()) {
        let wire = to_wire(&payload);
        prop_assert_eq!(Payload::parse(&wire), Ok(payload.clone()));
        prop_assert_eq!(Payload::parse_exact(&wire), Ok(payload));
    }

    /// Arbitrary bytes never panic; whatever parses re-serializes to a payload that parses back
    /// equal.
    #[test]
    fn anything_accepted_round_trips(bytes in prop_oneof![
        prop::collection::vec(any::<u8>(), 0..128),
        wire_bytes(),
    ]) {
        if let Ok(payload) = Payload::parse(&bytes) {
            let wire = to_wire(&payload);
            prop_assert!(serde_json::from_slice::<Value>(&wire).is_ok());
            let again = Payload::parse(&wire);
            prop_assert!(
                again.as_ref().is_ok_and(|again| same_up_to_double_drift(again, &payload)),
                "{:?} re-serialized as {} parsed to {:?}",
                payload,
                String::from_utf8_lossy(&wire),
                again
            );
        }
    }

    /// The fast path (straight into the envelope) and the exact path (through a tree) give the
    /// same answer, error details included.
    #[test]
    fn fast_and_exact_paths_agree(bytes in wire_bytes()) {
        prop_assert_eq!(Payload::parse(&bytes), Payload::parse_exact(&bytes));
    }

    /// Bytes that are not JSON are a syntax error (`-32700`).
    #[test]
    fn non_json_is_a_syntax_error(bytes in not_json()) {
        prop_assert_eq!(Payload::parse(&bytes), Err(ParseError::Syntax));
    }

    /// Any JSON is never a syntax error; it parses to the message the model reads in it, or is a
    /// shape error (`-32600`) exactly when the model finds no message.
    #[test]
    fn json_parses_as_the_model_says(value in prop_oneof![near_payload(), json_value()]) {
        let bytes = serde_json::to_vec(&value).unwrap_or_default();
        match (Payload::parse(&bytes), model(&value)) {
            (Ok(got), Some(expected)) => prop_assert_eq!(got, expected),
            (Err(ParseError::Shape(_)), None) => {}
            (got, expected) => prop_assert!(
                false,
                "{} parsed to {:?}, the model says {:?}",
                String::from_utf8_lossy(&bytes),
                got,
                expected
            ),
        }
    }
}

/// A double read from a message is sent on with the same bits (serde_json's `float_roundtrip`:
/// without it `-2.248899623710803e269` came back as `-2.2488996237108028e269`, so a proxied tool
/// argument changed in its last digit).
#[test]
fn doubles_survive_a_round_trip_bit_for_bit() {
    let sent = Message::result(Id::Number(1), json!(-2.248899623710803e269));
    assert_eq!(Payload::parse(&sent.to_bytes()), Ok(Payload::Single(sent)));
    let config = Config {
        cases: 4096,
        ..config()
    };
    proptest!(config, |(x in any::<f64>().prop_filter("finite", |x| x.is_finite()))| {
        let sent = Message::result(Id::Number(1), json!(x));
        let received = Payload::parse(&sent.to_bytes());
        prop_assert_eq!(received, Ok(Payload::Single(sent)));
    });
}

/// A `null` method is a shape error on both paths (the fast path once read it as absent and took
/// `{"jsonrpc":"2.0","id":1,"method":null,"result":5}` for a response).
#[test]
fn a_null_method_is_a_shape_error() {
    for body in [
        &br#"{"jsonrpc":"2.0","id":1,"method":null,"result":5}"#[..],
        br#"[{"jsonrpc":"2.0","method":null,"error":{"code":0,"message":""}}]"#,
    ] {
        let parsed = Payload::parse(body);
        assert!(matches!(parsed, Err(ParseError::Shape(_))), "{parsed:?}");
        assert_eq!(parsed, Payload::parse_exact(body));
    }
}

/// JSON-RPC 2.0: "error" MUST be an object; serde's positional form of `ErrorObject`
/// (`"error":[-32000,"m"]`) is a shape error on both paths.
#[test]
fn an_error_is_an_object() {
    let parsed = Payload::parse(br#"{"jsonrpc":"2.0","id":1,"error":[-32000,"m"]}"#);
    assert!(matches!(parsed, Err(ParseError::Shape(_))), "{parsed:?}");
}

/// RFC 8259: JSON text is UTF-8, and a lone surrogate escape is no character: `-32700` on both
/// paths, even in members the fast path does not read.
#[test]
fn unicode_errors_are_syntax_errors_everywhere() {
    for body in [
        &b"{\"jsonrpc\":\"2.0\",\"method\":\"m\",\"x\":\"\xff\"}"[..],
        br#"{"jsonrpc":"2.0","method":"m","x":"\ud800"}"#,
    ] {
        assert_eq!(Payload::parse_exact(body), Err(ParseError::Syntax));
        assert_eq!(Payload::parse(body), Err(ParseError::Syntax));
    }
}
