//! Secrets at rest: webhook signing secrets (and the subscriber-link key) are stored encrypted
//! under INCIDENTD_SECRET_KEY and still sign; a dump of the database holds none of them;
//! legacy plaintext is encrypted at the next start; `incidentd secrets rotate` (the real
//! binary) moves every value to the first key; SQLite without a key generates a key file,
//! Postgres without one warns.

use std::time::Duration;

use incidentd::secrets::KeyRing;
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{Backend, Db, TestApp, backend, drop_database, http_client, serve_binary, skip_unless};
use crate::receivers::{Received, Receiver};

/// The app with `keys` as INCIDENTD_SECRET_KEY, on a fresh database.
async fn app_with_key(keys: &str) -> TestApp {
    let keys = keys.to_string();
    TestApp::spawn_with(move |c| c.secret_key = Some(keys.into())).await
}

/// A restart of the app on `url` with `keys` (or none).
async fn restart(url: &str, keys: Option<&str>) -> TestApp {
    let keys = keys.map(str::to_string);
    TestApp::spawn_on_with(url, move |c| c.secret_key = keys.map(Into::into)).await
}

/// Creates a webhook subscription to `receiver` over REST: `(id, secret)`.
async fn webhook(app: &TestApp, receiver: &Receiver) -> (String, String) {
    let res = app.post("/v1/subscriptions", json!({"channel": "webhook", "target": receiver.url})).await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    (res.body["id"].as_str().unwrap().to_string(), res.body["secret"].as_str().unwrap().to_string())
}

/// Declares an incident and waits for the `n`th request at the receiver.
async fn delivered(app: &TestApp, receiver: &Receiver, n: usize) -> Received {
    app.incident(&format!("incident {n}")).await;
    app.service.sequence_all().await.unwrap();
    receiver.wait_for(n).await.pop().unwrap()
}

/// Checks the signature with an independent Standard Webhooks implementation.
fn verify(secret: &str, r: &Received) {
    let wh = standardwebhooks::Webhook::new(secret).expect("a valid whsec_ secret");
    wh.verify(&r.body, &r.headers).unwrap_or_else(|e| panic!("signature does not verify: {e:?}"));
}

/// One text column of one row, as stored.
async fn stored_text(db: &Db, sql: &str) -> String {
    let sql = sqlx::AssertSqlSafe(sql.to_string());
    match db {
        Db::Pg(p) => sqlx::query_scalar(sql).fetch_one(p).await,
        Db::Lite(p) => sqlx::query_scalar(sql).fetch_one(p).await,
    }
    .expect("query runs")
}

async fn stored_secret(db: &Db, subscription: &str) -> String {
    stored_text(db, &format!("SELECT secret FROM subscriptions WHERE id = '{subscription}'")).await
}

/// Everything a copy of the database holds: `pg_dump` of it on Postgres; on SQLite the bytes
/// of the database file with its write-ahead log and shared-memory file.
async fn dump(url: &str) -> Vec<u8> {
    match backend() {
        Backend::Postgres => {
            let out = tokio::process::Command::new("pg_dump")
                .arg("--dbname")
                .arg(url)
                .output()
                .await
                .expect("pg_dump runs (postgresql-client)");
            assert!(out.status.success(), "pg_dump failed: {}", String::from_utf8_lossy(&out.stderr));
            assert!(String::from_utf8_lossy(&out.stdout).contains("COPY public.subscriptions"), "a full dump");
            out.stdout
        }
        Backend::Sqlite => {
            let path = url.strip_prefix("sqlite:").unwrap();
            let mut bytes = std::fs::read(path).expect("the database file");
            for suffix in ["-wal", "-shm"] {
                if let Ok(more) = std::fs::read(format!("{path}{suffix}")) {
                    bytes.extend(more);
                }
            }
            bytes
        }
    }
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// Asserts no copy of `secret` (whole, or its random part) is in `bytes`.
fn assert_absent(bytes: &[u8], secret: &str, what: &str) {
    let random = secret.trim_start_matches("whsec_");
    assert!(!contains(bytes, secret) && !contains(bytes, random), "{what} holds the plaintext secret");
}

#[tokio::test]
async fn webhook_secrets_are_stored_encrypted_and_still_sign() {
    let key = KeyRing::generate_key();
    let key_id = KeyRing::parse(&key, "test").unwrap().key_ids()[0].to_string();
    let keys = key.clone();
    // Mail configured (the server need not answer): customers may subscribe.
    let app = TestApp::spawn_with(move |c| {
        c.secret_key = Some(keys.into());
        c.smtp_url = Some("smtp://127.0.0.1:9".to_string().into());
    })
    .await;
    let receiver = Receiver::start().await;
    let (sub, secret) = webhook(&app, &receiver).await;
    verify(&secret, &delivered(&app, &receiver, 1).await);

    // Rotating the subscription's secret: both columns are sealed, both still sign.
    let rotated = app.post(&format!("/v1/subscriptions/{sub}/rotate-secret"), json!({})).await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.body);
    let new_secret = rotated.body["secret"].as_str().unwrap().to_string();
    let got = delivered(&app, &receiver, 2).await;
    verify(&secret, &got);
    verify(&new_secret, &got);

    // The subscriber-link key the service keeps for itself is sealed too.
    let res = http_client().post(app.url("/status/subscribe")).json(&json!({"email": "jane@example.com"})).send();
    assert_eq!(res.await.unwrap().status(), StatusCode::ACCEPTED);

    let db = app.db().await;
    let stored = stored_secret(&db, &sub).await;
    assert!(stored.starts_with(&format!("enc:v1:{key_id}:")), "{stored}");
    let previous = stored_text(&db, &format!("SELECT previous_secret FROM subscriptions WHERE id = '{sub}'")).await;
    assert!(previous.starts_with("enc:v1:"), "{previous}");
    let link_key = match &db {
        Db::Pg(p) => sqlx::query_scalar::<_, Vec<u8>>("SELECT value FROM service_keys").fetch_one(p).await,
        Db::Lite(p) => sqlx::query_scalar::<_, Vec<u8>>("SELECT value FROM service_keys").fetch_one(p).await,
    }
    .unwrap();
    assert!(link_key.starts_with(format!("enc:v1:{key_id}:").as_bytes()), "the link key is sealed");
    db.close().await;

    // A copy of the whole database holds neither secret, nor the key.
    let url = app.stop().await;
    let bytes = dump(&url).await;
    assert!(contains(&bytes, &format!("enc:v1:{key_id}:")), "the dump holds the sealed values");
    assert_absent(&bytes, &secret, "the dump");
    assert_absent(&bytes, &new_secret, "the dump");
    assert!(!contains(&bytes, &key), "the dump holds the key");
    drop_database(&url);
}

#[tokio::test]
async fn plaintext_secrets_from_before_are_encrypted_at_the_next_start_and_still_sign() {
    let key = KeyRing::generate_key();
    let app = app_with_key(&key).await;
    let receiver = Receiver::start().await;
    let (sub, _) = webhook(&app, &receiver).await;
    let url = app.stop().await;

    // A row as written before secrets were encrypted.
    let legacy = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let db = Db::open(&url).await;
    db.execute(&format!("UPDATE subscriptions SET secret = '{legacy}' WHERE id = '{sub}'")).await;
    db.close().await;

    let app = restart(&url, Some(&key)).await;
    let db = app.db().await;
    let stored = stored_secret(&db, &sub).await;
    db.close().await;
    assert!(stored.starts_with("enc:v1:"), "encrypted at start: {stored}");
    verify(legacy, &delivered(&app, &receiver, 1).await);

    // Idempotent: the next start leaves the value as it is.
    let url = app.stop().await;
    let app = restart(&url, Some(&key)).await;
    let db = app.db().await;
    assert_eq!(stored_secret(&db, &sub).await, stored);
    db.close().await;
    let url = app.stop().await;
    assert_absent(&dump(&url).await, legacy, "the dump after encrypting in place");
    drop_database(&url);
}

/// `incidentd secrets rotate` with the database and keys in its environment.
async fn rotate(url: &str, keys: &str) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_incidentd"))
        .args(["secrets", "rotate"])
        .env_remove("DATABASE_URL")
        .env("INCIDENTD_DATABASE_URL", url)
        .env("INCIDENTD_SECRET_KEY", keys)
        .env("INCIDENTD_LOG", "warn")
        .kill_on_drop(true)
        .output()
        .await
        .expect("incidentd runs")
}

#[tokio::test]
async fn rotation_re_encrypts_under_the_first_key_and_the_old_key_can_be_dropped() {
    let old = KeyRing::generate_key();
    let new = KeyRing::generate_key();
    let new_id = KeyRing::parse(&new, "test").unwrap().key_ids()[0].to_string();
    let app = app_with_key(&old).await;
    let receiver = Receiver::start().await;
    let (first, first_secret) = webhook(&app, &receiver).await;
    let (second, second_secret) = webhook(&app, &receiver).await;
    let url = app.stop().await;

    // Without the old key, nothing decrypts: rotation fails naming the problem, and so does
    // a start.
    let out = rotate(&url, &new).await;
    assert!(!out.status.success(), "rotation without the old key must fail");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("which INCIDENTD_SECRET_KEY does not hold"), "{stderr}");
    let config = {
        let mut c = incidentd::config::Config::for_tests(&url);
        c.secret_key = Some(new.clone().into());
        c.admin_token = Some("t".to_string().into());
        c
    };
    let refused = incidentd::app::Application::build(&config).await.err().expect("a start without the key fails");
    assert!(format!("{refused:#}").contains("INCIDENTD_SECRET_KEY"), "{refused:#}");

    // new,old: every value moves to the new key.
    let out = rotate(&url, &format!("{new},{old}")).await;
    assert!(out.status.success(), "rotate failed: {}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("re-encrypted 2 of 2 stored secrets"), "{stdout}");
    let db = Db::open(&url).await;
    for sub in [&first, &second] {
        assert!(stored_secret(&db, sub).await.starts_with(&format!("enc:v1:{new_id}:")));
    }
    db.close().await;
    let again = rotate(&url, &format!("{new},{old}")).await;
    assert!(String::from_utf8_lossy(&again.stdout).contains("re-encrypted 0 of 2"), "nothing left to rotate");

    // The old key dropped: the service starts and signs with the same secrets.
    let app = restart(&url, Some(&new)).await;
    delivered(&app, &receiver, 2).await;
    let signed_by = |s: &str| {
        let wh = standardwebhooks::Webhook::new(s).unwrap();
        receiver.received().iter().any(|r| wh.verify(&r.body, &r.headers).is_ok())
    };
    assert!(signed_by(&first_secret) && signed_by(&second_secret), "each subscription signs with its secret");
    let url = app.stop().await;
    drop_database(&url);
}

#[tokio::test]
async fn sqlite_without_a_key_generates_a_key_file_and_reuses_it() {
    skip_unless!(Sqlite, "the key file is SQLite's; Postgres without a key is tested below");
    let app = TestApp::spawn().await;
    let dir = std::path::Path::new(app.database_url.strip_prefix("sqlite:").unwrap()).parent().unwrap().to_path_buf();
    let file = dir.join("incidentd-secret.key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).expect("the key file exists").permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "readable by its owner only");
    }
    let key = std::fs::read_to_string(&file).unwrap();
    let key_id = KeyRing::parse(&key, "file").unwrap().key_ids()[0].to_string();
    let receiver = Receiver::start().await;
    let (sub, secret) = webhook(&app, &receiver).await;
    let db = app.db().await;
    assert!(stored_secret(&db, &sub).await.starts_with(&format!("enc:v1:{key_id}:")));
    db.close().await;

    let url = app.stop().await;
    let app = restart(&url, None).await;
    assert_eq!(std::fs::read_to_string(&file).unwrap(), key, "the same key after a restart");
    verify(&secret, &delivered(&app, &receiver, 1).await);
    let url = app.stop().await;
    assert_absent(&dump(&url).await, &secret, "the database");
    drop_database(&url);
}

#[tokio::test]
async fn postgres_without_a_key_starts_and_warns_at_every_start() {
    skip_unless!(Postgres, "SQLite generates a key instead");
    let url = crate::helpers::fresh_database_url();
    let warning = "secrets are stored unencrypted; set INCIDENTD_SECRET_KEY";
    let warned = |served: &crate::helpers::Served| served.logs.lock().unwrap().iter().any(|l| l.contains(warning));
    let mut secret = String::new();
    for start in 0..2 {
        let served = serve_binary(&url, "token", &[]).await;
        let res = http_client().get(format!("{}/readyz", served.base)).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "start {start} serves");
        assert!(warned(&served), "start {start} warns: {:?}", served.logs.lock().unwrap());
        if start == 0 {
            let res = http_client()
                .post(format!("{}/v1/subscriptions", served.base))
                .bearer_auth("token")
                .json(&json!({"channel": "webhook", "target": "http://127.0.0.1:9/hook"}))
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), StatusCode::CREATED);
            secret = res.json::<serde_json::Value>().await.unwrap()["secret"].as_str().unwrap().to_string();
        }
        drop(served);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let db = Db::open(&url).await;
    assert_eq!(stored_text(&db, "SELECT secret FROM subscriptions").await, secret, "stored as it is, as warned");

    // With a key: no warning, and what was stored in plaintext is encrypted.
    let served = serve_binary(&url, "token", &[("INCIDENTD_SECRET_KEY", &KeyRing::generate_key())]).await;
    assert!(!warned(&served), "{:?}", served.logs.lock().unwrap());
    assert!(stored_text(&db, "SELECT secret FROM subscriptions").await.starts_with("enc:v1:"));
    db.close().await;
    drop(served);
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop_database(&url);
}
