//! nats-server's JetStream errors: HTTP-like code, its `err_code` and the words.

use super::types::ApiError;

fn err(code: u16, err_code: u16, description: impl Into<String>) -> ApiError {
    ApiError {
        code,
        err_code,
        description: description.into(),
    }
}

pub fn bad_request() -> ApiError {
    err(400, 10003, "bad request")
}
pub fn invalid_json(why: impl std::fmt::Display) -> ApiError {
    err(400, 10025, format!("invalid JSON: {why}"))
}
pub fn stream_not_found() -> ApiError {
    err(404, 10059, "stream not found")
}
pub fn stream_name_in_use() -> ApiError {
    err(
        400,
        10058,
        "stream name already in use with a different configuration",
    )
}
pub fn stream_name_mismatch() -> ApiError {
    err(400, 10056, "stream name in subject does not match request")
}
pub fn subjects_overlap() -> ApiError {
    err(400, 10065, "subjects overlap with an existing stream")
}
pub fn stream_invalid_config(why: impl Into<String>) -> ApiError {
    err(500, 10052, why)
}
pub fn stream_update(why: impl Into<String>) -> ApiError {
    err(500, 10069, why)
}
pub fn replicas_not_supported() -> ApiError {
    err(
        500,
        10074,
        "replicas > 1 not supported in non-clustered mode",
    )
}
pub fn stream_name_path_separators() -> ApiError {
    err(400, 10128, "Stream name can not contain path separators")
}
pub fn wrong_last_sequence(seq: u64) -> ApiError {
    err(400, 10071, format!("wrong last sequence: {seq}"))
}
pub fn wrong_last_msg_id(id: &str) -> ApiError {
    err(400, 10070, format!("wrong last msg ID: {id}"))
}
pub fn stream_not_match() -> ApiError {
    err(400, 10060, "expected stream does not match")
}
pub fn store_failed(why: impl Into<String>) -> ApiError {
    err(503, 10077, why)
}
pub fn insufficient_storage() -> ApiError {
    err(500, 10047, "insufficient storage resources available")
}
pub fn consumer_max_ack_pending_excess(limit: i64) -> ApiError {
    err(
        400,
        10121,
        format!("consumer max ack pending exceeds system limit of {limit}"),
    )
}
pub fn consumer_inactive_threshold_excess(limit_ns: i64) -> ApiError {
    let limit = crate::timefmt::go_duration(std::time::Duration::from_nanos(limit_ns as u64));
    err(
        400,
        10153,
        format!("consumer inactive threshold exceeds system limit of {limit}"),
    )
}
pub fn no_suitable_peers() -> ApiError {
    err(400, 10005, "no suitable peers for placement")
}
pub fn server_not_member() -> ApiError {
    err(400, 10044, "server is not a member of the cluster")
}
pub fn peer_not_member() -> ApiError {
    err(400, 10040, "peer not a member")
}
pub fn peer_remap_failed() -> ApiError {
    err(503, 10075, "peer remap failed")
}
/// nats-server's answer while its cluster has had no meta leader for a while.
pub fn cluster_not_available() -> ApiError {
    err(503, 10008, "JetStream system temporarily unavailable")
}
pub fn insufficient_resources() -> ApiError {
    err(503, 10023, "insufficient resources")
}
pub fn account_resources_exceeded() -> ApiError {
    err(400, 10002, "resource limits exceeded for account")
}
pub fn insufficient_memory() -> ApiError {
    err(500, 10028, "insufficient memory resources available")
}
pub fn message_too_large() -> ApiError {
    err(400, 10054, "message size exceeds maximum allowed")
}
pub fn no_message_found() -> ApiError {
    err(404, 10037, "no message found")
}
pub fn sequence_not_found(seq: u64) -> ApiError {
    err(400, 10043, format!("sequence {seq} not found"))
}
pub fn msg_delete_failed(why: impl Into<String>) -> ApiError {
    err(500, 10057, why)
}
pub fn sealed() -> ApiError {
    err(400, 10109, "invalid operation on sealed stream")
}
pub fn purge_failed(why: impl Into<String>) -> ApiError {
    err(500, 10110, why)
}
pub fn rollup_failed(why: impl Into<String>) -> ApiError {
    err(500, 10111, why)
}
pub fn general(why: impl Into<String>) -> ApiError {
    err(500, 10051, why)
}
pub fn consumer_not_found() -> ApiError {
    err(404, 10014, "consumer not found")
}
pub fn consumer_name_exists() -> ApiError {
    err(400, 10013, "consumer name already in use")
}
pub fn consumer_exists() -> ApiError {
    err(400, 10148, "consumer already exists")
}
pub fn consumer_does_not_exist() -> ApiError {
    err(400, 10149, "consumer does not exist")
}
pub fn consumer_create(why: impl Into<String>) -> ApiError {
    err(500, 10012, why)
}
pub fn consumer_config_required() -> ApiError {
    err(400, 10078, "consumer config required")
}
pub fn consumer_bad_durable_name() -> ApiError {
    err(400, 10103, "durable name can not contain '.', '*', '>'")
}
pub fn consumer_name_path_separators() -> ApiError {
    err(400, 10127, "Consumer name can not contain path separators")
}
pub fn consumer_durable_name_mismatch() -> ApiError {
    err(
        400,
        10017,
        "consumer name in subject does not match durable name in request",
    )
}
pub fn consumer_durable_and_name_mismatch() -> ApiError {
    err(
        400,
        10132,
        "Consumer Durable and Name have to be equal if both are provided",
    )
}
pub fn consumer_filter_mismatch() -> ApiError {
    err(
        400,
        10131,
        "Consumer create request did not match filtered subject from create subject",
    )
}
pub fn consumer_deliver_wildcards() -> ApiError {
    err(400, 10079, "consumer deliver subject has wildcards")
}
pub fn consumer_invalid_deliver_subject() -> ApiError {
    err(400, 10112, "invalid push consumer deliver subject")
}
pub fn consumer_deliver_cycle() -> ApiError {
    err(400, 10081, "consumer deliver subject forms a cycle")
}
pub fn consumer_push_max_waiting() -> ApiError {
    err(400, 10080, "consumer in push mode can not set max waiting")
}
pub fn consumer_hb_requires_push() -> ApiError {
    err(
        400,
        10088,
        "consumer idle heartbeat requires a push based consumer",
    )
}
pub fn consumer_fc_requires_push() -> ApiError {
    err(
        400,
        10089,
        "consumer flow control requires a push based consumer",
    )
}
pub fn consumer_fc_needs_heartbeats() -> ApiError {
    err(
        400,
        10108,
        "consumer with flow control also needs heartbeats",
    )
}
pub fn consumer_small_heartbeat() -> ApiError {
    err(400, 10083, "consumer idle heartbeat needs to be >= 100ms")
}
pub fn consumer_invalid_policy(why: impl Into<String>) -> ApiError {
    err(400, 10094, why)
}
pub fn consumer_filter_not_subset() -> ApiError {
    err(
        400,
        10093,
        "consumer filter subject is not a valid subset of the interest subjects",
    )
}
pub fn consumer_max_pending_ack_policy() -> ApiError {
    err(
        400,
        10082,
        "consumer requires ack policy for max ack pending",
    )
}
pub fn consumer_backoff_max_deliver() -> ApiError {
    err(
        400,
        10116,
        "max deliver is required to be > length of backoff values",
    )
}
pub fn consumer_wq_requires_explicit_ack() -> ApiError {
    err(400, 10098, "workqueue stream requires explicit ack")
}
pub fn consumer_wq_multiple_unfiltered() -> ApiError {
    err(
        400,
        10099,
        "multiple non-filtered consumers not allowed on workqueue stream",
    )
}
pub fn consumer_wq_not_unique() -> ApiError {
    err(
        400,
        10100,
        "filtered consumer not unique on workqueue stream",
    )
}
pub fn consumer_wq_deliver_all() -> ApiError {
    err(
        400,
        10101,
        "consumer must be deliver all on workqueue stream",
    )
}
pub fn consumer_replacement_differs() -> ApiError {
    err(
        400,
        10106,
        "consumer replacement durable config not the same",
    )
}
pub fn consumer_ephemeral_with_durable() -> ApiError {
    err(
        400,
        10020,
        "consumer expected to be ephemeral but a durable name was set in request",
    )
}
pub fn maximum_consumers() -> ApiError {
    err(400, 10026, "maximum consumers limit reached")
}
pub fn maximum_streams() -> ApiError {
    err(400, 10027, "maximum number of streams reached")
}
pub fn not_enabled_for_account() -> ApiError {
    err(503, 10039, "JetStream not enabled for account")
}
pub fn not_empty_request() -> ApiError {
    err(400, 10038, "expected an empty request payload")
}
pub fn cluster_required() -> ApiError {
    err(503, 10010, "JetStream clustering support required")
}
pub fn stream_create(why: impl Into<String>) -> ApiError {
    err(500, 10049, why)
}
