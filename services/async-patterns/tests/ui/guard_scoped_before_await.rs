// The fix for guard_across_await.rs: end the guard's scope before the `.await` (a block, or
// a small non-async helper as `AppState::token_of` does in src/api/mod.rs). If a lock must be
// held across an await, use `tokio::sync::Mutex`, whose guard is `Send`.
use std::sync::{Arc, Mutex};

async fn bump(counter: Arc<Mutex<u64>>) {
    {
        let mut guard = counter.lock().unwrap();
        *guard += 1;
    } // guard dropped here
    tokio::task::yield_now().await;
    *counter.lock().unwrap() += 1;
}

fn main() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let counter = Arc::new(Mutex::new(0));
    rt.block_on(async {
        tokio::spawn(bump(Arc::clone(&counter))).await.unwrap();
    });
    assert_eq!(*counter.lock().unwrap(), 2);
}
