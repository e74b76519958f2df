//! The fuzz target for `ferkit serve`'s request handling: the input is read as an HTTP request
//! (`METHOD TARGET` on the first line, `Name: value` header lines, an empty line, the body) and
//! handed to the server's axum router with the shipped model, as hyper would hand it over after
//! parsing the bytes (hyper's own parser is fuzzed upstream). Any answer is a pass; a panic in a
//! handler, a hang or an allocation past libFuzzer's limit is a failure. A 5xx answer other than
//! 503 (overloaded) and 408 (timed out) is a failure too: it means the server failed, not the
//! request.

use std::sync::OnceLock;

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use ferkit::prediction::EmotionClassifier;
use ferkit::trained::ModelSource;
use tower::ServiceExt;

struct App {
    runtime: tokio::runtime::Runtime,
    router: Router,
}

fn app() -> &'static App {
    static APP: OnceLock<App> = OnceLock::new();
    APP.get_or_init(|| {
        crate::limits::set_limits();
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let classifier = EmotionClassifier::load(&ModelSource::Shipped).expect("the shipped model loads");
        let router =
            runtime.block_on(async { ferkit_serve::router(classifier, ferkit_serve::ServeOptions::default()) });
        App { runtime, router }
    })
}

/// The request `data` spells, or `None` when it is not one (hyper would have refused it).
fn request(data: &[u8]) -> Option<Request<Body>> {
    let head_end = data.windows(2).position(|w| w == b"\n\n").map(|p| (p, p + 2)).unwrap_or((data.len(), data.len()));
    let head = std::str::from_utf8(&data[..head_end.0]).ok()?;
    let body = data[head_end.1..].to_vec();
    let mut lines = head.lines();
    let (method, target) = lines.next()?.split_once(' ')?;
    let mut builder = Request::builder().method(method).uri(target);
    for line in lines {
        let (name, value) = line.split_once(':')?;
        builder = builder.header(name.trim(), value.trim());
    }
    builder.body(Body::from(body)).ok()
}

pub fn serve_request(data: &[u8]) {
    let app = app();
    let Some(request) = request(data) else { return };
    let status = app.runtime.block_on(async {
        let response = app.router.clone().oneshot(request).await.expect("axum's router is infallible");
        let status = response.status();
        // Read the whole answer, as a client would.
        let _ = axum::body::to_bytes(response.into_body(), usize::MAX).await;
        status
    });
    assert!(
        !status.is_server_error() || status.as_u16() == 503 || status.as_u16() == 408,
        "the server failed: {status}"
    );
}
