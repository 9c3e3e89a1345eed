//! The zone-stickiness story (issue 5): its three outcomes, from the example's own code.
#[allow(dead_code)]
#[path = "../examples/zone_stickiness.rs"]
mod story;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_resolving_once_hits_one_zone_only() {
    let split = story::run(false, 1, 10).await.unwrap();
    assert!(
        split
            == story::Split {
                zone_a: 10,
                zone_b: 0
            }
            || split
                == story::Split {
                    zone_a: 0,
                    zone_b: 10
                },
        "{split:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_clients_resolving_afresh_split_about_evenly() {
    let split = story::run(false, 1000, 1).await.unwrap();
    assert_eq!(split.zone_a + split.zone_b, 1000);
    assert!((0.35..=0.65).contains(&split.share_a()), "{split:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_zone_makes_even_one_client_split_evenly() {
    let split = story::run(true, 1, 200).await.unwrap();
    assert!((0.35..=0.65).contains(&split.share_a()), "{split:?}");
}
