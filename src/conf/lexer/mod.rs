//! Turns configuration text into a flat list of tokens.
//!
//! The lexer knows the shape of the format (entries, maps, arrays, where a value must
//! end) but gives no meaning to values: numbers stay text, variables and includes are
//! names. The parser builds the tree from the tokens.

mod cursor;
mod scalar;

pub use cursor::Mark;
use cursor::{is_blank, is_newline, Cursor};

/// Maps and arrays nested deeper than this are refused, so that hostile input cannot
/// exhaust the stack.
pub const MAX_DEPTH: usize = 128;

#[derive(Debug, Clone, PartialEq)]
pub enum TokenKind {
    /// A map key; the next token (or tokens, for arrays and maps) is its value.
    Key(String),
    /// `include <path>`: the path as written.
    Include(String),
    Str(String),
    Bool(bool),
    /// An integer as written, possibly with a size unit (`64KB`).
    Integer(String),
    /// A float as written.
    Float(String),
    /// `$name`: the name without the `$`.
    Variable(String),
    ArrayStart,
    ArrayEnd,
    MapStart,
    MapEnd,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    pub kind: TokenKind,
    pub mark: Mark,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LexError {
    pub mark: Mark,
    pub reason: String,
}

type LexResult<T = ()> = Result<T, LexError>;

/// Where a list of entries sits: the document itself, a bare `{ ... }` block at the top
/// level (its entries belong to the enclosing level), or a map value.
#[derive(Debug, Clone, Copy)]
enum Scope {
    Top,
    Block(Mark),
    Map(Mark),
}

/// Splits `text` into tokens, or reports the first malformed construct.
pub fn lex(text: &str) -> Result<Vec<Token>, LexError> {
    let mut lexer = Lexer {
        cur: Cursor::new(text),
        tokens: Vec::new(),
        depth: 0,
    };
    lexer.entries(Scope::Top)?;
    Ok(lexer.tokens)
}

struct Lexer {
    cur: Cursor,
    tokens: Vec<Token>,
    depth: usize,
}

impl Lexer {
    fn push(&mut self, kind: TokenKind, mark: Mark) {
        self.tokens.push(Token { kind, mark });
    }

    fn error<T>(&self, mark: Mark, reason: impl Into<String>) -> LexResult<T> {
        Err(LexError {
            mark,
            reason: reason.into(),
        })
    }

    /// Runs `body` one nesting level deeper, refusing to go past [`MAX_DEPTH`].
    fn nested(&mut self, open: Mark, body: impl FnOnce(&mut Lexer) -> LexResult) -> LexResult {
        if self.depth >= MAX_DEPTH {
            return self.error(open, format!("nesting deeper than {MAX_DEPTH} levels"));
        }
        self.depth += 1;
        let result = body(self);
        self.depth -= 1;
        result
    }

    fn entries(&mut self, scope: Scope) -> LexResult {
        loop {
            self.cur.skip_space_and_comments();
            let mark = self.cur.mark();
            match self.cur.peek() {
                None => return self.end_of_input(scope),
                Some('}') => return self.close_brace(scope, mark),
                Some('{') if !matches!(scope, Scope::Map(_)) => {
                    self.cur.bump();
                    self.nested(mark, |lx| lx.entries(Scope::Block(mark)))?;
                }
                Some(c) if !starts_key(c) => {
                    return self.error(mark, format!("unexpected {c:?}, expected a key"));
                }
                Some(_) => self.entry(mark)?,
            }
        }
    }

    fn end_of_input(&self, scope: Scope) -> LexResult {
        match scope {
            Scope::Top => Ok(()),
            Scope::Block(open) => self.error(open, "unterminated block: this '{' is never closed"),
            Scope::Map(open) => self.error(open, "unterminated map: this '{' is never closed"),
        }
    }

    fn close_brace(&mut self, scope: Scope, mark: Mark) -> LexResult {
        match scope {
            Scope::Top => self.error(mark, "unexpected '}' with no matching '{'"),
            Scope::Block(_) => {
                self.cur.bump();
                Ok(())
            }
            Scope::Map(_) => {
                self.cur.bump();
                self.push(TokenKind::MapEnd, mark);
                Ok(())
            }
        }
    }

    /// One `key [sep] value` entry or `include path` directive, and what ends it.
    fn entry(&mut self, mark: Mark) -> LexResult {
        let (key, quoted) = self.key(mark)?;
        if !quoted && key.eq_ignore_ascii_case("include") && self.include_follows() {
            self.include(mark)?;
            return self.entry_end("include");
        }
        self.push(TokenKind::Key(key.clone()), mark);
        self.separator();
        self.value(Some(&key))?;
        self.entry_end(&key)
    }

    fn key(&mut self, mark: Mark) -> LexResult<(String, bool)> {
        match self.cur.peek() {
            Some(quote @ ('"' | '\'')) => {
                self.cur.bump();
                let key = self.cur.take_while(|c| c != quote);
                if !self.cur.eat(quote) {
                    return self.error(
                        mark,
                        format!("unterminated quoted key: missing closing {quote}"),
                    );
                }
                Ok((key, true))
            }
            _ => Ok((self.cur.take_while(is_key_char), false)),
        }
    }

    /// After a bare `include`: true when blanks and then a file name follow, rather than a
    /// key separator (then `include` is an ordinary key).
    fn include_follows(&mut self) -> bool {
        let start = self.cur.checkpoint();
        self.cur.skip_blanks();
        let skipped_blank = self.cur.text_since(start).chars().any(is_blank);
        let next = self.cur.peek();
        self.cur.rewind(start);
        skipped_blank && !matches!(next, Some('=' | ':'))
    }

    fn include(&mut self, mark: Mark) -> LexResult {
        self.cur.skip_blanks();
        let path_mark = self.cur.mark();
        let path = match self.cur.peek() {
            Some(quote @ ('"' | '\'')) => {
                self.cur.bump();
                let path = self.cur.take_while(|c| c != quote);
                if !self.cur.eat(quote) {
                    return self.error(path_mark, "unterminated include file name");
                }
                path
            }
            Some(c) if c == '[' || c == '{' => {
                return self.error(
                    path_mark,
                    format!("expected a file name after include, got {c:?}"),
                );
            }
            _ => self.cur.take_while(|c| {
                !(is_blank(c) || is_newline(c) || matches!(c, ';' | ',' | '}' | '#'))
            }),
        };
        if path.is_empty() {
            return self.error(path_mark, "expected a file name after include");
        }
        self.push(TokenKind::Include(path), mark);
        Ok(())
    }

    /// Skips what sits between a key and its value: white space (new lines too, so that a
    /// `{` may open on the next line) and an optional `=` or `:`.
    fn separator(&mut self) {
        self.cur.take_while(char::is_whitespace);
        if self.cur.eat('=') || self.cur.eat(':') {
            self.cur.skip_blanks();
        }
    }

    /// One value, anywhere a value is expected. `key` names the entry, for messages.
    fn value(&mut self, key: Option<&str>) -> LexResult {
        let mark = self.cur.mark();
        match self.cur.peek() {
            None => self.error(mark, missing_value(key)),
            Some(c) if is_newline(c) => {
                self.error(mark, format!("{}, found a new line", missing_value(key)))
            }
            Some(';' | ',' | '}' | ']') => self.error(mark, missing_value(key)),
            Some('[') => self.array(mark),
            Some('{') => self.map(mark),
            Some('"') => self.double_quoted(mark),
            Some('\'') => self.single_quoted(mark),
            Some('(') => self.block_string(mark),
            Some('.') => self.error(mark, "invalid number: floats must start with a digit"),
            Some(c) if c == '-' || c.is_ascii_digit() => self.number(mark),
            Some(_) => self.bare_string(mark),
        }
    }

    fn array(&mut self, open: Mark) -> LexResult {
        self.cur.bump();
        self.push(TokenKind::ArrayStart, open);
        self.nested(open, |lx| lx.array_elements(open))
    }

    fn array_elements(&mut self, open: Mark) -> LexResult {
        loop {
            self.cur.skip_space_and_comments();
            let mark = self.cur.mark();
            match self.cur.peek() {
                None => return self.error(open, "unterminated array: this '[' is never closed"),
                Some(']') => {
                    self.cur.bump();
                    self.push(TokenKind::ArrayEnd, mark);
                    return Ok(());
                }
                Some(',') => return self.error(mark, "unexpected ',' in array, expected a value"),
                Some(_) => {
                    self.value(None)?;
                    self.element_end()?;
                }
            }
        }
    }

    /// What may follow an array element: blanks, then a comment, `,`, a new line or `]`.
    fn element_end(&mut self) -> LexResult {
        self.cur.skip_blanks();
        if self.cur.at_comment() {
            self.cur.skip_comment();
            return Ok(());
        }
        match self.cur.peek() {
            None | Some(']') => Ok(()),
            Some(c) if c == ',' || is_newline(c) => {
                self.cur.bump();
                Ok(())
            }
            Some(c) => self.error(
                self.cur.mark(),
                format!("expected ',' or ']' after an array element, got {c:?}"),
            ),
        }
    }

    fn map(&mut self, open: Mark) -> LexResult {
        self.cur.bump();
        self.push(TokenKind::MapStart, open);
        self.nested(open, |lx| lx.entries(Scope::Map(open)))
    }

    /// What may follow an entry's value: blanks, then a comment, `,`, `;`, a new line,
    /// a closing `}` or the end of input.
    fn entry_end(&mut self, key: &str) -> LexResult {
        self.cur.skip_blanks();
        if self.cur.at_comment() {
            self.cur.skip_comment();
            return Ok(());
        }
        match self.cur.peek() {
            None | Some('}') => Ok(()),
            Some(c) if c == ',' || c == ';' || is_newline(c) => {
                self.cur.bump();
                Ok(())
            }
            Some(c) => self.error(
                self.cur.mark(),
                format!("expected a new line after the value of {key:?}, got {c:?}"),
            ),
        }
    }
}

fn missing_value(key: Option<&str>) -> String {
    match key {
        Some(key) => format!("missing value for {key:?}"),
        None => "missing value in array".to_string(),
    }
}

fn is_key_char(c: char) -> bool {
    !(c.is_whitespace() || matches!(c, '=' | ':' | '{' | '}' | '[' | ']' | ',' | ';'))
}

fn starts_key(c: char) -> bool {
    is_key_char(c) || c == '"' || c == '\''
}

#[cfg(test)]
mod tests;
