//! Storage faults on SQLite, end to end: the data directory on a small tmpfs that is
//! filled up. Writes answer 503 with a SCIM error body and `Retry-After` (never 500, no
//! panic, nothing half-written), reads keep working, and writes succeed again by
//! themselves once space is freed. (Read-only and locked databases, and the writer's
//! handling of a transaction SQLite rolls back on SQLITE_FULL, are unit-tested in
//! `cairn-store/src/sqlite/writer.rs`; the PostgreSQL outage is in `ops.rs`.)

use crate::support::*;
use reqwest::Method;
use serde_json::json;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A tmpfs mounted over a directory, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// `None` where mounting is not allowed (not root).
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(dir.to_owned()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the file system holding `dir` until writes fail with ENOSPC.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    loop {
        if f.write_all(&chunk).and_then(|()| f.sync_all()).is_err() {
            break;
        }
    }
    path
}

fn user(name: &str) -> serde_json::Value {
    json!({"schemas":[USER_URN],"userName":name,"displayName":"x".repeat(1000),
           "emails":[{"value":name,"type":"work","primary":true}],"active":true})
}

#[tokio::test]
async fn a_full_disk_gives_503s_and_writes_resume_when_space_is_freed() {
    if backend_is_postgres() {
        return; // SQLite's own file; the PostgreSQL outage is tested in ops.rs.
    }
    let deployment = std::sync::Arc::new(Deployment::new());
    let Some(_mount) = Tmpfs::mount(deployment.data_dir.path(), "6m") else {
        eprintln!("faults: skipped, mounting a tmpfs needs root");
        return;
    };
    let app = TestApp::spawn_on(deployment.clone(), Opts::default()).await;
    let t = app.tenant("Full");
    let first = t.create_user(&user("first@full.test")).await;

    let filler = fill(deployment.data_dir.path());
    let mut acked = vec!["first@full.test".to_owned()];
    let mut refused = vec![];
    // The WAL may still have room for a few writes; keep writing until the disk says no.
    for i in 0..2000 {
        let name = format!("u{i}@full.test");
        let r = match t.send(Method::POST, "/Users", &user(&name)).send().await {
            Ok(r) => Reply::of(r).await,
            Err(e) => panic!("{e}\n{}", app.log()),
        };
        match r.status {
            201 => acked.push(name),
            503 => {
                r.assert_scim_error(503, None);
                assert_eq!(r.header("retry-after"), Some("1"));
                refused.push(name);
                if refused.len() >= 5 {
                    break;
                }
            }
            s => panic!("{s}: {}\n{}", r.text, app.log()),
        }
    }
    assert!(!refused.is_empty(), "the full disk never refused a write");
    // An update is refused the same way; reads still work.
    let id = first["id"].as_str().unwrap();
    let r = t
        .patch(
            &format!("/Users/{id}"),
            &json!({"schemas":[PATCH_URN],"Operations":[{"op":"replace","path":"title","value":"t"}]}),
        )
        .await;
    assert!(
        r.status == 503 || r.status == 200,
        "{}: {}",
        r.status,
        r.text
    );
    let title_written = r.status == 200;
    assert_eq!(t.get(&format!("/Users/{id}")).await.status, 200);

    // Space again: the service recovers by itself.
    std::fs::remove_file(filler).unwrap();
    let mut recovered = false;
    for i in 0..50 {
        let name = format!("after{i}@full.test");
        let r = t.post("/Users", &user(&name)).await;
        assert!(
            r.status == 201 || r.status == 503,
            "{}: {}",
            r.status,
            r.text
        );
        if r.status == 201 {
            acked.push(name);
            recovered = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(recovered, "writes did not resume\n{}", app.log());

    // Every acknowledged write is there, no refused one is.
    for name in &acked {
        let r = t
            .get(&format!("/Users?filter=userName%20eq%20%22{name}%22"))
            .await;
        assert_eq!(r.json()["totalResults"], 1, "{name} lost");
    }
    for name in &refused {
        let r = t
            .get(&format!("/Users?filter=userName%20eq%20%22{name}%22"))
            .await;
        assert_eq!(r.json()["totalResults"], 0, "{name} half-written");
    }
    let u = t.get(&format!("/Users/{id}")).await.json();
    assert_eq!(u["title"] == "t", title_written, "{u}");
    assert!(!app.log().contains("panicked"));
}
