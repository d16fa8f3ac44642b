use crate::support::*;
use serde_json::json;

#[tokio::test]
async fn serves_scim_and_ops_from_the_cli_made_tenant() {
    let app = TestApp::spawn().await;
    let t = app.tenant("Acme");
    assert!(t.url.starts_with(&app.base), "{}", t.url);
    assert!(!t.url.contains('_'));
    let u = t
        .create_user(&json!({"schemas":[USER_URN],"userName":"smoke@acme.test"}))
        .await;
    let got = t
        .get(&format!("/Users/{}", u["id"].as_str().unwrap()))
        .await;
    assert_eq!(got.status, 200);
    assert_eq!(got.json()["userName"], "smoke@acme.test");
    let h = app.get("/healthz").send().await.unwrap();
    assert_eq!(h.status(), 200);
}
