//! Publishing: PubAcks, de-duplication, expectations and rollups.

use crate::*;
use async_nats::jetstream::context::Publish;

async fn puback_and_dedupe(shards: usize) {
    let (server, _store) = start(shards);
    let (nc, js) = connect(&server).await;
    create(&js, config("ORDERS", &["orders.>"])).await;
    create(&js, config("EVENTS", &["events.>"])).await;

    let ack = js
        .publish("orders.new", "1".into())
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(
        (ack.stream.as_str(), ack.sequence, ack.duplicate),
        ("ORDERS", 1, false)
    );
    assert_eq!(
        publish(&js, "events.x", "e").await,
        1,
        "each stream counts alone"
    );

    let with_id = |id: &str, payload: &str| {
        Publish::build()
            .payload(payload.to_string().into())
            .message_id(id)
    };
    let first = js
        .send_publish("orders.new", with_id("m-1", "a"))
        .await
        .unwrap()
        .await
        .unwrap();
    let again = js
        .send_publish("orders.new", with_id("m-1", "b"))
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!((first.sequence, first.duplicate), (2, false));
    assert_eq!(
        (again.sequence, again.duplicate),
        (2, true),
        "the duplicate names the original"
    );
    let stream = js.get_stream("ORDERS").await.unwrap();
    assert_eq!(stream.get_raw_message(2).await.unwrap().payload, "a");
    assert_eq!(stream.get_info().await.unwrap().state.messages, 2);

    // No stream for the subject: a publish with a reply gets no responders.
    let err = nc.request("nowhere", "x".into()).await.unwrap_err();
    assert_eq!(err.kind(), async_nats::RequestErrorKind::NoResponders);
}
one_and_two_shards!(puback, puback_and_dedupe);

async fn expectations(shards: usize) {
    let (server, _store) = start(shards);
    let (nc, js) = connect(&server).await;
    create(&js, config("S", &["s.>"])).await;
    create(&js, config("T", &["t.>"])).await;
    let a = publish_raw(&nc, "s.a", &[("Nats-Msg-Id", "id-1")], "1").await;
    assert_eq!(a["seq"], 1);
    publish(&js, "s.b", "2").await;

    let stream_ok = publish_raw(&nc, "s.a", &[("Nats-Expected-Stream", "S")], "3").await;
    assert_eq!(stream_ok["seq"], 3);
    let stream_bad = publish_raw(&nc, "t.a", &[("Nats-Expected-Stream", "S")], "x").await;
    assert_eq!(err_code(&stream_bad), 10060, "{stream_bad}");

    let last_ok = publish_raw(&nc, "s.a", &[("Nats-Expected-Last-Sequence", "3")], "4").await;
    assert_eq!(last_ok["seq"], 4);
    let last_bad = publish_raw(&nc, "s.a", &[("Nats-Expected-Last-Sequence", "3")], "x").await;
    assert_eq!(err_code(&last_bad), 10071, "{last_bad}");

    // s.b's last is 2; s.a's last is 4.
    let subj_ok = publish_raw(
        &nc,
        "s.b",
        &[("Nats-Expected-Last-Subject-Sequence", "2")],
        "5",
    )
    .await;
    assert_eq!(subj_ok["seq"], 5);
    let subj_bad = publish_raw(
        &nc,
        "s.a",
        &[("Nats-Expected-Last-Subject-Sequence", "1")],
        "x",
    )
    .await;
    assert_eq!(err_code(&subj_bad), 10071, "{subj_bad}");
    let none_yet = publish_raw(
        &nc,
        "s.new",
        &[("Nats-Expected-Last-Subject-Sequence", "0")],
        "6",
    )
    .await;
    assert_eq!(none_yet["seq"], 6, "0 means no message on the subject yet");

    let id_ok = publish_raw(
        &nc,
        "s.a",
        &[("Nats-Expected-Last-Msg-Id", ""), ("Nats-Msg-Id", "id-2")],
        "7",
    )
    .await;
    // An empty expectation is none; the stream's last id is now id-2.
    assert_eq!(id_ok["seq"], 7, "{id_ok}");
    let id_match = publish_raw(&nc, "s.a", &[("Nats-Expected-Last-Msg-Id", "id-2")], "8").await;
    assert_eq!(id_match["seq"], 8, "{id_match}");
    let id_bad = publish_raw(&nc, "s.a", &[("Nats-Expected-Last-Msg-Id", "id-1")], "x").await;
    assert_eq!(err_code(&id_bad), 10070, "{id_bad}");

    let info = js.get_stream("S").await.unwrap().get_info().await.unwrap();
    assert_eq!(info.state.messages, 8, "refused publishes store nothing");
    assert_eq!(
        js.get_stream("T")
            .await
            .unwrap()
            .get_info()
            .await
            .unwrap()
            .state
            .messages,
        0
    );
}
one_and_two_shards!(expected, expectations);

async fn rollup(shards: usize) {
    let (server, _store) = start(shards);
    let (nc, js) = connect(&server).await;
    create(
        &js,
        stream::Config {
            allow_rollup: true,
            ..config("R", &["r.>"])
        },
    )
    .await;
    create(&js, config("NOROLL", &["n.>"])).await;
    for i in 0..3 {
        publish(&js, "r.a", &format!("a{i}")).await;
        publish(&js, "r.b", &format!("b{i}")).await;
    }
    let ack = publish_raw(&nc, "r.a", &[("Nats-Rollup", "sub")], "total").await;
    assert_eq!(ack["seq"], 7, "{ack}");
    let stream = js.get_stream("R").await.unwrap();
    let info = stream.get_info().await.unwrap();
    assert_eq!(
        info.state.messages, 4,
        "r.a rolled up to one, r.b untouched"
    );
    let last = stream.get_last_raw_message_by_subject("r.a").await.unwrap();
    assert_eq!((last.sequence, last.payload.as_ref()), (7, &b"total"[..]));
    assert!(stream.get_raw_message(1).await.is_err());
    assert_eq!(stream.get_raw_message(2).await.unwrap().payload, "b0");

    let refused = publish_raw(&nc, "n.a", &[("Nats-Rollup", "sub")], "x").await;
    assert_eq!(err_code(&refused), 10111, "{refused}");
}
one_and_two_shards!(rollups, rollup);
