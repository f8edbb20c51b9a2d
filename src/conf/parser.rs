//! Builds the value tree from the lexer's tokens: converts scalars, nests maps and
//! arrays, and hands variables and includes to their modules.

use std::iter::Peekable;
use std::path::PathBuf;
use std::vec::IntoIter;

use super::error::{ConfError, Pos};
use super::includes::Session;
use super::lexer::{lex, Mark, Token, TokenKind};
use super::size::integer_from_literal;
use super::value::{insert, Item, Map, Value};

/// Where the text being parsed came from.
pub(super) struct Origin {
    /// The file name used in positions.
    pub file: String,
    /// The directory that relative include paths start from.
    pub dir: PathBuf,
}

/// Parses `text` completely, sharing `session` with any includes and variable lookups.
pub(super) fn parse_text(
    text: &str,
    origin: Origin,
    session: &mut Session,
) -> Result<Map, ConfError> {
    let tokens = lex(text).map_err(|e| {
        ConfError::new(
            Pos::new(origin.file.clone(), e.mark.line, e.mark.col),
            e.reason,
        )
    })?;
    Builder {
        tokens: tokens.into_iter().peekable(),
        origin,
        scopes: Vec::new(),
        session,
    }
    .document()
}

pub(super) struct Builder<'s> {
    tokens: Peekable<IntoIter<Token>>,
    pub(super) origin: Origin,
    /// The maps being built, outermost first: the scopes `$name` references search.
    pub(super) scopes: Vec<Map>,
    pub(super) session: &'s mut Session,
}

impl Builder<'_> {
    pub(super) fn pos(&self, mark: Mark) -> Pos {
        Pos::new(self.origin.file.clone(), mark.line, mark.col)
    }

    fn error<T>(&self, mark: Mark, reason: impl Into<String>) -> Result<T, ConfError> {
        Err(ConfError::new(self.pos(mark), reason))
    }

    fn document(mut self) -> Result<Map, ConfError> {
        self.scopes.push(Map::new());
        while let Some(token) = self.tokens.next() {
            self.entry(token)?;
        }
        Ok(self.scopes.pop().unwrap_or_default())
    }

    /// The innermost map being built.
    pub(super) fn current_scope(&mut self) -> &mut Map {
        if self.scopes.is_empty() {
            self.scopes.push(Map::new());
        }
        let last = self.scopes.len() - 1;
        &mut self.scopes[last]
    }

    fn entry(&mut self, token: Token) -> Result<(), ConfError> {
        match token.kind {
            TokenKind::Key(key) => {
                let value = self.value(token.mark)?;
                let item = Item::new(value, self.pos(token.mark));
                insert(self.current_scope(), key, item);
                Ok(())
            }
            TokenKind::Include(path) => self.include(&path, token.mark),
            other => self.error(token.mark, format!("expected a key, found {other:?}")),
        }
    }

    /// The value whose tokens come next; `after` is where the owner (key or array) sits.
    fn value(&mut self, after: Mark) -> Result<Value, ConfError> {
        let Some(token) = self.tokens.next() else {
            return self.error(after, "missing value");
        };
        let mark = token.mark;
        match token.kind {
            TokenKind::Str(s) => Ok(Value::Str(s)),
            TokenKind::Bool(b) => Ok(Value::Bool(b)),
            TokenKind::Integer(raw) => integer_from_literal(&raw)
                .map(Value::Int)
                .or_else(|reason| self.error(mark, reason)),
            TokenKind::Float(raw) => match raw.parse::<f64>() {
                Ok(f) if f.is_finite() => Ok(Value::Float(f)),
                _ => self.error(mark, format!("invalid float {raw:?}")),
            },
            TokenKind::Variable(name) => self.resolve(&name, mark),
            TokenKind::ArrayStart => self.array(mark),
            TokenKind::MapStart => self.map(mark),
            other => self.error(mark, format!("expected a value, found {other:?}")),
        }
    }

    fn array(&mut self, open: Mark) -> Result<Value, ConfError> {
        let mut items = Vec::new();
        loop {
            let Some(next) = self.tokens.peek() else {
                return self.error(open, "unterminated array");
            };
            if next.kind == TokenKind::ArrayEnd {
                self.tokens.next();
                return Ok(Value::Array(items));
            }
            let mark = next.mark;
            let value = self.value(mark)?;
            items.push(Item::new(value, self.pos(mark)));
        }
    }

    fn map(&mut self, open: Mark) -> Result<Value, ConfError> {
        self.scopes.push(Map::new());
        loop {
            let Some(token) = self.tokens.next() else {
                return self.error(open, "unterminated map");
            };
            if token.kind == TokenKind::MapEnd {
                break;
            }
            self.entry(token)?;
        }
        Ok(Value::Map(self.scopes.pop().unwrap_or_default()))
    }
}
