//! `$name` references: a key defined earlier in an enclosing map, else an environment
//! variable (whose text is parsed as a value), as nats-server resolves them.

use std::env;

use super::error::ConfError;
use super::lexer::Mark;
use super::parser::{parse_text, Builder, Origin};
use super::value::{get, Value};

/// Unquoted bcrypt hashes (`$2a$11$...`) look like references but are kept as text.
const BCRYPT_PREFIXES: [&str; 3] = ["2a$", "2b$", "2y$"];

/// The key an environment variable's text is parsed under.
const ENV_KEY: &str = "value";

impl Builder<'_> {
    pub(super) fn resolve(&mut self, name: &str, mark: Mark) -> Result<Value, ConfError> {
        if BCRYPT_PREFIXES.iter().any(|p| name.starts_with(p)) {
            return Ok(Value::Str(format!("${name}")));
        }
        if let Some(value) = self.lookup_in_scopes(name) {
            return Ok(value);
        }
        self.lookup_in_environment(name, mark)
    }

    /// The latest entry called `name` in the innermost map that has one; it is marked
    /// as referenced.
    fn lookup_in_scopes(&mut self, name: &str) -> Option<Value> {
        self.scopes.iter_mut().rev().find_map(|scope| {
            let item = scope.iter_mut().rev().find(|(k, _)| k == name)?;
            item.1.referenced = true;
            Some(item.1.value.clone())
        })
    }

    fn lookup_in_environment(&mut self, name: &str, mark: Mark) -> Result<Value, ConfError> {
        let pos = self.pos(mark);
        let text = match env::var(name) {
            Ok(text) => text,
            Err(env::VarError::NotPresent) => {
                return Err(ConfError::new(
                    pos,
                    format!(
                        "undefined variable \"${name}\": no key {name:?} in scope and no environment variable {name:?}"
                    ),
                ))
            }
            Err(env::VarError::NotUnicode(_)) => {
                return Err(ConfError::new(
                    pos,
                    format!("environment variable {name:?} is not valid UTF-8"),
                ))
            }
        };
        if self.session.env_refs.iter().any(|r| r == name) {
            return Err(ConfError::new(
                pos,
                format!("variable reference cycle through environment variable {name:?}"),
            ));
        }
        self.session.env_refs.push(name.to_string());
        let parsed = parse_env_text(&text, name, self);
        self.session.env_refs.pop();
        parsed.map_err(|e| {
            ConfError::new(
                pos,
                format!(
                    "environment variable {name:?} could not be parsed: {}",
                    e.reason
                ),
            )
        })
    }
}

/// Parses an environment variable's text as a config value (`4222` is an integer,
/// `[a, b]` an array, `$OTHER` another reference). Empty text is an empty string.
fn parse_env_text(text: &str, name: &str, parent: &mut Builder<'_>) -> Result<Value, ConfError> {
    if text.trim().is_empty() {
        return Ok(Value::Str(text.to_string()));
    }
    let origin = Origin {
        file: format!("${name}"),
        dir: parent.origin.dir.clone(),
    };
    let map = parse_text(&format!("{ENV_KEY}={text}"), origin, parent.session)?;
    get(&map, ENV_KEY)
        .map(|item| item.value.clone())
        .ok_or_else(|| ConfError::new(parent.pos(Mark { line: 1, col: 1 }), "empty value"))
}
