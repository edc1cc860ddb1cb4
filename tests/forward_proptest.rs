//! Any user id, forwarded between real nodes over HTTP, is counted by its owner under
//! exactly that id.
#![cfg(feature = "cluster")]

mod common;

use common::{hourly, mid_window_clock, start_cluster, HttpClient};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn any_user_id_reaches_its_owner_unchanged(id in "\\PC{1,40}") {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let clock = mid_window_clock();
            let nodes = start_cluster(2, hourly(5), &clock).await;
            let owner = nodes[0].backend.ring().owner(&id).to_owned();
            let (at_owner, elsewhere) = if nodes[0].name == owner { (0, 1) } else { (1, 0) };
            let reply = HttpClient::new().get(&nodes[elsewhere].check_url(&id), &[]).await;
            assert_eq!(reply.status, 200, "{id:?}");
            assert_eq!(nodes[at_owner].backend.local().used(&id), 1, "{id:?} at its owner");
            assert_eq!(nodes[elsewhere].backend.local().tracked_keys(), 0, "{id:?} off its owner");
        });
    }
}
