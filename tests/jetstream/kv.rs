//! KV and object store through async-nats' own API.

use crate::*;
use async_nats::jetstream::{kv, object_store};
use futures::{StreamExt, TryStreamExt};
use tokio::io::AsyncReadExt;

async fn key_value(shards: usize) {
    let (server, _store) = start(shards);
    let (_nc, js) = connect(&server).await;
    let bucket = |name: &str| kv::Config {
        bucket: name.to_string(),
        history: 5,
        ..Default::default()
    };
    let kv = js.create_key_value(bucket("CONFIG")).await.unwrap();
    let other = js.create_key_value(bucket("OTHER")).await.unwrap();
    other.put("k", "other".into()).await.unwrap();

    let mut watch = kv.watch("app.>").await.unwrap();
    let r1 = kv.put("app.name", "one".into()).await.unwrap();
    assert_eq!(kv.get("app.name").await.unwrap().unwrap(), "one");
    assert!(
        kv.create("app.name", "x".into()).await.is_err(),
        "create needs no key"
    );
    let r2 = kv.create("app.size", "1".into()).await.unwrap();
    assert!(
        kv.update("app.name", "two".into(), r2).await.is_err(),
        "stale revision"
    );
    let r3 = kv.update("app.name", "two".into(), r1).await.unwrap();
    assert!(r1 < r2 && r2 < r3);
    assert_eq!(kv.entry("app.name").await.unwrap().unwrap().revision, r3);

    let mut got = Vec::new();
    for _ in 0..3 {
        let e = tokio::time::timeout(WAIT, watch.next())
            .await
            .expect("watch update");
        let e = e.unwrap().unwrap();
        got.push((e.key, e.value, e.revision));
    }
    assert_eq!(
        got,
        [
            ("app.name".to_string(), "one".into(), r1),
            ("app.size".to_string(), "1".into(), r2),
            ("app.name".to_string(), "two".into(), r3),
        ]
    );

    kv.delete("app.size").await.unwrap();
    assert_eq!(kv.get("app.size").await.unwrap(), None);
    let e = tokio::time::timeout(WAIT, watch.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        (e.key.as_str(), e.operation),
        ("app.size", kv::Operation::Delete)
    );

    let history: Vec<_> = kv
        .history("app.name")
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let values: Vec<_> = history.iter().map(|e| e.value.clone()).collect();
    assert_eq!(values, ["one", "two"]);
    let mut keys: Vec<String> = kv.keys().await.unwrap().try_collect().await.unwrap();
    keys.sort();
    assert_eq!(keys, ["app.name"], "deleted keys are not listed");

    kv.purge("app.name").await.unwrap();
    assert_eq!(kv.get("app.name").await.unwrap(), None);
    let history: Vec<_> = kv
        .history("app.name")
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(history.len(), 1, "a purge leaves only its marker");
    assert_eq!(history[0].operation, kv::Operation::Purge);
    assert_eq!(other.get("k").await.unwrap().unwrap(), "other");
}
one_and_two_shards!(kv_bucket, key_value);

async fn objects(shards: usize) {
    let (server, _store) = start(shards);
    let (_nc, js) = connect(&server).await;
    let store = js
        .create_object_store(object_store::Config {
            bucket: "FILES".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    js.create_key_value(kv::Config {
        bucket: "SIDE".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let data: Vec<u8> = (0..5 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let info = store.put("big.bin", &mut data.as_slice()).await.unwrap();
    assert_eq!(info.size, data.len());
    store.put("small.txt", &mut &b"hello"[..]).await.unwrap();

    let mut object = store.get("big.bin").await.unwrap();
    let mut back = Vec::new();
    object.read_to_end(&mut back).await.unwrap();
    assert!(back == data, "the object comes back byte for byte");

    let mut names: Vec<String> = store
        .list()
        .await
        .unwrap()
        .map(|o| o.unwrap().name)
        .collect()
        .await;
    names.sort();
    assert_eq!(names, ["big.bin", "small.txt"]);

    store.delete("big.bin").await.unwrap();
    let gone = store.info("big.bin").await;
    assert!(gone.map_or(true, |i| i.deleted), "big.bin is deleted");
    let names: Vec<String> = store
        .list()
        .await
        .unwrap()
        .map(|o| o.unwrap().name)
        .collect()
        .await;
    assert_eq!(names, ["small.txt"]);
    let chunks = js
        .get_stream("OBJ_FILES")
        .await
        .unwrap()
        .get_info()
        .await
        .unwrap();
    // small.txt's meta and chunk, and big.bin's meta marking it deleted.
    assert_eq!(chunks.state.messages, 3, "big.bin's chunks are gone");
}
one_and_two_shards!(objects_in_chunks, objects);
