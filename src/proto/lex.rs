//! The pieces every NATS protocol parser here shares (client, server and route
//! operations): framing a control line, splitting it into words, sizes, and the
//! payload that follows a message line. I/O-free; `Incomplete` asks for more bytes.

use memchr::memchr;

#[derive(Debug, PartialEq, Eq)]
pub enum ParseError {
    /// More bytes are needed; `need` is the total length of the operation when known.
    Incomplete {
        need: Option<usize>,
    },
    ControlLineTooLong,
    PayloadTooLarge {
        size: usize,
    },
    UnknownOp,
    /// The operation is known but its arguments are malformed.
    BadArgs(&'static str),
}

/// The control line at the start of `buf` without its CR LF, and the bytes it
/// takes with them.
pub fn control_line(buf: &[u8], control_line_max: usize) -> Result<(&[u8], usize), ParseError> {
    let window = &buf[..buf.len().min(control_line_max + 2)];
    let Some(nl) = memchr(b'\n', window) else {
        if buf.len() > control_line_max {
            return Err(ParseError::ControlLineTooLong);
        }
        return Err(ParseError::Incomplete { need: None });
    };
    let line = buf[..nl].strip_suffix(b"\r").unwrap_or(&buf[..nl]);
    if line.len() > control_line_max {
        return Err(ParseError::ControlLineTooLong);
    }
    Ok((line, nl + 1))
}

/// The operation's name and the rest of the line.
pub fn split_op(line: &[u8]) -> (&[u8], &[u8]) {
    let line = trim_start(line);
    match line.iter().position(|b| *b == b' ' || *b == b'\t') {
        Some(at) => (&line[..at], trim_start(&line[at..])),
        None => (line, &[]),
    }
}

fn trim_start(s: &[u8]) -> &[u8] {
    let skip = s.iter().take_while(|b| **b == b' ' || **b == b'\t').count();
    &s[skip..]
}

/// Arguments split on spaces and tabs; None when there are more than `N`.
pub fn split_args<const N: usize>(rest: &[u8]) -> Option<([&[u8]; N], usize)> {
    let mut args: [&[u8]; N] = [&[]; N];
    let mut count = 0;
    for arg in rest
        .split(|b| *b == b' ' || *b == b'\t')
        .filter(|a| !a.is_empty())
    {
        if count == N {
            return None;
        }
        args[count] = arg;
        count += 1;
    }
    Some((args, count))
}

/// A decimal size of at most 12 digits.
pub fn size(arg: &[u8]) -> Option<usize> {
    if arg.is_empty() || arg.len() > 12 || !arg.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(arg.iter().fold(0usize, |n, d| n * 10 + (d - b'0') as usize))
}

/// The `total` bytes after a message line of `line_len` bytes, which must be
/// followed by CR LF; with the length of the whole operation.
pub fn payload(buf: &[u8], line_len: usize, total: usize) -> Result<(&[u8], usize), ParseError> {
    let end = line_len + total + 2;
    if buf.len() < end {
        return Err(ParseError::Incomplete { need: Some(end) });
    }
    if &buf[end - 2..end] != b"\r\n" {
        return Err(ParseError::BadArgs("payload not followed by CRLF"));
    }
    Ok((&buf[line_len..line_len + total], end))
}

/// Header and total sizes from the last one or two arguments.
pub fn sizes(args: &[&[u8]], with_headers: bool) -> Result<(usize, usize), ParseError> {
    let total = size(args[args.len() - 1]).ok_or(ParseError::BadArgs("bad size"))?;
    if !with_headers {
        return Ok((0, total));
    }
    let header_len = size(args[args.len() - 2]).ok_or(ParseError::BadArgs("bad header size"))?;
    if header_len > total {
        return Err(ParseError::BadArgs("header size exceeds total size"));
    }
    Ok((header_len, total))
}
