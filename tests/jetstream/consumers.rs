//! Pull and push consumers: requests and their status answers, acks and
//! redelivery, limits, filters, deliver policies, counters, pause, inactivity.

use crate::common::wait_until;
use crate::*;
use async_nats::jetstream::consumer::{pull, push, AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::jetstream::{AckKind, Message};
use async_nats::StatusCode;
use futures::StreamExt;
use std::time::Instant;

type Consumer = PullConsumer;

/// What a no-wait fetch of up to `n` gets now.
async fn fetch(c: &Consumer, n: usize) -> Vec<Message> {
    let mut batch = c.fetch().max_messages(n).messages().await.unwrap();
    let mut out = Vec::new();
    while let Some(m) = batch.next().await {
        out.push(m.unwrap());
    }
    out
}

/// The next message, waiting up to `within` for it.
async fn next_within(c: &Consumer, within: Duration) -> Option<Message> {
    let mut batch = c
        .batch()
        .max_messages(1)
        .expires(within)
        .messages()
        .await
        .unwrap();
    batch.next().await.map(|m| m.unwrap())
}

fn seq(m: &Message) -> u64 {
    m.info().unwrap().stream_sequence
}

fn seqs(ms: &[Message]) -> Vec<u64> {
    ms.iter().map(seq).collect()
}

async fn info(c: &mut Consumer) -> jetstream::consumer::Info {
    c.info().await.unwrap().clone()
}

/// A raw pull request; the messages up to and including the first status
/// (other than heartbeats), or until `within` passes.
async fn pull_raw(
    nc: &async_nats::Client,
    stream: &str,
    consumer: &str,
    body: Value,
    within: Duration,
) -> Vec<async_nats::Message> {
    let inbox = nc.new_inbox();
    let mut sub = nc.subscribe(inbox.clone()).await.unwrap();
    nc.publish_with_reply(
        format!("$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}"),
        inbox,
        json_of(body).into(),
    )
    .await
    .unwrap();
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    while let Ok(Some(m)) = tokio::time::timeout_at(deadline, sub.next()).await {
        let done = m.status.is_some_and(|s| s != StatusCode::IDLE_HEARTBEAT);
        out.push(m);
        if done {
            break;
        }
    }
    out
}

async fn two_streams(js: &jetstream::Context) -> stream::Stream {
    create(js, config("OTHER", &["other.>"])).await;
    create(js, config("S", &["s.>"])).await
}

async fn pull_requests(shards: usize) {
    let (server, _store) = start(shards);
    let (nc, js) = connect(&server).await;
    let s = two_streams(&js).await;
    let durable = s
        .create_consumer(pull::Config {
            durable_name: Some("D".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let ephemeral = s.create_consumer(pull::Config::default()).await.unwrap();
    for i in 1..=5 {
        publish(&js, "s.x", &format!("{i:0>100}")).await;
        publish(&js, "other.x", "o").await;
    }
    assert_eq!(seqs(&fetch(&durable, 3).await), [1, 2, 3]);
    assert_eq!(seqs(&fetch(&ephemeral, 10).await), [1, 2, 3, 4, 5]);

    let none = pull_raw(&nc, "S", "D", json!({"batch": 5, "no_wait": true}), WAIT).await;
    assert_eq!(none.len(), 3, "two messages then 404");
    assert_eq!(none[2].status, Some(StatusCode::NOT_FOUND));
    let started = Instant::now();
    let expired = pull_raw(
        &nc,
        "S",
        "D",
        json!({"batch": 1, "expires": 300_000_000}),
        WAIT,
    )
    .await;
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].status, Some(StatusCode::TIMEOUT));
    assert!(started.elapsed() >= Duration::from_millis(250));

    let small = s
        .create_consumer(pull::Config {
            durable_name: Some("SMALL".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut capped = small
        .batch()
        .max_messages(5)
        .max_bytes(300)
        .expires(Duration::from_secs(1))
        .messages()
        .await
        .unwrap();
    // The request ends when the next message would not fit (409 on nats-server),
    // counting subject, ack reply, headers and payload as nats-server does.
    let (mut got, mut counted, mut last) = (0, 0, 0);
    while let Some(Ok(m)) = capped.next().await {
        assert!(m.headers.is_none(), "published without headers");
        last = m.subject.len() + m.reply.as_ref().map_or(0, |r| r.len()) + m.payload.len();
        counted += last;
        got += 1;
    }
    assert!(
        (1..5).contains(&got) && counted <= 300 && counted + last > 300,
        "max_bytes 300 holds {got} messages of {last} bytes"
    );
}
one_and_two_shards!(pulls, pull_requests);

async fn push_queue(shards: usize) {
    let (server, _store) = start(shards);
    let (nc, js) = connect(&server).await;
    let s = two_streams(&js).await;
    let mut a = nc
        .queue_subscribe("deliver.q", "workers".into())
        .await
        .unwrap();
    let mut b = nc
        .queue_subscribe("deliver.q", "workers".into())
        .await
        .unwrap();
    crate::common::sync(&nc).await;
    s.create_consumer(push::Config {
        durable_name: Some("Q".into()),
        deliver_subject: "deliver.q".into(),
        deliver_group: Some("workers".into()),
        ack_policy: AckPolicy::None,
        ..Default::default()
    })
    .await
    .unwrap();
    for i in 0..20 {
        publish(&js, "s.x", &i.to_string()).await;
    }
    let (mut from_a, mut from_b) = (Vec::new(), Vec::new());
    while from_a.len() + from_b.len() < 20 {
        tokio::select! {
            Some(m) = a.next() => from_a.push(m.payload),
            Some(m) = b.next() => from_b.push(m.payload),
            _ = tokio::time::sleep(WAIT) => panic!("only {} delivered", from_a.len() + from_b.len()),
        }
    }
    assert!(
        !from_a.is_empty() && !from_b.is_empty(),
        "the group shares the work"
    );
    let mut all: Vec<u32> = from_a
        .iter()
        .chain(&from_b)
        .map(|p| std::str::from_utf8(p).unwrap().parse().unwrap())
        .collect();
    all.sort();
    assert_eq!(all, (0..20).collect::<Vec<_>>(), "each once");
}
one_and_two_shards!(push_group, push_queue);

/// A push consumer with flow control asks for a reply at half a window, stops
/// at a whole window left unanswered (its heartbeats name the request it waits
/// on), and goes on once the client answers.
async fn push_flow_control(shards: usize) {
    const COUNT: usize = 3000;
    const SIZE_BYTES: usize = 1024;
    const FIRST_WINDOW_BYTES: usize = 2 * 1024 * 1024;
    let (server, _store) = start(shards);
    let (nc, js) = connect(&server).await;
    let s = two_streams(&js).await;
    let body = bytes::Bytes::from(vec![b'x'; SIZE_BYTES]);
    let mut acks = Vec::with_capacity(COUNT);
    for _ in 0..COUNT {
        acks.push(js.publish("s.x", body.clone()).await.unwrap());
    }
    for ack in acks {
        ack.await.expect("PubAck");
    }
    let mut sub = nc.subscribe("deliver.fc").await.unwrap();
    crate::common::sync(&nc).await;
    s.create_consumer(push::Config {
        durable_name: Some("FC".into()),
        deliver_subject: "deliver.fc".into(),
        flow_control: true,
        idle_heartbeat: Duration::from_millis(200),
        ack_policy: AckPolicy::None,
        ..Default::default()
    })
    .await
    .unwrap();
    let is_request = |m: &async_nats::Message| {
        m.status == Some(StatusCode::from_u16(100).unwrap())
            && m.description.as_deref() == Some("FlowControl Request")
    };
    // Unanswered: data stops at about one window, and a heartbeat says why.
    let (mut data, mut asked) = (0usize, None);
    let stalled_on = loop {
        let m = next_message(&mut sub).await;
        if is_request(&m) {
            assert!(asked.is_none(), "one request until it is answered");
            assert!(
                data * SIZE_BYTES > FIRST_WINDOW_BYTES / 2 * 8 / 10,
                "asked at half a window: {data}"
            );
            asked = Some(m.reply.clone().expect("a request has a reply").to_string());
        } else if m.status.is_some() {
            let stalled = m
                .headers
                .as_ref()
                .and_then(|h| h.get("Nats-Consumer-Stalled"));
            if let Some(on) = stalled {
                break on.to_string();
            }
        } else {
            data += 1;
        }
    };
    assert_eq!(
        Some(stalled_on.clone()),
        asked,
        "the heartbeat names the request"
    );
    assert!(stalled_on.starts_with("$JS.FC."), "{stalled_on}");
    let window_msgs = FIRST_WINDOW_BYTES / SIZE_BYTES;
    assert!(
        data > window_msgs * 9 / 10 && data <= window_msgs + 1,
        "stopped at one window: {data} messages of {COUNT}"
    );
    // Answered: the rest arrives, each later request answered too.
    nc.publish(stalled_on, "".into()).await.unwrap();
    while data < COUNT {
        let m = next_message(&mut sub).await;
        if is_request(&m) {
            nc.publish(m.reply.unwrap(), "".into()).await.unwrap();
        } else if m.status.is_none() {
            data += 1;
        }
    }
}
one_and_two_shards!(flow_control, push_flow_control);

/// `replay_policy: original` delivers new messages as far apart as they were
/// stored; instant replay (the default) as fast as it can.
async fn replay_original(shards: usize) {
    const GAP: Duration = Duration::from_millis(300);
    let (server, _store) = start(shards);
    let (_nc, js) = connect(&server).await;
    let s = two_streams(&js).await;
    for i in 0..3 {
        if i > 0 {
            // The gap being replayed: the stored timestamps must be apart.
            tokio::time::sleep(GAP).await;
        }
        publish(&js, "s.r", &i.to_string()).await;
    }
    let mut gaps = Vec::new();
    for (name, policy) in [
        ("ORIGINAL", jetstream::consumer::ReplayPolicy::Original),
        ("INSTANT", jetstream::consumer::ReplayPolicy::Instant),
    ] {
        let c = s
            .create_consumer(pull::Config {
                durable_name: Some(name.into()),
                replay_policy: policy,
                ..Default::default()
            })
            .await
            .unwrap();
        let mut messages = c.messages().await.unwrap();
        let mut at = Vec::new();
        for _ in 0..3 {
            let m = tokio::time::timeout(WAIT, messages.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            at.push(Instant::now());
            m.ack().await.unwrap();
        }
        gaps.push((at[1] - at[0], at[2] - at[1]));
    }
    let (original, instant) = (gaps[0], gaps[1]);
    // Each message is due at its stored offset from the first: a late delivery (a
    // loaded machine) shortens the next gap, never the span.
    assert!(
        original.0 + original.1 >= GAP * 2 * 8 / 10 && original.0.min(original.1) >= GAP / 2,
        "original replay keeps the gaps: {original:?}"
    );
    assert!(
        instant.0 < GAP / 2 && instant.1 < GAP / 2,
        "instant replay does not: {instant:?}"
    );
}
one_and_two_shards!(replay, replay_original);

async fn next_message(sub: &mut async_nats::Subscriber) -> async_nats::Message {
    let next = tokio::time::timeout(WAIT, sub.next()).await;
    next.expect("a message in time").expect("subscription open")
}

async fn ack_policies(shards: usize) {
    let (server, _store) = start(shards);
    let (_nc, js) = connect(&server).await;
    let s = two_streams(&js).await;
    for i in 1..=4 {
        publish(&js, "s.x", &i.to_string()).await;
    }
    let consumer = |name: &str, ack_policy| pull::Config {
        durable_name: Some(name.into()),
        ack_policy,
        ..Default::default()
    };
    let mut none = s
        .create_consumer(consumer("NONE", AckPolicy::None))
        .await
        .unwrap();
    let mut all = s
        .create_consumer(consumer("ALL", AckPolicy::All))
        .await
        .unwrap();
    let mut explicit = s
        .create_consumer(consumer("EXPLICIT", AckPolicy::Explicit))
        .await
        .unwrap();

    fetch(&none, 4).await;
    let i = info(&mut none).await;
    assert_eq!((i.num_ack_pending, i.ack_floor.stream_sequence), (0, 4));

    let got = fetch(&all, 4).await;
    got[2].double_ack().await.unwrap();
    let i = info(&mut all).await;
    assert_eq!(
        (i.num_ack_pending, i.ack_floor.stream_sequence),
        (1, 3),
        "acks 1..=3"
    );

    let got = fetch(&explicit, 4).await;
    got[1].double_ack().await.unwrap();
    got[3].double_ack().await.unwrap();
    let i = info(&mut explicit).await;
    assert_eq!((i.num_ack_pending, i.ack_floor.stream_sequence), (2, 0));
    got[0].double_ack().await.unwrap();
    let i = info(&mut explicit).await;
    assert_eq!((i.num_ack_pending, i.ack_floor.stream_sequence), (1, 2));
}
one_and_two_shards!(acks, ack_policies);

async fn nak_progress_term(shards: usize) {
    let (server, _store) = start(shards);
    let (_nc, js) = connect(&server).await;
    let s = two_streams(&js).await;
    let mut c = s
        .create_consumer(pull::Config {
            durable_name: Some("C".into()),
            ack_policy: AckPolicy::Explicit,
            ack_wait: Duration::from_millis(600),
            ..Default::default()
        })
        .await
        .unwrap();
    for i in 1..=3 {
        publish(&js, "s.x", &i.to_string()).await;
    }
    let got = fetch(&c, 3).await;
    let naked_at = Instant::now();
    got[0]
        .ack_with(AckKind::Nak(Some(Duration::from_millis(300))))
        .await
        .unwrap();
    got[2].ack_with(AckKind::Term).await.unwrap();

    // Message 2 is kept alive past its ack wait by progress acks.
    let progress = got[1].ack_with(AckKind::Progress);
    progress.await.unwrap();

    let again = next_within(&c, WAIT)
        .await
        .expect("the nak'd message again");
    assert_eq!(seq(&again), 1);
    assert!(
        naked_at.elapsed() >= Duration::from_millis(250),
        "after the nak delay"
    );
    assert_eq!(again.info().unwrap().delivered, 2);
    again.double_ack().await.unwrap();
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        got[1].ack_with(AckKind::Progress).await.unwrap();
    }
    got[1].double_ack().await.unwrap();
    assert!(
        next_within(&c, Duration::from_millis(900)).await.is_none(),
        "no redelivery of the one in progress, none of the terminated one"
    );
    let i = info(&mut c).await;
    assert_eq!((i.num_ack_pending, i.num_redelivered), (0, 0));
    assert_eq!(i.ack_floor.stream_sequence, 3);
}
one_and_two_shards!(nak_wpi_term, nak_progress_term);

async fn redelivery_and_backoff(shards: usize) {
    let (server, _store) = start(shards);
    let (_nc, js) = connect(&server).await;
    let s = two_streams(&js).await;
    let mut capped = s
        .create_consumer(pull::Config {
            durable_name: Some("CAPPED".into()),
            ack_policy: AckPolicy::Explicit,
            ack_wait: Duration::from_millis(300),
            max_deliver: 2,
            ..Default::default()
        })
        .await
        .unwrap();
    let backoff = s
        .create_consumer(pull::Config {
            durable_name: Some("BACKOFF".into()),
            ack_policy: AckPolicy::Explicit,
            backoff: vec![Duration::from_millis(200), Duration::from_millis(700)],
            max_deliver: 3,
            ..Default::default()
        })
        .await
        .unwrap();
    publish(&js, "s.x", "work").await;

    let first = next_within(&capped, WAIT).await.unwrap();
    assert_eq!(first.info().unwrap().delivered, 1);
    let second = next_within(&capped, WAIT)
        .await
        .expect("redelivered after ack_wait");
    assert_eq!(second.info().unwrap().delivered, 2);
    let i = info(&mut capped).await;
    assert_eq!(i.num_redelivered, 1);
    assert!(
        next_within(&capped, Duration::from_millis(800))
            .await
            .is_none(),
        "max_deliver 2 stops there"
    );

    let mut times = Vec::new();
    for n in 1..=3 {
        let m = next_within(&backoff, WAIT).await.expect("delivery");
        assert_eq!(m.info().unwrap().delivered, n);
        times.push(Instant::now());
    }
    let (gap1, gap2) = (times[1] - times[0], times[2] - times[1]);
    assert!(gap1 >= Duration::from_millis(150), "{gap1:?}");
    assert!(
        gap2 >= Duration::from_millis(600),
        "backoff grows: {gap2:?}"
    );
}
one_and_two_shards!(redelivery, redelivery_and_backoff);

async fn max_ack_pending_and_filters(shards: usize) {
    let (server, _store) = start(shards);
    let (_nc, js) = connect(&server).await;
    let s = two_streams(&js).await;
    for subject in ["s.a", "s.b", "s.c", "s.a", "s.b", "s.c"] {
        publish(&js, subject, subject).await;
    }
    let limited = s
        .create_consumer(pull::Config {
            durable_name: Some("LIMITED".into()),
            ack_policy: AckPolicy::Explicit,
            max_ack_pending: 2,
            ..Default::default()
        })
        .await
        .unwrap();
    let got = fetch(&limited, 6).await;
    assert_eq!(seqs(&got), [1, 2]);
    got[0].double_ack().await.unwrap();
    assert_eq!(seqs(&fetch(&limited, 6).await), [3], "one slot freed");

    let filtered = s
        .create_consumer(pull::Config {
            durable_name: Some("AC".into()),
            filter_subjects: vec!["s.a".into(), "s.c".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    let got = fetch(&filtered, 10).await;
    assert_eq!(seqs(&got), [1, 3, 4, 6]);
    assert!(got.iter().all(|m| m.subject.as_str() != "s.b"));
}
one_and_two_shards!(pending_and_filters, max_ack_pending_and_filters);

/// `num_pending` stays exact while messages go: acked out of order from a work
/// queue, deleted ahead of the consumers, filtered or not.
async fn pending_through_removals(shards: usize) {
    let (server, _store) = start(shards);
    let (_nc, js) = connect(&server).await;
    let mut work = stream::Config {
        retention: stream::RetentionPolicy::WorkQueue,
        ..config("W", &["w.>"])
    };
    work.name = "W".into();
    let w = create(&js, work).await;
    let s = two_streams(&js).await;
    for i in 0..60 {
        let subject = if i % 2 == 0 { "a" } else { "b" };
        publish(&js, &format!("w.{subject}"), "x").await;
        publish(&js, &format!("s.{subject}"), "x").await;
    }
    let pull = |name: &str, filter: &str| pull::Config {
        durable_name: Some(name.into()),
        filter_subject: filter.into(),
        ack_policy: AckPolicy::Explicit,
        ..Default::default()
    };
    let mut wa = w.create_consumer(pull("WA", "w.a")).await.unwrap();
    let got = fetch(&wa, 10).await;
    for m in got.iter().rev() {
        m.double_ack().await.unwrap();
    }
    assert_eq!(info(&mut wa).await.num_pending, 20, "acked out of order");
    let next_a = seq(&fetch(&wa, 1).await[0]) + 2;
    w.delete_message(next_a).await.unwrap();
    assert_eq!(
        info(&mut wa).await.num_pending,
        18,
        "one delivered, one deleted"
    );

    let mut all = s.create_consumer(pull("ALL", "")).await.unwrap();
    let mut sa = s.create_consumer(pull("SA", "s.a")).await.unwrap();
    fetch(&all, 5).await;
    fetch(&sa, 5).await;
    for deleted in [3, 20, 21, 40] {
        s.delete_message(deleted).await.unwrap();
    }
    assert_eq!(
        info(&mut all).await.num_pending,
        60 - 5 - 3,
        "3 was delivered"
    );
    assert_eq!(
        info(&mut sa).await.num_pending,
        30 - 5 - 1,
        "s.a at 21 went"
    );
    fetch(&all, 10).await;
    fetch(&sa, 10).await;
    assert_eq!(info(&mut all).await.num_pending, 60 - 15 - 3);
    assert_eq!(info(&mut sa).await.num_pending, 30 - 15 - 1);
}
one_and_two_shards!(pending_removals, pending_through_removals);

async fn deliver_policies(shards: usize) {
    let (server, _store) = start(shards);
    let (_nc, js) = connect(&server).await;
    let s = two_streams(&js).await;
    for (subject, payload) in [("s.a", "a1"), ("s.b", "b1"), ("s.a", "a2"), ("s.b", "b2")] {
        publish(&js, subject, payload).await;
    }
    let third_at = s.get_raw_message(3).await.unwrap().time;
    let with = |deliver_policy| pull::Config {
        deliver_policy,
        ack_policy: AckPolicy::None,
        filter_subject: "s.>".into(),
        ..Default::default()
    };
    let unfiltered = pull::Config {
        filter_subject: String::new(),
        ..with(DeliverPolicy::LastPerSubject)
    };
    let refused = s.create_consumer(unfiltered).await.unwrap_err();
    assert!(refused.to_string().contains("10094"), "{refused}");
    let cases = [
        (DeliverPolicy::All, vec![1, 2, 3, 4]),
        (DeliverPolicy::Last, vec![4]),
        (DeliverPolicy::LastPerSubject, vec![3, 4]),
        (
            DeliverPolicy::ByStartSequence { start_sequence: 2 },
            vec![2, 3, 4],
        ),
        (
            DeliverPolicy::ByStartTime {
                start_time: third_at,
            },
            vec![3, 4],
        ),
    ];
    for (policy, want) in cases {
        let c = s.create_consumer(with(policy)).await.unwrap();
        assert_eq!(seqs(&fetch(&c, 10).await), want, "{policy:?}");
    }
    let new = s.create_consumer(with(DeliverPolicy::New)).await.unwrap();
    assert!(fetch(&new, 10).await.is_empty());
    publish(&js, "s.b", "b3").await;
    assert_eq!(seqs(&fetch(&new, 10).await), [5]);
}
one_and_two_shards!(policies, deliver_policies);

async fn headers_only_and_counters(shards: usize) {
    let (server, _store) = start(shards);
    let (_nc, js) = connect(&server).await;
    let s = two_streams(&js).await;
    for i in 1..=5 {
        publish(&js, "s.x", &"p".repeat(i * 10)).await;
    }
    let light = s
        .create_consumer(pull::Config {
            headers_only: true,
            ..Default::default()
        })
        .await
        .unwrap();
    let m = &fetch(&light, 1).await[0];
    assert!(m.payload.is_empty());
    let size = m.headers.as_ref().unwrap().get("Nats-Msg-Size").unwrap();
    assert_eq!(size.as_str(), "10");

    let mut c = s
        .create_consumer(pull::Config {
            durable_name: Some("COUNT".into()),
            ack_policy: AckPolicy::Explicit,
            ack_wait: Duration::from_millis(300),
            ..Default::default()
        })
        .await
        .unwrap();
    let i = info(&mut c).await;
    assert_eq!(
        (
            i.num_pending,
            i.num_ack_pending,
            i.delivered.stream_sequence
        ),
        (5, 0, 0)
    );
    let got = fetch(&c, 3).await;
    got[0].double_ack().await.unwrap();
    let i = info(&mut c).await;
    assert_eq!((i.num_pending, i.num_ack_pending), (2, 2));
    assert_eq!(
        (i.delivered.stream_sequence, i.delivered.consumer_sequence),
        (3, 3)
    );
    assert_eq!(i.ack_floor.stream_sequence, 1);
    assert_eq!(seqs(&fetch(&c, 2).await), [4, 5]);
    let again = next_within(&c, WAIT).await.unwrap();
    assert_eq!(seq(&again), 2, "redelivered after ack_wait");
    let i = info(&mut c).await;
    assert_eq!(i.num_redelivered, 1);
    assert_eq!(
        i.delivered.consumer_sequence, 6,
        "a redelivery takes a consumer seq"
    );
}
one_and_two_shards!(headers_only, headers_only_and_counters);

async fn pause_and_inactivity(shards: usize) {
    let (server, _store) = start(shards);
    let (nc, js) = connect(&server).await;
    let s = two_streams(&js).await;
    let c = s
        .create_consumer(pull::Config {
            durable_name: Some("P".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let paused = api(
        &nc,
        "CONSUMER.PAUSE.S.P",
        r#"{"pause_until":"2100-01-01T00:00:00Z"}"#,
    )
    .await;
    assert_eq!(paused["paused"], true, "{paused}");
    publish(&js, "s.x", "held").await;
    assert!(next_within(&c, Duration::from_millis(300)).await.is_none());
    let info = api(&nc, "CONSUMER.INFO.S.P", "").await;
    assert_eq!(info["paused"], true, "{info}");
    let resumed = api(&nc, "CONSUMER.PAUSE.S.P", "{}").await;
    assert_eq!(resumed["paused"], false, "{resumed}");
    assert_eq!(next_within(&c, WAIT).await.unwrap().payload, "held");

    let ephemeral = s
        .create_consumer(pull::Config {
            inactive_threshold: Duration::from_millis(500),
            ..Default::default()
        })
        .await
        .unwrap();
    let name = ephemeral.cached_info().name.clone();
    wait_until("the idle ephemeral to go", WAIT, || async {
        err_code(&api(&nc, &format!("CONSUMER.INFO.S.{name}"), "").await) == 10014
    })
    .await;
    assert!(s.consumer_info("P").await.is_ok(), "the durable stays");
}
one_and_two_shards!(pause_inactive, pause_and_inactivity);
