//! The server's counters, in Prometheus' text format at `GET /metrics`: requests by status,
//! request latency and forward-pass batch sizes as histograms, requests in flight.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};

/// Upper bounds of the latency histogram's buckets, in seconds.
const LATENCY_BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];
/// Upper bounds of the batch-size histogram's buckets, in faces.
const BATCH_BUCKETS: [f64; 8] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0];

#[derive(Default)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, bounds: &[f64], value: f64) {
        if self.counts.is_empty() {
            self.counts = vec![0; bounds.len()];
        }
        for (i, b) in bounds.iter().enumerate() {
            if value <= *b {
                self.counts[i] += 1;
            }
        }
        self.sum += value;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, bounds: &[f64]) {
        for (i, b) in bounds.iter().enumerate() {
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {}", self.counts.get(i).copied().unwrap_or(0));
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum {}", self.sum);
        let _ = writeln!(out, "{name}_count {}", self.count);
    }
}

/// Everything `/metrics` shows.
#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    latency: Mutex<Histogram>,
    batches: Mutex<Histogram>,
    pub in_flight: AtomicI64,
}

impl Metrics {
    /// A finished request: its route, HTTP status and seconds.
    pub fn request(&self, route: &str, status: u16, seconds: f64) {
        *self.requests.lock().expect("not poisoned").entry((route.to_string(), status)).or_default() += 1;
        self.latency.lock().expect("not poisoned").observe(&LATENCY_BUCKETS, seconds);
    }

    /// A forward pass over `faces` faces.
    pub fn batch(&self, faces: usize) {
        self.batches.lock().expect("not poisoned").observe(&BATCH_BUCKETS, faces as f64);
    }

    /// Prometheus' text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::new();
        out += "# HELP ferkit_requests_total Requests answered, by route and HTTP status.\n";
        out += "# TYPE ferkit_requests_total counter\n";
        for ((route, status), n) in self.requests.lock().expect("not poisoned").iter() {
            let _ = writeln!(out, "ferkit_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}");
        }
        out += "# HELP ferkit_request_seconds Time from request to answer.\n";
        out += "# TYPE ferkit_request_seconds histogram\n";
        self.latency.lock().expect("not poisoned").render(&mut out, "ferkit_request_seconds", &LATENCY_BUCKETS);
        out += "# HELP ferkit_batch_faces Faces per forward pass of the net (shared by concurrent requests).\n";
        out += "# TYPE ferkit_batch_faces histogram\n";
        self.batches.lock().expect("not poisoned").render(&mut out, "ferkit_batch_faces", &BATCH_BUCKETS);
        out += "# HELP ferkit_requests_in_flight Emotion requests being answered.\n";
        out += "# TYPE ferkit_requests_in_flight gauge\n";
        let _ = writeln!(out, "ferkit_requests_in_flight {}", self.in_flight.load(Ordering::Relaxed));
        out
    }
}
