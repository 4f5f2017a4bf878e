//! PostgreSQL restarted mid-upload: requests fail cleanly with 503 (which
//! clients retry), then succeed, and nothing is lost. The test runs its own
//! PostgreSQL, started as scripts/test starts one, so stopping it disturbs
//! no other test.

use std::process::{Command, Stdio};

use serde_json::json;

use crate::harness::*;

/// A PostgreSQL of this test's own.
struct OwnPostgres {
    url: String,
    dir: String,
    bin: String,
    port: String,
}

fn script(body: &str) -> String {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let output = Command::new("bash")
        .args([
            "-c",
            &format!("set -e; cd {root}; source scripts/lib/common.sh; source scripts/lib/postgres.sh; {body}"),
        ])
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(output.status.success(), "the PostgreSQL script failed: {body}");
    String::from_utf8(output.stdout).unwrap()
}

impl OwnPostgres {
    fn start() -> Self {
        let out = script(r#"start_postgres 2>/dev/null; echo "$FERRY_TEST_POSTGRES_URL|$pg_dir|$pg_bin|$pg_port""#);
        let fields: Vec<&str> = out.trim().split('|').collect();
        let own = Self { url: fields[0].into(), dir: fields[1].into(), bin: fields[2].into(), port: fields[3].into() };
        psql(&own.url, "CREATE DATABASE ferry");
        own
    }

    fn database_url(&self) -> String {
        format!("{}/ferry", self.url.rsplit_once('/').unwrap().0)
    }

    fn stop(&self) {
        script(&format!(r#"as_postgres "{}/pg_ctl -D {}/data -m fast -w stop" >/dev/null"#, self.bin, self.dir));
    }

    fn start_again(&self) {
        let (bin, dir, port) = (&self.bin, &self.dir, &self.port);
        script(&format!(
            r#"as_postgres "{bin}/pg_ctl -D {dir}/data -l {dir}/log -w -o \"-k {dir} -p {port} -c listen_addresses=127.0.0.1\" start" >/dev/null"#
        ));
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .args([
                "-c",
                &format!("source scripts/lib/postgres.sh; pg_dir={} pg_bin={}; stop_postgres", self.dir, self.bin),
            ])
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
            .status();
    }
}

#[tokio::test]
async fn a_database_restart_answers_503_meanwhile_and_loses_nothing() {
    let postgres = OwnPostgres::start();
    let mut options = Options { layout: Layout::Embedded, ..Options::default() };
    options.args.extend(["--database-url".to_owned(), postgres.database_url()]);
    let server = Server::start_with(options);
    let client = server.client();
    let data = bytes(2 * PART + 3, 210);
    let upload = client.start_upload("outage.bin", data.len()).await;
    let first = put_part(&upload.parts()[0], &data).await;

    postgres.stop();
    let info = client.get("/v0.5/files/info").await;
    info.assert_error(503, "service_unavailable");
    assert!(info.header("retry-after").is_some());
    client.part_urls(upload.id(), json!([1])).await.assert_error(503, "service_unavailable");
    let health = reply(http().get(format!("{}/health", server.url)).send().await.unwrap()).await;
    assert_eq!(health.status, 503);

    postgres.start_again();
    eventually("the server reaches its database again", || async {
        client.get("/v0.5/files/info").await.status == 200
    })
    .await;
    let mut tokens = vec![json!({"part_number": 0, "part_token": first})];
    for part in &upload.parts()[1..] {
        tokens.push(json!({"part_number": part["part_number"], "part_token": put_part(part, &data).await}));
    }
    client.complete_checked(&upload, json!(tokens), &data).await.assert_ok();
    assert_eq!(sha256(&client.download("outage.bin").await.body), sha256(&data));
}
