//! `ferkit serve`: the emotion API over HTTP, on axum and tokio, and a page to try it.
//!
//! - `POST /v1/emotions`: an image (raw body, multipart form data, or JSON `{"image": base64 or
//!   data URI}`) -> each face's box, emotion, probabilities (the library's one face schema), the
//!   image size and the seconds taken. Query options: `scale_factor`, `min_neighbors`,
//!   `min_size` (cascade), `whole_image`, `tta`.
//! - `GET /v1/model`, `GET /healthz`, `GET /metrics` (Prometheus), `GET /openapi.json`, `GET /`.
//!
//! Decoding and detection run on tokio's blocking threads; the net runs on one thread that
//! batches the faces of concurrent requests ([`batcher`]). Requests in flight are bounded (503
//! with `Retry-After` beyond), bodies are bounded (413), slow requests time out (408), and
//! nothing is written to disk. Errors are JSON `{"error": {"kind", "message"}}`.

pub mod batcher;
pub mod metrics;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use ferkit::detection::DetectOptions;
use ferkit::error::{Error, ErrorKind};
use ferkit::evaluation::Tta;
use ferkit::prediction::{
    CascadeDetector, EmotionClassifier, FaceDetector, Frame, MtcnnDetector, WholeImage, assemble, face_crops,
};
use ferkit::trained::ModelSource;
use ferkit::util::choice::Choice;

pub use batcher::{BatchSettings, Batcher};
pub use metrics::Metrics;

/// How the server runs.
pub struct ServeOptions {
    /// The face detector requests use unless they ask for `whole_image`.
    pub detector: Detector,
    /// Largest request body, in bytes (413 beyond).
    pub max_body_bytes: usize,
    /// Emotion requests answered at once; more get 503 with `Retry-After: 1`.
    pub max_in_flight: usize,
    /// A request that takes longer is answered 408 (slow clients included).
    pub timeout: Duration,
    pub batch: BatchSettings,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            detector: Detector::WholeImage,
            max_body_bytes: 20 * 1024 * 1024,
            max_in_flight: 256,
            timeout: Duration::from_secs(30),
            batch: BatchSettings::default(),
        }
    }
}

/// The server's detector; requests may change its settings (a copy shares the loaded model).
pub enum Detector {
    Cascade(CascadeDetector),
    Mtcnn(MtcnnDetector),
    WholeImage,
}

struct AppState {
    batcher: Batcher,
    detector: Detector,
    align: bool,
    /// The views a request without `tta` gets: the model file's own (see `ModelFile::tta`).
    tta: Tta,
    model: Value,
    in_flight: Arc<Semaphore>,
    metrics: Arc<Metrics>,
}

/// The app: routes, limits and state, with `classifier` on the batch thread.
pub fn router(classifier: EmotionClassifier, options: ServeOptions) -> Router {
    let metrics = Arc::new(Metrics::default());
    let model = describe_model(&classifier);
    let (align, tta) = (classifier.align, classifier.tta);
    let state = Arc::new(AppState {
        batcher: Batcher::start(classifier, options.batch, metrics.clone()),
        detector: options.detector,
        align,
        tta,
        model,
        in_flight: Arc::new(Semaphore::new(options.max_in_flight)),
        metrics,
    });
    Router::new()
        .route("/", get(|| async { Html(include_str!("../assets/index.html")) }))
        .route("/v1/emotions", post(emotions))
        .route("/v1/model", get(|State(s): State<Arc<AppState>>| async move { axum::Json(s.model.clone()) }))
        .route("/healthz", get(|| async { axum::Json(json!({"status": "ok"})) }))
        .route("/metrics", get(metrics_text))
        .route(
            "/openapi.json",
            get(|| async { ([(header::CONTENT_TYPE, "application/json")], include_str!("../assets/openapi.json")) }),
        )
        .layer(DefaultBodyLimit::max(options.max_body_bytes))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, options.timeout))
        .with_state(state)
}

/// Serves `app` on `listener` until `shutdown` resolves, then finishes the requests in flight.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown)
        .await
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

fn describe_model(classifier: &EmotionClassifier) -> Value {
    let mut v = json!({
        "name": classifier.model_name,
        "source": classifier.source.describe(),
        "classes": ferkit::data::CLASS_NAMES,
        "input": "48x48 grey faces",
        "tta": classifier.tta,
    });
    if classifier.source == ModelSource::Shipped
        && let Ok(card) = ferkit::trained::shipped_file()
    {
        v["description"] = json!(card.description);
        v["accuracy"] = json!(card.accuracy);
    }
    v
}

async fn metrics_text(State(s): State<Arc<AppState>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], s.metrics.render())
}

/// A JSON error answer.
struct ApiError {
    status: StatusCode,
    kind: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self { status, kind, message: message.into() }
    }

    /// A library error's HTTP status: input problems are the client's (413 for an image over
    /// the pixel limit, 415 for a format ferkit does not read, 422 for one it cannot decode,
    /// 400 for other bad input and settings), the rest the server's.
    fn from_library(e: Error) -> Self {
        let field = e.location().and_then(|l| l.field.clone());
        let status = match (e.kind(), field.as_deref()) {
            (ErrorKind::BadInput, Some("max_image_pixels")) => StatusCode::PAYLOAD_TOO_LARGE,
            (ErrorKind::BadInput, Some("format")) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            (ErrorKind::BadInput, _) => StatusCode::UNPROCESSABLE_ENTITY,
            (ErrorKind::Config, _) => StatusCode::BAD_REQUEST,
            (ErrorKind::Unsupported, _) => StatusCode::NOT_IMPLEMENTED,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self { status, kind: e.kind().as_str(), message: format!("{e:#}") }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = axum::Json(json!({"error": {"kind": self.kind, "message": self.message}}));
        let mut response = (self.status, body).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// `POST /v1/emotions`'s query options.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct EmotionQuery {
    scale_factor: Option<f64>,
    min_neighbors: Option<usize>,
    min_size: Option<usize>,
    #[serde(default)]
    whole_image: bool,
    tta: Option<String>,
}

async fn emotions(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let start = Instant::now();
    let answer = answer_emotions(&state, request, start).await;
    let response = match answer {
        Ok(body) => axum::Json(body).into_response(),
        Err(e) => e.into_response(),
    };
    state.metrics.request("/v1/emotions", response.status().as_u16(), start.elapsed().as_secs_f64());
    response
}

async fn answer_emotions(state: &Arc<AppState>, request: Request, start: Instant) -> Result<Value, ApiError> {
    let query: Query<EmotionQuery> = Query::try_from_uri(request.uri())
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "config", format!("query: {}", e.body_text())))?;
    let query = query.0;
    let tta = match query.tta.as_deref() {
        None => state.tta,
        Some(name) => Tta::from_name(name).ok_or_else(|| {
            ApiError::new(StatusCode::BAD_REQUEST, "config", format!("tta={name}: not none, hflip or ten-crop"))
        })?,
    };
    if let Some(f) = query.scale_factor
        && !(1.01..=4.0).contains(&f)
    {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "config",
            format!("scale_factor={f}: must be in [1.01, 4]"),
        ));
    }
    // The body is read before the in-flight bound is checked, so that a refused client still
    // gets its 503 (a server that answers before reading breaks the client's upload).
    let image = image_bytes(request).await?;
    let _permit = state.in_flight.clone().try_acquire_owned().map_err(|_| {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", "too many requests in flight; retry shortly")
    })?;
    state.metrics.in_flight.fetch_add(1, Ordering::Relaxed);
    let _gauge = InFlight(&state.metrics);
    let detector: Box<dyn FaceDetector> = match (&state.detector, query.whole_image) {
        (_, true) | (Detector::WholeImage, _) => Box::new(WholeImage),
        (Detector::Cascade(base), false) => {
            let mut d = base.clone();
            let o: &mut DetectOptions = &mut d.options;
            o.scale_factor = query.scale_factor.unwrap_or(o.scale_factor);
            o.min_neighbors = query.min_neighbors.unwrap_or(o.min_neighbors);
            o.min_size = query.min_size.unwrap_or(o.min_size);
            Box::new(d)
        }
        (Detector::Mtcnn(base), false) => {
            let mut d = base.clone();
            d.options.min_size = query.min_size.map_or(d.options.min_size, |s| s as f64);
            Box::new(d)
        }
    };
    let align = state.align;
    // Decoding and detection are CPU work: off the async threads.
    let (width, height, found, crops) = tokio::task::spawn_blocking(move || {
        let frame = Frame::decode(&image, "the request's image")?;
        let (found, crops) = face_crops(detector.as_ref(), &frame, align);
        Ok::<_, Error>((frame.width(), frame.height(), found, crops))
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", format!("detection failed: {e}")))?
    .map_err(ApiError::from_library)?;
    let probabilities = state.batcher.classify(crops, tta).await.ok_or_else(|| {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", "the net's queue is full; retry shortly")
    })?;
    let faces = assemble(found, &mut probabilities.into_iter());
    Ok(json!({
        "width": width,
        "height": height,
        "faces": faces,
        "seconds": start.elapsed().as_secs_f64(),
    }))
}

/// Counts a request in flight until dropped.
struct InFlight<'a>(&'a Metrics);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The image's encoded bytes from a raw body, a multipart form (the first file field, or the
/// field named `image`), or JSON `{"image": "<base64 or data URI>"}`.
async fn image_bytes(request: Request) -> Result<Vec<u8>, ApiError> {
    let content_type = content_type(request.headers());
    let too_large = |e: String| {
        if e.contains("length limit") {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "bad_input", "the request body is over the size limit")
        } else {
            ApiError::new(StatusCode::BAD_REQUEST, "bad_input", e)
        }
    };
    if content_type.starts_with("multipart/form-data") {
        let mut form = Multipart::from_request(request, &())
            .await
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_input", e.body_text()))?;
        while let Some(field) = form.next_field().await.map_err(|e| too_large(e.body_text()))? {
            if field.name() == Some("image") || field.file_name().is_some() {
                return Ok(field.bytes().await.map_err(|e| too_large(e.body_text()))?.to_vec());
            }
        }
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "bad_input", "the form has no `image` field or file"));
    }
    let body = Bytes::from_request(request, &()).await.map_err(|e| too_large(e.body_text()))?;
    if content_type.starts_with("application/json") {
        let v: Value = serde_json::from_slice(&body)
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_input", format!("the body is not JSON: {e}")))?;
        let text = v.get("image").and_then(Value::as_str).ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_input",
                "JSON bodies need {\"image\": \"<base64 or data URI>\"}",
            )
        })?;
        let data = text.split_once(";base64,").map_or(text, |(_, d)| d);
        return base64::engine::general_purpose::STANDARD
            .decode(data.trim())
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_input", format!("`image` is not base64: {e}")));
    }
    if body.is_empty() {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "bad_input", "the request has no image (an empty body)"));
    }
    Ok(body.to_vec())
}

fn content_type(headers: &HeaderMap) -> String {
    headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase()
}
