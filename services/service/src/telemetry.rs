//! Logging (tracing + EnvFilter) and, with the `console` feature, the tokio-console layer.

use crate::config::Config;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

/// Installs the global subscriber: formatted logs on stderr filtered by `RUST_LOG` (or
/// `--log`), plus the console layer when `--console` is given and the feature is compiled in.
pub fn init(config: &Config) -> Result<(), String> {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.log))
        .map_err(|e| {
            format!(
                "bad log filter {:?}: {e}; see the tracing EnvFilter syntax",
                config.log
            )
        })?;
    // The filter is attached to the fmt layer only: the console layer needs tokio's own
    // trace-level spans, which must not be printed.
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_filter(filter);
    let registry = tracing_subscriber::registry().with(fmt);
    #[cfg(feature = "console")]
    {
        if config.console {
            return registry
                .with(console_layer(config)?)
                .try_init()
                .map_err(|e| e.to_string());
        }
    }
    #[cfg(not(feature = "console"))]
    if config.console {
        return Err(
            "--console needs the `console` cargo feature: build with `--features console`".into(),
        );
    }
    registry.try_init().map_err(|e| e.to_string())
}

/// The console layer, bound to loopback, with a short retention so memory stays bounded when
/// clients churn connections (~50 KB per finished task for the retention period, measured by `cargo xtask bench-service`).
#[cfg(feature = "console")]
pub fn console_layer<S>(config: &Config) -> Result<impl tracing_subscriber::Layer<S>, String>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    if !config.console_addr.ip().is_loopback() {
        return Err(format!(
            "refusing to serve the console on {}: it exposes the runtime's internals; use a loopback address (ssh -L to reach it remotely)",
            config.console_addr
        ));
    }
    let retention = std::time::Duration::from_millis(config.console_retention_ms);
    let publish = std::time::Duration::from_millis(config.console_publish_ms.max(50));
    Ok(console_subscriber::ConsoleLayer::builder()
        .server_addr(config.console_addr)
        .retention(retention)
        .publish_interval(publish)
        .event_buffer_capacity(config.console_event_buffer.max(256))
        .spawn())
}
