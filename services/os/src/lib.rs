//! What the binaries (service, gateway, simulator) ask of the operating system, in one place
//! instead of a copy in each: the open-file limit ([`fdlimit`]) and the shutdown signal
//! ([`shutdown_signal`]).

pub mod fdlimit;

/// Completes on Ctrl-C (SIGINT) or SIGTERM (what systemd, Docker and Kubernetes send), and
/// logs which; a signal that cannot be installed never fires (the other still works).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("received ctrl-c"),
        () = term => tracing::info!("received sigterm"),
    }
}
