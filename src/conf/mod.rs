//! The NATS configuration file format, read as nats-server reads it.
//!
//! ```text
//! # comments start with '#' or '//'
//! server_name: n1            # `key: value`, `key = value` and `key value` all work
//! listen = 0.0.0.0:4222
//! max_payload 1MB            # sizes: 1k = 1000, 1kb = 1ki = 1024, also m, g, t, p, e
//! ping_interval: "2m"        # durations stay strings; see `parse_duration`
//! PASS: "s3cr3t"
//! authorization { user: admin, password: $PASS }   # `$name`: earlier key or env var
//! cluster {                  # maps, with or without a separator
//!   routes: [ nats://a:6222, nats://b:6222 ]       # arrays: comma or new line separated
//! }
//! include ./accounts.conf    # relative to this file
//! ```
//!
//! Lexing ([`lexer`]) is separate from building the tree ([`parser`]); the tree is a
//! [`Map`] of [`Item`]s that remember their [`Pos`]. Every error carries the file, line,
//! column and a reason; malformed input never panics.

pub mod duration;
mod error;
mod includes;
mod lexer;
mod parser;
mod size;
mod value;
mod variables;

use std::path::Path;

pub use duration::{duration_from_secs, parse_duration};
pub use error::{ConfError, Pos};
pub use includes::MAX_INCLUDE_DEPTH;
pub use size::{integer_from_literal, parse_size};
pub use value::{get, get_ignore_case, insert, Item, Map, Value};

use includes::{parent_dir, Session};
use parser::{parse_text, Origin};

/// Reads and parses the config file at `path`; includes are relative to its directory.
pub fn parse_file(path: &Path) -> Result<Map, ConfError> {
    Session::default().parse_file(path, None)
}

/// Parses config text. `origin` names it in positions (usually its file name); includes
/// are relative to `origin`'s directory, or to the working directory.
pub fn parse_str(text: &str, origin: &str) -> Result<Map, ConfError> {
    let origin = Origin {
        file: origin.to_string(),
        dir: parent_dir(Path::new(origin)),
    };
    parse_text(text, origin, &mut Session::default())
}

#[cfg(test)]
mod tests;
