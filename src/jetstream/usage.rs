//! Bytes JetStream streams hold, per shard and account, in memory and on file:
//! what publishes check the server's and the accounts' storage limits against.
//!
//! Each shard writes only its own cells (recounted by its housekeeping, bumped by
//! its own publishes in between) and reads the others' without a lock, so a
//! limit can be passed by what other shards stored in the last recount.

use crate::server::accounts::AccountId;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Medium {
    Memory,
    File,
}

pub struct StoredBytes {
    accounts: usize,
    /// `[shard * accounts + account]`: (memory, file).
    cells: Vec<[AtomicU64; 2]>,
}

impl StoredBytes {
    pub fn new(shards: usize, accounts: usize) -> StoredBytes {
        StoredBytes {
            accounts,
            cells: (0..shards * accounts)
                .map(|_| [AtomicU64::new(0), AtomicU64::new(0)])
                .collect(),
        }
    }

    fn cell(&self, shard: usize, account: AccountId, medium: Medium) -> Option<&AtomicU64> {
        if account.index() >= self.accounts {
            return None;
        }
        let cells = self.cells.get(shard * self.accounts + account.index())?;
        Some(&cells[medium as usize])
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

    /// What every account holds on every shard.
    pub fn total(&self, medium: Medium) -> u64 {
        self.cells
            .iter()
            .map(|c| c[medium as usize].load(Ordering::Relaxed))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_over_shards_and_accounts() {
        let u = StoredBytes::new(2, 3);
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
}
