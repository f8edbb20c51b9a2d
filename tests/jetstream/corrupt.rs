//! A segment damaged on disk while the server was down.

use crate::persistence::{read_all, terminate};
use crate::*;
use std::io::{Read, Seek, SeekFrom, Write};

fn payload(seq: u64) -> String {
    format!("{seq:0>1000}")
}

async fn corrupt_segment() {
    let store = tempfile::tempdir().unwrap();
    let mut server = start_on(1, store.path());
    {
        let (_nc, js) = connect(&server).await;
        create(&js, config("DAMAGED", &["d.>"])).await;
        create(&js, config("HEALTHY", &["h.>"])).await;
        for seq in 1..=200 {
            publish(&js, "d.x", &payload(seq)).await;
        }
        publish(&js, "h.x", "fine").await;
    }
    terminate(&mut server);
    drop(server);

    let msgs = store.path().join("jetstream/$G/streams/DAMAGED/msgs");
    let segment = std::fs::read_dir(&msgs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .min()
        .expect("a segment file");
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&segment)
        .unwrap();
    // The segment may be preallocated: aim inside the ~200 KB of records.
    let middle = 100_000;
    let mut bytes = [0u8; 64];
    f.seek(SeekFrom::Start(middle)).unwrap();
    f.read_exact(&mut bytes).unwrap();
    bytes.iter_mut().for_each(|b| *b ^= 0xA5);
    f.seek(SeekFrom::Start(middle)).unwrap();
    f.write_all(&bytes).unwrap();
    f.sync_all().unwrap();
    drop(f);

    let server = start_on(1, store.path());
    let (nc, js) = connect(&server).await;
    let s = js.get_stream("DAMAGED").await.expect("the stream opens");
    let stored = read_all(&s).await;
    let missing: Vec<u64> = (1..=200).filter(|q| !stored.contains_key(q)).collect();
    assert!(!missing.is_empty(), "the damage lost something");
    assert!(missing.len() < 10, "only the damaged records: {missing:?}");
    for (seq, p) in &stored {
        assert_eq!(p, &payload(*seq), "seq {seq} served intact");
    }
    for seq in &missing {
        let got = api(&nc, "STREAM.MSG.GET.DAMAGED", &json_of(json!({"seq": seq}))).await;
        assert!(err_code(&got) != 0, "seq {seq} not served: {got}");
    }
    let info = s.get_info().await.unwrap();
    assert_eq!(info.state.messages, 200 - missing.len() as u64);
    let log = server.log();
    assert!(
        log.contains("DAMAGED") && log.contains(&missing[0].to_string()),
        "the log names the missing sequences:\n{log}"
    );
    assert_eq!(
        js.get_stream("HEALTHY")
            .await
            .unwrap()
            .get_raw_message(1)
            .await
            .unwrap()
            .payload,
        "fine"
    );
    assert_eq!(
        publish(&js, "d.x", "after").await,
        201,
        "the stream goes on"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_records_are_skipped_and_logged() {
    corrupt_segment().await;
}
