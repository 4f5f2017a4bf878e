//! Races between a complete and a PUT of the same upload, forced with the
//! failpoints of the test build: one request is held at an exact point
//! while the other runs, then let go. Whatever the order, a complete that
//! answers 200 registered exactly the bytes whose tokens it checked.

use serde_json::{Value, json};

use crate::harness::*;

const SIZE: usize = 64 * 1024;

struct Race {
    server: Server,
    client: Client,
    upload: Upload,
    a: Vec<u8>,
    b: Vec<u8>,
    token_a: String,
}

/// A 64 KiB upload whose one part holds bytes A; B is another version.
async fn race(name: &str, seed: u64) -> Option<Race> {
    let server = Server::start_with(Options::with_failpoints()?);
    // Every request to node 0, where the failpoints are set.
    let client = server.client_of(0);
    let (a, b) = (bytes(SIZE, seed), bytes(SIZE, seed + 1));
    let upload = client.start_upload(name, SIZE).await;
    let token_a = put_part(&upload.parts()[0], &a).await;
    Some(Race { server, client, upload, a, b, token_a })
}

fn part0(token: &str) -> Value {
    json!([{"part_number": 0, "part_token": token}])
}

impl Race {
    /// Starts a complete with `token` (and the CRC32C of `bytes` where the
    /// store checks one) and returns it running.
    fn complete(&self, token: &str, bytes: &[u8]) -> tokio::task::JoinHandle<Reply> {
        let (client, id, parts) = (self.client.clone(), self.upload.id().to_owned(), part0(token));
        let checksum = (self.upload.0["integrity_algorithm"] == "crc32c").then(|| crc32c_base64(bytes));
        tokio::spawn(async move {
            match checksum {
                Some(checksum) => client.complete_with_checksum(&id, parts, &checksum).await,
                None => client.complete(&id, parts).await,
            }
        })
    }

    fn put(&self, bytes: &[u8]) -> tokio::task::JoinHandle<Reply> {
        let (url, body) = (self.upload.url(0).to_owned(), bytes.to_vec());
        tokio::spawn(async move { put(&url, body).await })
    }

    async fn downloaded(&self) -> Reply {
        self.client.download(self.upload.0["file_name"].as_str().unwrap()).await
    }
}

/// The reported bug: part 0 sent again with bytes B while a complete with
/// A's token runs. The complete is held after it checked the tokens. On
/// ferry's disk the upload is sealed from before that check, so the PUT is
/// refused (409, retryable) and the file is A. With an S3-compatible store
/// the PUT goes to the store, which takes it; the store then refuses A's
/// ETag at complete, which answers 409 part_upload_in_progress and
/// registers nothing, and a complete with B's token registers B.
#[tokio::test]
async fn a_part_sent_again_during_a_complete_never_changes_what_it_registers() {
    let Some(race) = race("reput.bin", 10).await else { return };
    race.server.failpoint(0, "complete.after_check", "1*return(pause)").await;
    let complete = race.complete(&race.token_a, &race.a);
    race.server.held(0, "complete.after_check").await;
    let reput = race.put(&race.b).await.unwrap();
    race.server.release(0, "complete.after_check").await;
    let complete = complete.await.unwrap();

    if race.server.layout() == Layout::ScaleOut {
        reput.assert_ok_empty();
        complete.assert_error(409, "part_upload_in_progress");
        race.downloaded().await.assert_error(404, "file_not_found");
        let token_b = reput.header("etag").unwrap().to_owned();
        race.client.complete(race.upload.id(), part0(&race.token_a)).await.assert_error(400, "invalid_part_token");
        race.client.complete(race.upload.id(), part0(&token_b)).await.assert_ok();
        assert!(race.downloaded().await.body == race.b, "the file is not the bytes of the token completed");
    } else {
        reput.assert_error(409, "part_upload_in_progress");
        complete.assert_ok();
        assert!(race.downloaded().await.body == race.a, "the file is not the bytes whose token was checked");
    }
    let (clean, report) = race.server.check();
    assert!(clean, "{report}");
}

/// A complete that arrives while a PUT of a part is under way, held at
/// each point where the old record is gone or the new one not yet written,
/// answers 409 part_upload_in_progress (retryable), never 400
/// invalid_part_token, and changes nothing; after the PUT, the new token
/// completes and the old one does not.
#[tokio::test]
async fn a_complete_during_a_part_put_is_told_to_retry() {
    for (round, point) in ["part_put.after_forget", "part_put.before_record"].into_iter().enumerate() {
        let Some(race) = race(&format!("during-put-{round}.bin"), 20 + round as u64).await else { return };
        if race.server.layout().lacks(Needs::FerryTakesParts) {
            return;
        }
        race.server.failpoint(0, point, "1*return(pause)").await;
        let reput = race.put(&race.b);
        race.server.held(0, point).await;
        race.complete(&race.token_a, &race.a).await.unwrap().assert_error(409, "part_upload_in_progress");
        race.downloaded().await.assert_error(404, "file_not_found");
        race.server.release(0, point).await;
        let reput = reput.await.unwrap();
        reput.assert_ok_empty();
        let token_b = reput.header("etag").unwrap().to_owned();

        race.client.complete(race.upload.id(), part0(&race.token_a)).await.assert_error(400, "invalid_part_token");
        race.complete(&token_b, &race.b).await.unwrap().assert_ok();
        assert!(race.downloaded().await.body == race.b, "{point}: the file is not the bytes of the token completed");
    }
}

/// The race as it happens in the field, unforced: a complete with A's token
/// and CRC and a PUT of B let loose together, many rounds, with other
/// uploads going on. `FERRY_RACE_ROUNDS` sets the rounds (RELIABILITY.md
/// has a long run); whatever each round's order, a 200 means A.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_complete_racing_a_put_of_other_bytes_registers_what_it_checked() {
    let rounds: u64 = std::env::var("FERRY_RACE_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(40);
    let server = Server::start();
    let client = server.client();
    // Load beside the race: uploads going on all the time.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (client, stop) = (client.clone(), stop.clone());
        tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                client.upload(&format!("load-{}.bin", n % 4), &bytes(SIZE, 900 + n)).await;
                n += 1;
            }
        })
    };
    let mut outcomes = std::collections::BTreeMap::<String, u32>::new();
    for round in 0..rounds {
        let name = format!("field-{round}.bin");
        let (a, b) = (bytes(SIZE, 2 * round), bytes(SIZE, 2 * round + 1));
        let upload = client.start_upload(&name, SIZE).await;
        let token_a = put_part(&upload.parts()[0], &a).await;
        let checksum = (upload.0["integrity_algorithm"] == "crc32c").then(|| crc32c_base64(&a));
        let (completer, id, url) = (client.clone(), upload.id().to_owned(), upload.url(0).to_owned());
        // 0 to 3 ms between the two, either one first.
        let delay = std::time::Duration::from_millis(round % 4);
        let (complete_delay, put_delay) =
            if round % 8 < 4 { (delay, Default::default()) } else { (Default::default(), delay) };
        let (completed, reput) = tokio::join!(
            tokio::spawn(async move {
                tokio::time::sleep(complete_delay).await;
                let parts = part0(&token_a);
                match checksum {
                    Some(checksum) => completer.complete_with_checksum(&id, parts, &checksum).await,
                    None => completer.complete(&id, parts).await,
                }
            }),
            tokio::spawn(async move {
                tokio::time::sleep(put_delay).await;
                put(&url, b).await
            }),
        );
        let (completed, reput) = (completed.unwrap(), reput.unwrap());
        let key = format!("complete {} / put {}", completed.status.as_u16(), reput.status.as_u16());
        *outcomes.entry(key).or_default() += 1;
        if completed.status == 200 {
            assert!(client.download(&name).await.body == a, "round {round}: complete 200 but the file is not A");
        } else {
            let code = &completed.error_codes()[0];
            assert!(
                ["part_upload_in_progress", "invalid_part_token"].contains(&code.as_str()),
                "round {round}: complete answered {code}"
            );
            client.download(&name).await.assert_error(404, "file_not_found");
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    load.await.unwrap();
    eprintln!("{rounds} rounds: {outcomes:?}");
    let (clean, report) = server.check();
    assert!(clean, "{report}");
}

/// Starts a complete of `upload` with `tokens` through `client` (a client
/// of node 0) and returns it once it is held at `complete.after_store`:
/// the store has assembled the file, the commit is still to come.
async fn complete_held_after_store(
    server: &Server,
    client: &Client,
    upload: &Upload,
    tokens: &Value,
) -> tokio::task::JoinHandle<Reply> {
    server.failpoint(0, "complete.after_store", "1*return(pause)").await;
    let (client, id, tokens) = (client.clone(), upload.id().to_owned(), tokens.clone());
    let held = tokio::spawn(async move { client.complete(&id, tokens).await });
    server.held(0, "complete.after_store").await;
    held
}

/// Two completes of one upload, the first held right after the store
/// assembled the file (the rename, or CompleteMultipartUpload) and before
/// its commit, the second sent meanwhile, to the other node where there
/// is one. Exactly one answers 200 and the file is whole. (With S3 the
/// second finds the upload gone from the store and commits the assembled
/// file itself; it once rolled it forward without answering 200, and then
/// both completes were refused.)
#[tokio::test]
async fn of_two_completes_one_held_before_its_commit_exactly_one_succeeds() {
    let Some(options) = Options::with_failpoints() else { return };
    let server = Server::start_with(options);
    let (first, second) = (server.client_of(0), server.client_of(server.node_count() - 1));
    let data = bytes(SIZE, 60);
    let upload = first.start_upload("twice.bin", SIZE).await;
    let tokens = upload.put_all(&data).await;
    let held = complete_held_after_store(&server, &first, &upload, &tokens).await;
    let meanwhile = second.complete(upload.id(), tokens).await;
    server.release(0, "complete.after_store").await;
    let held = held.await.unwrap();
    let statuses = [held.status.as_u16(), meanwhile.status.as_u16()];
    assert_eq!(statuses.iter().filter(|&&s| s == 200).count(), 1, "{statuses:?}");
    for reply in [&held, &meanwhile].into_iter().filter(|r| r.status != 200) {
        reply.assert_error(409, "upload_completed");
    }
    assert!(first.download("twice.bin").await.body == data);
    let (clean, report) = server.check();
    assert!(clean, "{report}");
}

/// A checkpoint that arrives while a complete is held between the store's
/// assembly and its commit (the official Python client checkpoints in the
/// background while it completes), sent to the other node where there is
/// one. With S3 the checkpoint finds the store's upload gone and commits
/// the assembled file itself; it once answered 409 to the complete that did
/// the work too, and the client failed. The complete answers 200, the file
/// is whole, and a complete after it is `upload_completed`.
#[tokio::test]
async fn a_checkpoint_during_a_complete_leaves_the_complete_its_200() {
    let Some(options) = Options::with_failpoints() else { return };
    let server = Server::start_with(options);
    let (client, other) = (server.client_of(0), server.client_of(server.node_count() - 1));
    let data = bytes(SIZE, 70);
    let upload = client.start_upload("checkpointed.bin", SIZE).await;
    let tokens = upload.put_all(&data).await;
    let held = complete_held_after_store(&server, &client, &upload, &tokens).await;
    let checkpoint = other.checkpoint(upload.id(), tokens.clone()).await;
    server.release(0, "complete.after_store").await;
    held.await.unwrap().assert_ok();
    if checkpoint.status != 200 {
        checkpoint.assert_error(409, "upload_completed");
    }
    assert!(client.download("checkpointed.bin").await.body == data);
    other.complete(upload.id(), tokens).await.assert_error(409, "upload_completed");
    let (clean, report) = server.check();
    assert!(clean, "{report}");
}
