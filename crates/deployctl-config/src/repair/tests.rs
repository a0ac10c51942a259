//! One test per message shape `repair` relies on, each produced by the real library.
use std::collections::BTreeMap;

use serde::Deserialize;

use super::*;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Strict {
    name: String,
    #[serde(default)]
    port: u16,
    #[serde(default)]
    memory: u32,
    #[serde(default)]
    kind: Option<Kind>,
    #[serde(default)]
    list: Vec<String>,
    #[serde(default)]
    either: Option<Either>,
}

#[derive(Debug, Deserialize)]
#[allow(dead_code)]
enum Kind {
    ClusterIP,
    NodePort,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
#[allow(dead_code)]
enum Either {
    Int(i64),
    Map { secret: String },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Empty {}

/// The message a deserialisation through `serde_path_to_error` from a `Value` gives,
/// exactly as [`deserialize`] sees it.
fn message<T: for<'de> Deserialize<'de> + std::fmt::Debug>(yaml: &str) -> String {
    let value: Value = serde_yaml::from_str(yaml).expect("test YAML parses");
    let err = serde_path_to_error::deserialize::<_, T>(&value).expect_err("must fail");
    err.into_inner().to_string()
}

fn parse_error(yaml: &str) -> serde_yaml::Error {
    serde_yaml::from_str::<Value>(yaml).expect_err("must not parse")
}

#[test]
fn location_suffix_is_cut() {
    let e = parse_error("a: [1, 2\nb: 3\n");
    let text = e.to_string();
    assert!(text.contains(LOCATION_MARK), "{text}");
    assert!(!strip_location(&text).contains(LOCATION_MARK), "{text}");
    assert!(e.location().is_some());
}

#[test]
fn duplicate_key_shapes() {
    for (yaml, key) in [
        ("app:\n  name: a\n  name: b\n", "with key \"name\""),
        ("a: 1\na: 2\n", "with key \"a\""),
        ("1: a\n1: b\n", "with key 1"),
        ("true: a\ntrue: b\n", "with key `true`"),
        ("~: a\n~: b\n", "with null key"),
    ] {
        let text = parse_error(yaml).to_string();
        assert!(text.contains(&format!("duplicate entry {key}")), "{text}");
        assert_eq!(classify_parse(&text), ParseShape::DuplicateKey, "{text}");
    }
}

#[test]
fn tab_shape() {
    for yaml in ["a: |\n\tx\n", "k:\n  a: |\n    x\n\ty\n"] {
        let text = parse_error(yaml).to_string();
        assert!(text.contains("found a tab character"), "{text}");
        assert_eq!(classify_parse(&text), ParseShape::Tab, "{text}");
    }
    let text = parse_error("a: [\n").to_string();
    assert_eq!(classify_parse(&text), ParseShape::Other, "{text}");
}

#[test]
fn unknown_field_shapes() {
    let m = message::<Strict>("name: a\nnmae: b\n");
    assert_eq!(
        classify(&m),
        Shape::UnknownField {
            field: "nmae".into(),
            expected: ["name", "port", "memory", "kind", "list", "either"]
                .map(String::from)
                .to_vec()
        },
        "{m}"
    );
    let m = message::<Empty>("x: 1\n");
    assert_eq!(
        classify(&m),
        Shape::UnknownField {
            field: "x".into(),
            expected: vec![]
        },
        "{m}"
    );
}

#[test]
fn missing_field_shape() {
    let m = message::<Strict>("port: 1\n");
    assert_eq!(
        classify(&m),
        Shape::MissingField {
            field: "name".into()
        },
        "{m}"
    );
}

#[test]
fn unknown_variant_shape() {
    let m = message::<Strict>("name: a\nkind: Nodeport\n");
    assert_eq!(
        classify(&m),
        Shape::UnknownVariant {
            got: "Nodeport".into(),
            allowed: vec!["ClusterIP".into(), "NodePort".into()]
        },
        "{m}"
    );
}

#[test]
fn invalid_type_shapes() {
    for (yaml, got, want) in [
        ("name: a\nmemory: lots\n", "string \"lots\"", "u32"),
        ("name: a\nlist: x\n", "string \"x\"", "a sequence"),
        ("name: [1]\n", "sequence", "a string"),
        ("- 1\n", "sequence", "struct Strict"),
    ] {
        let m = message::<Strict>(yaml);
        assert_eq!(
            classify(&m),
            Shape::InvalidType {
                got: got.into(),
                want: want.into()
            },
            "{m}"
        );
    }
    let m = message::<BTreeMap<String, String>>("a: {b: c}\n");
    assert!(
        matches!(classify(&m), Shape::InvalidType { got, want } if got == "map" && want == "a string"),
        "{m}"
    );
}

#[test]
fn invalid_value_shapes() {
    for (yaml, got, want) in [
        ("name: a\nport: 70000\n", "integer `70000`", "u16"),
        ("name: a\nport: -1\n", "integer `-1`", "u16"),
        ("name: a\nmemory: -5\n", "integer `-5`", "u32"),
    ] {
        let m = message::<Strict>(yaml);
        assert_eq!(
            classify(&m),
            Shape::InvalidValue {
                got: got.into(),
                want: want.into()
            },
            "{m}"
        );
    }
}

#[test]
fn untagged_enum_shape() {
    let m = message::<Strict>("name: a\neither: [1]\n");
    assert_eq!(
        classify(&m),
        Shape::UntaggedEnum {
            name: "Either".into()
        },
        "{m}"
    );
}

#[test]
fn ports_are_described_with_their_range() {
    let (msg, hint) = describe(
        Shape::InvalidValue {
            got: "integer `70000`".into(),
            want: "u16".into(),
        },
        "app.port",
    );
    assert_eq!(
        msg,
        "expected a port number from 1 to 65535, found integer `70000`"
    );
    assert_eq!(hint.as_deref(), Some("use 1 to 65535"));
}
