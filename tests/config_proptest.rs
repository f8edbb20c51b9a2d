//! Random input never panics the config parser or the options layer: it parses, or it
//! fails with a position inside the text and a reason.

use natrix::conf::{parse_str, ConfError};
use natrix::options::Options;
use proptest::prelude::*;

/// Relative includes resolve under a directory that does not exist.
const ORIGIN: &str = "/nonexistent-natrix-proptest/fuzz.conf";

/// Fragments of the format, so that random input often gets deep into the parser.
const FRAGMENTS: &[&str] = &[
    "port",
    "listen",
    "cluster",
    "jetstream",
    "authorization",
    "accounts",
    "users",
    "user",
    "password",
    "routes",
    "max_payload",
    "ping_interval",
    "$SYS",
    "$PORT",
    "$2a$11$x",
    "include",
    " include x.conf",
    "{",
    "}",
    "[",
    "]",
    "(",
    ")",
    ":",
    "=",
    ",",
    ";",
    " ",
    "\t",
    "\n",
    "\r\n",
    "#",
    "//",
    "\"",
    "'",
    "\\",
    "\\x4",
    "\\xzz",
    "\\n",
    "-",
    ".",
    "0",
    "42",
    "-1",
    "1.5",
    "64KB",
    "1G",
    "10s",
    "1h30m",
    "true",
    "off",
    "127.0.0.1:4222",
    "nats://a:6222",
    "2020-01-02T03:04:05Z",
    "é",
    "\u{0}",
];

fn check(text: &str) {
    let breaks = text.replace("\r\n", "\n").matches(['\n', '\r']).count();
    let lines = breaks as u32 + 1;
    match parse_str(text, ORIGIN) {
        Ok(map) => {
            // The options layer must not panic either, whatever it decides.
            let _ = Options::from_config(&map);
        }
        Err(ConfError { pos, reason }) => {
            assert!(!reason.is_empty());
            if pos.file == ORIGIN {
                assert!(
                    pos.line >= 1 && pos.line <= lines,
                    "line {} of {lines}",
                    pos.line
                );
                assert!(pos.col >= 1);
            }
        }
    }
}

fn fragments() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(FRAGMENTS), 0..60).prop_map(|parts| parts.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_text_never_panics(text in any::<String>()) {
        check(&text);
    }

    #[test]
    fn config_like_text_never_panics(text in fragments()) {
        check(&text);
    }

    #[test]
    fn mangled_seed_configs_never_panic(cut in 0usize..400, insert in prop::sample::select(FRAGMENTS)) {
        let seed = include_str!("../configs/seeds/002-sys-account-n1-c1.conf");
        let at = seed.char_indices().map(|(i, _)| i).nth(cut % seed.chars().count()).unwrap_or(0);
        let mangled = format!("{}{}{}", &seed[..at], insert, &seed[at..]);
        check(&mangled);
        check(&seed[..at]);
    }
}
