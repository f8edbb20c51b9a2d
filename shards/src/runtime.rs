//! Starting the shards: one glommio executor per shard, pinned to a core (shards
//! beyond the core count share cores round-robin), joined by a full mesh of bounded
//! queues, one per ordered pair of shards.

use glommio::channels::channel_mesh::{Full, MeshBuilder, Receivers, Senders};
use glommio::{LocalExecutorBuilder, Placement};
use std::future::Future;
use std::io;

/// io_uring memory per executor, bytes: three rings each, all shards within 8 MiB of
/// locked memory up to 4 shards, and glommio refuses less than 512 KiB.
const IO_MEMORY_BYTES_DEFAULT: usize = 640 << 10;

/// An idle shard polls at most this long before it sleeps (`--spin_us`).
pub const SPIN_BEFORE_PARK_US_MAX: u64 = 10_000;

#[derive(Clone, Debug)]
pub struct ShardSettings {
    pub count: usize,
    /// Capacity of each queue between two shards, in batches.
    pub queue_depth: usize,
    pub io_memory_bytes: usize,
    /// How long an idle executor keeps polling before it sleeps: a message from
    /// another shard is then picked up without a wake-up through the kernel, at the
    /// price of a core per spinning shard. Off by default: with the cores shared
    /// (clients or other servers on the machine) the spinning shards take the time
    /// the others need (perf/RESULTS.md, "Shards spinning before they park").
    pub spin_before_park_us: u64,
}

impl ShardSettings {
    pub fn new(count: usize) -> Self {
        assert!(count >= 1, "at least one shard");
        ShardSettings {
            count,
            queue_depth: 1024,
            io_memory_bytes: IO_MEMORY_BYTES_DEFAULT,
            spin_before_park_us: 0,
        }
    }

    /// Spinning `us` before parking, where shards do not outnumber the cores
    /// (spinning would take time from a sibling shard).
    pub fn spinning(mut self, us: u64) -> Self {
        assert!(us <= SPIN_BEFORE_PARK_US_MAX, "spin within limits");
        self.spin_before_park_us = if self.count <= available_cores() {
            us
        } else {
            0
        };
        self
    }
}

/// What a shard is given when it starts.
pub struct ShardContext<T: Send + 'static> {
    /// This shard's index, 0..count; equal to its place in the mesh.
    pub id: usize,
    pub count: usize,
    pub senders: Senders<T>,
    pub receivers: Receivers<T>,
}

/// The number of cores this process may run on.
pub fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Starts `settings.count` executors, runs `shard(ctx)` on each, and returns when
/// every shard's future has finished.
pub fn run<T, F, Fut>(settings: ShardSettings, shard: F) -> io::Result<()>
where
    T: Send + 'static,
    F: Fn(ShardContext<T>) -> Fut + Send + Clone + 'static,
    Fut: Future<Output = ()> + 'static,
{
    crate::memlock::raise_to_hard_limit();
    let cores: Vec<usize> = core_affinity::get_core_ids()
        .map(|ids| ids.into_iter().map(|c| c.id).collect())
        .filter(|ids: &Vec<usize>| !ids.is_empty())
        .unwrap_or_else(|| (0..available_cores()).collect());
    let mesh: MeshBuilder<T, Full> = MeshBuilder::full(settings.count, settings.queue_depth);
    let mut handles = Vec::with_capacity(settings.count);
    for index in 0..settings.count {
        let mesh = mesh.clone();
        let shard = shard.clone();
        let count = settings.count;
        let handle = LocalExecutorBuilder::new(Placement::Fixed(cores[index % cores.len()]))
            .name(&format!("shard-{index}"))
            .io_memory(settings.io_memory_bytes)
            .spin_before_park(std::time::Duration::from_micros(
                settings.spin_before_park_us,
            ))
            .spawn(move || async move {
                let _park_guard = crate::park_guard::Guard::install();
                let (senders, receivers) = mesh.join().await.expect("mesh join");
                let id = senders.peer_id();
                shard(ShardContext {
                    id,
                    count,
                    senders,
                    receivers,
                })
                .await
            })
            .map_err(|e| io::Error::other(e.to_string()))?;
        handles.push(handle);
    }
    for handle in handles {
        handle.join().map_err(|e| io::Error::other(e.to_string()))?;
    }
    Ok(())
}
