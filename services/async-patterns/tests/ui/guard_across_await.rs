// Does NOT compile, on purpose: a `std::sync::MutexGuard` is `!Send`, and holding it across
// an `.await` makes the whole future `!Send`, so `tokio::spawn` (and axum, for handlers)
// refuses it. The fix is in guard_scoped_before_await.rs. See ASYNC.md, "Send across .await".
use std::sync::{Arc, Mutex};

async fn bump(counter: Arc<Mutex<u64>>) {
    let mut guard = counter.lock().unwrap();
    *guard += 1;
    tokio::task::yield_now().await; // the guard is still alive here
    *guard += 1;
}

fn main() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        tokio::spawn(bump(Arc::new(Mutex::new(0)))).await.unwrap();
    });
}
