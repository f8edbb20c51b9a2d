//! TEMPORARY stand-in until the config branch lands; same shape as the contract.
#[derive(Clone, Debug)]
pub struct Pos {
    pub file: String,
    pub line: u32,
    pub col: u32,
}

#[derive(Clone, Debug)]
pub struct Options {
    pub server_name: Option<String>,
    pub host: String,
    pub port: u16,
    pub client_advertise: Option<String>,
    pub http_host: Option<String>,
    pub http_port: Option<u16>,
    pub max_payload: usize,
    pub max_control_line: usize,
    pub max_pending: usize,
    pub max_connections: usize,
    pub max_subscriptions: usize,
    pub ping_interval_ms: u64,
    pub ping_max: u32,
    pub write_deadline_ms: u64,
    pub auth_timeout_ms: u64,
    pub lame_duck_duration_ms: u64,
    pub lame_duck_grace_period_ms: u64,
    pub debug: bool,
    pub trace: bool,
    pub logtime: bool,
    pub log_file: Option<String>,
    pub pid_file: Option<String>,
    pub authorization: Option<Authorization>,
    pub accounts: Vec<AccountConfig>,
    pub system_account: Option<String>,
    pub no_auth_user: Option<String>,
    pub cluster: Option<ClusterConfig>,
    pub jetstream: Option<JetStreamConfig>,
    pub unsupported: Vec<(String, Pos)>,
    pub warnings: Vec<String>,
}
#[derive(Clone, Debug, Default)]
pub struct Authorization {
    pub user: Option<String>,
    pub password: Option<String>,
    pub token: Option<String>,
    pub users: Vec<UserConfig>,
    pub timeout_ms: Option<u64>,
}
#[derive(Clone, Debug, Default)]
pub struct UserConfig {
    pub user: String,
    pub password: Option<String>,
    pub permissions: Option<Permissions>,
    pub account: Option<String>,
}
#[derive(Clone, Debug, Default)]
pub struct Permissions {
    pub publish: Option<SubjectPermission>,
    pub subscribe: Option<SubjectPermission>,
}
#[derive(Clone, Debug, Default)]
pub struct SubjectPermission {
    pub allow: Vec<String>,
    pub deny: Vec<String>,
}
#[derive(Clone, Debug, Default)]
pub struct AccountConfig {
    pub name: String,
    pub users: Vec<UserConfig>,
    pub jetstream: bool,
}
#[derive(Clone, Debug, Default)]
pub struct ClusterConfig {
    pub name: Option<String>,
    pub host: String,
    pub port: u16,
    pub routes: Vec<String>,
    pub pool_size: Option<u32>,
    pub advertise: Option<String>,
    pub no_advertise: bool,
    pub connect_retries: u32,
    pub authorization: Option<Authorization>,
}
#[derive(Clone, Debug, Default)]
pub struct JetStreamConfig {
    pub store_dir: Option<String>,
    pub max_memory_store: Option<i64>,
    pub max_file_store: Option<i64>,
    pub domain: Option<String>,
    pub sync_interval_ms: Option<u64>,
}
impl Default for Options {
    fn default() -> Self {
        Options {
            server_name: None,
            host: "0.0.0.0".into(),
            port: 4222,
            client_advertise: None,
            http_host: None,
            http_port: None,
            max_payload: 1 << 20,
            max_control_line: 4096,
            max_pending: 64 << 20,
            max_connections: 65536,
            max_subscriptions: 0,
            ping_interval_ms: 120_000,
            ping_max: 2,
            write_deadline_ms: 10_000,
            auth_timeout_ms: 2_000,
            lame_duck_duration_ms: 120_000,
            lame_duck_grace_period_ms: 10_000,
            debug: false,
            trace: false,
            logtime: true,
            log_file: None,
            pid_file: None,
            authorization: None,
            accounts: vec![],
            system_account: None,
            no_auth_user: None,
            cluster: None,
            jetstream: None,
            unsupported: vec![],
            warnings: vec![],
        }
    }
}
impl Options {
    pub fn load(_path: &std::path::Path) -> Result<Options, String> {
        Err("config files not yet supported".into())
    }
}
