//! Stream management and the errors bad requests get.

use crate::*;
use futures::TryStreamExt;

async fn create_info_update_delete_list(shards: usize) {
    let (server, _store) = start(shards);
    let (nc, js) = connect(&server).await;
    for (name, subject) in [("ALPHA", "a.>"), ("BETA", "b.>"), ("GAMMA", "g.*")] {
        create(&js, config(name, &[subject])).await;
    }
    // Never held a message: first and last sequence 0, as on nats-server.
    let mut alpha = js.get_stream("ALPHA").await.unwrap();
    let state = alpha.info().await.unwrap().state.clone();
    assert_eq!((state.first_sequence, state.last_sequence), (0, 0));
    publish(&js, "b.1", "x").await;

    let mut beta = js.get_stream("BETA").await.unwrap();
    let info = beta.info().await.unwrap().clone();
    assert_eq!(info.config.subjects, vec!["b.>"]);
    assert_eq!((info.state.messages, info.state.last_sequence), (1, 1));
    assert_eq!(info.state.first_sequence, 1);

    let updated = js
        .update_stream(stream::Config {
            max_messages: 10,
            ..config("BETA", &["b.>", "bb.>"])
        })
        .await
        .unwrap();
    assert_eq!(updated.config.max_messages, 10);
    assert_eq!(updated.config.subjects, vec!["b.>", "bb.>"]);
    assert_eq!(updated.state.messages, 1, "an update keeps the messages");
    assert_eq!(
        publish(&js, "bb.1", "y").await,
        2,
        "the new subject is captured"
    );

    let mut names: Vec<String> = js.stream_names().try_collect().await.unwrap();
    names.sort();
    assert_eq!(names, ["ALPHA", "BETA", "GAMMA"]);
    let listed: Vec<_> = js.streams().try_collect().await.unwrap();
    assert_eq!(listed.len(), 3);

    let page = api(&nc, "STREAM.NAMES", r#"{"offset":1}"#).await;
    assert_eq!(
        (page["total"].as_u64(), page["offset"].as_u64()),
        (Some(3), Some(1))
    );
    assert_eq!(page["streams"].as_array().unwrap().len(), 2);
    let page = api(&nc, "STREAM.LIST", r#"{"offset":2}"#).await;
    assert_eq!(page["streams"].as_array().unwrap().len(), 1);
    assert!(page["streams"][0]["config"]["name"].is_string());
    let by_subject = api(&nc, "STREAM.NAMES", r#"{"subject":"g.x"}"#).await;
    assert_eq!(by_subject["streams"], json!(["GAMMA"]));
    let by_wildcard = api(&nc, "STREAM.NAMES", r#"{"subject":"b.>"}"#).await;
    assert_eq!(by_wildcard["streams"], json!(["BETA"]));

    assert!(js.delete_stream("ALPHA").await.unwrap().success);
    let gone = api(&nc, "STREAM.INFO.ALPHA", "").await;
    assert_eq!(err_code(&gone), 10059, "{gone}");
    let names: Vec<String> = js.stream_names().try_collect().await.unwrap();
    assert_eq!(names.len(), 2);
    let err = nc.request("a.1", "x".into()).await.unwrap_err();
    assert_eq!(
        err.kind(),
        async_nats::RequestErrorKind::NoResponders,
        "a deleted stream captures nothing"
    );
}
one_and_two_shards!(manage, create_info_update_delete_list);

async fn bad_requests(shards: usize) {
    let (server, _store) = start(shards);
    let (nc, js) = connect(&server).await;
    create(
        &js,
        stream::Config {
            max_message_size: 16,
            ..config("S", &["s.>"])
        },
    )
    .await;

    let malformed = api(&nc, "STREAM.CREATE.X", "{not json").await;
    assert_eq!(err_code(&malformed), 10025, "{malformed}");
    for name in ["a*", "a>", "x>y"] {
        let body = json_of(json!({"name": name, "subjects": ["n.1"]}));
        let bad = api(&nc, &format!("STREAM.CREATE.{name}"), &body).await;
        assert_eq!(err_code(&bad), 10052, "{name}: {bad}");
    }
    for (in_subject, name) in [("a", "a.b"), ("a", "a b")] {
        let body = json_of(json!({"name": name, "subjects": ["n.1"]}));
        let bad = api(&nc, &format!("STREAM.CREATE.{in_subject}"), &body).await;
        assert!(err_code(&bad) != 0, "{name:?} refused: {bad}");
    }

    let overlap = api(&nc, "STREAM.CREATE.O", r#"{"name":"O","subjects":["s.x"]}"#).await;
    assert_eq!(err_code(&overlap), 10065, "{overlap}");
    let again = api(
        &nc,
        "STREAM.CREATE.S",
        r#"{"name":"S","subjects":["s.>","t"]}"#,
    )
    .await;
    assert_eq!(err_code(&again), 10058, "{again}");
    let unknown = api(&nc, "STREAM.INFO.NOPE", "").await;
    assert_eq!(err_code(&unknown), 10059, "{unknown}");
    let unknown = api(&nc, "STREAM.DELETE.NOPE", "").await;
    assert_eq!(err_code(&unknown), 10059, "{unknown}");
    let r3 = api(
        &nc,
        "STREAM.CREATE.R3",
        r#"{"name":"R3","subjects":["r3"],"num_replicas":3}"#,
    )
    .await;
    assert_eq!(err_code(&r3), 10074, "{r3}");

    let big = publish_raw(&nc, "s.1", &[], &"x".repeat(17)).await;
    assert_eq!(err_code(&big), 10054, "{big}");
    let fits = publish_raw(&nc, "s.1", &[], &"x".repeat(16)).await;
    assert_eq!(fits["seq"], 1, "{fits}");

    // Re-creating with the same config is fine and nothing was harmed.
    let same = api(
        &nc,
        "STREAM.CREATE.S",
        r#"{"name":"S","subjects":["s.>"],"max_msg_size":16}"#,
    )
    .await;
    assert_eq!(err_code(&same), 0, "{same}");
    let names: Vec<String> = js.stream_names().try_collect().await.unwrap();
    assert_eq!(names, ["S"]);
}
one_and_two_shards!(bad_input, bad_requests);

/// A stream's `consumer_limits` (nats-server 2.10): defaults for its consumers'
/// `max_ack_pending` and `inactive_threshold`, and caps on them.
async fn consumer_limits(shards: usize) {
    let (server, _store) = start(shards);
    let (nc, _js) = connect(&server).await;
    let created = api(
        &nc,
        "STREAM.CREATE.L",
        r#"{"name":"L","subjects":["l.>"],"consumer_limits":{"inactive_threshold":2000000000,"max_ack_pending":10}}"#,
    )
    .await;
    assert_eq!(
        created["config"]["consumer_limits"],
        json!({"inactive_threshold": 2000000000i64, "max_ack_pending": 10}),
        "{created}"
    );
    let defaulted = api(
        &nc,
        "CONSUMER.CREATE.L.D",
        r#"{"stream_name":"L","config":{"durable_name":"D","ack_policy":"explicit"}}"#,
    )
    .await;
    assert_eq!(defaulted["config"]["max_ack_pending"], 10, "{defaulted}");
    assert_eq!(defaulted["config"]["inactive_threshold"], 2000000000i64);
    let too_many = api(
        &nc,
        "CONSUMER.CREATE.L.E",
        r#"{"stream_name":"L","config":{"durable_name":"E","ack_policy":"explicit","max_ack_pending":20}}"#,
    )
    .await;
    assert_eq!(too_many["error"]["err_code"], 10121, "{too_many}");
    assert_eq!(
        too_many["error"]["description"],
        "consumer max ack pending exceeds system limit of 10"
    );
    let too_idle = api(
        &nc,
        "CONSUMER.CREATE.L.F",
        r#"{"stream_name":"L","config":{"durable_name":"F","inactive_threshold":5000000000}}"#,
    )
    .await;
    assert_eq!(too_idle["error"]["err_code"], 10153, "{too_idle}");
    let plain = api(&nc, "STREAM.CREATE.P", r#"{"name":"P","subjects":["p.>"]}"#).await;
    assert_eq!(plain["config"]["consumer_limits"], json!({}), "{plain}");
}
one_and_two_shards!(limits_for_consumers, consumer_limits);
