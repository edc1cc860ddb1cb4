//! The queue and its dispatcher, with stand-in targets.

use super::dispatch::BUSY_AT_CHECKS;
use super::*;

fn metrics() -> Arc<RemoteMetrics> {
    Arc::new(RemoteMetrics::new(crate::observe::Remote::Peer, "owner"))
}

/// A queue to `target` whose checks wait at most `timeout`.
fn queue_to(target: Target, timeout: Duration) -> Coalescer<Target> {
    Coalescer::new("owner", timeout, target, metrics())
}

fn one() -> PolicySet {
    let policy = crate::Policy::per_window(std::num::NonZeroU32::MIN, Duration::from_secs(1));
    PolicySet::from(policy)
}
use std::sync::Mutex as StdMutex;

/// A stand-in target that records the keys of each batch it was sent, and answers as
/// `hung` says.
#[derive(Clone, Default)]
struct Target {
    sent: Arc<StdMutex<Vec<Vec<String>>>>,
    hung: bool,
}

impl Target {
    /// A target that takes 200 ms per batch, then allows each check. It breaks the
    /// sender's promise (it answers past a short deadline), which only a current-thread
    /// runtime's callers, each with a timer of its own, survive: the tests that wait on
    /// its answers run on one.
    fn slow() -> Self {
        Self::default()
    }

    /// A target that keeps its promise and no more: it holds every batch until the
    /// batch's deadline, then answers each check as timed out (a hung owner, as a sender
    /// sees it).
    fn hung() -> Self {
        Self {
            hung: true,
            ..Self::default()
        }
    }
}

impl SendBatch for Target {
    type Answer = ();
    const MAX_BATCH: usize = 16;
    const IN_FLIGHT: usize = 2;

    async fn send(&self, batch: Vec<Job<()>>) {
        let keys = batch.iter().map(|job| job.key.to_string()).collect();
        self.sent.lock().unwrap().push(keys);
        if !self.hung {
            tokio::time::sleep(Duration::from_millis(200)).await;
            for job in batch {
                let _ = job.reply.send(Ok(()));
            }
            return;
        }
        tokio::time::sleep_until(batch[0].deadline).await;
        let timed_out = BackendError::Timeout {
            target: "owner".into(),
            after: Duration::ZERO,
        };
        fail_all(batch, &timed_out);
    }
}

// Regression: under a backlog the dispatcher sent every queued check, so the owner
// counted checks whose callers had already been answered (twice under `local`). Also
// what keeps each caller's own timer on a current-thread runtime: the first two callers
// are answered at their deadline, while the target holds their batches.
#[tokio::test(start_paused = true)]
async fn a_check_whose_deadline_passed_in_the_queue_is_never_sent() {
    let target = Target::slow();
    let queue = queue_to(target.clone(), Duration::from_millis(100));
    // Both slots taken (a batch each, answered after the timeout), then two queue.
    let first = tokio::spawn(queue.check("first".into(), one()));
    tokio::task::yield_now().await;
    let second = tokio::spawn(queue.check("second".into(), one()));
    tokio::task::yield_now().await;
    // Queued now (`check` queues at once) and not awaited: their callers are still
    // there when a slot comes free, past their deadline.
    let queued: Vec<_> = ["late-1", "late-2"]
        .into_iter()
        .map(|key| queue.check(key.into(), one()))
        .collect();
    // The owner is slower than the timeout: the first callers give up too.
    for sent in [first, second] {
        let error = sent.await.unwrap().unwrap_err();
        assert!(matches!(error, BackendError::Timeout { .. }), "{error}");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(*target.sent.lock().unwrap(), [["first"], ["second"]]);
    for late in queued {
        let error = late.await.unwrap_err();
        assert!(matches!(error, BackendError::Timeout { .. }), "{error}");
    }
}

// Regression: a check that came while a batch was out waited for its answer (one
// batch per target on the wire), even when the target had room for another.
#[tokio::test(start_paused = true)]
async fn a_check_leaves_at_once_while_a_slot_is_free_and_queues_when_none_is() {
    let target = Target::slow();
    let queue = queue_to(target.clone(), Duration::from_secs(1));
    let mut checks = Vec::new();
    for key in ["first", "second", "third", "fourth"] {
        checks.push(tokio::spawn(queue.check(key.into(), one())));
        tokio::task::yield_now().await;
    }
    // Two slots: the first two left at once, each alone; the others wait.
    let sent = |target: &Target| target.sent.lock().unwrap().clone();
    assert_eq!(sent(&target), [vec!["first"], vec!["second"]]);
    tokio::time::sleep(Duration::from_millis(250)).await;
    // A slot came free: everything that queued went together.
    assert_eq!(
        sent(&target),
        [vec!["first"], vec!["second"], vec!["third", "fourth"]]
    );
    for check in checks {
        check.await.unwrap().unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn a_busy_target_gets_no_second_batch_though_a_slot_is_free() {
    let target = Target::slow();
    let queue = queue_to(target.clone(), Duration::from_secs(1));
    // Queued before the dispatcher first runs: one batch that makes the target busy
    // (within the cap of one batch).
    const { assert!(BUSY_AT_CHECKS <= Target::MAX_BATCH) };
    let busy: Vec<String> = (0..BUSY_AT_CHECKS).map(|i| format!("busy-{i}")).collect();
    let mut checks: Vec<_> = busy
        .iter()
        .map(|key| tokio::spawn(queue.check(key.as_str().into(), one())))
        .collect();
    tokio::task::yield_now().await;
    checks.push(tokio::spawn(queue.check("late".into(), one())));
    tokio::task::yield_now().await;
    let sent = |target: &Target| target.sent.lock().unwrap().clone();
    assert_eq!(
        sent(&target),
        std::slice::from_ref(&busy),
        "the late one waits"
    );
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(sent(&target), [busy, vec!["late".to_owned()]]);
    for check in checks {
        check.await.unwrap().unwrap();
    }
}

// Regression: the dispatcher died with the runtime of the first check, and every
// later check failed with "check queue closed".
#[test]
fn a_queue_outlives_the_runtime_that_first_used_it() {
    let target = Target::slow();
    let queue = queue_to(target.clone(), Duration::from_secs(1));
    for _ in 0..3 {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        let checked = runtime.block_on(async { queue.check("alice".into(), one()).await });
        checked.unwrap();
    }
    assert_eq!(target.sent.lock().unwrap().len(), 3);
}

#[test]
fn callers_go_without_a_timer_only_when_worker_threads_drive_the_dispatcher() {
    for (flavor, expected) in [
        (RuntimeFlavor::MultiThread, Driven::ByWorkers),
        (RuntimeFlavor::CurrentThread, Driven::OnOneThread),
    ] {
        let runtime = match flavor {
            RuntimeFlavor::MultiThread => tokio::runtime::Builder::new_multi_thread(),
            _ => tokio::runtime::Builder::new_current_thread(),
        }
        .enable_time()
        .build()
        .unwrap();
        let queue = queue_to(Target::slow(), Duration::from_secs(1));
        runtime.block_on(async {
            for key in ["starts the dispatcher", "finds it running"] {
                let (reply, _answer) = oneshot::channel();
                let job = Job {
                    key: key.into(),
                    policies: one(),
                    deadline: Instant::now() + Duration::from_secs(1),
                    reply,
                };
                assert_eq!(queue.enqueue(job), Some(expected), "{flavor:?}, {key}");
            }
        });
    }
}

// Without a timer of their own, callers rely on the dispatcher and the target to answer
// every check by its deadline: those that left at once and those that queued behind them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_worker_threads_checks_to_a_hung_target_are_answered_without_timers_of_their_own() {
    let target = Target::hung();
    let queue = queue_to(target.clone(), Duration::from_millis(100));
    let answered = async {
        // Both slots taken by a batch each; the next two queue behind them until a slot
        // is free (the first batch given up at its deadline), then hang too, or expire
        // in the queue if the dispatcher comes to them late.
        let mut checks = Vec::new();
        for (key, batches_out) in [("first", 1), ("second", 2)] {
            checks.push(tokio::spawn(queue.check(key.into(), one())));
            while target.sent.lock().unwrap().len() < batches_out {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        for key in ["late-1", "late-2"] {
            checks.push(tokio::spawn(queue.check(key.into(), one())));
        }
        let mut answers = Vec::new();
        for check in checks {
            answers.push(check.await.unwrap());
        }
        answers
    };
    let answers = tokio::time::timeout(Duration::from_secs(10), answered)
        .await
        .expect("every check answered, none left waiting");
    assert_eq!(answers.len(), 4);
    for answer in answers {
        let error = answer.unwrap_err();
        assert!(matches!(error, BackendError::Timeout { .. }), "{error}");
    }
    let sent = target.sent.lock().unwrap().clone();
    assert_eq!(sent[..2], [vec!["first"], vec!["second"]]);
}
