//! `file:` links: a recorded byte stream, read once.

use super::event::LinkEvent;
use super::pump::read_into;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Reads the file to its end (the end of the link).
pub async fn read_file(
    path: &std::path::Path,
    mut tx: mpsc::Sender<LinkEvent>,
    cancel: &CancellationToken,
) -> std::io::Result<()> {
    let mut file = tokio::fs::File::open(path).await?;
    if tx.send(LinkEvent::Connected).await.is_err() {
        return Ok(());
    }
    match read_into(&mut file, &mut tx, cancel).await {
        // The end of a file is the end of the link, not an error.
        Some(_) | None => Ok(()),
    }
}
