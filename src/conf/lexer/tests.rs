use super::TokenKind::*;
use super::*;

fn kinds(text: &str) -> Vec<TokenKind> {
    match lex(text) {
        Ok(tokens) => tokens.into_iter().map(|t| t.kind).collect(),
        Err(e) => panic!("lex failed for {text:?}: {e:?}"),
    }
}

fn key(k: &str) -> TokenKind {
    Key(k.to_string())
}

fn s(v: &str) -> TokenKind {
    Str(v.to_string())
}

fn int(v: &str) -> TokenKind {
    Integer(v.to_string())
}

fn lex_err(text: &str) -> (u32, u32, String) {
    let e = lex(text).expect_err(text);
    (e.mark.line, e.mark.col, e.reason)
}

#[test]
fn three_separators() {
    for text in [
        "port: 4222",
        "port = 4222",
        "port 4222",
        "port:4222",
        "port=4222",
    ] {
        assert_eq!(kinds(text), [key("port"), int("4222")], "{text}");
    }
}

#[test]
fn entries_end_with_newline_comma_or_semicolon() {
    assert_eq!(
        kinds("a: 1, b: 2; c: 3\nd: 4"),
        [
            key("a"),
            int("1"),
            key("b"),
            int("2"),
            key("c"),
            int("3"),
            key("d"),
            int("4")
        ]
    );
}

#[test]
fn strings_of_every_kind() {
    assert_eq!(kinds(r#"a: "x y""#), [key("a"), s("x y")]);
    assert_eq!(kinds("a: 'x \\n y'"), [key("a"), s("x \\n y")]);
    assert_eq!(kinds("a: x/y.z"), [key("a"), s("x/y.z")]);
    assert_eq!(
        kinds(r#"a: "t\tn\nq\"b\\h\x41""#),
        [key("a"), s("t\tn\nq\"b\\hA")]
    );
    assert_eq!(kinds("a: \"caf\\xc3\\xa9\""), [key("a"), s("café")]);
}

#[test]
fn booleans_like_nats_server() {
    for (word, b) in [
        ("true", true),
        ("FALSE", false),
        ("yes", true),
        ("No", false),
        ("on", true),
        ("off", false),
    ] {
        assert_eq!(kinds(&format!("a: {word}")), [key("a"), Bool(b)]);
    }
    assert_eq!(kinds("a: \"true\""), [key("a"), s("true")]);
}

#[test]
fn numbers_sizes_and_strings_that_start_with_digits() {
    assert_eq!(kinds("a: -12"), [key("a"), int("-12")]);
    assert_eq!(kinds("a: 1.5"), [key("a"), Float("1.5".into())]);
    assert_eq!(kinds("a: 64KB"), [key("a"), int("64KB")]);
    assert_eq!(kinds("a: 1G"), [key("a"), int("1G")]);
    assert_eq!(kinds("a: 10s"), [key("a"), s("10s")]);
    assert_eq!(kinds("a: 500ms"), [key("a"), s("500ms")]);
    assert_eq!(kinds("a: 1h30m"), [key("a"), s("1h30m")]);
    assert_eq!(kinds("a: 127.0.0.1:4222"), [key("a"), s("127.0.0.1:4222")]);
    assert_eq!(
        kinds("a: 2020-01-02T03:04:05Z"),
        [key("a"), s("2020-01-02T03:04:05Z")]
    );
    assert_eq!(kinds("a: n1-c1"), [key("a"), s("n1-c1")]);
}

#[test]
fn arrays_with_commas_newlines_and_comments() {
    let text = "r: [\n  a, b # one\n  c // two\n  'd',\n]";
    assert_eq!(
        kinds(text),
        [
            key("r"),
            ArrayStart,
            s("a"),
            s("b"),
            s("c"),
            s("d"),
            ArrayEnd
        ]
    );
    assert_eq!(
        kinds("r: [1, 2]"),
        [key("r"), ArrayStart, int("1"), int("2"), ArrayEnd]
    );
    assert_eq!(kinds("r: []"), [key("r"), ArrayStart, ArrayEnd]);
}

#[test]
fn maps_and_top_level_blocks() {
    assert_eq!(
        kinds("cluster {\n  name: c1 # c\n}"),
        [key("cluster"), MapStart, key("name"), s("c1"), MapEnd]
    );
    assert_eq!(
        kinds("m: {a: 1, b: {}}"),
        [
            key("m"),
            MapStart,
            key("a"),
            int("1"),
            key("b"),
            MapStart,
            MapEnd,
            MapEnd
        ]
    );
    assert_eq!(kinds("cluster\n{\n}"), [key("cluster"), MapStart, MapEnd]);
    assert_eq!(
        kinds("{ \"a\": 1, \"b\": [] }"),
        [key("a"), int("1"), key("b"), ArrayStart, ArrayEnd]
    );
}

#[test]
fn quoted_keys_and_odd_key_characters() {
    assert_eq!(kinds("\"a b\": 1"), [key("a b"), int("1")]);
    assert_eq!(kinds("$SYS { }"), [key("$SYS"), MapStart, MapEnd]);
}

#[test]
fn variables_and_bcrypt_like_text() {
    assert_eq!(kinds("a: $FOO"), [key("a"), Variable("FOO".into())]);
    assert_eq!(kinds("a: \"$2a$11$abc\""), [key("a"), s("$2a$11$abc")]);
    assert_eq!(
        kinds("a: $2a$11$abc"),
        [key("a"), Variable("2a$11$abc".into())]
    );
}

#[test]
fn include_directive() {
    assert_eq!(
        kinds("include ./auth.conf"),
        [Include("./auth.conf".into())]
    );
    assert_eq!(
        kinds("include \"a b.conf\" # c"),
        [Include("a b.conf".into())]
    );
    assert_eq!(
        kinds("m { include 'x.conf'\n }"),
        [key("m"), MapStart, Include("x.conf".into()), MapEnd]
    );
    assert_eq!(kinds("include: 1"), [key("include"), int("1")]);
}

#[test]
fn comments_everywhere() {
    let text = "# top\n// also\na: 1 # after\nm { # open\n  # inside\n  b: 2 // after\n} # close\n";
    assert_eq!(
        kinds(text),
        [
            key("a"),
            int("1"),
            key("m"),
            MapStart,
            key("b"),
            int("2"),
            MapEnd
        ]
    );
}

#[test]
fn block_strings() {
    assert_eq!(
        kinds("a: (\nline one\nline two\n)\nb: 1"),
        [key("a"), s("\nline one\nline two"), key("b"), int("1")]
    );
}

#[test]
fn positions_are_one_based() {
    let tokens = lex("a: 1\n  bb: 'x'").unwrap();
    let marks: Vec<(u32, u32)> = tokens.iter().map(|t| (t.mark.line, t.mark.col)).collect();
    assert_eq!(marks, [(1, 1), (1, 4), (2, 3), (2, 7)]);
}

#[test]
fn malformed_input_reports_where_and_why() {
    let (line, col, reason) = lex_err("a: 1\nb: \"open");
    assert_eq!((line, col), (2, 4));
    assert!(reason.contains("unterminated string"), "{reason}");

    let (line, col, reason) = lex_err("a: 1\ncluster {\n  name: x\n");
    assert_eq!((line, col), (2, 9));
    assert!(reason.contains("unterminated map"), "{reason}");

    let (line, col, reason) = lex_err("r: [1,\n 2");
    assert_eq!((line, col), (1, 4));
    assert!(reason.contains("unterminated array"), "{reason}");

    let (line, col, reason) = lex_err("a: 1\nport:\n");
    assert_eq!((line, col), (2, 6));
    assert!(reason.contains("missing value for \"port\""), "{reason}");

    let (line, col, reason) = lex_err("x: -abc");
    assert_eq!((line, col), (1, 4));
    assert!(reason.contains("invalid number"), "{reason}");

    let (line, col, reason) = lex_err("x: .5");
    assert_eq!((line, col), (1, 4));
    assert!(
        reason.contains("floats must start with a digit"),
        "{reason}"
    );

    let (line, col, reason) = lex_err("x: \"a\\qb\"");
    assert_eq!((line, col), (1, 6));
    assert!(reason.contains("invalid escape"), "{reason}");

    let (line, col, reason) = lex_err("x: 1 2");
    assert_eq!((line, col), (1, 6));
    assert!(reason.contains("expected a new line"), "{reason}");

    let (_, _, reason) = lex_err("}");
    assert!(reason.contains("no matching"), "{reason}");
    let (_, _, reason) = lex_err("a: [1 2]");
    assert!(reason.contains("expected ',' or ']'"), "{reason}");
    let (_, _, reason) = lex_err("a: $");
    assert!(reason.contains("variable name"), "{reason}");
}

#[test]
fn deep_nesting_is_refused_not_overflowed() {
    let text = format!("a: {}", "[".repeat(10_000));
    let (_, _, reason) = lex_err(&text);
    assert!(reason.contains("nesting"), "{reason}");
}
