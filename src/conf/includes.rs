//! Reading config files and `include <file>` directives. An included file is parsed on
//! its own, relative to the including file's directory, and its top-level entries are
//! merged into the map where the directive stands.

use std::fs;
use std::path::{Path, PathBuf};

use super::error::{ConfError, Pos};
use super::lexer::Mark;
use super::parser::{parse_text, Builder, Origin};
use super::value::{insert, Map};

/// Includes nested deeper than this are refused.
pub const MAX_INCLUDE_DEPTH: usize = 32;

/// State shared by one top-level parse and everything it includes or looks up.
#[derive(Debug, Default)]
pub(super) struct Session {
    /// Environment variables being resolved, innermost last, to detect cycles.
    pub env_refs: Vec<String>,
    /// Canonical paths of the files being parsed, outermost first, to detect cycles.
    pub includes: Vec<PathBuf>,
}

impl Session {
    /// Reads and parses `path`. `from` is the include directive that asked for it.
    pub fn parse_file(&mut self, path: &Path, from: Option<&Pos>) -> Result<Map, ConfError> {
        let file = path.display().to_string();
        let fail = |reason: String| {
            let pos = from
                .cloned()
                .unwrap_or_else(|| Pos::new(file.clone(), 0, 0));
            ConfError::new(pos, reason)
        };
        let what = if from.is_some() {
            "include file"
        } else {
            "config file"
        };
        let text = fs::read_to_string(path)
            .map_err(|e| fail(format!("cannot read {what} {file:?}: {e}")))?;
        let canonical = fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        if self.includes.contains(&canonical) {
            return Err(fail(format!("include cycle: {file:?} includes itself")));
        }
        if self.includes.len() >= MAX_INCLUDE_DEPTH {
            return Err(fail(format!(
                "includes nested deeper than {MAX_INCLUDE_DEPTH} files"
            )));
        }
        self.includes.push(canonical);
        let origin = Origin {
            file,
            dir: parent_dir(path),
        };
        let result = parse_text(&text, origin, self);
        self.includes.pop();
        result
    }
}

/// The directory relative paths in `path` start from; `.` for a bare file name.
pub(super) fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

impl Builder<'_> {
    pub(super) fn include(&mut self, path: &str, mark: Mark) -> Result<(), ConfError> {
        let full = self.origin.dir.join(path);
        let pos = self.pos(mark);
        let map = self.session.parse_file(&full, Some(&pos))?;
        let scope = self.current_scope();
        for (key, item) in map {
            insert(scope, key, item);
        }
        Ok(())
    }
}
