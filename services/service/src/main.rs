//! The `beacon-service` binary: configuration, logging, the listener and the shutdown signal;
//! everything else is the library (`beacon_service::run`).

use clap::Parser as _;
use std::io::Write as _;
use std::process::ExitCode;

fn main() -> ExitCode {
    let config = beacon_service::Config::parse();
    match beacon_os::block_on(None, start(config)).and_then(|r| r) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn start(config: beacon_service::Config) -> Result<(), String> {
    beacon_service::telemetry::init(&config)?;
    // Every client connection is a file descriptor: take the hard limit before listening.
    // `serve` then fits --max-connections into what there is, and warns when it had to.
    match beacon_service::fdlimit::raise() {
        Ok(r) if r.before != r.now => tracing::info!(
            "open-file limit raised from {} to {} (the hard limit)",
            beacon_service::fdlimit::show(r.before),
            beacon_service::fdlimit::show(r.now)
        ),
        Ok(r) => tracing::debug!("open-file limit {}", beacon_service::fdlimit::show(r.now)),
        Err(e) => tracing::warn!("{e}; --max-connections will be lowered to fit"),
    }
    config
        .check()
        .map_err(|e| format!("refusing to start: {e}"))?;
    let listener = tokio::net::TcpListener::bind(config.listen).await.map_err(|e| {
        format!("cannot listen on {}: {e}; pick another address with --listen (port 0 picks a free one)", config.listen)
    })?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    // Tests and scripts read this line to find the port when --listen asks for port 0
    // (`beacon_api::parse_listening`).
    println!("{}", beacon_service::model::listening_line(addr));
    let _ = std::io::stdout().flush();
    tracing::info!(%addr, db = %config.db_display(), "listening");
    beacon_service::run(config, listener, beacon_os::shutdown_signal())
        .await
        .map_err(|e| e.to_string())
}
