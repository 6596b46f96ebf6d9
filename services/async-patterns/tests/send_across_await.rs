//! Compile-time checks for services/service/ASYNC.md, "Send across .await": a non-`Send` guard held across an
//! `.await` is rejected with "future cannot be sent between threads safely"; the fix compiles.
//! The expected compiler output is tests/ui/guard_across_await.stderr (pinned toolchain;
//! refresh with `TRYBUILD=overwrite` after a toolchain bump and review the diff).

#[test]
fn a_std_mutex_guard_held_across_await_does_not_compile_and_the_fix_does() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/guard_across_await.rs");
    t.pass("tests/ui/guard_scoped_before_await.rs");
}
