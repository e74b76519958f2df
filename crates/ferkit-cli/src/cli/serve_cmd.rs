//! `ferkit serve`: the HTTP API and page of `ferkit-serve` on a host and port.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use ferkit::detection::mtcnn::MtcnnOptions;
use ferkit::detection::{DetectOptions, locate};
use ferkit::error::{Context, Result};
use ferkit::prediction::{CascadeDetector, EmotionClassifier, MtcnnDetector};
use ferkit::trained::ModelSource;
use ferkit_serve::{BatchSettings, Detector, ServeOptions};

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// A run directory or a model file (NAME.bpk); default: the model shipped inside ferkit.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// A Haar or LBP cascade XML (default: OpenCV's frontal-face cascade where opencv-data installs it).
    #[arg(long, conflicts_with = "mtcnn")]
    pub cascade: Option<PathBuf>,
    /// MTCNN with the weights in this folder (pnet.pt, rnet.pt, onet.pt).
    #[arg(long)]
    pub mtcnn: Option<PathBuf>,
    /// No detector: every image is one face (requests need not say `whole_image`).
    #[arg(long, conflicts_with_all = ["cascade", "mtcnn"])]
    pub whole_image: bool,
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// 0 picks a free port (printed).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Largest request body in bytes.
    #[arg(long, default_value_t = 20 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Emotion requests answered at once; more get 503 with Retry-After.
    #[arg(long, default_value_t = 256)]
    pub max_in_flight: usize,
    /// Seconds before a request is answered 408.
    #[arg(long, default_value_t = 30)]
    pub timeout: u64,
    /// Faces per shared forward pass at most.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Milliseconds a forward pass waits for more requests' faces.
    #[arg(long, default_value_t = 5)]
    pub batch_wait_ms: u64,
}

pub fn run(args: ServeArgs) -> Result<()> {
    let classifier = EmotionClassifier::load(&ModelSource::from_arg(args.model.as_deref())?)?;
    classifier.notes.iter().for_each(|n| super::lines::tell(n));
    let detector = if args.whole_image {
        Detector::WholeImage
    } else if let Some(dir) = &args.mtcnn {
        Detector::Mtcnn(MtcnnDetector::load(dir, MtcnnOptions::default())?)
    } else {
        let path = match &args.cascade {
            Some(p) => p.clone(),
            None => locate::find_cascade()?,
        };
        Detector::Cascade(CascadeDetector::load(&path, DetectOptions::default())?)
    };
    let options = ServeOptions {
        detector,
        max_body_bytes: args.max_body_bytes,
        max_in_flight: args.max_in_flight,
        timeout: Duration::from_secs(args.timeout),
        batch: BatchSettings {
            max_faces: args.batch.max(1),
            max_wait: Duration::from_millis(args.batch_wait_ms),
            queue: 1024,
        },
    };
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let address = format!("{}:{}", args.host, args.port);
        let listener =
            tokio::net::TcpListener::bind(&address).await.with_context(|| format!("{address}: cannot listen"))?;
        let local = listener.local_addr()?;
        super::lines::tell(&format!(
            "serving {} on http://{local}/ (API: /v1/emotions, /openapi.json; Ctrl-C or SIGTERM stops)",
            classifier.model_name
        ));
        let app = ferkit_serve::router(classifier, options);
        ferkit_serve::serve(listener, app, ferkit_serve::shutdown_signal()).await?;
        super::lines::tell("stopped");
        Ok(())
    })
}
