//! Ack subjects (`$JS.ACK...`) and ack bodies (`+ACK`, `-NAK`, `+WPI`, `+NXT`,
//! `+TERM`): decoding only.

/// What a delivered message's reply subject says about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AckSubject<'a> {
    pub stream: &'a str,
    pub consumer: &'a str,
    pub deliveries: u64,
    pub stream_seq: u64,
    pub consumer_seq: u64,
}

/// The reply subject of a delivery (v1 form).
pub fn subject(
    stream: &str,
    consumer: &str,
    deliveries: u64,
    stream_seq: u64,
    consumer_seq: u64,
    ts_ns: u64,
    pending: u64,
) -> String {
    format!(
        "$JS.ACK.{stream}.{consumer}.{deliveries}.{stream_seq}.{consumer_seq}.{ts_ns}.{pending}"
    )
}

/// Decodes `$JS.ACK.<stream>.<consumer>.<n>.<sseq>.<cseq>.<ts>.<pending>` (v1) or
/// `$JS.ACK.<domain>.<account>.<stream>.<consumer>.<n>.<sseq>.<cseq>.<ts>.<pending>[.<token>]` (v2).
pub fn parse_subject(subject: &str) -> Option<AckSubject<'_>> {
    let mut t = [""; 12];
    let mut len = 0;
    for token in subject.split('.') {
        *t.get_mut(len)? = token;
        len += 1;
    }
    if len < 9 || t[0] != "$JS" || t[1] != "ACK" {
        return None;
    }
    let at = match len {
        9 => 2,
        11 | 12 => 4,
        _ => return None,
    };
    let num = |i: usize| t[at + i].parse::<u64>().ok();
    Some(AckSubject {
        stream: t[at],
        consumer: t[at + 1],
        deliveries: num(2)?,
        stream_seq: num(3)?,
        consumer_seq: num(4)?,
    })
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AckKind {
    Ack,
    /// Redeliver after this delay (0: at once).
    Nak {
        delay_ms: u64,
    },
    InProgress,
    /// Ack, and a pull request for more (the body after `+NXT`).
    Next(String),
    Term {
        reason: String,
    },
}

pub fn parse_body(body: &[u8]) -> AckKind {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() || text == "+ACK" {
        return AckKind::Ack;
    }
    if let Some(rest) = text.strip_prefix("-NAK") {
        return AckKind::Nak {
            delay_ms: nak_delay_ms(rest.trim()),
        };
    }
    if text.starts_with("+WPI") {
        return AckKind::InProgress;
    }
    if let Some(rest) = text.strip_prefix("+NXT") {
        return AckKind::Next(rest.trim().to_string());
    }
    if let Some(rest) = text.strip_prefix("+TERM") {
        return AckKind::Term {
            reason: rest.trim().to_string(),
        };
    }
    AckKind::Ack
}

/// `-NAK {"delay": ns}` or `-NAK <go duration>`.
fn nak_delay_ms(rest: &str) -> u64 {
    #[derive(serde::Deserialize)]
    struct Delay {
        delay: i64,
    }
    if rest.is_empty() {
        return 0;
    }
    if let Ok(d) = serde_json::from_str::<Delay>(rest) {
        return (d.delay.max(0) / 1_000_000) as u64;
    }
    crate::conf::duration::parse_duration(rest).map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_subject_forms() {
        let v1 = subject("S", "C", 2, 10, 12, 99, 5);
        let a = parse_subject(&v1).unwrap();
        assert_eq!((a.stream, a.consumer), ("S", "C"));
        assert_eq!((a.deliveries, a.stream_seq, a.consumer_seq), (2, 10, 12));
        let v2 = parse_subject("$JS.ACK.dom.ACC.S.C.1.7.8.99.0.tok").unwrap();
        assert_eq!((v2.stream_seq, v2.consumer_seq), (7, 8));
        assert_eq!(parse_subject("$JS.ACK.S.C.x.1.2.3.4"), None);
        assert_eq!(
            parse_subject("$JS.ACK.a.b.c.d.e.1.2.3.4.5.6.7"),
            None,
            "13 tokens"
        );
    }

    #[test]
    fn parses_bodies() {
        assert_eq!(parse_body(b""), AckKind::Ack);
        assert_eq!(parse_body(b"-NAK"), AckKind::Nak { delay_ms: 0 });
        assert_eq!(
            parse_body(br#"-NAK {"delay": 2000000000}"#),
            AckKind::Nak { delay_ms: 2000 }
        );
        assert_eq!(parse_body(b"+WPI"), AckKind::InProgress);
        assert_eq!(
            parse_body(b"+NXT {\"batch\":5}"),
            AckKind::Next("{\"batch\":5}".into())
        );
        assert_eq!(
            parse_body(b"+TERM bad"),
            AckKind::Term {
                reason: "bad".into()
            }
        );
    }
}
