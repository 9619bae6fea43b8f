//! Emptying the former secondary of a deleted group (what the re-create procedures do):
//! refused while it is the group's secondary, applied once the group is gone.

use reqwest::StatusCode;

use crate::common::*;

fn db_path(rg: &str, instance: &str, db: &str) -> String {
    sql(&format!("{}/databases/{db}", mi_id(rg, instance)))
}

#[tokio::test]
async fn the_former_secondary_is_emptied_only_once_the_group_is_gone() {
    let sim = Sim::demo().await;
    // fog-demo pairs A (primary) and B; after seeding both hold `sales`.
    sim.delete(&db_path(WEST, "mi-fog-b", "sales"))
        .await
        .assert_error(400, "OperationNotAllowedInCurrentGeodrConfiguration");
    assert_eq!(
        sim.get(&db_path(WEST, "mi-fog-b", "sales")).await.status,
        StatusCode::OK
    );
    let delete = sim.delete(&sql(&fog_path(EAST, "eastus", "fog-demo"))).await;
    sim.finish(&delete).await;
    // Outside a group: a long-running delete, then a second delete finds nothing (204).
    let deleted = sim.delete(&db_path(WEST, "mi-fog-b", "sales")).await;
    sim.finish(&deleted).await;
    assert_eq!(
        sim.get(&db_path(WEST, "mi-fog-b", "sales")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        sim.delete(&db_path(WEST, "mi-fog-b", "sales")).await.status,
        StatusCode::NO_CONTENT
    );
    // The primary's copy is untouched.
    assert_eq!(
        sim.get(&db_path(EAST, "mi-fog-a", "sales")).await.status,
        StatusCode::OK
    );
    let journal = sim.journal().await;
    let deletes: Vec<_> = journal
        .iter()
        .filter(|e| e["method"] == "DELETE" && e["path"].as_str().unwrap().contains("/databases/"))
        .map(|e| (e["status"].as_u64().unwrap(), e["applied"].as_bool().unwrap()))
        .collect();
    assert_eq!(deletes, [(400, false), (202, true), (204, true)]);
}
