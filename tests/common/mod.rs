//! Starting real natrix servers for integration tests, and stopping them.
#![allow(dead_code)]

pub mod certs;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// A port free now, picked below the kernel's ephemeral range (32768 and up on
/// Linux): a port the kernel hands out for `bind(0)` can be taken by any outgoing
/// connection before the server binds it, which broke clusters whose members must
/// know each other's ports in advance. Each test process starts at its own place.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 10_000;
    const SPAN: u32 = 22_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(7_919) % SPAN,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    for _ in 0..SPAN {
        let port = (FIRST + NEXT.fetch_add(1, Ordering::Relaxed) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {FIRST}..{}", FIRST + SPAN);
}

pub struct TestServer {
    child: Child,
    pub port: u16,
    pub http_port: u16,
    /// The port that `{cluster}` in arguments or config stood for.
    pub cluster_port: u16,
    pub dir: PathBuf,
}

pub struct Builder {
    shards: usize,
    args: Vec<String>,
    config: Option<String>,
    binary: Option<String>,
    ports: Option<(u16, u16)>,
    envs: Vec<(String, String)>,
    cwd: Option<PathBuf>,
}

impl Builder {
    pub fn arg(mut self, a: &str) -> Self {
        self.args.push(a.to_string());
        self
    }

    /// The directory the server starts in (relative paths in its arguments).
    pub fn cwd(mut self, dir: &std::path::Path) -> Self {
        self.cwd = Some(dir.to_path_buf());
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.envs.push((key.to_string(), value.to_string()));
        self
    }

    pub fn args(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    /// Config text; `{port}`, `{http}` and `{cluster}` are replaced by the chosen
    /// ports (in arguments too).
    pub fn config(mut self, text: &str) -> Self {
        self.config = Some(text.to_string());
        self
    }

    /// Runs another binary with the same flags (nats-server, for interop tests).
    pub fn binary(mut self, path: &str) -> Self {
        self.binary = Some(path.to_string());
        self
    }

    /// Client and monitoring ports to use (for a restart on the same ports).
    pub fn ports(mut self, port: u16, http_port: u16) -> Self {
        self.ports = Some((port, http_port));
        self
    }

    /// Starts the server; when a port it was given by `free_port` turns out to be
    /// taken by the time it binds (another test raced for it), tries new ports.
    pub fn start(self) -> TestServer {
        const ATTEMPTS: usize = 5;
        for attempt in 1..=ATTEMPTS {
            match self.try_start() {
                Ok(server) => return server,
                Err(log) if log.contains("Address already in use") && attempt < ATTEMPTS => {
                    continue
                }
                Err(log) => panic!("server did not start:\n{log}"),
            }
        }
        unreachable!()
    }

    fn try_start(&self) -> Result<TestServer, String> {
        let (port, http_port) = self.ports.unwrap_or_else(|| (free_port(), free_port()));
        let cluster_port = free_port();
        let dir = std::env::temp_dir().join(format!("natrix-test-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut cmd = match &self.binary {
            Some(b) => Command::new(b),
            None => {
                let mut c = Command::new(env!("CARGO_BIN_EXE_natrix"));
                c.args(["--shards", &self.shards.to_string()]);
                c
            }
        };
        let fill = |s: &str| {
            s.replace("{port}", &port.to_string())
                .replace("{http}", &http_port.to_string())
                .replace("{cluster}", &cluster_port.to_string())
        };
        match &self.config {
            Some(text) => {
                let path = dir.join("server.conf");
                std::fs::write(&path, fill(text)).unwrap();
                cmd.arg("-c").arg(&path);
            }
            None => {
                cmd.args([
                    "-a",
                    "127.0.0.1",
                    "-p",
                    &port.to_string(),
                    "-m",
                    &http_port.to_string(),
                ]);
            }
        }
        for a in &self.args {
            cmd.arg(fill(a));
        }
        cmd.envs(self.envs.iter().map(|(k, v)| (k, v)));
        if let Some(dir) = &self.cwd {
            cmd.current_dir(dir);
        }
        let log = std::fs::File::create(dir.join("server.log")).unwrap();
        cmd.stdout(Stdio::null()).stderr(log);
        let child = cmd.spawn().expect("start the server binary");
        let mut server = TestServer {
            child,
            port,
            http_port,
            cluster_port,
            dir,
        };
        server.wait_ready()?;
        Ok(server)
    }
}

impl TestServer {
    pub fn with_shards(shards: usize) -> Builder {
        Builder {
            shards,
            args: Vec::new(),
            config: None,
            binary: None,
            ports: None,
            envs: Vec::new(),
            cwd: None,
        }
    }

    pub fn start(shards: usize) -> TestServer {
        Self::with_shards(shards).start()
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Err(format!("exited with {status}:\n{}", self.log()));
            }
            // A server whose clients handshake TLS first sends no INFO in plain text.
            if self.log().contains("Server is ready") {
                return Ok(());
            }
            if let Ok(stream) = TcpStream::connect(("127.0.0.1", self.port)) {
                let mut line = String::new();
                stream
                    .set_read_timeout(Some(Duration::from_secs(2)))
                    .unwrap();
                if BufReader::new(stream).read_line(&mut line).is_ok() && line.starts_with("INFO ")
                {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                return Err(format!("not ready:\n{}", self.log()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn http_get(&self, path: &str) -> (u16, String) {
        let mut s = TcpStream::connect(("127.0.0.1", self.http_port)).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        let status = out.split_whitespace().nth(1).unwrap().parse().unwrap();
        let body = out
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        (status, body)
    }

    pub fn json(&self, path: &str) -> serde_json::Value {
        let (status, body) = self.http_get(path);
        assert_eq!(status, 200, "{path}: {body}");
        serde_json::from_str(&body).unwrap()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits up to `timeout` for the process to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Asks the process to stop (SIGTERM), as an operator does; see `wait_exit`.
    pub fn terminate(&self) {
        // SAFETY: kill only sends a signal, to the child this server started.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
    }

    /// Stops the process now (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().unwrap()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Waits, polling, until `f` holds; panics with `what` after `timeout`.
pub fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `wait_for` in an async test: the runtime keeps running between looks.
pub async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A raw protocol client for byte-level tests.
pub struct Raw {
    reader: BufReader<TcpStream>,
    pub stream: TcpStream,
    pub info: serde_json::Value,
}

impl Raw {
    pub fn connect(port: u16) -> Raw {
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let info = serde_json::from_str(line.trim_start_matches("INFO ").trim()).unwrap();
        Raw {
            reader,
            stream,
            info,
        }
    }

    pub fn send(&mut self, data: &[u8]) {
        self.stream.write_all(data).unwrap();
    }

    /// The next line without its CRLF; "" when the server closed the connection.
    pub fn line(&mut self) -> String {
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap_or(0);
        line.trim_end().to_string()
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut buf = vec![0; n];
        self.reader.read_exact(&mut buf).unwrap();
        buf
    }

    /// True when the server closes the connection (after any pending lines).
    pub fn closed_by_server(&mut self) -> bool {
        let mut buf = Vec::new();
        self.reader.read_to_end(&mut buf).is_ok()
    }
}

/// A round trip on `client`'s connection: once it returns, the server has
/// processed everything the client sent before (async-nats' flush only writes).
pub async fn sync(client: &async_nats::Client) {
    let err = client
        .request("natrix.test.sync", "".into())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), async_nats::RequestErrorKind::NoResponders);
}

/// Generates, in a module `$name`, one tokio test per `test = shards` pair, each
/// running the async `$body(shards)`.
#[macro_export]
macro_rules! with_shards {
    ($name:ident, $body:ident, $($test:ident = $shards:expr),+) => {
        mod $name {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$body($shards).await;
                }
            )+
        }
    };
}

/// A single-server test with one shard and with four.
#[macro_export]
macro_rules! both_shard_counts {
    ($name:ident, $body:ident) => {
        $crate::with_shards!($name, $body, one_shard = 1, four_shards = 4);
    };
}

/// A cluster test with one shard and with two per server.
#[macro_export]
macro_rules! both_cluster_shard_counts {
    ($name:ident, $body:ident) => {
        $crate::with_shards!($name, $body, one_shard = 1, two_shards = 2);
    };
}
