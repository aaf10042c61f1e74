use super::*;
use serde_json::json;

#[test]
fn parses_each_kind() {
    let p = Payload::parse(br#"{"jsonrpc":"2.0","id":"a","method":"m","params":{"x":1}}"#).unwrap();
    assert_eq!(
        p,
        Payload::Single(Message::request(Id::from("a"), "m", Some(json!({"x":1}))))
    );
    let p = Payload::parse(br#"{"jsonrpc":"2.0","method":"n"}"#).unwrap();
    assert_eq!(p, Payload::Single(Message::notification("n", None)));
    let p = Payload::parse(br#"{"jsonrpc":"2.0","id":3,"result":{"ok":true}}"#).unwrap();
    assert_eq!(
        p,
        Payload::Single(Message::result(Id::Number(3), json!({"ok":true})))
    );
    let p = Payload::parse(br#"{"jsonrpc":"2.0","id":null,"error":{"code":-1,"message":"x"}}"#)
        .unwrap();
    assert_eq!(
        p,
        Payload::Single(Message::error(None, ErrorObject::new(ErrorCode(-1), "x")))
    );
}

#[test]
fn syntax_and_shape_errors_differ() {
    assert_eq!(Payload::parse(b"{not json"), Err(ParseError::Syntax));
    assert_eq!(Payload::parse(b""), Err(ParseError::Syntax));
    for body in [
        &br#"{"malformed":true}"#[..],
        br#"{"jsonrpc":"1.0","id":1,"method":"m"}"#,
        br#"{"jsonrpc":"2.0","id":1,"method":5}"#,
        br#"{"jsonrpc":"2.0","id":{},"method":"m"}"#,
        br#"{"jsonrpc":"2.0","id":1,"method":"m","params":3}"#,
        br#"[]"#,
        br#"[{"jsonrpc":"2.0","method":"n"}, 4]"#,
        br#"42"#,
    ] {
        assert!(
            matches!(Payload::parse(body), Err(ParseError::Shape(_))),
            "{body:?}"
        );
    }
}

#[test]
fn shape_error_keeps_the_id_when_readable() {
    let Err(ParseError::Shape(e)) = Payload::parse(br#"{"jsonrpc":"1.0","id":9,"method":"m"}"#)
    else {
        panic!("expected a shape error");
    };
    assert_eq!(e.id, Some(Id::Number(9)));
}

#[test]
fn batch_helpers() {
    let p = Payload::parse(
        br#"[{"jsonrpc":"2.0","method":"n"},{"jsonrpc":"2.0","id":2,"method":"initialize"}]"#,
    )
    .unwrap();
    assert!(p.has_requests());
    assert!(p.contains_initialize());
    assert!(p.as_initialize().is_none());
    assert_eq!(p.first_request_id(), Some(&Id::Number(2)));
}

#[test]
fn serializes_in_one_pass_with_null_id_for_unknown() {
    let m = Message::error(None, ErrorObject::new(ErrorCode::PARSE_ERROR, "bad"));
    assert_eq!(
        &m.to_bytes()[..],
        br#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"bad"}}"#
    );
    let m = Message::notification("notifications/progress", Some(json!({"progress":1})));
    assert_eq!(
        &m.to_bytes()[..],
        br#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progress":1}}"#
    );
}

#[test]
fn round_trips() {
    for m in [
        Message::request(Id::Number(-4), "x", Some(json!([1, 2]))),
        Message::notification("y", Some(json!({}))),
        Message::result(Id::from("s"), json!(null)),
        Message::error(
            Some(Id::Number(1)),
            ErrorObject::new(ErrorCode::INTERNAL_ERROR, "e").with_data(json!({"k":1})),
        ),
    ] {
        assert_eq!(Payload::parse(&m.to_bytes()).unwrap(), Payload::Single(m));
    }
}

#[test]
fn fast_path_agrees_with_the_exact_path() {
    for body in [
        &br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"a\"b"}}}"#[..],
        br#"{"jsonrpc":"2.0","id":"x","method":"ping"}"#,
        br#"  {"method":"n","jsonrpc":"2.0","params":[1,2]}"#,
        br#"{"jsonrpc":"2.0","id":3,"result":null}"#,
        br#"{"jsonrpc":"2.0","id":3,"result":{"ok":true},"extra":1}"#,
        br#"{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"x","data":[1]}}"#,
        br#"{"jsonrpc":"2.0","error":{"code":-1,"message":"no id"}}"#,
        br#"[{"jsonrpc":"2.0","method":"a"},{"jsonrpc":"2.0","id":2,"method":"b"}]"#,
        // Not valid: both paths must refuse the same way.
        br#"{"jsonrpc":"2.0","id":null,"method":"m"}"#,
        br#"{"jsonrpc":"2.0","id":1,"method":"m","params":null}"#,
        br#"{"jsonrpc":"2.0","id":1,"method":"m","result":{}}"#,
        br#"{"jsonrpc":"2.0","result":{}}"#,
        br#"{"jsonrpc":2,"id":1,"method":"m"}"#,
        br#"{"jsonrpc":"2.0","id":1.5,"method":"m"}"#,
        br#"{"jsonrpc":"2.0","id":1,"id":2,"method":"m"}"#,
        br#"[]"#,
        br#"{"#,
    ] {
        assert_eq!(Payload::parse(body), Payload::parse_exact(body), "{}", String::from_utf8_lossy(body));
    }
}
