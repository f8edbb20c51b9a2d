//! The JetStream API's JSON documents, as nats-server 2.10 writes and reads them
//! (`io.nats.jetstream.api.v1.*`). Durations are nanoseconds; "unlimited" is -1.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

fn is_false(b: &bool) -> bool {
    !*b
}
fn is_zero(n: &i64) -> bool {
    *n == 0
}
fn is_zero_u64(n: &u64) -> bool {
    *n == 0
}
fn minus_one() -> i64 {
    -1
}
fn one() -> i64 {
    1
}
/// nats-server's default duplicate window: two minutes.
pub const DUPLICATE_WINDOW_DEFAULT_NS: i64 = 120_000_000_000;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Retention {
    #[default]
    Limits,
    Interest,
    #[serde(alias = "work_queue")]
    Workqueue,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageType {
    #[default]
    File,
    Memory,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiscardPolicy {
    #[default]
    Old,
    New,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RePublish {
    #[serde(default)]
    pub src: String,
    pub dest: String,
    #[serde(default, skip_serializing_if = "is_false")]
    pub headers_only: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubjectTransform {
    #[serde(default)]
    pub src: String,
    #[serde(default)]
    pub dest: String,
}

/// A mirror or source of a stream (not supported yet: refused at create).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamSource {
    pub name: String,
    #[serde(flatten)]
    pub rest: BTreeMap<String, serde_json::Value>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamConfig {
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub subjects: Vec<String>,
    #[serde(default)]
    pub retention: Retention,
    #[serde(default = "minus_one")]
    pub max_consumers: i64,
    #[serde(default = "minus_one")]
    pub max_msgs: i64,
    #[serde(default = "minus_one")]
    pub max_bytes: i64,
    #[serde(default)]
    pub max_age: i64,
    #[serde(default = "minus_one")]
    pub max_msgs_per_subject: i64,
    #[serde(default = "minus_one")]
    pub max_msg_size: i64,
    #[serde(default)]
    pub discard: DiscardPolicy,
    #[serde(default)]
    pub storage: StorageType,
    #[serde(default = "one")]
    pub num_replicas: i64,
    #[serde(default)]
    pub duplicate_window: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<Placement>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub no_ack: bool,
    #[serde(default)]
    pub sealed: bool,
    #[serde(default)]
    pub deny_delete: bool,
    #[serde(default)]
    pub deny_purge: bool,
    #[serde(default)]
    pub allow_rollup_hdrs: bool,
    #[serde(default)]
    pub allow_direct: bool,
    #[serde(default)]
    pub mirror_direct: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub discard_new_per_subject: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub republish: Option<RePublish>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_transform: Option<SubjectTransform>,
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub first_seq: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<String>,
    /// Defaults and caps for the stream's consumers (nats-server 2.10).
    #[serde(default, deserialize_with = "null_as_default")]
    pub consumer_limits: ConsumerLimits,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<StreamSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sources: Option<Vec<StreamSource>>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerLimits {
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub inactive_threshold: i64,
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub max_ack_pending: i64,
}

fn is_zero_i64(n: &i64) -> bool {
    *n == 0
}

/// `null` reads as the default, as Go's JSON reads it into a struct.
fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Option::unwrap_or_default)
}

impl Default for StreamConfig {
    fn default() -> Self {
        serde_json::from_str("{}").expect("defaults parse")
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamState {
    pub messages: u64,
    pub bytes: u64,
    pub first_seq: u64,
    pub first_ts: String,
    pub last_seq: u64,
    pub last_ts: String,
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub num_subjects: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subjects: Option<BTreeMap<String, u64>>,
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub num_deleted: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted: Option<Vec<u64>>,
    pub consumer_count: u64,
}

/// An empty stream's state, its times unset as nats-server writes them.
impl Default for StreamState {
    fn default() -> StreamState {
        StreamState {
            messages: 0,
            bytes: 0,
            first_seq: 0,
            first_ts: crate::jetstream::ZERO_TIME.to_string(),
            last_seq: 0,
            last_ts: crate::jetstream::ZERO_TIME.to_string(),
            num_subjects: 0,
            subjects: None,
            num_deleted: 0,
            deleted: None,
            consumer_count: 0,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerInfo {
    pub name: String,
    pub current: bool,
    pub active: i64,
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub lag: u64,
    #[serde(default, skip_serializing_if = "is_false")]
    pub offline: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<PeerInfo>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StreamInfo {
    pub config: StreamConfig,
    pub created: String,
    pub state: StreamState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterInfo>,
    pub ts: String,
}

/// `STREAM.INFO` request body.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct StreamInfoRequest {
    #[serde(default)]
    pub deleted_details: bool,
    #[serde(default)]
    pub subjects_filter: Option<String>,
    #[serde(default)]
    pub offset: usize,
}

/// `STREAM.NAMES` / `STREAM.LIST` / `CONSUMER.NAMES` / `CONSUMER.LIST` request body.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ListRequest {
    #[serde(default)]
    pub offset: usize,
    #[serde(default)]
    pub subject: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct PurgeRequest {
    #[serde(default)]
    pub filter: Option<String>,
    #[serde(default)]
    pub seq: Option<u64>,
    #[serde(default)]
    pub keep: Option<u64>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct MsgGetRequest {
    #[serde(default)]
    pub seq: Option<u64>,
    #[serde(default)]
    pub last_by_subj: Option<String>,
    #[serde(default)]
    pub next_by_subj: Option<String>,
    /// Direct get batch (2.11): up to this many messages from `seq` on `next_by_subj`.
    #[serde(default)]
    pub batch: Option<usize>,
    #[serde(default)]
    pub max_bytes: Option<usize>,
    #[serde(default)]
    pub multi_last: Option<Vec<String>>,
    #[serde(default)]
    pub up_to_seq: Option<u64>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct MsgDeleteRequest {
    pub seq: u64,
    #[serde(default)]
    pub no_erase: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct StoredMessage {
    pub subject: String,
    pub seq: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hdrs: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    pub time: String,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliverPolicy {
    #[default]
    All,
    Last,
    New,
    #[serde(rename = "by_start_sequence")]
    ByStartSequence,
    #[serde(rename = "by_start_time")]
    ByStartTime,
    #[serde(rename = "last_per_subject")]
    LastPerSubject,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AckPolicy {
    None,
    All,
    #[default]
    Explicit,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReplayPolicy {
    #[default]
    Instant,
    Original,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub durable_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub deliver_policy: DeliverPolicy,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opt_start_seq: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opt_start_time: Option<String>,
    #[serde(default)]
    pub ack_policy: AckPolicy,
    #[serde(default)]
    pub ack_wait: i64,
    #[serde(default)]
    pub max_deliver: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<Vec<i64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter_subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter_subjects: Option<Vec<String>>,
    #[serde(default)]
    pub replay_policy: ReplayPolicy,
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub rate_limit_bps: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_freq: Option<String>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max_waiting: i64,
    #[serde(default)]
    pub max_ack_pending: i64,
    #[serde(default, skip_serializing_if = "is_false")]
    pub flow_control: bool,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub idle_heartbeat: i64,
    #[serde(default, skip_serializing_if = "is_false")]
    pub headers_only: bool,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max_batch: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max_expires: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max_bytes: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub inactive_threshold: i64,
    #[serde(default)]
    pub num_replicas: i64,
    #[serde(default, skip_serializing_if = "is_false")]
    pub mem_storage: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deliver_subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deliver_group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause_until: Option<String>,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        serde_json::from_str("{}").expect("defaults parse")
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct ConsumerCreateRequest {
    #[serde(default)]
    pub stream_name: String,
    pub config: Option<ConsumerConfig>,
    #[serde(default)]
    pub action: String,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SequenceInfo {
    pub consumer_seq: u64,
    pub stream_seq: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_active: Option<u64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SequencePair {
    pub consumer_seq: u64,
    pub stream_seq: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_active: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ConsumerInfo {
    pub stream_name: String,
    pub name: String,
    pub created: String,
    pub config: ConsumerConfig,
    pub delivered: SequencePair,
    pub ack_floor: SequencePair,
    pub num_ack_pending: u64,
    pub num_redelivered: u64,
    pub num_waiting: u64,
    pub num_pending: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterInfo>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub push_bound: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub paused: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause_remaining: Option<i64>,
    pub ts: String,
}

/// A pull request (`CONSUMER.MSG.NEXT`) body; a bare number means `batch`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct NextRequest {
    #[serde(default)]
    pub batch: i64,
    #[serde(default)]
    pub expires: i64,
    #[serde(default)]
    pub no_wait: bool,
    #[serde(default)]
    pub max_bytes: i64,
    #[serde(default)]
    pub idle_heartbeat: i64,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct PauseRequest {
    #[serde(default)]
    pub pause_until: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ApiStats {
    pub total: u64,
    pub errors: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct AccountLimits {
    pub max_memory: i64,
    pub max_storage: i64,
    pub max_streams: i64,
    pub max_consumers: i64,
    pub max_ack_pending: i64,
    pub memory_max_stream_bytes: i64,
    pub storage_max_stream_bytes: i64,
    pub max_bytes_required: bool,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct AccountInfo {
    pub memory: u64,
    pub storage: u64,
    pub reserved_memory: u64,
    pub reserved_storage: u64,
    pub streams: u64,
    pub consumers: u64,
    pub limits: AccountLimits,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    pub api: ApiStats,
}

/// An API error, as `{"code", "err_code", "description"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    pub code: u16,
    pub err_code: u16,
    pub description: String,
}

/// The PubAck a publisher receives.
#[derive(Clone, Debug, Serialize)]
pub struct PubAck<'a> {
    pub stream: &'a str,
    pub seq: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<&'a str>,
    #[serde(skip_serializing_if = "is_false")]
    pub duplicate: bool,
}

/// A failed publish's answer.
#[derive(Clone, Debug, Serialize)]
pub struct PubError {
    pub error: ApiError,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
}

/// Every API response: its type, and either the error or the body's fields.
#[derive(Serialize)]
pub struct Response<T: Serialize> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    #[serde(flatten)]
    pub body: T,
}

#[derive(Serialize)]
pub struct ErrorBody {
    pub error: ApiError,
}

#[derive(Serialize)]
pub struct SuccessBody {
    pub success: bool,
}

#[derive(Serialize)]
pub struct PurgeBody {
    pub success: bool,
    pub purged: u64,
}

#[derive(Serialize)]
pub struct NamesBody {
    pub total: usize,
    pub offset: usize,
    pub limit: usize,
    pub streams: Vec<String>,
}

#[derive(Serialize)]
pub struct ConsumerNamesBody {
    pub total: usize,
    pub offset: usize,
    pub limit: usize,
    pub consumers: Vec<String>,
}

#[derive(Serialize)]
pub struct StreamListBody {
    pub total: usize,
    pub offset: usize,
    pub limit: usize,
    pub streams: Vec<StreamInfo>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<String>,
}

#[derive(Serialize)]
pub struct ConsumerListBody {
    pub total: usize,
    pub offset: usize,
    pub limit: usize,
    pub consumers: Vec<ConsumerInfo>,
}

#[derive(Serialize)]
pub struct MsgGetBody {
    pub message: StoredMessage,
}

#[derive(Serialize)]
pub struct PauseBody {
    pub paused: bool,
    pub pause_until: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pause_remaining: Option<i64>,
}

/// Advisory: a message reached a consumer's max_deliver.
#[derive(Serialize)]
pub struct MaxDeliveriesAdvisory {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub id: String,
    pub timestamp: String,
    pub stream: String,
    pub consumer: String,
    pub stream_seq: u64,
    pub deliveries: u64,
}

/// Advisory: a message was terminated with `+TERM`.
#[derive(Serialize)]
pub struct TerminatedAdvisory {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub id: String,
    pub timestamp: String,
    pub stream: String,
    pub consumer: String,
    pub consumer_seq: u64,
    pub stream_seq: u64,
    pub deliveries: u64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

pub mod kind {
    pub const ACCOUNT_INFO: &str = "io.nats.jetstream.api.v1.account_info_response";
    pub const STREAM_CREATE: &str = "io.nats.jetstream.api.v1.stream_create_response";
    pub const STREAM_UPDATE: &str = "io.nats.jetstream.api.v1.stream_update_response";
    pub const STREAM_INFO: &str = "io.nats.jetstream.api.v1.stream_info_response";
    pub const STREAM_DELETE: &str = "io.nats.jetstream.api.v1.stream_delete_response";
    pub const STREAM_PURGE: &str = "io.nats.jetstream.api.v1.stream_purge_response";
    pub const STREAM_NAMES: &str = "io.nats.jetstream.api.v1.stream_names_response";
    pub const STREAM_LIST: &str = "io.nats.jetstream.api.v1.stream_list_response";
    pub const MSG_GET: &str = "io.nats.jetstream.api.v1.stream_msg_get_response";
    pub const MSG_DELETE: &str = "io.nats.jetstream.api.v1.stream_msg_delete_response";
    pub const CONSUMER_CREATE: &str = "io.nats.jetstream.api.v1.consumer_create_response";
    pub const CONSUMER_INFO: &str = "io.nats.jetstream.api.v1.consumer_info_response";
    pub const CONSUMER_DELETE: &str = "io.nats.jetstream.api.v1.consumer_delete_response";
    pub const CONSUMER_NAMES: &str = "io.nats.jetstream.api.v1.consumer_names_response";
    pub const CONSUMER_LIST: &str = "io.nats.jetstream.api.v1.consumer_list_response";
    pub const CONSUMER_PAUSE: &str = "io.nats.jetstream.api.v1.consumer_pause_response";
    pub const STREAM_LEADER_STEPDOWN: &str =
        "io.nats.jetstream.api.v1.stream_leader_stepdown_response";
    pub const CONSUMER_LEADER_STEPDOWN: &str =
        "io.nats.jetstream.api.v1.consumer_leader_stepdown_response";
    pub const MAX_DELIVERIES: &str = "io.nats.jetstream.advisory.v1.max_deliver";
    pub const TERMINATED: &str = "io.nats.jetstream.advisory.v1.terminated";
    pub const ERROR: &str = "io.nats.jetstream.api.v1.error_response";
}
