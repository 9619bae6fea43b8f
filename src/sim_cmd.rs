//! `fogbook sim serve`: runs the ARM emulator as its own process, so tests and rehearsals can
//! kill the engine without killing the cloud.

use fogbook_sim::{Estate, FaultConfig, SimConfig, TlsFiles};

use crate::cli::SimServeArgs;
use crate::error::{CliError, fail};
use crate::exit::Exit;
use crate::output;

pub(crate) async fn serve(args: &SimServeArgs) -> Exit {
    let estate = match Estate::load(&args.estate) {
        Ok(e) => e,
        Err(e) => {
            return fail(CliError::input(
                e,
                Some("the estate format is described in sim/README.md"),
            ));
        }
    };
    let faults = match args.faults.as_deref().map(FaultConfig::load).transpose() {
        Ok(f) => f,
        Err(e) => {
            return fail(CliError::input(
                e,
                Some("the faults format is described in sim/README.md"),
            ));
        }
    };
    if !(args.time_scale.is_finite() && args.time_scale >= 0.0) {
        return fail(CliError::usage("--time-scale must be a number ≥ 0", None));
    }
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(TlsFiles {
            cert_pem: cert.clone(),
            key_pem: key.clone(),
        }),
        _ => None,
    };
    let config = SimConfig {
        estate,
        listen: args.listen,
        time_scale: args.time_scale,
        state_file: args.state.clone(),
        clock_runs_while_stopped: false,
        faults,
        token: args.token.clone(),
        tls,
        observer: None,
    };
    // Listen for the stop signals before the URL is printed, so a caller that reads the URL
    // and signals at once is not killed by the default disposition.
    let stop = stop_signal();
    let handle = match fogbook_sim::start(config).await {
        Ok(h) => h,
        Err(e) => {
            return fail(CliError::input(e, None));
        }
    };
    let url = handle.base_url();
    if let Some(path) = &args.port_file {
        // Write then rename, so a script polling for the file never reads half of it.
        let tmp = path.with_extension("tmp");
        if let Err(e) = std::fs::write(&tmp, format!("{url}\n")).and_then(|()| std::fs::rename(&tmp, path)) {
            handle.shutdown().await;
            return fail(CliError::usage(
                format!("cannot write --port-file {}: {e}", path.display()),
                Some("pass a --port-file in a folder this user can write"),
            ));
        }
    }
    output::data(&url);
    stop.cancelled().await;
    handle.shutdown().await;
    Exit::Success
}

/// A token cancelled on Ctrl-C or SIGTERM; the handlers are installed before it returns.
fn stop_signal() -> tokio_util::sync::CancellationToken {
    let token = tokio_util::sync::CancellationToken::new();
    crate::signals::spawn_signal_handler(token.clone(), true);
    token
}
