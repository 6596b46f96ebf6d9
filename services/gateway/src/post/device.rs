//! A device's task: gathers its readings into batches (linger, `batch_max`), registers the
//! device on first sight (and again when the service forgot it), hands each batch to a
//! replica's coalescer, fails over across replicas, backs off, and acks what the service
//! committed back to the device.

use super::{Failure, Poster, acks_for};
use crate::link::{Backoff, Pending};
use crate::model::{IngestOutcome, now_millis};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use tokio::sync::mpsc;

/// What a device task works on while it delivers a batch ([`Poster::deliver`]).
struct DeviceState<'a> {
    id: u32,
    token: &'a str,
    /// Whether this gateway registered the device (again after the service forgot it).
    registered: &'a mut bool,
    rx: &'a mut mpsc::UnboundedReceiver<Pending>,
    batch: &'a mut Vec<Pending>,
    /// Most readings per batch.
    max: usize,
}

/// Adds what is already queued for the device to its batch, up to `max` readings.
fn top_up(rx: &mut mpsc::UnboundedReceiver<Pending>, batch: &mut Vec<Pending>, max: usize) {
    while batch.len() < max {
        match rx.try_recv() {
            Ok(p) => batch.push(p),
            Err(_) => break,
        }
    }
}

impl Poster {
    /// One device: batch, post, retry.
    pub(super) async fn device(self: Arc<Self>, id: u32, mut rx: mpsc::UnboundedReceiver<Pending>) {
        let token = self.config.token_for(id);
        let max = self.config.batch_max.max(1);
        let mut registered = false;
        let mut batch: Vec<Pending> = Vec::with_capacity(max);
        loop {
            if batch.is_empty() && !self.first_readings(&mut rx, &mut batch, max).await {
                return;
            }
            top_up(&mut rx, &mut batch, max);
            let mut device = DeviceState {
                id,
                token: &token,
                registered: &mut registered,
                rx: &mut rx,
                batch: &mut batch,
                max,
            };
            if !self.deliver(&mut device).await {
                return;
            }
        }
    }

    /// Waits for a reading to start a batch, then up to `linger` for company. `false`: every
    /// link is gone and nothing is left to send.
    async fn first_readings(
        &self,
        rx: &mut mpsc::UnboundedReceiver<Pending>,
        batch: &mut Vec<Pending>,
        max: usize,
    ) -> bool {
        match rx.recv().await {
            Some(p) => batch.push(p),
            None => return false,
        }
        if !self.config.linger.is_zero() {
            let deadline = tokio::time::Instant::now() + self.config.linger;
            while batch.len() < max {
                tokio::select! {
                    p = rx.recv() => match p {
                        Some(p) => batch.push(p),
                        None => break,
                    },
                    () = tokio::time::sleep_until(deadline) => break,
                }
            }
        }
        true
    }

    /// Posts the device's batch until the service took it (or rejected it for good), failing
    /// over across replicas and backing off between rounds. `false`: given up at the end of the
    /// shutdown drain (the readings are counted as dropped).
    async fn deliver(&self, d: &mut DeviceState<'_>) -> bool {
        let id = d.id;
        let mut backoff = Backoff::new(self.config.retry_base, self.config.retry_max);
        // Spread: each batch starts at the next replica in turn. Fail over: a retryable
        // failure moves the batch to the next replica at once, until each was tried once
        // in this round; then the usual backoff (every replica is busy or down).
        let replicas = self.config.services.len();
        let mut pick = self.next.fetch_add(1, Relaxed) % replicas;
        let mut tried = 0;
        loop {
            let result = self.attempt(pick, d).await;
            if matches!(result, Err(Failure::Retry { .. })) {
                tried += 1;
                pick = (pick + 1) % replicas;
                if tried < replicas {
                    self.metrics.retries.fetch_add(1, Relaxed);
                    tracing::debug!(
                        "device {id}: failing over to {}",
                        self.config.services[pick]
                    );
                    continue;
                }
                tried = 0;
            }
            let (why, after) = match result {
                Ok(outcome) => {
                    self.delivered(id, d.batch, &outcome, &backoff);
                    return true;
                }
                Err(Failure::Rejected(why)) => {
                    self.rejected(id, d.batch, &why);
                    return true;
                }
                Err(Failure::Unregistered) => {
                    *d.registered = false;
                    (
                        "the service does not know the device; registering it again".to_owned(),
                        None,
                    )
                }
                Err(Failure::Refused(why)) => {
                    tracing::error!("device {id}: {why}");
                    (why, Some(self.config.retry_max))
                }
                Err(Failure::Retry { why, after }) => (why, after),
            };
            if !self.retry_later(d, &why, after, &mut backoff).await {
                return false;
            }
            // Catch up in bigger requests once the service is back.
            top_up(d.rx, d.batch, d.max);
        }
    }

    /// One try at service `pick`: registers the device first when it is not (yet, or any
    /// more), then ingests the batch.
    async fn attempt(
        &self,
        pick: usize,
        d: &mut DeviceState<'_>,
    ) -> Result<IngestOutcome, Failure> {
        if !*d.registered {
            let service = &self.config.services[pick];
            self.register(service, d.id, d.token).await?;
            *d.registered = true;
        }
        self.ingest(pick, d.id, d.token, d.batch).await
    }

    /// The service committed the batch (2xx): count it, and only now ack it to the devices.
    fn delivered(
        &self,
        id: u32,
        batch: &mut Vec<Pending>,
        outcome: &IngestOutcome,
        backoff: &Backoff,
    ) {
        let now = now_millis();
        let latencies: Vec<u64> = batch
            .iter()
            .map(|p| u64::try_from(now - p.reading.sampled_at_ms.unwrap_or(now)).unwrap_or(0))
            .collect();
        self.metrics
            .acked(id, outcome.accepted, outcome.duplicates, &latencies);
        if outcome.accepted + outcome.duplicates != batch.len() {
            tracing::warn!(
                "device {id}: sent {} readings, the service acknowledged {} new + {} duplicates",
                batch.len(),
                outcome.accepted,
                outcome.duplicates
            );
        }
        if backoff.attempts() > 0 {
            tracing::info!(
                "device {id}: delivered after {} retries",
                backoff.attempts()
            );
        }
        self.metrics.buffered.fetch_sub(batch.len() as u64, Relaxed);
        // Committed (2xx): now, and only now, tell the devices.
        for (sink, ack) in acks_for(batch) {
            let _ = sink.send(beacon_protocol::Downlink::Ack(ack));
        }
        batch.clear();
    }

    /// The service will never take the batch: count it as rejected, loudly, and ack it.
    fn rejected(&self, id: u32, batch: &mut Vec<Pending>, why: &str) {
        tracing::error!(
            "device {id}: the service rejected {} readings for good: {why}",
            batch.len()
        );
        self.metrics.rejected.fetch_add(batch.len() as u64, Relaxed);
        self.metrics.buffered.fetch_sub(batch.len() as u64, Relaxed);
        // Acked too: the service will never take them, so the device keeping
        // them would only block its outbox (the loss is counted as `rejected`).
        for (sink, ack) in acks_for(batch) {
            let _ = sink.send(beacon_protocol::Downlink::Ack(ack));
        }
        batch.clear();
    }

    /// Counts a retry and sleeps its backoff (at least the service's `Retry-After`, at most
    /// `retry_max`). `false`: the shutdown drain ended first; the batch and everything queued
    /// for the device are dropped and counted.
    async fn retry_later(
        &self,
        d: &mut DeviceState<'_>,
        why: &str,
        after: Option<Duration>,
        backoff: &mut Backoff,
    ) -> bool {
        let id = d.id;
        self.metrics.retries.fetch_add(1, Relaxed);
        let n = backoff.attempts();
        let delay = backoff
            .next_delay()
            .max(after.unwrap_or_default().min(self.config.retry_max));
        if n == 0 || n % 10 == 9 {
            tracing::warn!(
                "device {id}: {why}; {} readings kept, retry #{} in {} ms",
                d.batch.len(),
                n + 1,
                delay.as_millis()
            );
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => true,
            () = self.give_up.cancelled() => {
                let mut lost = d.batch.len();
                d.batch.clear();
                d.rx.close();
                while d.rx.try_recv().is_ok() {
                    lost += 1;
                }
                tracing::error!(
                    "device {id}: the service stayed unreachable through the shutdown drain: {lost} readings dropped"
                );
                self.give_up_on(lost);
                false
            }
        }
    }
}
