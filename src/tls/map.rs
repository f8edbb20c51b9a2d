//! `verify_and_map`: the user names a client certificate may stand for, in the order
//! nats-server tries them: email SANs, DNS SANs, URI SANs, then the subject as Go
//! prints it (RFC 2253, most specific first), with the domain components appended
//! when there are any, and without them.

use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

/// Go's `pkix.Name.ToRDNSequence` order (`String()` prints it reversed), with the
/// short names Go prints; other attributes are not part of Go's subject string.
const GO_SUBJECT_ORDER: &[(&str, &str)] = &[
    ("2.5.4.6", "C"),
    ("2.5.4.8", "ST"),
    ("2.5.4.7", "L"),
    ("2.5.4.9", "STREET"),
    ("2.5.4.17", "POSTALCODE"),
    ("2.5.4.10", "O"),
    ("2.5.4.11", "OU"),
    ("2.5.4.3", "CN"),
    ("2.5.4.5", "SERIALNUMBER"),
];
const DOMAIN_COMPONENT: &str = "0.9.2342.19200300.100.1.25";

/// What a certificate offers to map to a user.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct CertNames {
    /// Names to look up as they are, in order.
    pub candidates: Vec<String>,
    /// The subject's attributes (short name, value), for a match in any order.
    pub subject: Vec<(String, String)>,
}

impl CertNames {
    /// Whether the certificate stands for `user`: one of its names as it is, or
    /// its subject as a DN in any order.
    pub fn names(&self, user: &str) -> bool {
        self.candidates.iter().any(|n| n == user) || dn_matches(user, &self.subject)
    }
}

pub fn cert_names(der: &[u8]) -> Option<CertNames> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let mut names = CertNames::default();
    names.candidates.extend(san_names(&cert));
    let attrs: Vec<(String, String)> = cert
        .subject()
        .iter_attributes()
        .filter_map(|a| Some((a.attr_type().to_id_string(), a.as_str().ok()?.to_string())))
        .collect();
    let rdn = go_subject(&attrs);
    let dcs: Vec<String> = attrs
        .iter()
        .filter(|(oid, _)| oid == DOMAIN_COMPONENT)
        .map(|(_, v)| format!("DC={}", escape(v)))
        .collect();
    if !dcs.is_empty() {
        names.candidates.push(format!("{rdn},{}", dcs.join(",")));
    }
    if !rdn.is_empty() {
        names.candidates.push(rdn);
    }
    names.subject = attrs
        .iter()
        .filter_map(|(oid, v)| Some((short_name(oid)?.to_string(), v.clone())))
        .collect();
    Some(names)
}

fn san_names(cert: &X509Certificate) -> Vec<String> {
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    let general = &san.value.general_names;
    let mut out = Vec::new();
    for kind in 0..3 {
        for name in general {
            match (kind, name) {
                (0, GeneralName::RFC822Name(s))
                | (1, GeneralName::DNSName(s))
                | (2, GeneralName::URI(s)) => out.push(s.to_string()),
                _ => {}
            }
        }
    }
    out
}

fn short_name(oid: &str) -> Option<&'static str> {
    if oid == DOMAIN_COMPONENT {
        return Some("DC");
    }
    GO_SUBJECT_ORDER
        .iter()
        .find(|(o, _)| *o == oid)
        .map(|(_, n)| *n)
}

/// The subject as Go's `cert.Subject.ToRDNSequence().String()` prints it.
fn go_subject(attrs: &[(String, String)]) -> String {
    let mut rdns = Vec::new();
    for (oid, name) in GO_SUBJECT_ORDER {
        for (_, value) in attrs.iter().filter(|(o, _)| o == oid) {
            rdns.push(format!("{name}={}", escape(value)));
        }
    }
    rdns.reverse();
    rdns.join(",")
}

/// RFC 2253 escaping as Go applies it.
fn escape(value: &str) -> String {
    let count = value.chars().count();
    let mut out = String::with_capacity(value.len());
    for (i, c) in value.chars().enumerate() {
        let special = match c {
            ',' | '+' | '"' | '\\' | '<' | '>' | ';' => true,
            ' ' => i == 0 || i + 1 == count,
            '#' => i == 0,
            _ => false,
        };
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Whether `user` (a DN such as `CN=x,O=y`) names the same attributes as `subject`,
/// in any order.
pub fn dn_matches(user: &str, subject: &[(String, String)]) -> bool {
    let Some(mut wanted) = parse_dn(user) else {
        return false;
    };
    let mut have: Vec<(String, String)> = subject.to_vec();
    wanted.sort();
    have.sort();
    !have.is_empty() && wanted == have
}

/// `K=V,K=V+K=V` into (upper-case K, unescaped V) pairs; None if it is not a DN.
fn parse_dn(text: &str) -> Option<Vec<(String, String)>> {
    let mut pairs = Vec::new();
    let mut part = String::new();
    let mut chars = text.chars();
    let mut parts = Vec::new();
    while let Some(c) = chars.next() {
        match c {
            '\\' => part.push(chars.next()?),
            ',' | '+' => parts.push(std::mem::take(&mut part)),
            _ => part.push(c),
        }
    }
    parts.push(part);
    for p in parts {
        let (k, v) = p.split_once('=')?;
        pairs.push((k.trim().to_ascii_uppercase(), v.trim().to_string()));
    }
    Some(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_prints_as_go_does() {
        let attrs: Vec<(String, String)> = [
            ("2.5.4.6", "US"),
            ("2.5.4.8", "CA"),
            ("2.5.4.10", "Synadia"),
            ("2.5.4.11", "nats.io"),
            ("2.5.4.3", "example, inc"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        assert_eq!(
            go_subject(&attrs),
            "CN=example\\, inc,OU=nats.io,O=Synadia,ST=CA,C=US"
        );
    }

    #[test]
    fn dn_matches_in_any_order() {
        let subject = vec![
            ("CN".to_string(), "alice".to_string()),
            ("O".to_string(), "acme".to_string()),
        ];
        assert!(dn_matches("O=acme, CN=alice", &subject));
        assert!(dn_matches("cn=alice,o=acme", &subject));
        assert!(!dn_matches("CN=alice", &subject));
        assert!(!dn_matches("alice", &subject));
    }
}
