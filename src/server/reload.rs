//! Reloading the config file on SIGHUP: users and passwords (of the accounts that
//! exist), the cluster's routes and TLS certificates (for new connections) take
//! effect at once; anything else needs a restart and says so.

use crate::options::Options;
use crate::server::accounts::Accounts;
use crate::server::auth::Auth;
use crate::server::shard::Shard;
use crate::server::Server;
use crate::tls::Contexts;
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
    reload_tls(server, &opts);
    if let (Some(routes), Some(cluster)) = (&shard.routes, &opts.cluster) {
        if let Some(shard_rc) = shard.this() {
            routes.reload_configured(&shard_rc, &cluster.routes);
        }
    }
    info!("Reloaded server configuration");
}

/// New certificates for new connections; turning TLS on or off needs a restart,
/// since clients were told at connect whether it is required.
fn reload_tls(server: &Server, opts: &Options) {
    let route_tls = |o: &Options| o.cluster.as_ref().is_some_and(|c| c.tls.is_some());
    if opts.tls.is_some() != server.opts.tls.is_some() || route_tls(opts) != route_tls(&server.opts)
    {
        warn!("Reload: turning TLS on or off needs a restart; keeping the current TLS settings");
        return;
    }
    match Contexts::from_options(opts) {
        Ok(tls) => server.replace_tls(tls),
        Err(e) => error!("Failed to reload TLS configuration: {e}"),
    }
}
