//! What a node serves an operator beside `/check`: `GET /metrics` (Prometheus text) and
//! `GET /healthz` (200 while serving, 503 while joining or leaving), on the same port.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use ringlimit::backend::ClusterBackend;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;
use tower::Service;

/// What `/healthz` reports and what `/metrics` refreshes first.
pub trait Operated: Send + Sync + 'static {
    /// Whether the node should get traffic, and the JSON that says why.
    fn health(&self) -> (bool, String);
    /// Sets the gauges read at scrape time.
    fn record_metrics(&self);
}

impl Operated for ClusterBackend {
    fn health(&self) -> (bool, String) {
        let health = ClusterBackend::health(self);
        let members: Vec<String> = health.members.iter().map(|m| json_string(m)).collect();
        let peers: Vec<String> = health
            .peers
            .iter()
            .map(|peer| {
                let circuit = if peer.circuit_open { "open" } else { "closed" };
                format!(
                    "{{\"member\":{},\"circuit\":\"{circuit}\"}}",
                    json_string(&peer.member)
                )
            })
            .collect();
        let body = format!(
            "{{\"state\":\"{}\",\"me\":{},\"members\":[{}],\"peers\":[{}]}}\n",
            health.state,
            json_string(self.me()),
            members.join(","),
            peers.join(",")
        );
        (health.state.is_serving(), body)
    }

    fn record_metrics(&self) {
        ClusterBackend::record_metrics(self);
    }
}

#[cfg(feature = "redis")]
impl Operated for ringlimit::backend::RedisBackend {
    fn health(&self) -> (bool, String) {
        (
            true,
            "{\"state\":\"serving\",\"counters\":\"redis\"}\n".into(),
        )
    }

    fn record_metrics(&self) {
        ringlimit::backend::RedisBackend::record_metrics(self);
    }
}

/// A JSON string of `text`.
fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The Prometheus recorder, installed for the whole process (before any backend is
/// built: they take their handles from it), with histogram buckets for round trips and
/// batch sizes; its upkeep runs every 5 s whether or not anyone scrapes.
#[cfg(feature = "metrics")]
pub fn install_metrics() -> Result<Option<Metrics>, String> {
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    const SECONDS: [f64; 14] = [
        0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
        1.0, 10.0,
    ];
    const SIZES: [f64; 11] = [
        1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
    ];
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &SECONDS)
        .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("_batch_size".into()), &SIZES))
        .and_then(|b| b.install_recorder())
        .map_err(|e| format!("cannot install the metrics recorder: {e}"))?;
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(5));
        loop {
            every.tick().await;
            upkeep.run_upkeep();
        }
    });
    Ok(Some(Metrics(handle)))
}

/// Without the feature `metrics` there is nothing to install: `/metrics` says so.
#[cfg(not(feature = "metrics"))]
pub fn install_metrics() -> Result<Option<Metrics>, String> {
    Ok(None)
}

/// The installed recorder's handle, to render.
#[derive(Clone)]
pub struct Metrics(#[cfg(feature = "metrics")] metrics_exporter_prometheus::PrometheusHandle);

impl Metrics {
    fn render(&self) -> String {
        #[cfg(feature = "metrics")]
        return self.0.render();
        #[cfg(not(feature = "metrics"))]
        unreachable!("never made without the feature")
    }
}

/// `endpoint`, with `GET /metrics` and `GET /healthz` answered before it.
pub fn with_ops<S>(endpoint: S, node: Arc<dyn Operated>, metrics: Option<Metrics>) -> WithOps<S> {
    WithOps {
        endpoint,
        node,
        metrics,
    }
}

/// The node's endpoint with the operator's two routes: see [`with_ops`].
#[derive(Clone)]
pub struct WithOps<S> {
    endpoint: S,
    node: Arc<dyn Operated>,
    metrics: Option<Metrics>,
}

impl<S, B> Service<Request<B>> for WithOps<S>
where
    S: Service<Request<B>, Response = Response<Full<Bytes>>, Error = Infallible>,
{
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = OpsFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.endpoint.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let answer = (request.method() == Method::GET)
            .then(|| ops_answer(request.uri().path(), &*self.node, self.metrics.as_ref()))
            .flatten();
        match answer {
            Some(response) => OpsFuture::Answered {
                response: Some(response),
            },
            // The endpoint was polled ready for this call.
            None => OpsFuture::Endpoint {
                future: self.endpoint.call(request),
            },
        }
    }
}

pin_project! {
    /// An operator's route answered at once, or the endpoint's future: no allocation
    /// on the way to `/check`.
    #[project = OpsProj]
    pub enum OpsFuture<F> {
        Answered { response: Option<Response<Full<Bytes>>> },
        Endpoint { #[pin] future: F },
    }
}

impl<F: Future<Output = Result<Response<Full<Bytes>>, Infallible>>> Future for OpsFuture<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        match self.project() {
            OpsProj::Answered { response } => {
                Poll::Ready(Ok(response.take().expect("polled after completion")))
            }
            OpsProj::Endpoint { future } => future.poll(cx),
        }
    }
}

fn ops_answer(
    path: &str,
    node: &dyn Operated,
    metrics: Option<&Metrics>,
) -> Option<Response<Full<Bytes>>> {
    let (status, content_type, body) = match path {
        "/healthz" => {
            let (serving, body) = node.health();
            let status = match serving {
                true => StatusCode::OK,
                false => StatusCode::SERVICE_UNAVAILABLE,
            };
            (status, "application/json", body)
        }
        "/metrics" => match metrics {
            Some(metrics) => {
                node.record_metrics();
                (
                    StatusCode::OK,
                    "text/plain; version=0.0.4",
                    metrics.render(),
                )
            }
            None => (
                StatusCode::NOT_FOUND,
                "text/plain; charset=utf-8",
                "this node was built without metrics: run it with `--features metrics`\n".into(),
            ),
        },
        _ => return None,
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    Some(response)
}
