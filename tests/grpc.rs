//! The gRPC rejection with a real tonic server and client on loopback: tonic's health
//! service (no code generation, so no `protoc`) behind the layer.

use std::num::NonZeroU32;
use std::time::Duration;

use ringlimit::key::HeaderKey;
use ringlimit::layer::GrpcRejection;
use ringlimit::{MemoryBackend, Policy, RateLimitLayer};
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Server};
use tonic::{Code, Request};
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

/// `google.rpc.Status`, `google.protobuf.Any`, `google.rpc.RetryInfo` and
/// `google.protobuf.Duration`, as a gRPC client decodes them.
#[derive(Clone, PartialEq, prost::Message)]
struct Status {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
    #[prost(message, repeated, tag = "3")]
    details: Vec<Any>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Any {
    #[prost(string, tag = "1")]
    type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    value: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct RetryInfo {
    #[prost(message, optional, tag = "1")]
    retry_delay: Option<ProtoDuration>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ProtoDuration {
    #[prost(int64, tag = "1")]
    seconds: i64,
    #[prost(int32, tag = "2")]
    nanos: i32,
}

/// A tonic health server behind the layer (2 checks a minute per `x-user-id`), and a
/// client connected to it.
async fn limited_health_service() -> HealthClient<Channel> {
    let policy = Policy::per_window(NonZeroU32::new(2).unwrap(), Duration::from_secs(60));
    let layer = RateLimitLayer::new(MemoryBackend::new(policy))
        .key(HeaderKey::from_static("x-user-id"))
        .on_rejection(GrpcRejection);
    let (_reporter, health) = tonic_health::server::health_reporter();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(
        Server::builder()
            .layer(layer)
            .add_service(health)
            .serve_with_incoming(TcpIncoming::from(listener)),
    );
    let channel = Channel::from_shared(format!("http://{address}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    HealthClient::new(channel)
}

fn as_user(user: Option<&str>) -> Request<HealthCheckRequest> {
    let mut request = Request::new(HealthCheckRequest {
        service: String::new(),
    });
    if let Some(user) = user {
        request
            .metadata_mut()
            .insert("x-user-id", user.parse().unwrap());
    }
    request
}

#[tokio::test]
async fn a_limited_call_gets_resource_exhausted_with_its_retry_delay() {
    let mut client = limited_health_service().await;
    for _ in 0..2 {
        let answer = client.check(as_user(Some("alice"))).await;
        assert!(answer.is_ok(), "within the limit: {answer:?}");
    }
    let status = client.check(as_user(Some("alice"))).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert_eq!(status.message(), "rate limit exceeded");

    // The delay, as gRPC's retry pushback and as RetryInfo in the details.
    let pushback: u64 = status
        .metadata()
        .get("grpc-retry-pushback-ms")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60_000).contains(&pushback), "{pushback} ms");
    let details = <Status as prost::Message>::decode(status.details()).unwrap();
    assert_eq!(details.code, Code::ResourceExhausted as i32);
    let [any] = &details.details[..] else {
        panic!("one detail: {details:?}");
    };
    assert_eq!(any.type_url, "type.googleapis.com/google.rpc.RetryInfo");
    let retry = <RetryInfo as prost::Message>::decode(&any.value[..]).unwrap();
    let delay = retry.retry_delay.unwrap();
    let delay_ms = delay.seconds as u64 * 1000 + delay.nanos as u64 / 1_000_000;
    assert_eq!(delay_ms, pushback);
    // The layer's own headers arrive as metadata.
    assert!(
        status.metadata().get("ratelimit").is_some(),
        "{:?}",
        status.metadata()
    );

    // Another user is not limited.
    assert!(client.check(as_user(Some("bob"))).await.is_ok());
}

#[tokio::test]
async fn a_call_without_a_key_gets_invalid_argument() {
    let mut client = limited_health_service().await;
    let status = client.check(as_user(None)).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("x-user-id"),
        "{}",
        status.message()
    );
}
