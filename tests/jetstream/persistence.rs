//! What survives a stop and what survives a crash.

use crate::common::TestServer;
use crate::*;
use async_nats::jetstream::consumer::{pull, AckPolicy, PullConsumer};
use futures::StreamExt;
use std::collections::BTreeMap;

/// Stops the server with SIGTERM, as an operator would, and waits for it.
pub fn terminate(server: &mut TestServer) {
    let status = std::process::Command::new("kill")
        .args(["-TERM", &server.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(server.wait_exit(WAIT).is_some(), "stopped on SIGTERM");
}

/// Every message a consumer from the start gets now, by stream sequence.
pub async fn read_all(s: &stream::Stream) -> BTreeMap<u64, bytes::Bytes> {
    let c = s
        .create_consumer(pull::Config {
            ack_policy: AckPolicy::None,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut out = BTreeMap::new();
    loop {
        let mut batch = c.fetch().max_messages(1000).messages().await.unwrap();
        let before = out.len();
        while let Some(m) = batch.next().await {
            let m = m.unwrap();
            out.insert(m.info().unwrap().stream_sequence, m.payload.clone());
        }
        if out.len() == before {
            return out;
        }
    }
}

async fn durable(s: &stream::Stream, name: &str) -> PullConsumer {
    s.get_or_create_consumer(
        name,
        pull::Config {
            durable_name: Some(name.into()),
            ack_policy: AckPolicy::Explicit,
            ..Default::default()
        },
    )
    .await
    .unwrap()
}

/// Acks, waiting for the server's confirmation, the next `n` messages.
async fn consume(c: &PullConsumer, n: usize) -> Vec<u64> {
    let mut batch = c.fetch().max_messages(n).messages().await.unwrap();
    let mut seqs = Vec::new();
    while let Some(m) = batch.next().await {
        let m = m.unwrap();
        seqs.push(m.info().unwrap().stream_sequence);
        m.double_ack().await.unwrap();
    }
    seqs
}

async fn restart_keeps_state(shards: usize) {
    let store = tempfile::tempdir().unwrap();
    let mut server = start_on(shards, store.path());
    {
        let (_nc, js) = connect(&server).await;
        let s = create(&js, config("S", &["s.>"])).await;
        create(&js, config("T", &["t.>"])).await;
        for i in 1..=10 {
            publish(&js, "s.x", &format!("s{i}")).await;
        }
        for i in 1..=3 {
            publish(&js, "t.x", &format!("t{i}")).await;
        }
        assert!(s.delete_message(4).await.unwrap());
        let c = durable(&s, "C").await;
        assert_eq!(consume(&c, 5).await, [1, 2, 3, 5, 6]);
    }
    terminate(&mut server);

    let server = start_on(shards, store.path());
    let (_nc, js) = connect(&server).await;
    let s = js.get_stream("S").await.unwrap();
    let info = s.get_info().await.unwrap();
    assert_eq!((info.state.messages, info.state.last_sequence), (9, 10));
    assert_eq!(info.state.deleted_count, Some(1));
    assert!(
        s.get_raw_message(4).await.is_err(),
        "a deleted message stays deleted"
    );
    assert_eq!(s.get_raw_message(10).await.unwrap().payload, "s10");
    let t = js.get_stream("T").await.unwrap().get_info().await.unwrap();
    assert_eq!(t.state.messages, 3);

    let mut c = durable(&s, "C").await;
    let i = c.info().await.unwrap();
    assert_eq!((i.ack_floor.stream_sequence, i.num_pending), (6, 4));
    assert_eq!(
        consume(&c, 10).await,
        [7, 8, 9, 10],
        "the consumer goes on where it was"
    );
    assert_eq!(publish(&js, "s.x", "s11").await, 11, "sequences go on");
}
one_and_two_shards!(restart, restart_keeps_state);

async fn crash_during_burst(shards: usize) {
    const BURST: usize = 5_000;
    let store = tempfile::tempdir().unwrap();
    let mut server = start_on(shards, store.path());
    let (_nc, mut js) = connect(&server).await;
    js.set_timeout(Duration::from_secs(2));
    let s = create(&js, config("BURST", &["burst.>"])).await;
    create(&js, config("QUIET", &["quiet.>"])).await;
    for i in 0..100 {
        publish(&js, "burst.x", &format!("pre-{i}")).await;
    }
    let c = durable(&s, "C").await;
    assert_eq!(consume(&c, 50).await.last(), Some(&50));

    // Publish the burst from one task while this one collects PubAcks; kill -9
    // with many still outstanding.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let publisher = js.clone();
    tokio::spawn(async move {
        for i in 0..BURST {
            let payload = format!("burst-{i}");
            match publisher.publish("burst.x", payload.into()).await {
                Ok(ack) => {
                    if tx.send((i, ack)).is_err() {
                        return;
                    }
                }
                Err(_) => return,
            }
        }
    });
    let mut acked: Vec<(usize, u64)> = Vec::new();
    let mut outstanding = Vec::new();
    while let Some((i, ack)) = rx.recv().await {
        if acked.len() >= BURST / 3 {
            outstanding.push(ack);
            if outstanding.len() >= 200 {
                break;
            }
            continue;
        }
        if let Ok(ack) = ack.await {
            acked.push((i, ack.sequence));
        }
    }
    server.kill();
    rx.close();
    for ack in outstanding {
        if let Ok(ack) = ack.await {
            acked.push((usize::MAX, ack.sequence));
        }
    }
    let before_kill = acked.len();
    assert!(before_kill >= BURST / 3);

    let server = start_on(shards, store.path());
    let (_nc, js) = connect(&server).await;
    let s = js.get_stream("BURST").await.unwrap();
    let stored = read_all(&s).await;
    for (i, seq) in &acked {
        let payload = stored
            .get(seq)
            .unwrap_or_else(|| panic!("acknowledged seq {seq} lost"));
        if *i != usize::MAX {
            assert_eq!(payload, &format!("burst-{i}"), "seq {seq}");
        }
    }
    let order: Vec<usize> = stored
        .values()
        .filter_map(|p| std::str::from_utf8(p).unwrap().strip_prefix("burst-"))
        .map(|n| n.parse().unwrap())
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "in publish order");
    assert_eq!(
        stored.len() as u64,
        s.get_info().await.unwrap().state.messages
    );

    let c = durable(&s, "C").await;
    let mut batch = c.fetch().max_messages(1).messages().await.unwrap();
    let next = batch.next().await.unwrap().unwrap();
    assert_eq!(
        next.info().unwrap().stream_sequence,
        51,
        "the consumer resumes"
    );
    assert_eq!(next.payload, "pre-50");
}
one_and_two_shards!(crash, crash_during_burst);
