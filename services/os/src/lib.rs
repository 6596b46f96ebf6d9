//! What the binaries (service, gateway, simulator) ask of the operating system, in one place
//! instead of a copy in each: the open-file limit ([`fdlimit`]), the async runtime
//! ([`block_on`]) and the shutdown signal ([`shutdown_signal`]).

pub mod fdlimit;

/// Runs `main` to completion on a multi-threaded tokio runtime with every driver on (`workers`
/// threads; `None`: one per core). Each binary's `main` is this and its exit code; `Err` when
/// the runtime cannot start (out of threads or file descriptors), said in one line.
///
/// Why not `#[tokio::main]`: the binaries do their synchronous start-up (arguments, logging,
/// the open-file limit) before any runtime thread exists, and the gateway sizes its runtime.
pub fn block_on<F: std::future::Future>(
    workers: Option<usize>,
    main: F,
) -> Result<F::Output, String> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = workers {
        builder.worker_threads(n);
    }
    let runtime = builder
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    Ok(runtime.block_on(main))
}

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
