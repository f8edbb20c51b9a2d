//! A character cursor that tracks line and column.

/// Line and column (both 1-based) of a character in the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    pub line: u32,
    pub col: u32,
}

#[derive(Debug, Clone)]
pub struct Cursor {
    chars: Vec<char>,
    index: usize,
    line: u32,
    col: u32,
}

/// A saved cursor position, to rewind to.
#[derive(Debug, Clone, Copy)]
pub struct Checkpoint {
    index: usize,
    line: u32,
    col: u32,
}

impl Cursor {
    pub fn new(text: &str) -> Cursor {
        Cursor {
            chars: text.chars().collect(),
            index: 0,
            line: 1,
            col: 1,
        }
    }

    pub fn mark(&self) -> Mark {
        Mark {
            line: self.line,
            col: self.col,
        }
    }

    pub fn checkpoint(&self) -> Checkpoint {
        Checkpoint {
            index: self.index,
            line: self.line,
            col: self.col,
        }
    }

    pub fn rewind(&mut self, to: Checkpoint) {
        self.index = to.index;
        self.line = to.line;
        self.col = to.col;
    }

    /// The text consumed since `from`.
    pub fn text_since(&self, from: Checkpoint) -> String {
        self.chars[from.index..self.index].iter().collect()
    }

    pub fn peek(&self) -> Option<char> {
        self.chars.get(self.index).copied()
    }

    pub fn peek_at(&self, offset: usize) -> Option<char> {
        self.chars.get(self.index + offset).copied()
    }

    /// Consumes one character. A `\r\n` pair counts as one line break.
    pub fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.index += 1;
        let ends_line = c == '\n' || (c == '\r' && self.peek() != Some('\n'));
        if ends_line {
            self.line = self.line.saturating_add(1);
            self.col = 1;
        } else {
            self.col = self.col.saturating_add(1);
        }
        Some(c)
    }

    /// Consumes `n` characters (fewer at the end of input).
    pub fn skip(&mut self, n: usize) {
        for _ in 0..n {
            self.bump();
        }
    }

    /// Consumes the next character if it is `expected`.
    pub fn eat(&mut self, expected: char) -> bool {
        if self.peek() == Some(expected) {
            self.bump();
            true
        } else {
            false
        }
    }

    /// Consumes characters while `keep` holds and returns them.
    pub fn take_while(&mut self, keep: impl Fn(char) -> bool) -> String {
        let mut out = String::new();
        while let Some(c) = self.peek().filter(|c| keep(*c)) {
            out.push(c);
            self.bump();
        }
        out
    }

    /// Skips spaces and tabs.
    pub fn skip_blanks(&mut self) {
        self.take_while(is_blank);
    }

    /// True when the next characters start a `#` or `//` comment.
    pub fn at_comment(&self) -> bool {
        match self.peek() {
            Some('#') => true,
            Some('/') => self.peek_at(1) == Some('/'),
            _ => false,
        }
    }

    /// Skips a comment up to (not including) the end of its line.
    pub fn skip_comment(&mut self) {
        self.take_while(|c| !is_newline(c));
    }

    /// Skips whitespace, new lines and comments.
    pub fn skip_space_and_comments(&mut self) {
        loop {
            self.take_while(char::is_whitespace);
            if !self.at_comment() {
                return;
            }
            self.skip_comment();
        }
    }
}

pub fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t'
}

pub fn is_newline(c: char) -> bool {
    c == '\n' || c == '\r'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracks_lines_and_columns() {
        let mut cur = Cursor::new("ab\ncd\r\ne");
        assert_eq!(cur.mark(), Mark { line: 1, col: 1 });
        cur.bump();
        cur.bump();
        assert_eq!(cur.mark(), Mark { line: 1, col: 3 });
        cur.bump();
        assert_eq!(cur.mark(), Mark { line: 2, col: 1 });
        cur.take_while(|c| c != 'e');
        assert_eq!(cur.mark(), Mark { line: 3, col: 1 });
    }

    #[test]
    fn skips_comments_of_both_kinds() {
        let mut cur = Cursor::new("  # one\n // two\n x");
        cur.skip_space_and_comments();
        assert_eq!(cur.peek(), Some('x'));
        assert_eq!(cur.mark(), Mark { line: 3, col: 2 });
    }
}
