//! `--db postgres --replicas N`: the demo's database (a SQLite file, or a throwaway local
//! PostgreSQL cluster from `beacon-pgtemp`) and what each service replica took, read from its
//! `GET /metrics`.

use std::ffi::OsString;
use std::path::Path;

/// Which backend the demo's service replicas share.
#[derive(Debug)]
pub enum Db {
    /// A SQLite file (one replica only: the file is the service's own).
    Sqlite(std::path::PathBuf),
    /// A database in a throwaway local cluster, stopped and removed with this value (and by
    /// its watchdog if the demo is killed).
    Postgres {
        /// The cluster.
        cluster: beacon_pgtemp::Cluster,
        /// The database's `postgres://` URL (`--db` of every replica).
        url: String,
    },
}

impl Db {
    /// `sqlite` (a file in `workdir`) or `postgres` (a cluster in `workdir/pg`); `replicas`
    /// above 1 needs `postgres`.
    pub fn open(kind: &str, replicas: u32, workdir: &Path) -> Result<Self, String> {
        match kind {
            "sqlite" if replicas > 1 => Err(format!(
                "--replicas {replicas} needs --db postgres: SQLite is one file owned by one \
                 service process, so replicas need a shared database (add --db postgres, or \
                 drop --replicas)"
            )),
            "sqlite" => Ok(Self::Sqlite(workdir.join("demo.db"))),
            "postgres" => {
                let cluster = beacon_pgtemp::Cluster::builder()
                    .dir(workdir.join("pg"))
                    .start()
                    .map_err(|e| format!("cannot start the demo's PostgreSQL: {e}"))?;
                cluster.remove_when_gone()?;
                let url = cluster.create_db("demo")?;
                Ok(Self::Postgres { cluster, url })
            }
            other => Err(format!("--db {other}: expected `sqlite` or `postgres`")),
        }
    }

    /// The services' `--db` argument.
    pub fn arg(&self) -> OsString {
        match self {
            Self::Sqlite(p) => p.clone().into(),
            Self::Postgres { url, .. } => url.into(),
        }
    }

    /// One line for the header.
    pub fn describe(&self) -> String {
        match self {
            Self::Sqlite(p) => format!("SQLite {}", p.display()),
            Self::Postgres { cluster, url } => format!(
                "PostgreSQL {url} (throwaway cluster in {}, removed at exit)",
                cluster.dir().display()
            ),
        }
    }
}

/// What one replica took since it started, from its `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Took {
    /// Ingest requests it answered 200 (the gateway's batches).
    pub batches: u64,
    /// Readings it stored (`beacon_ingest_readings{result="accepted"}`).
    pub readings: u64,
}

impl Took {
    /// From an OpenMetrics exposition.
    pub fn parse(metrics: &str) -> Self {
        let mut took = Self::default();
        for line in metrics.lines() {
            let Some((name, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(v) = value.parse::<f64>() else {
                continue;
            };
            let v = v as u64;
            // The gateway's batches: one device's (`/devices/{id}/readings`) or many devices'
            // in one request (`/api/v1/readings`, what the gateway sends by default).
            if name.starts_with("beacon_http_requests_total{")
                && (name.contains("route=\"/api/v1/devices/{id}/readings\"")
                    || name.contains("route=\"/api/v1/readings\""))
                && name.contains("method=\"POST\"")
                && name.contains("status=\"200\"")
            {
                took.batches += v;
            } else if name == "beacon_ingest_readings_total{result=\"accepted\"}" {
                took.readings += v;
            }
        }
        took
    }

    /// Asks the replica at `base`.
    pub async fn of(client: &reqwest::Client, base: &str) -> Result<Self, String> {
        let url = format!("{base}/metrics");
        let text = client
            .get(&url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| format!("GET {url}: {e}"))?
            .text()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        Ok(Self::parse(&text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn took_reads_batches_and_readings_from_the_exposition() {
        let text = "# TYPE beacon_http_requests counter\n\
            beacon_http_requests_total{route=\"/api/v1/devices/{id}/readings\",method=\"POST\",status=\"200\"} 12\n\
            beacon_http_requests_total{route=\"/api/v1/devices/{id}/readings\",method=\"POST\",status=\"503\"} 3\n\
            beacon_http_requests_total{route=\"/api/v1/devices/{id}/readings\",method=\"GET\",status=\"200\"} 40\n\
            beacon_http_requests_total{route=\"/api/v1/devices\",method=\"POST\",status=\"200\"} 2\n\
            beacon_http_requests_total{route=\"/api/v1/readings\",method=\"POST\",status=\"200\"} 5\n\
            beacon_ingest_readings_total{result=\"accepted\"} 345\n\
            beacon_ingest_readings_total{result=\"duplicate\"} 7\n\
            # EOF\n";
        assert_eq!(
            Took::parse(text),
            Took {
                batches: 17,
                readings: 345
            }
        );
    }

    #[test]
    fn replicas_without_postgres_are_refused_before_anything_starts() {
        let dir = tempfile::tempdir().unwrap();
        let e = Db::open("sqlite", 2, dir.path()).unwrap_err();
        assert!(e.contains("--replicas 2 needs --db postgres"), "{e}");
        assert!(Db::open("mysql", 1, dir.path()).is_err());
        assert!(matches!(
            Db::open("sqlite", 1, dir.path()),
            Ok(Db::Sqlite(_))
        ));
    }
}
