//! Deleting a managed database: refused while it is part of a failover group, applied once
//! the group is gone (the runbooks that re-create a group empty the former secondary so).

use reqwest::StatusCode;

use crate::common::*;

fn db_path(rg: &str, instance: &str, db: &str) -> String {
    sql(&format!("{}/databases/{db}", mi_id(rg, instance)))
}

#[tokio::test]
async fn a_database_in_a_group_is_not_deleted_and_one_outside_is() {
    let sim = Sim::demo().await;
    // fog-demo pairs A (primary) and B; after seeding both hold `sales`.
    for (rg, mi) in [(EAST, "mi-fog-a"), (WEST, "mi-fog-b")] {
        let refused = sim.delete(&db_path(rg, mi, "sales")).await;
        refused.assert_error(400, "OperationNotAllowedInCurrentGeodrConfiguration");
        assert_eq!(sim.get(&db_path(rg, mi, "sales")).await.status, StatusCode::OK);
    }
    let delete = sim.delete(&sql(&fog_path(EAST, "eastus", "fog-demo"))).await;
    sim.finish(&delete).await;
    // Outside a group: deleted at once, and a second delete finds nothing (204).
    let deleted = sim.delete(&db_path(WEST, "mi-fog-b", "sales")).await;
    assert_eq!(deleted.status, StatusCode::ACCEPTED, "{}", deleted.body);
    let status = sim.get(&deleted.header("azure-asyncoperation").unwrap()).await;
    assert_eq!(status.body["status"], "Succeeded", "{}", status.body);
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
    assert_eq!(deletes, [(400, false), (400, false), (202, true), (204, true)]);
}
