//! Renaming a database (`ALTER DATABASE ... MODIFY NAME`, through the emulator's SQL stand-in):
//! refused for a database of a failover group, applied outside one, re-runnable.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::common::*;

async fn rename_with(sim: &Sim, server: &str, from: &str, to: &str, guarded: bool) -> Reply {
    sim.send(
        Method::POST,
        "/_sim/sql/rename-database",
        Some(json!({ "server": server, "from": from, "to": to, "guarded": guarded })),
    )
    .await
}

async fn rename(sim: &Sim, server: &str, from: &str, to: &str) -> Reply {
    rename_with(sim, server, from, to, false).await
}

#[tokio::test]
async fn a_database_in_a_group_is_not_renamed_and_one_outside_is() {
    let sim = Sim::demo().await;
    let fqdn = "mi-fog-a.9f4e1c2b7a3d5.database.windows.net";
    rename(&sim, fqdn, "sales", "sales2024")
        .await
        .assert_error(400, "DatabaseRenameInFailoverGroupNotSupported");
    let db = |name: &str| sql(&format!("{}/databases/{name}", mi_id(EAST, "mi-fog-a")));
    assert_eq!(sim.get(&db("sales")).await.status, StatusCode::OK);
    let delete = sim.delete(&sql(&fog_path(EAST, "eastus", "fog-demo"))).await;
    sim.finish(&delete).await;
    let done = rename(&sim, fqdn, "sales", "sales2024").await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    assert_eq!(done.body["renamed"], true);
    assert_eq!(sim.get(&db("sales")).await.status, StatusCode::NOT_FOUND);
    assert_eq!(sim.get(&db("sales2024")).await.status, StatusCode::OK);
    // Again: the plain statement fails (the old name is gone, 911); the guarded one finds
    // the rename done and changes nothing.
    rename(&sim, fqdn, "sales", "sales2024").await.assert_error(404, "911");
    let again = rename_with(&sim, fqdn, "sales", "sales2024", true).await;
    assert_eq!(
        (again.status, again.body["renamed"].clone()),
        (StatusCode::OK, json!(false))
    );
    // SQL Server's errors: the new name taken (1801), the old one missing (911).
    rename(&sim, fqdn, "hr", "audit").await.assert_error(409, "1801");
    rename(&sim, fqdn, "nope", "nope2").await.assert_error(404, "911");
}
