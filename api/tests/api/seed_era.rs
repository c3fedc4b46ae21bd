//! The original's first clients: `POST /api/fractal` with the task as the
//! producer generated it, `PUT {duration, checksum}`, read it back.

use reqwest::StatusCode;
use reqwest::header::LOCATION;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, spawn_app};

async fn seed_era_client(backend: Backend) {
    let app: TestApp = spawn_app(backend).await;
    // From the original's log: "generated task: {...}".
    let task = json!({
        "width": 510, "yb": 2.478654026560605, "uuid": "212e8c23-e67f-4bd3-86e1-5a5e811ee2f4",
        "iterations": 281, "xb": 1.1428457603077387, "xa": -3.3528957195683087,
        "ya": -2.1341119130263717, "height": 278
    });
    let response = app.post_json("/api/fractal", &task).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(
        response.headers()[LOCATION],
        "/api/fractal/212e8c23-e67f-4bd3-86e1-5a5e811ee2f4"
    );
    let created: Value = response.json().await.expect("json");
    for key in [
        "uuid",
        "width",
        "height",
        "iterations",
        "xa",
        "xb",
        "ya",
        "yb",
    ] {
        assert_eq!(created[key], task[key], "{key}");
    }
    // "task ... processed: {'duration': 0.87, 'checksum': 'b22d97...', 'uuid': '212e8c23-...'}"
    let checksum = "b22d97f5a7c8e63ad1e7f7c4e3c3a9f0d2b1c0a9f8e7d6c5b4a3928170615243";
    let result = json!({"duration": 0.87, "checksum": checksum, "uuid": "212e8c23-e67f-4bd3-86e1-5a5e811ee2f4"});
    let response = app
        .put_json("/api/fractal/212e8c23-e67f-4bd3-86e1-5a5e811ee2f4", &result)
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let read: Value = app
        .get("/api/fractal/212e8c23-e67f-4bd3-86e1-5a5e811ee2f4")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(read["duration"], json!(0.87));
    assert_eq!(read["checksum"], json!(checksum));
    assert_eq!(read["width"], json!(510));
    assert_eq!(read["xa"], json!(-3.3528957195683087));
    // The same record through /v1, and in the seed-era listing.
    let v1: Value = app
        .get("/v1/fractal/212e8c23-e67f-4bd3-86e1-5a5e811ee2f4")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(v1, read);
    let page: Value = app
        .get("/api/fractal?page=1&results_per_page=10")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(page["num_results"], json!(1));
    assert_eq!(page["objects"][0], read);
    let response = app
        .http
        .delete(app.at("/api/fractal/212e8c23-e67f-4bd3-86e1-5a5e811ee2f4"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    app.stop().await;
}

#[tokio::test]
async fn seed_era_client_on_sqlite() {
    seed_era_client(Backend::Sqlite).await;
}

#[tokio::test]
async fn seed_era_client_on_mariadb() {
    seed_era_client(Backend::MySql).await;
}

#[tokio::test]
async fn seed_era_client_on_postgres() {
    seed_era_client(Backend::Postgres).await;
}
