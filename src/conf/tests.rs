use std::fs;
use std::path::PathBuf;

use super::*;

fn parse(text: &str) -> Map {
    parse_str(text, "test.conf").unwrap_or_else(|e| panic!("{e}"))
}

fn value(map: &Map, key: &str) -> Value {
    get(map, key)
        .unwrap_or_else(|| panic!("no key {key}"))
        .value
        .clone()
}

fn err(text: &str) -> ConfError {
    parse_str(text, "bad.conf").expect_err(text)
}

fn s(v: &str) -> Value {
    Value::Str(v.to_string())
}

/// A fresh directory under the system temp dir, for include tests.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("natrix-conf-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn scalars_become_typed_values() {
    let map =
        parse("a: 1\nb: -2.5\nc: yes\nd: off\ne: hello\nf: \"q\"\ng: 64KB\nh: 1G\ni: 1MB\nj: 10s");
    assert_eq!(value(&map, "a"), Value::Int(1));
    assert_eq!(value(&map, "b"), Value::Float(-2.5));
    assert_eq!(value(&map, "c"), Value::Bool(true));
    assert_eq!(value(&map, "d"), Value::Bool(false));
    assert_eq!(value(&map, "e"), s("hello"));
    assert_eq!(value(&map, "f"), s("q"));
    assert_eq!(value(&map, "g"), Value::Int(65536));
    assert_eq!(value(&map, "h"), Value::Int(1_000_000_000));
    assert_eq!(value(&map, "i"), Value::Int(1_048_576));
    assert_eq!(value(&map, "j"), s("10s"));
}

#[test]
fn nested_maps_and_arrays_keep_order_and_positions() {
    let map =
        parse("cluster {\n  name: c1\n  routes: [\n    nats://a:6222\n    nats://b:6222\n  ]\n}");
    let cluster = get(&map, "cluster").unwrap();
    assert_eq!(cluster.pos, Pos::new("test.conf", 1, 1));
    let Value::Map(inner) = &cluster.value else {
        panic!("not a map")
    };
    let keys: Vec<&str> = inner.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["name", "routes"]);
    let Value::Array(routes) = value(inner, "routes") else {
        panic!("not an array")
    };
    assert_eq!(routes[1].value, s("nats://b:6222"));
    assert_eq!(routes[1].pos, Pos::new("test.conf", 5, 5));
}

#[test]
fn later_keys_override_earlier_ones() {
    let map = parse("port: 1\nport: 2");
    assert_eq!(map.len(), 1);
    assert_eq!(value(&map, "port"), Value::Int(2));
}

#[test]
fn variables_resolve_to_earlier_keys_in_scope() {
    let map = parse(
        "PORT: 4222\nport: $PORT\nm {\n  inner: x\n  a: $inner\n  b: $PORT\n}\nlist: [$PORT]",
    );
    assert_eq!(value(&map, "port"), Value::Int(4222));
    assert!(get(&map, "PORT").unwrap().referenced);
    assert!(!get(&map, "port").unwrap().referenced);
    let Value::Map(m) = value(&map, "m") else {
        panic!()
    };
    assert_eq!(value(&m, "a"), s("x"));
    assert_eq!(value(&m, "b"), Value::Int(4222));
    let Value::Array(list) = value(&map, "list") else {
        panic!()
    };
    assert_eq!(list[0].value, Value::Int(4222));
}

#[test]
fn inner_scope_variables_are_not_visible_outside() {
    let e = err("m { x: 1 }\ny: $x_not_there_natrix_test");
    assert_eq!((e.pos.line, e.pos.col), (2, 4));
    assert!(e.reason.contains("undefined variable"), "{}", e.reason);
}

#[test]
fn environment_variables_are_parsed_as_values() {
    std::env::set_var("NATRIX_CONF_TEST_PORT", "5222");
    std::env::set_var("NATRIX_CONF_TEST_LIST", "[a, b]");
    std::env::set_var("NATRIX_CONF_TEST_CHAIN", "$NATRIX_CONF_TEST_PORT");
    std::env::set_var("NATRIX_CONF_TEST_EMPTY", "");
    let map = parse(
        "p: $NATRIX_CONF_TEST_PORT\nl: $NATRIX_CONF_TEST_LIST\nc: $NATRIX_CONF_TEST_CHAIN\ne: $NATRIX_CONF_TEST_EMPTY",
    );
    assert_eq!(value(&map, "p"), Value::Int(5222));
    let Value::Array(list) = value(&map, "l") else {
        panic!()
    };
    assert_eq!(list.len(), 2);
    assert_eq!(value(&map, "c"), Value::Int(5222));
    assert_eq!(value(&map, "e"), s(""));
}

#[test]
fn environment_variable_cycles_are_errors() {
    std::env::set_var("NATRIX_CONF_TEST_CYCLE_A", "$NATRIX_CONF_TEST_CYCLE_B");
    std::env::set_var("NATRIX_CONF_TEST_CYCLE_B", "$NATRIX_CONF_TEST_CYCLE_A");
    let e = err("x: 1\na: $NATRIX_CONF_TEST_CYCLE_A");
    assert_eq!((e.pos.line, e.pos.col), (2, 4));
    assert!(e.reason.contains("cycle"), "{}", e.reason);
}

#[test]
fn bcrypt_hashes_are_not_variables() {
    let hash = "$2a$11$DRh4C0KNbNnD8K/hb/buWe1zPxEHrLEiDmuq1Mi0rRJiH/W25Qidm";
    let map = parse(&format!(
        "quoted: \"{hash}\"\nbare: {hash}\nsingle: '{hash}'"
    ));
    for key in ["quoted", "bare", "single"] {
        assert_eq!(value(&map, key), s(hash), "{key}");
    }
}

#[test]
fn undefined_variable_reports_its_position() {
    let e = err("a: 1\nb {\n  c: $NATRIX_CONF_TEST_UNDEFINED\n}");
    assert_eq!(e.pos, Pos::new("bad.conf", 3, 6));
    assert!(
        e.reason.contains("NATRIX_CONF_TEST_UNDEFINED"),
        "{}",
        e.reason
    );
}

#[test]
fn includes_are_relative_to_the_including_file() {
    let dir = temp_dir("include");
    fs::create_dir_all(dir.join("sub")).unwrap();
    fs::write(
        dir.join("sub/auth.conf"),
        "user: admin\ninclude more.conf\n",
    )
    .unwrap();
    fs::write(dir.join("sub/more.conf"), "password: \"pw\"\n").unwrap();
    fs::write(
        dir.join("main.conf"),
        "port: 1\nauthorization {\n  include sub/auth.conf\n  timeout: 2\n}\n",
    )
    .unwrap();
    let map = parse_file(&dir.join("main.conf")).unwrap();
    let Value::Map(auth) = value(&map, "authorization") else {
        panic!()
    };
    assert_eq!(value(&auth, "user"), s("admin"));
    assert_eq!(value(&auth, "password"), s("pw"));
    assert_eq!(value(&auth, "timeout"), Value::Int(2));
    let user_pos = &get(&auth, "user").unwrap().pos;
    assert!(user_pos.file.ends_with("auth.conf"), "{user_pos}");
    assert_eq!((user_pos.line, user_pos.col), (1, 1));
}

#[test]
fn included_keys_can_be_referenced_afterwards() {
    let dir = temp_dir("include-vars");
    fs::write(dir.join("vars.conf"), "PORT = 7222").unwrap();
    fs::write(dir.join("main.conf"), "include 'vars.conf'\nport: $PORT").unwrap();
    let map = parse_file(&dir.join("main.conf")).unwrap();
    assert_eq!(value(&map, "port"), Value::Int(7222));
}

#[test]
fn missing_include_points_at_the_directive() {
    let dir = temp_dir("include-missing");
    fs::write(dir.join("main.conf"), "port: 1\n  include ./nope.conf\n").unwrap();
    let e = parse_file(&dir.join("main.conf")).unwrap_err();
    assert!(e.pos.file.ends_with("main.conf"), "{e}");
    assert_eq!((e.pos.line, e.pos.col), (2, 3));
    assert!(e.reason.contains("cannot read include file"), "{e}");
    assert!(e.reason.contains("nope.conf"), "{e}");
}

#[test]
fn errors_inside_includes_point_into_the_included_file() {
    let dir = temp_dir("include-bad");
    fs::write(dir.join("bad.conf"), "a: 1\nb: [1,\n").unwrap();
    fs::write(dir.join("main.conf"), "include bad.conf\n").unwrap();
    let e = parse_file(&dir.join("main.conf")).unwrap_err();
    assert!(e.pos.file.ends_with("bad.conf"), "{e}");
    assert_eq!((e.pos.line, e.pos.col), (2, 4));
}

#[test]
fn include_cycles_are_errors() {
    let dir = temp_dir("include-cycle");
    fs::write(dir.join("a.conf"), "include b.conf\n").unwrap();
    fs::write(dir.join("b.conf"), "include a.conf\n").unwrap();
    let e = parse_file(&dir.join("a.conf")).unwrap_err();
    assert!(e.reason.contains("cycle"), "{e}");
}

#[test]
fn missing_file_is_an_error_not_a_panic() {
    let e = parse_file(std::path::Path::new("/nonexistent/natrix.conf")).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("/nonexistent/natrix.conf:0:0: cannot read config file"),
        "{e}"
    );
}

#[test]
fn malformed_input_gives_file_line_column_and_reason() {
    let cases: [(&str, u32, u32, &str); 8] = [
        ("a: 1\nb: \"never closed\n", 2, 4, "unterminated string"),
        ("a: 1\nm {\n  b: 2\n", 2, 3, "unterminated map"),
        ("a: 1\n\nn: 99999999999999999999", 3, 4, "out of range"),
        ("a: 1\nn: -x", 2, 4, "invalid number"),
        ("a: 1\nport:", 2, 6, "missing value for \"port\""),
        ("a: 1\nport:   \nb: 2", 2, 9, "missing value for \"port\""),
        ("a: 1\nsz: 10EB", 2, 5, "out of range"),
        (
            "ok: 1\nv: $NATRIX_CONF_TEST_NOPE",
            2,
            4,
            "undefined variable",
        ),
    ];
    for (text, line, col, reason) in cases {
        let e = err(text);
        assert_eq!((e.pos.line, e.pos.col), (line, col), "{text:?}: {e}");
        assert_eq!(e.pos.file, "bad.conf");
        assert!(e.reason.contains(reason), "{text:?}: {e}");
        assert!(
            e.to_string()
                .starts_with(&format!("bad.conf:{line}:{col}: ")),
            "{e}"
        );
    }
}

#[test]
fn comments_in_every_position() {
    let text = "\
# leading comment
// slash comment
port: 4222 # trailing
cluster { # after brace
  # own line
  name: c1 // trailing slash
  routes: [ # after bracket
    a # element
    // between
    b
  ] # after array
} # after map
";
    let map = parse(text);
    assert_eq!(value(&map, "port"), Value::Int(4222));
    let Value::Map(cluster) = value(&map, "cluster") else {
        panic!()
    };
    let Value::Array(routes) = value(&cluster, "routes") else {
        panic!()
    };
    assert_eq!(routes.len(), 2);
}

#[test]
fn empty_and_comment_only_documents() {
    assert!(parse("").is_empty());
    assert!(parse("# nothing\n\n// here\n").is_empty());
}
