//! TLS to PostgreSQL (`store/pg_tls.rs`): a throwaway cluster with `ssl = on` and TCP without
//! TLS refused, its certificate (for IP 127.0.0.1 only) signed by a CA made here with the
//! `openssl` CLI. `sslmode=require` connects without checking the certificate; `verify-ca`
//! needs the CA in `sslrootcert`; `verify-full` also needs the host to match (127.0.0.1 does,
//! `localhost` does not); `disable` is refused by the server, which proves the others ran TLS.

use beacon_pgtemp::Cluster;
use beacon_service::Config;
use beacon_service::store::{DynStore, NewDevice};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("cannot run openssl: install it (Debian: apt-get install -y openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA (`name.crt`, `name.key`) in `dir`.
fn make_ca(dir: &Path, name: &str) {
    let (crt, key) = (format!("{name}.crt"), format!("{name}.key"));
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &crt,
            "-days",
            "2",
            "-subj",
            &format!("/CN=beacon test {name}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
}

/// `server.crt` / `server.key` for IP 127.0.0.1, signed by `ca`.
fn make_server_cert(dir: &Path) {
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
         keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=beacon test server",
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ],
    );
}

async fn open(url: &str) -> Result<Arc<dyn DynStore>, String> {
    beacon_service::open_any_store(&Config::for_db(url))
        .await
        .map_err(|e| e.to_string())
}

/// Opening `url` fails with an error that says `needle`; `what` names the case.
async fn refused(url: &str, what: &str, needle: &str) {
    let err = open(url).await.err();
    eprintln!("{what}: {err:?}");
    assert!(
        err.as_deref().is_some_and(|e| e.contains(needle)),
        "{what}: not refused with an error naming {needle:?}: {err:?}"
    );
}

/// Opens, checks readiness (a pool connection), registers a device (a write) and reads it
/// back: every kind of connection the store makes, over TLS.
async fn works(url: &str) {
    let store = open(url).await.unwrap_or_else(|e| panic!("{url}: {e}"));
    store.ready().await.unwrap();
    store
        .register(NewDevice {
            id: None,
            token: beacon_service::store::token_hash("t"),
            name: None,
        })
        .await
        .unwrap();
    assert!(!store.devices().await.unwrap().is_empty());
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sslmode_require_verify_ca_and_verify_full_against_a_tls_only_cluster() {
    let certs = tempfile::tempdir().unwrap();
    let dir = certs.path();
    make_ca(dir, "ca");
    make_ca(dir, "other-ca");
    make_server_cert(dir);
    let cluster = Cluster::builder()
        .tls(dir.join("server.crt"), dir.join("server.key"))
        .start()
        .unwrap();
    let db = Cluster::db_name(&cluster.fresh_db().unwrap()).to_owned();
    let port = cluster.port();
    let ca = dir.join("ca.crt").display().to_string();
    let other = dir.join("other-ca.crt").display().to_string();
    let url = |host: &str, params: &str| format!("postgres://beacon@{host}:{port}/{db}?{params}");

    // The server takes TLS only: plain TCP is refused.
    refused(
        &url("127.0.0.1", "sslmode=disable"),
        "sslmode=disable",
        "pg_hba.conf",
    )
    .await;
    works(&url("127.0.0.1", "sslmode=require")).await;
    // libpq's default mode: TLS when offered.
    works(&url("127.0.0.1", "application_name=x")).await;
    works(&url(
        "127.0.0.1",
        &format!("sslmode=verify-ca&sslrootcert={ca}"),
    ))
    .await;
    works(&url(
        "127.0.0.1",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    ))
    .await;
    // The certificate names 127.0.0.1, not localhost: the chain is good, the name is not.
    works(&url(
        "localhost",
        &format!("sslmode=verify-ca&sslrootcert={ca}"),
    ))
    .await;
    refused(
        &url(
            "localhost",
            &format!("sslmode=verify-full&sslrootcert={ca}"),
        ),
        "verify-full, wrong name",
        "certificate",
    )
    .await;
    for mode in ["verify-ca", "verify-full", "require"] {
        refused(
            &url("127.0.0.1", &format!("sslmode={mode}&sslrootcert={other}")),
            &format!("{mode}, a certificate its sslrootcert did not sign"),
            "certificate",
        )
        .await;
    }
    // Mistakes in the URL say what to fix.
    refused(
        &url("127.0.0.1", "sslmode=verify"),
        "sslmode=verify",
        "sslmode=verify is not one of",
    )
    .await;
    refused(
        &url(
            "127.0.0.1",
            "sslmode=verify-full&sslrootcert=/nonexistent.pem",
        ),
        "sslrootcert=/nonexistent.pem",
        "cannot read sslrootcert=/nonexistent.pem",
    )
    .await;
}
