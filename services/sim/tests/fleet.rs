//! The simulator against the real service (SQLite in a temp dir) and the real gateway, both
//! in-process on 127.0.0.1: a small fleet with disconnects and reboots loses nothing.

use clap::Parser as _;
use std::sync::Arc;

/// A free port for the gateway's listen link (the gateway binds it itself, so it cannot take
/// port 0 and report back; the window between this probe and its bind is tiny).
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_with_disconnects_and_reboots_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = beacon_service::Config::for_db(dir.path().join("t.db"));
    let store = beacon_service::open_store(&config).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let service_url = format!("http://{}", listener.local_addr().unwrap());
    let (stop_service, service_stopped) = tokio::sync::oneshot::channel::<()>();
    let service = tokio::spawn(beacon_service::serve(
        config,
        Arc::new(store),
        listener,
        async move {
            let _ = service_stopped.await;
        },
    ));

    let link = format!("127.0.0.1:{}", free_port());
    let gateway_config = beacon_gateway::Config::try_parse_from([
        "beacon-gateway",
        "--link",
        &format!("listen:{link}"),
        "--service",
        &service_url,
        "--log-interval-secs",
        "0",
    ])
    .unwrap();
    let (stop_gateway, gateway_stopped) = tokio::sync::oneshot::channel::<()>();
    let gateway = tokio::spawn(beacon_gateway::run(gateway_config, async move {
        let _ = gateway_stopped.await;
    }));
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;

    let sim = beacon_sim::Config::try_parse_from([
        "beacon-sim",
        "--gateway",
        &link,
        "--service",
        &service_url,
        "--devices",
        "20",
        "--rate",
        "5",
        "--duration-secs",
        "4",
        "--disconnect-every-secs",
        "1.5",
        "--reboot-every-secs",
        "3",
        "--drain-secs",
        "20",
    ])
    .unwrap();
    let report = beacon_sim::run(sim).await.unwrap();
    eprintln!("{}", report.line());

    assert_eq!(report.lost, 0, "{report:?}");
    assert_eq!(report.unacked_at_end, 0, "{report:?}");
    // Every frame built is stored, apart from what a device dropped itself (a reboot before
    // its outbox emptied; the outbox never overflows here).
    assert_eq!(
        report.stored,
        report.built - report.lost_at_reboot,
        "{report:?}"
    );
    assert!(report.built >= 20 * 4 * 5 / 2, "{report:?}");
    // The faults happened: reconnects, reboots, re-sends after the gateway's replay request.
    assert!(report.connects > 20, "{report:?}");
    assert!(report.boots > 20, "{report:?}");
    assert!(report.resent > 0, "{report:?}");
    assert!(report.latency_samples > 0, "{report:?}");

    stop_gateway.send(()).unwrap();
    let stats = gateway.await.unwrap().unwrap();
    assert_eq!(stats.dropped, 0);
    // Delivered through the multi-device ingest: each request carried one or more devices.
    assert!(stats.requests > 0, "{stats:?}");
    assert!(stats.request_entries >= stats.requests, "{stats:?}");
    stop_service.send(()).unwrap();
    service.await.unwrap().unwrap();
}
