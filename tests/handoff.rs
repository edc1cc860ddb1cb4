//! Counters follow their keys when the ring changes: real nodes on loopback, real HTTP
//! between them, one clock stopped mid-window (so every request of a test falls in one
//! window). The assertion is the promise: no user gets more than the limit, across all
//! nodes, through a join, a leave, a restart and members that disagree for a while.
#![cfg(feature = "cluster")]

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;

use common::{
    allowed_per_user, hourly, listeners, mid_window_clock, serve_node, start_node, Node, Visit,
};
use ringlimit::backend::FailureMode;
use ringlimit::{ClusterBackend, ManualClock, Ring};

const LIMIT: u32 = 5;
const USERS: usize = 200;

/// `rounds` requests of every user `user-<i>`, each user's spread over `nodes` in turn.
fn visits(nodes: &[SocketAddr], rounds: usize) -> Vec<Visit> {
    (0..rounds)
        .flat_map(|round| (0..USERS).map(move |u| (round + u, format!("user-{u}"))))
        .map(|(turn, user)| Visit {
            url: common::check_url(nodes[turn % nodes.len()], &user),
            user,
            header: None,
        })
        .collect()
}

/// Adds the allowed requests of `more` to `total`.
fn add(total: &mut HashMap<String, u32>, more: HashMap<String, u32>) {
    for (user, allowed) in more {
        *total.entry(user).or_default() += allowed;
    }
}

/// Every user got the limit exactly, in all.
fn assert_exact(total: &HashMap<String, u32>) {
    let over: Vec<_> = total.iter().filter(|(_, &n)| n > LIMIT).collect();
    assert!(
        over.is_empty(),
        "{} users over the limit: {over:?}",
        over.len()
    );
    let short = total.values().filter(|&&n| n < LIMIT).count();
    assert_eq!(total.len(), USERS);
    assert_eq!(short, 0, "every user reaches the limit");
}

fn addresses(nodes: &[&Node]) -> Vec<SocketAddr> {
    nodes.iter().map(|node| node.address).collect()
}

/// A node that serves until `stop` is sent (or dropped).
fn stoppable(
    listener: tokio::net::TcpListener,
    name: &str,
    members: &[String],
    clock: &ManualClock,
    failure: FailureMode,
) -> (Node, tokio::sync::oneshot::Sender<()>) {
    let ring = Ring::new(members.to_vec()).unwrap();
    let backend = ClusterBackend::builder(hourly(LIMIT), name, ring)
        .clock(clock.clone())
        .failure_mode(failure)
        .build()
        .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let node = serve_node(listener, backend, async {
        let _ = stopped.await;
    });
    (node, stop)
}

/// Waits (50 ms at a time, 5 s at most) until `node`'s ring has `members`.
async fn ring_becomes(node: &Node, members: &[&str]) -> bool {
    for _ in 0..100 {
        if node.backend.ring().members().eq(members.iter().copied()) {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    false
}

/// Binds `address` again once the node stopped on it has let it go (2 s at most).
async fn bind_again(address: &str) -> tokio::net::TcpListener {
    for _ in 0..200 {
        if let Ok(listener) = tokio::net::TcpListener::bind(address).await {
            return listener;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("{address} is still taken");
}

/// Three nodes that agree on the ring and serve until stopped, each with what stops
/// it; and the members' names.
async fn three_stoppable(
    clock: &ManualClock,
    failure: FailureMode,
) -> (Vec<(Node, tokio::sync::oneshot::Sender<()>)>, Vec<String>) {
    let bound = listeners(3).await;
    let names: Vec<String> = bound.iter().map(|(_, name)| name.clone()).collect();
    let nodes = bound
        .into_iter()
        .map(|(listener, name)| stoppable(listener, &name, &names, clock, failure))
        .collect();
    (nodes, names)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_out_mid_window_keeps_every_count_while_members_disagree() {
    let clock = mid_window_clock();
    let mut bound = listeners(3).await;
    let (listener_c, c) = bound.pop().unwrap();
    let (listener_b, b) = bound.pop().unwrap();
    let (listener_a, a) = bound.pop().unwrap();
    let two = [a.clone(), b.clone()];
    let three = [a.clone(), b.clone(), c.clone()];
    let node_a = start_node(listener_a, &a, &two, hourly(LIMIT), &clock);
    let node_b = start_node(listener_b, &b, &two, hourly(LIMIT), &clock);
    let node_c = start_node(listener_c, &c, &three, hourly(LIMIT), &clock);

    let mut total = HashMap::new();
    add(
        &mut total,
        allowed_per_user(visits(&addresses(&[&node_a, &node_b]), 3), 16).await,
    );
    // C starts and says so; A learns of it, B not yet: for a while they disagree.
    node_c.backend.join().await;
    node_a.backend.set_members(three.clone()).unwrap();
    let all = addresses(&[&node_a, &node_b, &node_c]);
    add(&mut total, allowed_per_user(visits(&all, 1), 16).await);
    node_b.backend.set_members(three.clone()).unwrap();
    add(&mut total, allowed_per_user(visits(&all, 4), 16).await);
    assert_exact(&total);
    let moved = (0..USERS)
        .filter(|i| node_c.backend.ring().owner(&format!("user-{i}")) == c)
        .count();
    assert!(
        moved > 20,
        "the test moves keys: {moved} of {USERS} went to C"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaving_node_hands_its_counters_over_and_sends_late_checks_on() {
    let clock = mid_window_clock();
    let nodes = common::start_cluster(3, hourly(LIMIT), &clock).await;
    let all = addresses(&nodes.iter().collect::<Vec<_>>());
    let mut total = HashMap::new();
    add(&mut total, allowed_per_user(visits(&all, 3), 16).await);

    let handed = nodes[2].backend.leave().await;
    assert!(handed > 20, "C held keys of its own: {handed} handed over");
    assert_eq!(
        nodes[2].backend.local().tracked_keys(),
        0,
        "C keeps nothing"
    );
    assert_eq!(nodes[0].backend.ring().members().count(), 2, "A took C out");
    // Checks still forwarded to C, as a node that has not heard would send them: C
    // holds nothing any more, and sends each on to its owner.
    let stale: Vec<Visit> = visits(&[nodes[2].address], 1)
        .into_iter()
        .map(|visit| Visit {
            header: Some(("x-ringlimit-forwarded", "1".to_owned())),
            ..visit
        })
        .collect();
    add(&mut total, allowed_per_user(stale, 16).await);
    assert_eq!(
        nodes[2].backend.local().tracked_keys(),
        0,
        "C counted none of them"
    );
    add(&mut total, allowed_per_user(visits(&all, 3), 16).await);
    assert_exact(&total);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_gets_its_counts_back() {
    let clock = mid_window_clock();
    let local = FailureMode::Local;
    let (mut nodes, three) = three_stoppable(&clock, local).await;
    let (node_c, stop_c) = nodes.pop().unwrap();
    let (node_b, _keep_b) = nodes.pop().unwrap();
    let (node_a, _keep_a) = nodes.pop().unwrap();
    let c = three[2].clone();
    let all = addresses(&[&node_a, &node_b, &node_c]);
    let mut total = HashMap::new();
    add(&mut total, allowed_per_user(visits(&all, 2), 16).await);

    // A rolling restart of C: it leaves, stops, and comes back on its port.
    node_c.backend.leave().await;
    let _ = stop_c.send(());
    drop(node_c);
    let others = addresses(&[&node_a, &node_b]);
    add(&mut total, allowed_per_user(visits(&others, 1), 16).await);
    let listener_c = bind_again(&c).await;
    let (node_c, _keep_c) = stoppable(listener_c, &c, &three, &clock, local);
    node_c.backend.join().await;
    assert_eq!(node_a.backend.ring().members().count(), 3, "A put C back");
    add(&mut total, allowed_per_user(visits(&all, 4), 16).await);
    assert_exact(&total);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_loses_at_most_one_limit_of_the_keys_the_node_owned() {
    let clock = mid_window_clock();
    let deny = FailureMode::Deny;
    let (mut nodes, three) = three_stoppable(&clock, deny).await;
    let (node_c, stop_c) = nodes.pop().unwrap();
    let (node_b, _keep_b) = nodes.pop().unwrap();
    let (node_a, _keep_a) = nodes.pop().unwrap();
    let c = three[2].clone();
    let all = addresses(&[&node_a, &node_b, &node_c]);
    let mut total = HashMap::new();
    add(&mut total, allowed_per_user(visits(&all, 3), 16).await);

    // C dies without leaving: what it counted is gone.
    let _ = stop_c.send(());
    drop(node_c);
    let others = addresses(&[&node_a, &node_b]);
    let during = common::allowed_per_user_any_status(visits(&others, 2), 16).await;
    add(&mut total, during);
    let listener_c = bind_again(&c).await;
    let (node_c, _keep_c) = stoppable(listener_c, &c, &three, &clock, deny);
    node_c.backend.join().await;
    add(&mut total, allowed_per_user(visits(&all, 6), 16).await);

    let ring = node_a.backend.ring();
    for (user, &allowed) in &total {
        let bound = if ring.owner(user) == c {
            2 * LIMIT
        } else {
            LIMIT
        };
        assert!(allowed <= bound, "{user} got {allowed}, bound {bound}");
    }
    let lost = total
        .iter()
        .filter(|(u, &n)| ring.owner(u) == c && n > LIMIT)
        .count();
    assert!(
        lost > 0,
        "the crash did lose counts (else the test shows nothing)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_members_file_without_this_node_makes_it_leave_and_with_it_again_rejoin() {
    use ringlimit::membership::{follow, MembersFile};
    let clock = mid_window_clock();
    let nodes = common::start_cluster(2, hourly(LIMIT), &clock).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let all = addresses(&[a, b]);
    let mut total = HashMap::new();
    add(&mut total, allowed_per_user(visits(&all, 3), 16).await);

    let dir = std::env::temp_dir().join(format!("ringlimit-leave-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("members");
    std::fs::write(&path, format!("{}\n{}\n", a.name, b.name)).unwrap();
    let source = MembersFile::new(&path).interval(std::time::Duration::from_millis(50));
    let following = tokio::spawn(follow(b.backend.clone(), source));
    std::fs::write(&path, format!("{}\n", a.name)).unwrap();
    let only_a = [a.name.as_str()];
    assert!(
        ring_becomes(b, &only_a).await,
        "B left: it routes by A alone"
    );
    assert!(ring_becomes(a, &only_a).await, "A was told");
    assert_eq!(
        b.backend.local().tracked_keys(),
        0,
        "B handed everything over"
    );
    add(&mut total, allowed_per_user(visits(&all, 4), 16).await);
    assert_exact(&total);
    // Listed again: B comes back into the ring, and A puts it back in its own.
    std::fs::write(&path, format!("{}\n{}\n", a.name, b.name)).unwrap();
    let both = [a.name.as_str(), b.name.as_str()];
    assert!(ring_becomes(b, &both).await, "B is back");
    assert!(ring_becomes(a, &both).await, "A heard it");
    following.abort();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_under_load_admits_no_more_than_the_limit() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    let clock = mid_window_clock();
    let (mut nodes, names) = three_stoppable(&clock, FailureMode::Local).await;
    let running: Arc<Mutex<Vec<SocketAddr>>> =
        Arc::new(Mutex::new(nodes.iter().map(|(n, _)| n.address).collect()));
    let stop = Arc::new(AtomicBool::new(false));
    let allowed = Arc::new(Mutex::new(HashMap::<String, u32>::new()));
    let client = common::HttpClient::new();
    let load: Vec<_> = (0..32)
        .map(|task| {
            let (running, stop, allowed, client) = (
                running.clone(),
                stop.clone(),
                allowed.clone(),
                client.clone(),
            );
            tokio::spawn(async move {
                let mut n = task;
                let started = std::time::Instant::now();
                let longest = std::time::Duration::from_secs(60);
                while !stop.load(Ordering::Relaxed) && n < 400_000 && started.elapsed() < longest {
                    n += 32;
                    let address = {
                        let running = running.lock().unwrap();
                        running[(n / 7) % running.len()]
                    };
                    let user = format!("user-{}", n % USERS);
                    let url = common::check_url(address, &user);
                    if client.try_get(&url).await == Some(200) {
                        *allowed.lock().unwrap().entry(user).or_default() += 1;
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    for i in 0..3 {
        let (node, stop_node) = nodes.remove(0);
        running.lock().unwrap().retain(|&a| a != node.address);
        node.backend.leave().await;
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let _ = stop_node.send(());
        drop(node);
        let listener = bind_again(&names[i]).await;
        let (node, stop_node) = stoppable(listener, &names[i], &names, &clock, FailureMode::Local);
        let joined = node.backend.join();
        running.lock().unwrap().push(node.address);
        joined.await;
        nodes.push((node, stop_node));
    }
    assert!(
        load.iter().all(|task| !task.is_finished()),
        "the load ran out before the restarts were done"
    );
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    let total = allowed.lock().unwrap().clone();
    let over: Vec<_> = total.iter().filter(|(_, &n)| n > LIMIT).collect();
    assert!(
        over.is_empty(),
        "{} users over the limit: {over:?}",
        over.len()
    );
}
