//! Reloading the config file on SIGHUP: users and passwords (of the accounts that
//! exist) and the cluster's routes take effect at once; anything else needs a
//! restart and says so.

use crate::options::Options;
use crate::server::accounts::Accounts;
use crate::server::auth::Auth;
use crate::server::shard::Shard;
use tracing::{error, info, warn};

pub fn reload(shard: &Shard) {
    let server = &shard.server;
    let Some(path) = server.config_file.as_deref() else {
        warn!("Reload requested, but the server was not started with a config file");
        return;
    };
    let opts = match Options::load(std::path::Path::new(path)) {
        Ok(o) => o,
        Err(e) => {
            error!("Failed to reload server configuration: {e}");
            return;
        }
    };
    if Accounts::from_options(&opts).len() != server.accounts.len() {
        warn!("Reload: adding or removing accounts needs a restart; keeping the current accounts");
    } else {
        match Auth::from_options(&opts, &server.accounts) {
            Ok(auth) => server.replace_auth(auth),
            Err(e) => {
                error!("Failed to reload authorization: {e}");
                return;
            }
        }
    }
    if let (Some(routes), Some(cluster)) = (&shard.routes, &opts.cluster) {
        if let Some(shard_rc) = shard.this() {
            routes.reload_configured(&shard_rc, &cluster.routes);
        }
    }
    info!("Reloaded server configuration");
}
