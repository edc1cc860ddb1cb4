//! Membership changes while nodes serve, and graceful shutdown.
#![cfg(feature = "cluster")]

mod common;

use std::time::Duration;

use common::{check_url, hourly, listeners, mid_window_clock, start_node, HttpClient};
use ringlimit::backend::ClusterError;
use ringlimit::Ring;

const LIMIT: u32 = 3;

#[tokio::test]
async fn a_new_member_takes_over_its_keys_without_a_restart() {
    let clock = mid_window_clock();
    let mut bound = listeners(3).await;
    let (listener_c, c) = bound.pop().unwrap();
    let (listener_b, b) = bound.pop().unwrap();
    let (listener_a, a) = bound.pop().unwrap();
    let old = [a.clone(), b.clone()];
    let new = [a.clone(), b.clone(), c.clone()];
    let node_a = start_node(listener_a, &a, &old, hourly(LIMIT), &clock);
    let node_b = start_node(listener_b, &b, &old, hourly(LIMIT), &clock);
    let node_c = start_node(listener_c, &c, &new, hourly(LIMIT), &clock);

    let new_ring = Ring::new(new.clone()).unwrap();
    let key = common::key_owned_by(&new_ring, &c);
    let client = HttpClient::new();
    // Before the change, A and B place the key on one of themselves.
    assert_eq!(client.get(&node_a.check_url(&key), &[]).await.status, 200);
    assert_eq!(node_c.backend.local().tracked_keys(), 0);

    node_a.backend.set_members(new.clone()).unwrap();
    node_b.backend.set_members(new.clone()).unwrap();
    for node in [&node_a, &node_b] {
        assert_eq!(client.get(&node.check_url(&key), &[]).await.status, 200);
    }
    assert_eq!(
        node_c.backend.local().tracked_keys(),
        1,
        "C counts its key now"
    );
}

#[tokio::test]
async fn a_member_list_without_this_node_is_refused_and_the_old_one_kept() {
    let clock = mid_window_clock();
    let (listener, me) = listeners(1).await.pop().unwrap();
    let node = start_node(
        listener,
        &me,
        std::slice::from_ref(&me),
        hourly(LIMIT),
        &clock,
    );
    let error = node.backend.set_members(["127.0.0.1:9"]).unwrap_err();
    assert!(matches!(error, ClusterError::NotAMember { .. }), "{error}");
    let error = node.backend.set_members(Vec::<String>::new()).unwrap_err();
    assert_eq!(error.to_string(), "the ring needs at least one member");
    assert_eq!(
        node.backend.ring().members().collect::<Vec<_>>(),
        [me.as_str()]
    );
    let reply = HttpClient::new().get(&node.check_url("alice"), &[]).await;
    assert_eq!(reply.status, 200);
}

#[tokio::test]
async fn shutdown_stops_accepting_and_finishes_requests_in_flight() {
    use std::sync::Arc;
    use tokio::sync::Notify;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    // The request arrives, then waits until the test lets it answer: in flight for sure
    // when the shutdown comes, with no sleep.
    let (arrived, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let slow = tower::service_fn({
        let (arrived, release) = (arrived.clone(), release.clone());
        move |_: http::Request<hyper::body::Incoming>| {
            let (arrived, release) = (arrived.clone(), release.clone());
            async move {
                arrived.notify_one();
                release.notified().await;
                Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::new(
                    bytes::Bytes::from_static(b"done"),
                )))
            }
        }
    });
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(ringlimit::endpoint::serve(listener, slow, async {
        let _ = stopped.await;
    }));

    let client = HttpClient::new();
    let in_flight = tokio::spawn({
        let client = client.clone();
        async move { client.get(&check_url(address, "a"), &[]).await }
    });
    let arrived = tokio::time::timeout(Duration::from_secs(5), arrived.notified()).await;
    arrived.expect("the request reached the service");
    stop.send(()).unwrap();
    // Released only once the server has stopped accepting: the request is in flight then.
    for _ in 0..500 {
        if tokio::net::TcpStream::connect(address).await.is_err() {
            break;
        }
        tokio::task::yield_now().await;
    }
    release.notify_one();
    let reply = in_flight.await.unwrap();
    assert_eq!((reply.status.as_u16(), reply.body.as_str()), (200, "done"));
    server.await.unwrap().unwrap();
    let refused = tokio::net::TcpStream::connect(address).await;
    assert!(refused.is_err(), "no longer accepting");
}

/// Waits (100 ms at a time, 3 s at most) until `node`'s ring has `members`.
async fn ring_becomes(node: &common::Node, members: &[&str]) -> bool {
    for _ in 0..30 {
        if node.backend.ring().members().eq(members.iter().copied()) {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test]
async fn a_members_file_is_followed_as_it_changes_and_a_bad_list_changes_nothing() {
    use ringlimit::membership::{follow, MembersFile};
    let clock = mid_window_clock();
    let (listener, me) = listeners(1).await.pop().unwrap();
    let node = start_node(
        listener,
        &me,
        std::slice::from_ref(&me),
        hourly(LIMIT),
        &clock,
    );
    let dir = std::env::temp_dir().join(format!("ringlimit-members-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("members");
    let write = |text: &str| std::fs::write(&path, text).unwrap();
    write(&format!("# the ring\n{me}\n"));
    let source = MembersFile::new(&path).interval(std::time::Duration::from_millis(50));
    let following = tokio::spawn(follow(node.backend.clone(), source));

    // A member added to the file: followed without a signal.
    write(&format!("{me}\n127.0.0.1:9\n"));
    assert!(ring_becomes(&node, &[me.as_str(), "127.0.0.1:9"]).await);
    // Emptied: refused, the ring in force kept (a list without this node means it
    // leaves: see tests/handoff.rs).
    write("\n# nobody\n");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(ring_becomes(&node, &[me.as_str(), "127.0.0.1:9"]).await);
    // Unreadable for a while, then back to one member.
    std::fs::remove_file(&path).unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    write(&format!("{me}\n"));
    assert!(ring_becomes(&node, &[me.as_str()]).await);
    following.abort();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn members_found_in_dns_are_followed() {
    use ringlimit::membership::{follow, DnsMembers, MembershipSource};
    let clock = mid_window_clock();
    let (listener, me) = listeners(1).await.pop().unwrap();
    let port: u16 = me.rsplit_once(':').unwrap().1.parse().unwrap();
    // `localhost` resolves through the system's resolver (the hosts file, no network)
    // to this node's address; its IPv6 twin, if any, is left out (the IPv4 family only).
    let ipv4 = || DnsMembers::new("localhost", port).family(std::net::Ipv4Addr::LOCALHOST.into());
    let mut source = ipv4().interval(std::time::Duration::from_millis(100));
    let found = source.next_members().await.unwrap().unwrap();
    assert_eq!(found, std::slice::from_ref(&me));
    // The node starts on a ring of two; following the name makes it a ring of one.
    let members = [me.clone(), "127.0.0.1:9".to_owned()];
    let node = start_node(listener, &me, &members, hourly(LIMIT), &clock);
    let following = tokio::spawn(follow(node.backend.clone(), ipv4()));
    assert!(ring_becomes(&node, &[me.as_str()]).await);
    following.abort();
}
