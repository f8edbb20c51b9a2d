//! Certificates for TLS tests, made with rcgen into a directory: a CA, a server
//! certificate for 127.0.0.1 and localhost (usable as a route's client certificate
//! too), and client certificates.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use std::path::{Path, PathBuf};

pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pub cert: PathBuf,
    dir: PathBuf,
}

/// A certificate and key written as PEM files.
pub struct Pem {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Pem {
    /// The paths as a config file's `cert_file: ..., key_file: ...`.
    pub fn conf(&self) -> String {
        format!(
            "cert_file: {:?}, key_file: {:?}",
            self.cert.display().to_string(),
            self.key.display().to_string()
        )
    }
}

impl Ca {
    /// A new CA named `name`, written to `dir/<name>-ca.pem`.
    pub fn new(dir: &Path, name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::CrlSign,
        ];
        let cert = params.self_signed(&key).unwrap();
        let path = dir.join(format!("{name}-ca.pem"));
        std::fs::write(&path, cert.pem()).unwrap();
        Ca {
            issuer: Issuer::new(params, key),
            cert: path,
            dir: dir.to_path_buf(),
        }
    }

    /// `ca_file: "..."` for a config file.
    pub fn conf(&self) -> String {
        format!("ca_file: {:?}", self.cert.display().to_string())
    }

    /// A certificate for 127.0.0.1 and localhost, for servers and routes.
    pub fn server(&self, name: &str) -> Pem {
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        self.issue(name, params)
    }

    /// A client certificate with subject `CN=<cn>,O=<org>` and, unless empty, an
    /// email SAN.
    pub fn client(&self, name: &str, cn: &str, org: &str, email: &str) -> Pem {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params
            .distinguished_name
            .push(DnType::OrganizationName, org);
        if !email.is_empty() {
            params.subject_alt_names = vec![SanType::Rfc822Name(email.try_into().unwrap())];
        }
        self.issue(name, params)
    }

    fn issue(&self, name: &str, mut params: CertificateParams) -> Pem {
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let pem = Pem {
            cert: self.dir.join(format!("{name}-cert.pem")),
            key: self.dir.join(format!("{name}-key.pem")),
        };
        std::fs::write(&pem.cert, cert.pem()).unwrap();
        std::fs::write(&pem.key, key.serialize_pem()).unwrap();
        pem
    }
}
