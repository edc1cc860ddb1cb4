//! Checks that reach a node after it handed their key away: real nodes on loopback, the
//! late checks sent as a node that had not heard of the change sends them. None is
//! counted on the empty counter left behind: the key's counters decide, wherever they
//! went, or nothing counts it.
#![cfg(feature = "cluster")]

mod common;

use common::{hourly, mid_window_clock, start_cluster, HttpClient, Node};

const LIMIT: u32 = 5;

/// A user that `node` owns on the ring all of `nodes` share.
fn user_owned_by(node: &Node) -> String {
    (0..)
        .map(|i| format!("user-{i}"))
        .find(|user| node.backend.ring().owner(user) == node.name)
        .unwrap()
}

/// Spends `user`'s whole limit at its owner `node`; then `node` leaves, handing the
/// counters on. The member they went to.
async fn spent_then_left<'a>(client: &HttpClient, node: &Node, nodes: &'a [Node]) -> &'a Node {
    let user = user_owned_by(node);
    for _ in 0..LIMIT {
        assert_eq!(client.get(&node.check_url(&user), &[]).await.status, 200);
    }
    assert_eq!(client.get(&node.check_url(&user), &[]).await.status, 429);
    assert!(node.backend.leave().await > 0, "the user's counters went");
    let heir = node.backend.ring().owner(&user).to_owned();
    nodes.iter().find(|n| n.name == heir).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_relayed_to_a_node_that_handed_its_key_on_is_sent_on_once_more() {
    let clock = mid_window_clock();
    let nodes = start_cluster(3, hourly(LIMIT), &clock).await;
    let client = HttpClient::new();
    let leaver = &nodes[2];
    let user = user_owned_by(leaver);
    let heir = spent_then_left(&client, leaver, &nodes).await;
    assert_eq!(heir.backend.local().used(&user), LIMIT, "the counters went");

    // What a node that has not heard yet sends when it holds nothing of a key its ring
    // gives to the leaver: the check, marked as relayed once. The leaver holds nothing
    // either; it sends the check on to where the key went, and the counters there say no.
    let relayed = [("x-ringlimit-forwarded", "1"), ("x-ringlimit-relayed", "1")];
    for _ in 0..3 {
        let reply = client.get(&leaver.check_url(&user), &relayed).await;
        assert_eq!(
            (reply.status.as_u16(), reply.body.trim()),
            (429, "RATE LIMIT EXCEEDED"),
            "decided by the counters that went to {}",
            heir.name
        );
    }
    assert_eq!(leaver.backend.local().tracked_keys(), 0, "counted nothing");
    assert_eq!(heir.backend.local().used(&user), LIMIT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_sent_on_twice_to_a_node_that_handed_its_key_on_is_refused_uncounted() {
    let clock = mid_window_clock();
    let nodes = start_cluster(3, hourly(LIMIT), &clock).await;
    let client = HttpClient::new();
    let leaver = &nodes[2];
    let user = user_owned_by(leaver);
    let heir = spent_then_left(&client, leaver, &nodes).await;

    // Sent on twice already (the key moved again while it travelled): a third hop is
    // not taken, and the empty counter here cannot decide. Refused, counted nowhere.
    let twice = [("x-ringlimit-forwarded", "1"), ("x-ringlimit-relayed", "2")];
    let reply = client.get(&leaver.check_url(&user), &twice).await;
    assert_eq!(reply.status.as_u16(), 400, "{}", reply.body);
    assert!(
        reply.body.contains("handed"),
        "the refusal says why: {}",
        reply.body
    );
    assert_eq!(leaver.backend.local().tracked_keys(), 0, "counted nothing");
    assert_eq!(heir.backend.local().used(&user), LIMIT);

    // Where the key is, a check sent on twice is decided as any other.
    let reply = client.get(&heir.check_url(&user), &twice).await;
    assert_eq!(reply.status.as_u16(), 429);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_travels_back_as_a_refusal_not_as_a_failure() {
    let clock = mid_window_clock();
    let nodes = start_cluster(3, hourly(LIMIT), &clock).await;
    let client = HttpClient::new();
    let first = &nodes[2];
    let user = user_owned_by(first);
    let second = spent_then_left(&client, first, &nodes).await;
    // The key moves again: the second holder leaves too.
    assert!(second.backend.leave().await > 0);
    let last = nodes
        .iter()
        .find(|n| n.backend.local().used(&user) == LIMIT);
    let last = last.expect("the counters went on to the last member");

    // Relayed to the first holder, sent on (twice now) to the second, which handed the
    // key on as well: refused there, and the first answers the refusal (`400`, which
    // no failure mode counts), not `503`.
    let relayed = [("x-ringlimit-forwarded", "1"), ("x-ringlimit-relayed", "1")];
    let reply = client.get(&first.check_url(&user), &relayed).await;
    assert_eq!(reply.status.as_u16(), 400, "{}", reply.body);
    assert_eq!(first.backend.local().tracked_keys(), 0, "counted nothing");
    assert_eq!(second.backend.local().tracked_keys(), 0, "counted nothing");
    assert_eq!(last.backend.local().used(&user), LIMIT);
}
