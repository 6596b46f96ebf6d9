//! Section 2, Miri over the protocol crate's tests on the pinned nightly.

use super::*;

pub(super) fn miri(ctx: &Ctx) -> Section {
    let mut s = Section::new(
        "miri",
        "Miri (undefined-behaviour checker) over the protocol tests",
    );
    if components(&ctx.nightly).is_none() {
        return s.not_run(format!(
            "toolchain {} missing, install with `rustup toolchain install {} --profile minimal \
             --component miri,rust-src` (or `cargo xtask safety --install`)",
            ctx.nightly, ctx.nightly
        ));
    }
    if !has_component(&ctx.nightly, "miri") {
        return s.not_run(format!(
            "miri missing, install with `rustup component add miri rust-src --toolchain {}` \
             (or `cargo xtask safety --install`)",
            ctx.nightly
        ));
    }
    let flags = "-Zmiri-disable-isolation";
    let mut cmd = cargo(ctx, &ctx.nightly);
    cmd.args(["miri", "test", "-p", "beacon-protocol"])
        .env("PROPTEST_CASES", MIRI_PROPTEST_CASES)
        .env("MIRIFLAGS", flags);
    let ran = run_logged(cmd, &ctx.log("miri"));
    let results = parse_libtest(&ran.output);
    let (passed, failed, ignored) = test_counts(&results);
    let ub = ran.output.contains("Undefined Behavior");
    s.status = if ran.ok && failed == 0 && passed > 0 {
        Status::Pass
    } else {
        Status::Fail
    };
    s.summary = if s.status == Status::Pass {
        format!("clean: {passed} tests passed under Miri, no undefined behaviour reported")
    } else if ub {
        "Miri reported undefined behaviour".into()
    } else {
        format!("{failed} tests failed under Miri (or Miri did not complete)")
    };
    let mut body = format!(
        "`cargo +{} miri test -p beacon-protocol` with `MIRIFLAGS={flags}` and \
         `PROPTEST_CASES={MIRI_PROPTEST_CASES}`.\n\n\
         - result: **{}**\n- tests: {passed} passed, {failed} failed, {ignored} ignored \
         (unit, property, vector and doc tests)\n",
        ctx.nightly,
        s.status.as_str()
    );
    body.push_str(
        "\nWhat this shows: every test of the crate ran in Miri's interpreter, which checks each \
         memory access, alignment, initialisation and arithmetic overflow at run time, with no \
         undefined behaviour found. The crate has no `unsafe` (`forbid(unsafe_code)`), so this \
         mostly guards the standard library paths it uses and any future `unsafe`.\n\n\
         What it does not show: the property tests run only \
         a few cases each under Miri (interpretation is slow; they run 2000 cases each natively). \
         Isolation is disabled so that proptest can read its environment and regression files; \
         the code under test does no I/O.\n",
    );
    if ub {
        body.push_str("\n**Miri reported undefined behaviour**: see the log.\n");
    }
    let _ = writeln!(body, "\nLog: `{}`", ctx.shown("miri"));
    s.body = body;
    s.put("toolchain", json!(&ctx.nightly));
    s.put("miriflags", json!(flags));
    s.put("proptest_cases", json!(MIRI_PROPTEST_CASES));
    s.put("passed", json!(passed));
    s.put("failed", json!(failed));
    s.put("ignored", json!(ignored));
    s.put("undefined_behavior_reported", json!(ub));
    s
}

// ---------------------------------------------------------------------------------------------
