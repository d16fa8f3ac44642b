//! Storage faults on SQLite, end to end:
//! - the data directory on a small tmpfs that is filled up: writes answer 503 with a SCIM
//!   error body and `Retry-After` (never 500, no panic, nothing half-written), reads keep
//!   working, and writes succeed again by themselves once space is freed;
//! - the data directory on an ext4 file system that the kernel turns read-only under the
//!   running server (what `errors=remount-ro` does on a disk error): the same 503s, reads
//!   keep working; after the operator's repair (fsck, mount) a restarted server has every
//!   acknowledged write and none of the refused ones, and the file checks clean; a server
//!   started on a read-only database stops at once and says why.
//!
//! (Locked databases and the writer's handling of a transaction SQLite rolls back on
//! SQLITE_FULL or SQLITE_READONLY are unit-tested in `cairn-store/src/sqlite/writer.rs`;
//! the PostgreSQL outage is in `ops.rs`.)

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
    let mount = Tmpfs::mount(deployment.data_dir.path(), "6m");
    if !require(
        "a tmpfs mounted over the data directory (root)",
        mount.is_some(),
    ) {
        return;
    }
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

/// An ext4 image on a loop device mounted over a directory with `errors=remount-ro`;
/// unmounted on drop.
struct Ext4 {
    dir: PathBuf,
    image: PathBuf,
}

impl Ext4 {
    /// `None` where loop devices cannot be used (not root, no loop support).
    fn mount(image: &Path, dir: &Path) -> Option<Ext4> {
        let made = Command::new("truncate")
            .args(["-s", "64M"])
            .arg(image)
            .status()
            .is_ok_and(|s| s.success())
            && Command::new("mkfs.ext4")
                .args(["-q", "-F"])
                .arg(image)
                .status()
                .is_ok_and(|s| s.success());
        let fs = Ext4 {
            dir: dir.to_owned(),
            image: image.to_owned(),
        };
        (made && fs.mount_again()).then_some(fs)
    }

    fn mount_again(&self) -> bool {
        Command::new("mount")
            .args(["-o", "loop,errors=remount-ro"])
            .arg(&self.image)
            .arg(&self.dir)
            .status()
            .is_ok_and(|s| s.success())
    }

    /// The loop device's name (`loop3`), from /proc/mounts.
    fn device(&self) -> String {
        let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
        let dir = self.dir.canonicalize().unwrap();
        let line = mounts
            .lines()
            .rfind(|l| l.split(' ').nth(1) == dir.to_str())
            .unwrap_or_else(|| panic!("{} is not mounted", dir.display()));
        line.split(' ')
            .next()
            .unwrap()
            .trim_start_matches("/dev/")
            .to_owned()
    }

    /// What the kernel does on a disk error with `errors=remount-ro`: the file system
    /// turns read-only under every open file.
    fn fail(&self) {
        let trigger = format!("/sys/fs/ext4/{}/trigger_fs_error", self.device());
        std::fs::write(&trigger, "cairn test\n").unwrap();
        let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
        assert!(mounts.contains("emergency_ro") || mounts.contains(" ro,"));
    }

    /// The operator's repair: unmount, fsck, mount read-write again.
    fn repair(&self) {
        self.unmount();
        let fsck = Command::new("e2fsck")
            .arg("-fy")
            .arg(&self.image)
            .output()
            .unwrap();
        // 0: clean, 1: errors corrected.
        assert!(
            matches!(fsck.status.code(), Some(0 | 1)),
            "{}",
            String::from_utf8_lossy(&fsck.stdout)
        );
        assert!(self.mount_again(), "mount after fsck");
    }

    fn remount_read_only(&self) {
        let ok = Command::new("mount")
            .args(["-o", "remount,ro"])
            .arg(&self.dir)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "remount read-only");
    }

    fn unmount(&self) {
        let _ = Command::new("umount").arg(&self.dir).status();
    }
}

impl Drop for Ext4 {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

async fn count_of(t: &Tenant, name: &str) -> Reply {
    t.get(&format!("/Users?filter=userName%20eq%20%22{name}%22"))
        .await
}

#[tokio::test]
async fn a_file_system_turned_read_only_gives_503s_and_loses_nothing() {
    if backend_is_postgres() {
        return; // SQLite's own file; the PostgreSQL outage is tested in ops.rs.
    }
    let scratch = tempfile::tempdir().unwrap();
    let deployment = std::sync::Arc::new(Deployment::new());
    let fs = Ext4::mount(&scratch.path().join("fs.img"), deployment.data_dir.path());
    let need = "an ext4 image loop-mounted over the data directory (root, loop devices, mkfs.ext4)";
    if !require(need, fs.is_some()) {
        return;
    }
    let fs = fs.unwrap();
    let mut app = TestApp::spawn_on(deployment.clone(), Opts::default()).await;
    let t = app.tenant("Readonly");
    let mut acked = vec![];
    for i in 0..20 {
        let name = format!("before{i}@ro.test");
        t.create_user(&user(&name)).await;
        acked.push(name);
    }
    let first = t.get("/Users?count=1").await.json()["Resources"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    fs.fail();
    let mut refused = vec![];
    for i in 0..20 {
        let name = format!("during{i}@ro.test");
        let r = t.post("/Users", &user(&name)).await;
        match r.status {
            // The WAL may have been written before the error hit: an acknowledged write
            // must then survive like any other.
            201 => acked.push(name),
            503 => {
                r.assert_scim_error(503, None);
                assert_eq!(r.header("retry-after"), Some("1"));
                refused.push(name);
            }
            s => panic!("{s}: {}\n{}", r.text, app.log()),
        }
    }
    assert!(refused.len() >= 15, "writes kept succeeding: {refused:?}");
    let r = t
        .patch(
            &format!("/Users/{first}"),
            &json!({"schemas":[PATCH_URN],"Operations":[{"op":"replace","path":"title","value":"lost"}]}),
        )
        .await;
    assert_eq!(r.status, 503, "{}", r.text);
    r.assert_scim_error(503, None);
    assert_eq!(t.delete(&format!("/Users/{first}")).await.status, 503);
    // Reads keep working from what is on disk.
    assert_eq!(t.get(&format!("/Users/{first}")).await.status, 200);
    assert_eq!(
        count_of(&t, "before0@ro.test").await.json()["totalResults"],
        1
    );
    assert!(!app.log().contains("panicked"), "{}", app.log());

    // The operator stops the service, repairs the file system and starts it again.
    app.kill();
    fs.repair();

    // Started on a read-only database, `serve` stops at once and says why.
    fs.remount_read_only();
    let mut args = deployment.global_args();
    args.extend(["serve", "--listen", "127.0.0.1:0"].map(String::from));
    let mut serve = Command::new(cairn_bin())
        .args(&args)
        .env_remove("CAIRN_DATABASE_URL")
        .env_remove("CAIRN_DATA_DIR")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while serve.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = serve.kill();
            let _ = serve.wait();
            panic!("serve kept running on a read-only database");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = serve.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("read-only"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    // Reading still works on it (an operator's `cairn audit`, `tenant list`).
    let list = run_cli(&deployment, None, &["tenant", "list", "--json"], None);
    assert!(list.ok().json().as_array().is_some_and(|a| !a.is_empty()));
    fs.unmount();
    assert!(fs.mount_again());

    let app = TestApp::spawn_on(deployment.clone(), Opts::default()).await;
    for name in &acked {
        let r = count_of(&t_on(&app, &t), name).await;
        assert_eq!(r.json()["totalResults"], 1, "{name} lost");
    }
    for name in &refused {
        let r = count_of(&t_on(&app, &t), name).await;
        assert_eq!(r.json()["totalResults"], 0, "{name} half-written");
    }
    let u = t_on(&app, &t).get(&format!("/Users/{first}")).await.json();
    assert!(u.get("title").is_none(), "{u}");
    // Writes work again, and the file checks clean.
    t_on(&app, &t).create_user(&user("after@ro.test")).await;
    let conn = rusqlite::Connection::open(deployment.data_dir.path().join("cairn.db")).unwrap();
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
}

/// The same tenant and token, reached through another server of the deployment.
fn t_on(app: &TestApp, t: &Tenant) -> Tenant {
    let base = t.url.split("/scim/v2/").nth(1).unwrap();
    Tenant {
        url: format!("{}/scim/v2/{base}", app.base),
        ..t.clone()
    }
}
