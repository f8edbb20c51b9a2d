//! Retention limits and policies, purge, message get and delete, direct get,
//! memory storage.

use crate::common::wait_until;
use crate::*;
use async_nats::header;
use async_nats::jetstream::consumer::{pull, AckPolicy};
use async_nats::jetstream::stream::{DiscardPolicy, RetentionPolicy, StorageType};
use futures::StreamExt;

async fn state(js: &jetstream::Context, name: &str) -> stream::State {
    js.get_stream(name)
        .await
        .unwrap()
        .get_info()
        .await
        .unwrap()
        .state
}

async fn limits(shards: usize) {
    let (server, _store) = start(shards);
    let (nc, js) = connect(&server).await;
    let mk = |name: &str, subject: &str| config(name, &[subject]);
    create(
        &js,
        stream::Config {
            max_messages: 3,
            ..mk("MSGS", "m.>")
        },
    )
    .await;
    create(
        &js,
        stream::Config {
            max_bytes: 300,
            ..mk("BYTES", "b.>")
        },
    )
    .await;
    create(
        &js,
        stream::Config {
            max_messages_per_subject: 2,
            ..mk("PERSUBJ", "p.>")
        },
    )
    .await;
    let discard_new = stream::Config {
        max_messages: 2,
        discard: DiscardPolicy::New,
        ..mk("NEW", "n.>")
    };
    create(&js, discard_new).await;
    let per_subject_new = stream::Config {
        max_messages_per_subject: 1,
        discard: DiscardPolicy::New,
        discard_new_per_subject: true,
        ..mk("NEWSUBJ", "ns.>")
    };
    create(&js, per_subject_new).await;

    for i in 1..=5 {
        publish(&js, "m.x", &i.to_string()).await;
        publish(&js, "b.x", &"x".repeat(100)).await;
    }
    let m = state(&js, "MSGS").await;
    assert_eq!((m.messages, m.first_sequence, m.last_sequence), (3, 3, 5));
    let b = state(&js, "BYTES").await;
    assert_eq!(
        (b.messages, b.last_sequence),
        (2, 5),
        "two of ~119 bytes fit in 300"
    );
    assert!(b.bytes <= 300, "{} bytes", b.bytes);

    for subject in ["p.a", "p.a", "p.a", "p.b"] {
        publish(&js, subject, subject).await;
    }
    let p = state(&js, "PERSUBJ").await;
    assert_eq!(
        (p.messages, p.first_sequence),
        (3, 2),
        "p.a keeps its last two"
    );

    publish(&js, "n.1", "1").await;
    publish(&js, "n.2", "2").await;
    let full = publish_raw(&nc, "n.3", &[], "3").await;
    assert_eq!(err_code(&full), 10077, "{full}");
    assert_eq!(
        state(&js, "NEW").await.last_sequence,
        2,
        "the old ones stay"
    );

    publish(&js, "ns.a", "1").await;
    let again = publish_raw(&nc, "ns.a", &[], "2").await;
    assert_eq!(err_code(&again), 10077, "{again}");
    assert_eq!(
        publish(&js, "ns.b", "3").await,
        2,
        "another subject still fits"
    );
}
one_and_two_shards!(limits_and_discard, limits);

async fn max_age(shards: usize) {
    let (server, _store) = start(shards);
    let (_nc, js) = connect(&server).await;
    let aging = stream::Config {
        max_age: Duration::from_millis(800),
        ..config("AGING", &["age.>"])
    };
    create(&js, aging).await;
    create(&js, config("KEEP", &["keep.>"])).await;
    for _ in 0..3 {
        publish(&js, "age.x", "old").await;
        publish(&js, "keep.x", "kept").await;
    }
    assert_eq!(state(&js, "AGING").await.messages, 3);
    wait_until("the messages to expire", WAIT, || async {
        state(&js, "AGING").await.messages == 0
    })
    .await;
    let s = state(&js, "AGING").await;
    assert_eq!((s.first_sequence, s.last_sequence), (4, 3));
    assert_eq!(publish(&js, "age.x", "new").await, 4, "sequences go on");
    assert_eq!(state(&js, "KEEP").await.messages, 3);
}
one_and_two_shards!(age, max_age);

async fn interest_and_workqueue(shards: usize) {
    let (server, _store) = start(shards);
    let (_nc, js) = connect(&server).await;
    let interest = create(
        &js,
        stream::Config {
            retention: RetentionPolicy::Interest,
            ..config("INTEREST", &["i.>"])
        },
    )
    .await;
    let queue = create(
        &js,
        stream::Config {
            retention: RetentionPolicy::WorkQueue,
            ..config("QUEUE", &["q.>"])
        },
    )
    .await;
    let durable = |name: &str| pull::Config {
        durable_name: Some(name.to_string()),
        ack_policy: AckPolicy::Explicit,
        ..Default::default()
    };
    let first = interest.create_consumer(durable("first")).await.unwrap();
    let second = interest.create_consumer(durable("second")).await.unwrap();
    let worker = queue.create_consumer(durable("worker")).await.unwrap();
    for i in 0..3 {
        publish(&js, "i.x", &i.to_string()).await;
        publish(&js, "q.x", &i.to_string()).await;
    }

    let mut batch = first.fetch().max_messages(3).messages().await.unwrap();
    while let Some(m) = batch.next().await {
        m.unwrap().ack().await.unwrap();
    }
    assert_eq!(
        state(&js, "INTEREST").await.messages,
        3,
        "second has not acked"
    );
    let mut batch = second.fetch().max_messages(2).messages().await.unwrap();
    while let Some(m) = batch.next().await {
        m.unwrap().double_ack().await.unwrap();
    }
    wait_until("acked by all to leave", WAIT, || async {
        state(&js, "INTEREST").await.messages == 1
    })
    .await;

    let mut batch = worker.fetch().max_messages(2).messages().await.unwrap();
    while let Some(m) = batch.next().await {
        m.unwrap().double_ack().await.unwrap();
    }
    let q = state(&js, "QUEUE").await;
    assert_eq!(
        (q.messages, q.first_sequence),
        (1, 3),
        "acked work leaves the queue"
    );
    let second_worker = queue.create_consumer(durable("other")).await;
    assert!(
        second_worker.is_err(),
        "a workqueue has one unfiltered consumer"
    );
}
one_and_two_shards!(policies, interest_and_workqueue);

async fn purge(shards: usize) {
    let (server, _store) = start(shards);
    let (_nc, js) = connect(&server).await;
    let s = create(&js, config("P", &["p.>"])).await;
    for i in 1..=10 {
        publish(
            &js,
            if i % 2 == 0 { "p.even" } else { "p.odd" },
            &i.to_string(),
        )
        .await;
    }
    let r = s.purge().filter("p.odd").await.unwrap();
    assert_eq!(r.purged, 5);
    assert_eq!(state(&js, "P").await.messages, 5);
    let r = s.purge().sequence(6).await.unwrap();
    assert_eq!(r.purged, 2, "2 and 4 are below 6");
    let r = s.purge().keep(1).await.unwrap();
    assert_eq!(r.purged, 2);
    let st = state(&js, "P").await;
    assert_eq!((st.messages, st.first_sequence), (1, 10));
    let r = s.purge().await.unwrap();
    assert_eq!(r.purged, 1);
    assert_eq!(
        publish(&js, "p.odd", "11").await,
        11,
        "a purge keeps the sequence"
    );
}
one_and_two_shards!(purges, purge);

async fn get_delete_direct(shards: usize) {
    let (server, _store) = start(shards);
    let (nc, js) = connect(&server).await;
    let s = create(
        &js,
        stream::Config {
            allow_direct: true,
            ..config("D", &["d.>"])
        },
    )
    .await;
    for (subject, payload) in [("d.a", "a1"), ("d.b", "b1"), ("d.a", "a2"), ("d.b", "b2")] {
        publish(&js, subject, payload).await;
    }
    let get = |body: Value| {
        let nc = nc.clone();
        async move { api(&nc, "STREAM.MSG.GET.D", &json_of(body)).await }
    };
    let by_seq = get(json!({"seq": 2})).await;
    assert_eq!(by_seq["message"]["subject"], "d.b");
    assert_eq!(by_seq["message"]["data"], "YjE=", "base64 of b1");
    let last = get(json!({"last_by_subj": "d.a"})).await;
    assert_eq!(last["message"]["seq"], 3);
    let next = get(json!({"seq": 2, "next_by_subj": "d.a"})).await;
    assert_eq!(next["message"]["seq"], 3);
    let none = get(json!({"seq": 99})).await;
    assert_eq!(err_code(&none), 10037, "{none}");

    assert!(s.delete_message(3).await.unwrap());
    assert_eq!(err_code(&get(json!({"seq": 3})).await), 10037);
    let last = get(json!({"last_by_subj": "d.a"})).await;
    assert_eq!(last["message"]["seq"], 1, "the deleted one is skipped");
    let info = js.get_stream("D").await.unwrap().get_info().await.unwrap();
    assert_eq!(
        (info.state.messages, info.state.deleted_count),
        (3, Some(1))
    );

    let direct = nc
        .request("$JS.API.DIRECT.GET.D", r#"{"seq":4}"#.into())
        .await
        .unwrap();
    let h = direct.headers.as_ref().expect("direct get headers");
    assert_eq!(direct.payload, "b2");
    assert_eq!(h.get(header::NATS_STREAM).unwrap().as_str(), "D");
    assert_eq!(h.get(header::NATS_SEQUENCE).unwrap().as_str(), "4");
    assert_eq!(h.get(header::NATS_SUBJECT).unwrap().as_str(), "d.b");
    let by_subject = nc
        .request("$JS.API.DIRECT.GET.D.d.a", "".into())
        .await
        .unwrap();
    assert_eq!(by_subject.payload, "a1");
    let missing = nc
        .request("$JS.API.DIRECT.GET.D.d.zz", "".into())
        .await
        .unwrap();
    assert_eq!(missing.status, Some(async_nats::StatusCode::NOT_FOUND));
    assert_eq!(
        s.direct_get_last_for_subject("d.b").await.unwrap().payload,
        "b2"
    );
}
one_and_two_shards!(get_and_delete, get_delete_direct);

async fn memory_storage(shards: usize) {
    let (server, _store) = start(shards);
    let (_nc, js) = connect(&server).await;
    let mem = stream::Config {
        storage: StorageType::Memory,
        max_messages: 100,
        ..config("MEM", &["mem.>"])
    };
    let s = create(&js, mem).await;
    create(&js, config("FILE", &["file.>"])).await;
    for i in 0..150 {
        publish(&js, "mem.x", &i.to_string()).await;
    }
    let info = js
        .get_stream("MEM")
        .await
        .unwrap()
        .get_info()
        .await
        .unwrap();
    assert_eq!(info.config.storage, StorageType::Memory);
    assert_eq!((info.state.messages, info.state.first_sequence), (100, 51));
    assert_eq!(s.get_raw_message(150).await.unwrap().payload, "149");
    let consumer = s.create_consumer(pull::Config::default()).await.unwrap();
    let mut batch = consumer.fetch().max_messages(2).messages().await.unwrap();
    let first = batch.next().await.unwrap().unwrap();
    assert_eq!(first.payload, "50");
}
one_and_two_shards!(memory, memory_storage);
