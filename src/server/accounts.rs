//! The account registry: every account has the same small index on every shard.
//! `$G` (the default account) and `$SYS` (the system account) always exist.

use crate::options::Options;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AccountId(pub u32);

impl AccountId {
    pub const GLOBAL: AccountId = AccountId(0);
    pub const SYSTEM: AccountId = AccountId(1);

    pub fn index(self) -> usize {
        self.0 as usize
    }
}

#[derive(Debug, Clone)]
pub struct Accounts {
    names: Vec<String>,
    system: AccountId,
}

impl Accounts {
    pub fn from_options(opts: &Options) -> Accounts {
        let mut names = vec!["$G".to_string(), "$SYS".to_string()];
        for acc in &opts.accounts {
            if !names.contains(&acc.name) {
                names.push(acc.name.clone());
            }
        }
        let mut accounts = Accounts {
            names,
            system: AccountId::SYSTEM,
        };
        if let Some(sys) = opts.system_account.as_deref() {
            if let Some(id) = accounts.lookup(sys) {
                accounts.system = id;
            }
        }
        accounts
    }

    pub fn lookup(&self, name: &str) -> Option<AccountId> {
        self.names
            .iter()
            .position(|n| n == name)
            .map(|i| AccountId(i as u32))
    }

    pub fn name(&self, id: AccountId) -> &str {
        &self.names[id.index()]
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    pub fn system(&self) -> AccountId {
        self.system
    }
}
