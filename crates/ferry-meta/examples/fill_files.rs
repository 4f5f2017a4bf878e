//! Fills an org with N registered files straight in its metadata database,
//! in one statement, for bench/run's listing section (a million files
//! through HTTP would take the bench's whole budget). The rows are what a
//! registration writes: names `f00000000.bin`…, one file in ten of type
//! `text/csv`, the rest `application/octet-stream`, 1,000 bytes each, all
//! ingested; the org's totals and next `file_index` are set to match.
//!
//! Usage: fill_files sqlite PATH ORG N | fill_files postgres URL ORG N
//!
//! Prints the cursors the bench pages from, one a line: `middle CURSOR`
//! (after the file in the middle) and `end CURSOR` (the last page of 1,000).

use ferry_core::cursor::Cursor;
use ferry_core::ids::OrgId;

/// The rows, from a series `i` the engine generates. `file_uid` is `fil_`
/// and `i` in 26 digits: a valid TypeID, distinct per row.
const SELECT_FILES: &str = "SELECT 'fil_' || {PAD}, $ORG, 'f' || {NAME} || '.bin',
        CASE WHEN i % 10 = 0 THEN 'text/csv' ELSE 'application/octet-stream' END,
        1000, 'ingested', i, TRUE, 1764000000, 'not_extracted'";
const COLUMNS: &str =
    "file_uid, org_id, file_name, file_type, num_bytes, status, file_index, holds_name, created_at, metadata_status";
const COUNTERS: &str = "UPDATE orgs SET num_files = $N, num_bytes = $BYTES, num_ingested = $N,
        next_file_index = $N, files_changed_at = 1764000000 WHERE org_id = $ORG";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, engine, target, org, n] = args.as_slice() else {
        eprintln!("usage: fill_files sqlite PATH ORG N | fill_files postgres URL ORG N");
        std::process::exit(2);
    };
    let n: i64 = n.parse().expect("N is a number");
    let org_id: OrgId = match engine.as_str() {
        "sqlite" => fill_sqlite(target, org, n),
        "postgres" => fill_postgres(target, org, n),
        other => panic!("unknown engine {other}"),
    };
    let cursor = |bound: i64| Cursor { org_id, bound }.encode();
    println!("middle {}", cursor(n / 2));
    println!("end {}", cursor(1000.min(n)));
}

fn statements(org_sql: &str, n: i64, pad: &str, name: &str) -> (String, String) {
    let select = SELECT_FILES.replace("{PAD}", pad).replace("{NAME}", name).replace("$ORG", org_sql);
    let counters =
        COUNTERS.replace("$N", &n.to_string()).replace("$BYTES", &(n * 1000).to_string()).replace("$ORG", org_sql);
    (select, counters)
}

fn fill_sqlite(path: &str, org: &str, n: i64) -> OrgId {
    let conn = rusqlite::Connection::open(path).expect("open the SQLite database");
    // The server runs beside it; its janitor may hold the write lock a moment.
    conn.busy_timeout(std::time::Duration::from_secs(30)).expect("busy timeout");
    let org_id: String =
        conn.query_row("SELECT org_id FROM orgs WHERE name = ?1", [org], |r| r.get(0)).expect("the org exists");
    let quoted = format!("'{org_id}'");
    let (select, counters) = statements(&quoted, n, "printf('%026d', i)", "printf('%08d', i)");
    conn.execute_batch(&format!(
        "BEGIN;
         WITH RECURSIVE series(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM series WHERE i < {last})
         INSERT INTO files ({COLUMNS}) {select} FROM series;
         {counters};
         COMMIT;
         ANALYZE;",
        last = n - 1
    ))
    .expect("fill SQLite");
    org_id.parse().expect("an org id")
}

fn fill_postgres(url: &str, org: &str, n: i64) -> OrgId {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.expect("connect");
        tokio::spawn(connection);
        let org_id: String =
            client.query_one("SELECT org_id FROM orgs WHERE name = $1", &[&org]).await.expect("the org exists").get(0);
        let quoted = format!("'{org_id}'");
        let (select, counters) = statements(&quoted, n, "lpad(i::text, 26, '0')", "lpad(i::text, 8, '0')");
        client
            .batch_execute(&format!(
                "BEGIN;
                 INSERT INTO files ({COLUMNS}) {select} FROM generate_series(0, {last}) AS i;
                 {counters};
                 COMMIT;",
                last = n - 1
            ))
            .await
            .expect("fill PostgreSQL");
        // On its own: VACUUM refuses to run in the batch's transaction.
        client.batch_execute("VACUUM ANALYZE files").await.expect("vacuum");
        org_id.parse().expect("an org id")
    })
}
