//! Prometheus metrics: requests by route and status, latencies, runs, encoder queues.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::models::ModelState;
use crate::state::AppState;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunLabels {
    model: String,
    mode: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelLabels {
    model: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 1 ms .. ~33 s
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// The process's metrics registry.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: HistogramFamily<RouteLabels>,
    runs: Family<RunLabels, Counter>,
    run_latency: HistogramFamily<ModelLabels>,
    queue_depth: Family<ModelLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("aimp");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency: HistogramFamily<RouteLabels> = Family::new_with_constructor(latency_histogram);
        let runs = Family::<RunLabels, Counter>::default();
        let run_latency: HistogramFamily<ModelLabels> =
            Family::new_with_constructor(latency_histogram);
        let queue_depth = Family::<ModelLabels, Gauge>::default();
        registry.register(
            "http_requests",
            "HTTP requests by method, route and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by method and route",
            latency.clone(),
        );
        registry.register("runs", "Runs by model, mode and status", runs.clone());
        registry.register(
            "run_duration_seconds",
            "Run latency by model",
            run_latency.clone(),
        );
        registry.register(
            "encoder_queue_depth",
            "Requests waiting for or running on each model's encoder",
            queue_depth.clone(),
        );
        Metrics {
            registry,
            requests,
            latency,
            runs,
            run_latency,
            queue_depth,
        }
    }

    pub fn record_run(&self, model: &str, mode: &str, status: u16, seconds: f64) {
        self.runs
            .get_or_create(&RunLabels {
                model: model.to_string(),
                mode: mode.to_string(),
                status,
            })
            .inc();
        if status == 200 {
            self.run_latency
                .get_or_create(&ModelLabels {
                    model: model.to_string(),
                })
                .observe(seconds);
        }
    }

    /// The text exposition format, with the queue gauges read now.
    pub fn render(&self, models: &[(String, ModelState)]) -> String {
        for (slug, state) in models {
            let depth = match state {
                ModelState::Ready(h) => h.queue_depth() as i64,
                ModelState::Loading | ModelState::Failed(_) => 0,
            };
            self.queue_depth
                .get_or_create(&ModelLabels {
                    model: slug.clone(),
                })
                .set(depth);
        }
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        out
    }
}

/// A request's method as a label: one of the methods the gateway serves, or `other`, so a
/// client inventing methods cannot grow the label set (and `/metrics`) without bound.
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    const KNOWN: [(Method, &str); 7] = [
        (Method::GET, "GET"),
        (Method::HEAD, "HEAD"),
        (Method::POST, "POST"),
        (Method::PUT, "PUT"),
        (Method::PATCH, "PATCH"),
        (Method::DELETE, "DELETE"),
        (Method::OPTIONS, "OPTIONS"),
    ];
    KNOWN
        .iter()
        .find(|(m, _)| m == method)
        .map_or("other", |(_, label)| label)
}

/// Middleware: counts every request by its route template (not its raw path, so ids do not
/// explode the label set) and observes its latency.
pub async fn track_requests(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = method_label(req.method()).to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let response = next.run(req).await;
    let status = response.status().as_u16();
    state
        .metrics
        .requests
        .get_or_create(&RequestLabels {
            method: method.clone(),
            route: route.clone(),
            status,
        })
        .inc();
    state
        .metrics
        .latency
        .get_or_create(&RouteLabels { method, route })
        .observe(start.elapsed().as_secs_f64());
    response
}
