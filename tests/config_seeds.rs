//! Every config snippet from the seed documents (extracted into `configs/seeds/`)
//! parses and yields the options the documents describe.

use std::fs;
use std::path::{Path, PathBuf};

use natrix::conf::{self, Value};
use natrix::options::Options;

const BCRYPT_ADMIN: &str = "$2a$11$DRh4C0KNbNnD8K/hb/buWe1zPxEHrLEiDmuq1Mi0rRJiH/W25Qidm";

fn seed_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("configs/seeds")
        .join(name)
}

fn load(name: &str) -> Options {
    let opts = Options::load(&seed_path(name)).unwrap_or_else(|e| panic!("{e}"));
    assert!(opts.warnings.is_empty(), "{name}: {:?}", opts.warnings);
    opts
}

fn seed_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(seed_path(""))
        .expect("configs/seeds exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "conf"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_seed_config_parses_cleanly() {
    let files = seed_files();
    assert_eq!(files.len(), 11, "{files:?}");
    for path in files {
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        load(&name);
    }
}

/// Seeds 001 and 003: three JetStream nodes; each names itself, listens on 4222, stores
/// under /nats/storage and routes to the other two.
#[test]
fn jetstream_cluster_nodes() {
    let hosts = ["host_a", "host_b", "host_c"];
    for i in 0..3 {
        let seed_001 = (
            format!("001-server{}.conf", i + 1),
            format!("server{}", i + 1),
            "c1",
        );
        let seed_003 = (
            format!("003-n{}-c1.conf", i + 1),
            format!("n{}-c1", i + 1),
            "C1",
        );
        for (file, server_name, cluster_name) in [seed_001, seed_003] {
            let o = load(&file);
            assert_eq!(
                o.server_name.as_deref(),
                Some(server_name.as_str()),
                "{file}"
            );
            assert_eq!((o.host.as_str(), o.port), ("0.0.0.0", 4222), "{file}");
            let js = o.jetstream.as_ref().expect("jetstream enabled");
            assert_eq!(js.store_dir.as_deref(), Some("/nats/storage"), "{file}");
            let c = o.cluster.as_ref().expect("cluster block");
            assert_eq!(c.name.as_deref(), Some(cluster_name), "{file}");
            assert_eq!((c.host.as_str(), c.port), ("localhost", 6222), "{file}");
            assert_eq!(
                c.routes,
                routes_to_others(&hosts, i, "nats-route"),
                "{file}"
            );
            assert!(o.accounts.is_empty() && o.authorization.is_none(), "{file}");
        }
    }
}

fn routes_to_others(hosts: &[&str], me: usize, scheme: &str) -> Vec<String> {
    (0..hosts.len())
        .filter(|i| *i != me)
        .map(|i| format!("{scheme}://{}:6222", hosts[i]))
        .collect()
}

/// Seed 002: the same cluster with an `admin` user in the `$SYS` account, whose bcrypt
/// hash (of "a very long s3cr3t! password") survives untouched.
#[test]
fn system_account_cluster_nodes() {
    let hosts = ["host_a", "host_b", "host_c"];
    for i in 0..hosts.len() {
        let file = format!("002-sys-account-n{}-c1.conf", i + 1);
        let o = load(&file);
        assert_eq!(o.server_name, Some(format!("n{}-c1", i + 1)), "{file}");
        assert_eq!(o.port, 4222);
        assert_eq!(o.system_account.as_deref(), Some("$SYS"), "{file}");
        assert_eq!(o.accounts.len(), 1);
        let sys = &o.accounts[0];
        assert_eq!(sys.name, "$SYS");
        assert_eq!(sys.users.len(), 1);
        let admin = &sys.users[0];
        assert_eq!(admin.user, "admin");
        assert_eq!(admin.password.as_deref(), Some(BCRYPT_ADMIN), "{file}");
        assert_eq!(admin.account.as_deref(), Some("$SYS"));
        assert_eq!(
            o.jetstream.as_ref().unwrap().store_dir.as_deref(),
            Some("/nats/storage")
        );
        let c = o.cluster.as_ref().unwrap();
        assert_eq!(c.name.as_deref(), Some("C1"));
        assert_eq!((c.host.as_str(), c.port), ("0.0.0.0", 6222));
        assert_eq!(c.routes, routes_to_others(&hosts, i, "nats"), "{file}");
    }
}

/// Seed 004: the seed server listens for clients on 127.0.0.1:4222, monitors on
/// 127.0.0.1:8222 and takes routes on 127.0.0.1:4248.
#[test]
fn seed_server() {
    let o = load("004-seed.conf");
    assert_eq!((o.host.as_str(), o.port), ("127.0.0.1", 4222));
    assert_eq!(
        (o.http_host.as_deref(), o.http_port),
        (Some("127.0.0.1"), Some(8222))
    );
    let c = o.cluster.unwrap();
    assert_eq!((c.host.as_str(), c.port), ("127.0.0.1", 4248));
    assert!(c.routes.is_empty() && c.name.is_none());
    assert!(o.jetstream.is_none());
}

#[test]
fn cluster_host_and_port_given_separately() {
    let o = load("004-cluster-host-port.conf");
    let c = o.cluster.unwrap();
    assert_eq!((c.host.as_str(), c.port), ("127.0.0.1", 4248));
    assert_eq!(o.port, 4222);
}

/// The bcrypt hash is a plain string in the tree too, not a variable reference.
#[test]
fn bcrypt_hash_is_preserved_in_the_tree() {
    let map = conf::parse_file(&seed_path("002-sys-account-n1-c1.conf")).unwrap();
    let Value::Map(accounts) = &conf::get(&map, "accounts").unwrap().value else {
        panic!("accounts is a map")
    };
    let Value::Map(sys) = &conf::get(accounts, "$SYS").unwrap().value else {
        panic!("$SYS is a map")
    };
    let Value::Array(users) = &conf::get(sys, "users").unwrap().value else {
        panic!("users is an array")
    };
    let Value::Map(admin) = &users[0].value else {
        panic!("user is a map")
    };
    let pass = conf::get(admin, "pass").unwrap();
    assert_eq!(pass.value, Value::Str(BCRYPT_ADMIN.to_string()));
    assert_eq!((pass.pos.line, pass.pos.col), (11, 9));
}
