//! Who may connect, and into which account: single user, token, users lists and
//! account users from the config, with plain or bcrypt passwords, and nkey users
//! (who sign the nonce the server put in its INFO).

use crate::options::{Options, Permissions, UserConfig};
use crate::server::accounts::{AccountId, Accounts};
use crate::tls::map::{dn_matches, CertNames};
use ahash::AHashMap;
use std::sync::Arc;

#[derive(Debug)]
struct UserEntry {
    password: Option<String>,
    account: AccountId,
    permissions: Option<Arc<Permissions>>,
}

/// The outcome of a successful login.
#[derive(Debug, Clone)]
pub struct Login {
    pub account: AccountId,
    pub user: Option<String>,
    pub permissions: Option<Arc<Permissions>>,
}

#[derive(Debug, Default)]
pub struct Auth {
    users: AHashMap<String, UserEntry>,
    /// nkey users, by public key.
    nkeys: AHashMap<String, UserEntry>,
    token: Option<String>,
    no_auth_user: Option<String>,
}

/// What the client presented in CONNECT, and the nonce its INFO carried.
#[derive(Default)]
pub struct Credentials<'a> {
    pub user: Option<&'a str>,
    pub pass: Option<&'a str>,
    pub token: Option<&'a str>,
    pub nkey: Option<&'a str>,
    /// The nonce signed with the nkey's seed, base64 (URL alphabet, as clients send it).
    pub sig: Option<&'a str>,
    pub nonce: &'a [u8],
}

/// The nonce a server puts in INFO when nkey users may log in: 11 random bytes,
/// as nats-server's, in unpadded URL-safe base64.
pub fn new_nonce() -> String {
    use base64::Engine;
    let bytes: [u8; 11] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl Auth {
    pub fn from_options(opts: &Options, accounts: &Accounts) -> Result<Auth, String> {
        let mut auth = Auth {
            no_auth_user: opts.no_auth_user.clone(),
            ..Auth::default()
        };
        if let Some(a) = &opts.authorization {
            auth.token = a.token.clone();
            if let Some(user) = &a.user {
                auth.add(user, a.password.clone(), AccountId::GLOBAL, None)?;
            }
            for u in &a.users {
                let account = match &u.account {
                    Some(name) => accounts
                        .lookup(name)
                        .ok_or_else(|| format!("user {:?}: unknown account {name:?}", u.user))?,
                    None => AccountId::GLOBAL,
                };
                auth.add_user(u, account)?;
            }
        }
        for acc in &opts.accounts {
            let id = accounts
                .lookup(&acc.name)
                .expect("accounts registered first");
            for u in &acc.users {
                auth.add_user(u, id)?;
            }
        }
        if let Some(name) = &auth.no_auth_user {
            if !auth.users.contains_key(name) {
                return Err(format!("no_auth_user {name:?} is not a configured user"));
            }
        }
        Ok(auth)
    }

    fn add_user(&mut self, u: &UserConfig, account: AccountId) -> Result<(), String> {
        let perms = u.permissions.clone().map(Arc::new);
        let Some(key) = &u.nkey else {
            return self.add(&u.user, u.password.clone(), account, perms);
        };
        let entry = UserEntry {
            password: None,
            account,
            permissions: perms,
        };
        if self.nkeys.insert(key.clone(), entry).is_some() {
            return Err(format!("duplicate nkey {key:?}"));
        }
        Ok(())
    }

    /// Whether clients get a nonce to sign (nkey users exist).
    pub fn wants_nonce(&self) -> bool {
        !self.nkeys.is_empty()
    }

    fn add(
        &mut self,
        user: &str,
        password: Option<String>,
        account: AccountId,
        permissions: Option<Arc<Permissions>>,
    ) -> Result<(), String> {
        let entry = UserEntry {
            password,
            account,
            permissions,
        };
        if self.users.insert(user.to_string(), entry).is_some() {
            return Err(format!("duplicate user {user:?}"));
        }
        Ok(())
    }

    pub fn required(&self) -> bool {
        !self.users.is_empty() || !self.nkeys.is_empty() || self.token.is_some()
    }

    /// Checks credentials; `None` means Authorization Violation. bcrypt is slow, so
    /// callers run this off the shard's event loop.
    pub fn login(&self, creds: &Credentials) -> Option<Login> {
        if !self.required() {
            return Some(Login {
                account: AccountId::GLOBAL,
                user: None,
                permissions: None,
            });
        }
        if let Some(expected) = &self.token {
            let given = creds.token.or(creds.pass);
            let matches =
                given.is_some_and(|g| constant_time_eq(g.as_bytes(), expected.as_bytes()));
            if matches && creds.user.is_none() {
                return Some(Login {
                    account: AccountId::GLOBAL,
                    user: None,
                    permissions: None,
                });
            }
        }
        if let Some(key) = creds.nkey {
            return self.login_nkey(key, creds);
        }
        let no_creds = creds.user.is_none() && creds.pass.is_none() && creds.token.is_none();
        if no_creds {
            let name = self.no_auth_user.as_ref()?;
            return self.login_as(name);
        }
        let name = creds.user?;
        let entry = self.users.get(name)?;
        if !password_matches(entry.password.as_deref(), creds.pass.unwrap_or("")) {
            return None;
        }
        self.login_as(name)
    }

    /// `verify_and_map`: the user the client certificate names, as nats-server
    /// finds it (its names as they are, then its subject as a DN in any order).
    pub fn login_mapped(&self, cert: &CertNames) -> Option<Login> {
        if self.users.is_empty() {
            return self.login(&Credentials::default());
        }
        if let Some(name) = cert.candidates.iter().find(|n| self.users.contains_key(*n)) {
            return self.login_as(name);
        }
        let name = self
            .users
            .keys()
            .find(|name| dn_matches(name, &cert.subject))?;
        self.login_as(name)
    }

    /// Whether checking these credentials may take long (bcrypt).
    pub fn is_slow(&self, creds: &Credentials) -> bool {
        creds
            .user
            .and_then(|u| self.users.get(u))
            .and_then(|e| e.password.as_deref())
            .is_some_and(is_bcrypt)
    }

    /// An nkey user: the signature of our nonce must verify with the public key.
    fn login_nkey(&self, key: &str, creds: &Credentials) -> Option<Login> {
        use base64::Engine;
        let entry = self.nkeys.get(key)?;
        let sig = creds.sig?;
        let engines = [
            base64::engine::general_purpose::URL_SAFE_NO_PAD,
            base64::engine::general_purpose::STANDARD_NO_PAD,
        ];
        let sig = engines
            .iter()
            .find_map(|e| e.decode(sig.trim_end_matches('=')).ok())?;
        let public = nkeys::KeyPair::from_public_key(key).ok()?;
        if creds.nonce.is_empty() || public.verify(creds.nonce, &sig).is_err() {
            return None;
        }
        Some(Login {
            account: entry.account,
            user: Some(key.to_string()),
            permissions: entry.permissions.clone(),
        })
    }

    fn login_as(&self, name: &str) -> Option<Login> {
        let entry = self.users.get(name)?;
        Some(Login {
            account: entry.account,
            user: Some(name.to_string()),
            permissions: entry.permissions.clone(),
        })
    }
}

fn is_bcrypt(stored: &str) -> bool {
    ["$2a$", "$2b$", "$2y$"]
        .iter()
        .any(|p| stored.starts_with(p))
}

fn password_matches(stored: Option<&str>, given: &str) -> bool {
    match stored {
        None => given.is_empty(),
        Some(hash) if is_bcrypt(hash) => bcrypt::verify(given, hash).unwrap_or(false),
        Some(plain) => constant_time_eq(plain.as_bytes(), given.as_bytes()),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::{AccountConfig, Authorization};

    const HASH: &str = "$2a$11$DRh4C0KNbNnD8K/hb/buWe1zPxEHrLEiDmuq1Mi0rRJiH/W25Qidm";

    fn creds<'a>(user: &'a str, pass: &'a str) -> Credentials<'a> {
        Credentials {
            user: Some(user),
            pass: Some(pass),
            ..Credentials::default()
        }
    }

    #[test]
    fn bcrypt_and_plain_users_in_accounts() {
        let opts = Options {
            accounts: vec![
                AccountConfig {
                    name: "$SYS".into(),
                    users: vec![UserConfig {
                        user: "admin".into(),
                        password: Some(HASH.into()),
                        ..Default::default()
                    }],
                    jetstream: false,
                    jetstream_limits: Default::default(),
                },
                AccountConfig {
                    name: "APP".into(),
                    users: vec![UserConfig {
                        user: "app".into(),
                        password: Some("app".into()),
                        ..Default::default()
                    }],
                    jetstream: false,
                    jetstream_limits: Default::default(),
                },
            ],
            ..Default::default()
        };
        let accounts = Accounts::from_options(&opts);
        let auth = Auth::from_options(&opts, &accounts).unwrap();
        assert!(auth.required());
        let admin = auth
            .login(&creds("admin", "a very long s3cr3t! password"))
            .unwrap();
        assert_eq!(admin.account, AccountId::SYSTEM);
        assert!(auth.login(&creds("admin", HASH)).is_none());
        assert!(auth.login(&creds("admin", "")).is_none());
        let app = auth.login(&creds("app", "app")).unwrap();
        assert_eq!(accounts.name(app.account), "APP");
        assert!(auth.login(&creds("nobody", "x")).is_none());
    }

    #[test]
    fn single_user_and_token() {
        let mut opts = Options {
            authorization: Some(Authorization {
                user: Some("u".into()),
                password: Some("p".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let accounts = Accounts::from_options(&opts);
        let auth = Auth::from_options(&opts, &accounts).unwrap();
        assert!(auth.login(&creds("u", "p")).is_some());
        assert!(auth.login(&creds("u", "q")).is_none());
        opts.authorization = Some(Authorization {
            token: Some("s3cr3t".into()),
            ..Default::default()
        });
        let auth = Auth::from_options(&opts, &accounts).unwrap();
        let token = Credentials {
            token: Some("s3cr3t"),
            ..Credentials::default()
        };
        assert!(auth.login(&token).is_some());
    }
}
