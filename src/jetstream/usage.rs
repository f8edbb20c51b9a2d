//! Bytes JetStream streams hold, per shard and account, in memory and on file:
//! what publishes check the server's and the accounts' storage limits against.
//!
//! Each shard writes only its own cells (recounted by its housekeeping, bumped by
//! its own publishes in between) and reads the others' without a lock, so a
//! limit can be passed by what other shards stored in the last recount. In a
//! cluster, what the other servers hold for each account (their last reports,
//! `cluster::shared_usage`) counts against the account's limits too, as on
//! nats-server: each replica's bytes count.

use crate::options::Options;
use crate::server::accounts::{AccountId, Accounts};
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Medium {
    Memory,
    File,
}

/// Why a publish may not store more.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The account's `max_mem`/`max_file` would be passed.
    Account,
    /// The server's `max_memory_store`/`max_file_store` is already passed.
    Server,
}

/// One shard's bytes for one account, on a cache line of its own: each shard
/// bumps its own cells on every publish, and must not slow its neighbours.
#[repr(align(64))]
#[derive(Default)]
struct Cell([AtomicU64; 2]);

/// Limits per medium: `None` is no limit.
type Limits = [Option<u64>; 2];

pub struct StoredBytes {
    accounts: usize,
    /// `[shard * accounts + account]`.
    cells: Vec<Cell>,
    /// `[account]`: what the cluster's other servers hold.
    others: Vec<Cell>,
    /// Read once from the options, so that a publish checks without a lookup.
    account_limits: Vec<Limits>,
    server_limits: Limits,
}

fn limit(max: Option<i64>) -> Option<u64> {
    max.and_then(|m| u64::try_from(m).ok())
}

impl StoredBytes {
    pub fn new(shards: usize, accounts: &Accounts, opts: &Options) -> StoredBytes {
        let account_limits = (0..accounts.len())
            .map(|i| {
                let name = accounts.name(AccountId(i as u32));
                let own = opts.accounts.iter().find(|a| a.name == name);
                let own = own.map(|a| a.jetstream_limits).unwrap_or_default();
                [limit(Some(own.max_memory)), limit(Some(own.max_storage))]
            })
            .collect();
        let js = opts.jetstream.as_ref();
        StoredBytes {
            accounts: accounts.len(),
            cells: (0..shards * accounts.len())
                .map(|_| Cell::default())
                .collect(),
            others: (0..accounts.len()).map(|_| Cell::default()).collect(),
            account_limits,
            server_limits: [
                limit(js.and_then(|j| j.max_memory_store)),
                limit(js.and_then(|j| j.max_file_store)),
            ],
        }
    }

    fn cell(&self, shard: usize, account: AccountId, medium: Medium) -> Option<&AtomicU64> {
        if account.index() >= self.accounts {
            return None;
        }
        let cell = self.cells.get(shard * self.accounts + account.index())?;
        Some(&cell.0[medium as usize])
    }

    /// Sets what `shard` holds for `account`.
    pub fn set(&self, shard: usize, account: AccountId, medium: Medium, bytes: u64) {
        if let Some(c) = self.cell(shard, account, medium) {
            c.store(bytes, Ordering::Relaxed);
        }
    }

    /// Counts `bytes` more on `shard` for `account` until the next recount.
    pub fn add(&self, shard: usize, account: AccountId, medium: Medium, bytes: u64) {
        if let Some(c) = self.cell(shard, account, medium) {
            c.fetch_add(bytes, Ordering::Relaxed);
        }
    }

    /// What `account` holds on every shard.
    pub fn of_account(&self, account: AccountId, medium: Medium) -> u64 {
        let shards = self.cells.len() / self.accounts.max(1);
        (0..shards)
            .filter_map(|s| self.cell(s, account, medium))
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    /// Sets what the cluster's other servers hold for `account`.
    pub fn set_others(&self, account: AccountId, medium: Medium, bytes: u64) {
        if let Some(c) = self.others.get(account.index()) {
            c.0[medium as usize].store(bytes, Ordering::Relaxed);
        }
    }

    /// What `account` holds on this server and, in a cluster, on the others.
    pub fn of_account_in_cluster(&self, account: AccountId, medium: Medium) -> u64 {
        let others = self
            .others
            .get(account.index())
            .map_or(0, |c| c.0[medium as usize].load(Ordering::Relaxed));
        self.of_account(account, medium) + others
    }

    /// What every account holds on every shard.
    pub fn total(&self, medium: Medium) -> u64 {
        self.cells
            .iter()
            .map(|c| c.0[medium as usize].load(Ordering::Relaxed))
            .sum()
    }

    /// Whether `account` may store `size_bytes` more, as nats-server checks it:
    /// the account's limit must not be passed, the server's not already passed.
    /// Free when neither limit is set.
    pub fn refusal(&self, account: AccountId, medium: Medium, size_bytes: u64) -> Option<Refusal> {
        let own = self
            .account_limits
            .get(account.index())
            .copied()
            .unwrap_or_default();
        if let Some(max) = own[medium as usize] {
            if self.of_account_in_cluster(account, medium) + size_bytes > max {
                return Some(Refusal::Account);
            }
        }
        let max = self.server_limits[medium as usize]?;
        (self.total(medium) > max).then_some(Refusal::Server)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(shards: usize, config: &str) -> StoredBytes {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("u.conf");
        std::fs::write(&path, config).unwrap();
        let opts = Options::load(&path).unwrap();
        StoredBytes::new(shards, &Accounts::from_options(&opts), &opts)
    }

    #[test]
    fn sums_over_shards_and_accounts() {
        let u = usage(2, "accounts { A { } }\n");
        let (a, b) = (AccountId(0), AccountId(2));
        u.set(0, a, Medium::File, 10);
        u.set(1, a, Medium::File, 5);
        u.add(1, a, Medium::File, 1);
        u.set(1, b, Medium::File, 100);
        u.set(0, b, Medium::Memory, 7);
        u.set(0, AccountId(9), Medium::File, 1000);
        assert_eq!(u.of_account(a, Medium::File), 16);
        assert_eq!(u.of_account(b, Medium::Memory), 7);
        assert_eq!(u.total(Medium::File), 116);
        assert_eq!(u.total(Medium::Memory), 7);
    }

    #[test]
    fn refusals_by_the_account_and_by_the_server() {
        let config = "jetstream { max_file_store: 1000 }\naccounts { A { jetstream { max_file: 100 } }\n B { jetstream: enabled } }\n";
        let u = usage(2, config);
        let (a, b) = (AccountId(2), AccountId(3));
        u.set(0, a, Medium::File, 60);
        u.set(1, a, Medium::File, 30);
        assert_eq!(u.refusal(a, Medium::File, 10), None);
        assert_eq!(u.refusal(a, Medium::File, 11), Some(Refusal::Account));
        assert_eq!(u.refusal(a, Medium::Memory, 1000), None, "no memory limit");
        u.set_others(a, Medium::File, 5);
        assert_eq!(u.of_account_in_cluster(a, Medium::File), 95);
        assert_eq!(u.refusal(a, Medium::File, 5), None);
        assert_eq!(
            u.refusal(a, Medium::File, 6),
            Some(Refusal::Account),
            "other servers' bytes count"
        );
        u.set_others(AccountId(99), Medium::File, 5);
        u.set(0, b, Medium::File, 911);
        assert_eq!(u.refusal(b, Medium::File, 1), Some(Refusal::Server));
    }
}
