//! Scalar values: quoted, raw and bare strings, numbers, booleans and variables.

use super::cursor::{is_blank, is_newline, Checkpoint};
use super::{LexResult, Lexer, Mark, TokenKind};

const BOOL_WORDS: [(&str, bool); 6] = [
    ("true", true),
    ("false", false),
    ("yes", true),
    ("no", false),
    ("on", true),
    ("off", false),
];

/// Size unit letters an integer may carry (`1k`, `64MB`, `2Gi`).
fn is_unit_letter(c: char) -> bool {
    matches!(c.to_ascii_lowercase(), 'k' | 'm' | 'g' | 't' | 'p' | 'e')
}

/// Characters that end an unquoted value.
fn ends_bare_value(c: char) -> bool {
    is_blank(c) || is_newline(c) || matches!(c, ';' | ',' | ']' | '}')
}

fn ends_number(c: Option<char>) -> bool {
    c.is_none_or(ends_bare_value)
}

impl Lexer {
    /// `"..."`, with the escapes `\t \n \r \" \\ \xHH`.
    pub(super) fn double_quoted(&mut self, open: Mark) -> LexResult {
        self.cur.bump();
        let mut bytes = Vec::new();
        loop {
            let mark = self.cur.mark();
            match self.cur.bump() {
                None => return self.error(open, "unterminated string: missing closing '\"'"),
                Some('"') => break,
                Some('\\') => self.escape(mark, &mut bytes)?,
                Some(c) => push_char(&mut bytes, c),
            }
        }
        self.push(TokenKind::Str(from_bytes(bytes)), open);
        Ok(())
    }

    /// `'...'`: raw text, no escapes.
    pub(super) fn single_quoted(&mut self, open: Mark) -> LexResult {
        self.cur.bump();
        let text = self.cur.take_while(|c| c != '\'');
        if !self.cur.eat('\'') {
            return self.error(open, "unterminated string: missing closing \"'\"");
        }
        self.push(TokenKind::Str(text), open);
        Ok(())
    }

    /// `(` ... a line holding only `)`: raw multi-line text.
    pub(super) fn block_string(&mut self, open: Mark) -> LexResult {
        self.cur.bump();
        let mut text = String::new();
        loop {
            match self.cur.bump() {
                None => {
                    return self.error(
                        open,
                        "unterminated block string: missing a line with only ')'",
                    )
                }
                Some('\n') if self.closing_paren_line() => break,
                Some(c) => text.push(c),
            }
        }
        self.cur.bump();
        if text.ends_with('\r') {
            text.pop();
        }
        self.push(TokenKind::Str(text), open);
        Ok(())
    }

    fn closing_paren_line(&self) -> bool {
        self.cur.peek() == Some(')') && matches!(self.cur.peek_at(1), None | Some('\n' | '\r'))
    }

    /// An escape sequence after a `\` (already consumed at `mark`).
    fn escape(&mut self, mark: Mark, bytes: &mut Vec<u8>) -> LexResult {
        match self.cur.bump() {
            Some('t') => bytes.push(b'\t'),
            Some('n') => bytes.push(b'\n'),
            Some('r') => bytes.push(b'\r'),
            Some('"') => bytes.push(b'"'),
            Some('\\') => bytes.push(b'\\'),
            Some('x') => bytes.push(self.hex_byte(mark)?),
            other => {
                let got = other.map_or("end of input".to_string(), |c| format!("'\\{c}'"));
                return self.error(
                    mark,
                    format!(
                        "invalid escape {got}: only \\xHH, \\t, \\n, \\r, \\\" and \\\\ are allowed"
                    ),
                );
            }
        }
        Ok(())
    }

    fn hex_byte(&mut self, mark: Mark) -> LexResult<u8> {
        let digits: String = (0..2).filter_map(|_| self.cur.bump()).collect();
        u8::from_str_radix(&digits, 16)
            .ok()
            .filter(|_| digits.len() == 2 && digits.chars().all(|c| c.is_ascii_hexdigit()))
            .map_or_else(
                || {
                    self.error(
                        mark,
                        format!("expected two hexadecimal digits after '\\x', got {digits:?}"),
                    )
                },
                Ok,
            )
    }

    /// An unquoted value: a boolean word, a `$variable`, or a string up to the next
    /// blank, new line, `;`, `,`, `]` or `}`. Escapes work as in double quotes.
    pub(super) fn bare_string(&mut self, mark: Mark) -> LexResult {
        let mut bytes = Vec::new();
        let mut escaped = false;
        while let Some(c) = self.cur.peek().filter(|c| !ends_bare_value(*c)) {
            let char_mark = self.cur.mark();
            self.cur.bump();
            if c == '\\' {
                self.escape(char_mark, &mut bytes)?;
                escaped = true;
            } else {
                push_char(&mut bytes, c);
            }
        }
        let text = from_bytes(bytes);
        let kind = if escaped {
            TokenKind::Str(text)
        } else {
            self.classify_bare(mark, text)?
        };
        self.push(kind, mark);
        Ok(())
    }

    fn classify_bare(&self, mark: Mark, text: String) -> LexResult<TokenKind> {
        if let Some((_, b)) = BOOL_WORDS
            .iter()
            .find(|(w, _)| w.eq_ignore_ascii_case(&text))
        {
            return Ok(TokenKind::Bool(*b));
        }
        match text.strip_prefix('$') {
            Some("") => self.error(mark, "missing variable name after '$'"),
            Some(name) => Ok(TokenKind::Variable(name.to_string())),
            None => Ok(TokenKind::Str(text)),
        }
    }

    /// A value starting with a digit or `-`: an integer (with an optional size unit), a
    /// float, or, when more text follows, a bare string such as `10s` or `127.0.0.1:4222`.
    pub(super) fn number(&mut self, mark: Mark) -> LexResult {
        let start = self.cur.checkpoint();
        let negative = self.cur.eat('-');
        let digits = self.cur.take_while(|c| c.is_ascii_digit());
        if digits.is_empty() {
            let got = self
                .cur
                .peek()
                .map_or("end of input".to_string(), |c| format!("{c:?}"));
            return self.error(
                mark,
                format!("invalid number: expected a digit after '-', got {got}"),
            );
        }
        match self.cur.peek() {
            Some('.') => self.float(mark, start),
            Some(c) if is_unit_letter(c) => self.integer_with_unit(mark, start),
            Some('-') if !negative && digits.len() == 4 && self.datetime_follows() => {
                self.cur.skip(DATETIME_TAIL.len());
                self.finish(TokenKind::Str(self.cur.text_since(start)), mark)
            }
            next if ends_number(next) => {
                self.finish(TokenKind::Integer(self.cur.text_since(start)), mark)
            }
            _ => self.restart_as_string(mark, start),
        }
    }

    fn float(&mut self, mark: Mark, start: Checkpoint) -> LexResult {
        self.cur.bump();
        let fraction = self.cur.take_while(|c| c.is_ascii_digit());
        if !fraction.is_empty() && ends_number(self.cur.peek()) {
            return self.finish(TokenKind::Float(self.cur.text_since(start)), mark);
        }
        self.restart_as_string(mark, start)
    }

    fn integer_with_unit(&mut self, mark: Mark, start: Checkpoint) -> LexResult {
        self.cur.bump();
        self.cur.take_while(|c| matches!(c, 'b' | 'B' | 'i' | 'I'));
        if ends_number(self.cur.peek()) {
            return self.finish(TokenKind::Integer(self.cur.text_since(start)), mark);
        }
        self.restart_as_string(mark, start)
    }

    fn restart_as_string(&mut self, mark: Mark, start: Checkpoint) -> LexResult {
        self.cur.rewind(start);
        self.bare_string(mark)
    }

    fn finish(&mut self, kind: TokenKind, mark: Mark) -> LexResult {
        self.push(kind, mark);
        Ok(())
    }

    /// After `YYYY`: true when `-MM-DDTHH:MM:SSZ` and the end of the value follow.
    fn datetime_follows(&self) -> bool {
        let shape_matches = DATETIME_TAIL.chars().enumerate().all(|(i, want)| {
            let got = self.cur.peek_at(i);
            match want {
                '0' => got.is_some_and(|c| c.is_ascii_digit()),
                _ => got == Some(want),
            }
        });
        shape_matches && ends_number(self.cur.peek_at(DATETIME_TAIL.len()))
    }
}

/// The shape of an ISO 8601 Zulu datetime after its year; `0` stands for any digit.
const DATETIME_TAIL: &str = "-00-00T00:00:00Z";

fn push_char(bytes: &mut Vec<u8>, c: char) {
    let mut buf = [0; 4];
    bytes.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
}

/// Text built from characters and `\x` escapes; invalid UTF-8 is replaced, not refused.
fn from_bytes(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}
