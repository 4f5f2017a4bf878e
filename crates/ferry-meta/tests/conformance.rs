//! What every metadata store must do. Each test is written once against
//! `&dyn MetadataStore`; `backends!` runs it against each implementation.

use std::sync::Arc;

use ferry_core::blob_key::BlobKey;
use ferry_core::checksum::Crc32c;
use ferry_core::file::{FileStatus, MetadataStatus};
use ferry_core::ids::EndpointId;
use ferry_core::ids::{FileUid, KeyId, OrgId, UploadId};
use ferry_core::token::PartToken;
use ferry_core::upload::{RecordedPart, TokenClaim, UploadState};
use ferry_core::webhook::{EventType, SigningSecret};
use ferry_meta::events::{Attempt, Departure, Subject, WebhookEndpoint};
use ferry_meta::{
    AbortOutcome, FilePage, ListPosition, MetaError, MetadataStore, NewFile, Postgres, Registration, Sqlite, Store,
    UploadRecord, Workload,
};

struct Backend {
    store: Arc<dyn MetadataStore>,
    _dir: Option<tempfile::TempDir>,
}

async fn sqlite() -> Backend {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(Sqlite::open(&dir.path().join("ferry.db")).unwrap());
    Backend { store: Arc::new(store), _dir: Some(dir) }
}

/// A fresh database on the PostgreSQL that scripts/test starts. Without
/// it the PostgreSQL tests are skipped, saying so, unless the run requires
/// every service (`FERRY_TEST_INTEGRATION=1`, as scripts/test sets): then
/// they fail.
async fn postgres() -> Option<Backend> {
    let Ok(admin_url) = std::env::var("FERRY_TEST_POSTGRES_URL") else {
        if std::env::var("FERRY_TEST_INTEGRATION").is_ok_and(|v| v == "1") {
            panic!("FERRY_TEST_POSTGRES_URL is not set: run ./scripts/test, which starts PostgreSQL");
        }
        eprintln!("skipped: FERRY_TEST_POSTGRES_URL is not set (./scripts/test starts PostgreSQL)");
        return None;
    };
    let (admin, connection) = tokio_postgres::connect(&admin_url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    let name = format!("conformance_{}", FileUid::generate().uuid().simple());
    admin.batch_execute(&format!("CREATE DATABASE {name}")).await.unwrap();
    let url = format!("{}/{name}", admin_url.rsplit_once('/').unwrap().0);
    Some(Backend { store: Arc::new(Store::new(Postgres::connect(&url).await.unwrap())), _dir: None })
}

macro_rules! backends {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let backend = super::sqlite().await;
                    super::$test(backend.store.clone()).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let Some(backend) = super::postgres().await else { return };
                    super::$test(backend.store.clone()).await;
                }
            )*
        }
    };
}

backends!(
    bootstrap_happens_once,
    keys_are_found_listed_and_revoked,
    uploads_are_scoped_to_their_org,
    resume_finds_the_newest_active_upload,
    parts_are_recorded_only_while_the_upload_is_active,
    checkpoints_are_all_or_nothing,
    of_racing_completes_exactly_one_wins,
    a_registration_no_complete_was_answered_for_goes_to_one_complete,
    registering_a_taken_name_displaces_the_old_file_into_the_deletion_queue,
    a_corrupt_file_never_displaces_a_good_one,
    abort_is_idempotent_and_queues_the_uploads_storage,
    pages_run_newest_first_and_step_back_by_their_bounds,
    the_totals_follow_registrations_replacements_ingests_and_deletions,
    a_claimed_deletion_is_not_handed_out_again_until_its_lease_ends,
    idle_uploads_expire_into_the_deletion_queue,
    a_simple_upload_registers_and_clears_its_guard,
    deleting_a_file_frees_the_name_and_queues_the_bytes,
    listing_is_by_file_index_filtered_and_paged,
    files_are_ingested_once_and_a_dead_extractors_files_come_back,
    concurrent_work_in_one_org_never_deadlocks,
    a_store_that_keeps_its_own_parts_is_checked_against_them,
    parts_of_one_upload_recorded_and_checkpointed_at_once_never_deadlock,
    a_quota_counts_files_and_uploads_in_progress,
    bytes_whose_guard_a_janitor_took_are_never_registered,
    a_complete_commits_only_the_parts_it_verified,
    events_go_to_the_endpoints_that_want_them_with_their_changes,
    a_leased_delivery_is_not_handed_out_again_until_its_lease_ends,
);

const NOW: i64 = 1_800_000_000;

async fn org(store: &dyn MetadataStore, name: &str) -> OrgId {
    store.create_org(name, NOW).await.unwrap().org_id
}

fn upload(org: OrgId, name: &str, created_at: i64) -> UploadRecord {
    UploadRecord {
        upload_id: UploadId::generate(),
        org_id: org,
        file_uid: FileUid::generate(),
        file_name: name.into(),
        file_type: "text/csv".into(),
        num_bytes: 12 << 20,
        part_size: 5 << 20,
        state: UploadState::Active,
        created_at,
        last_activity_at: created_at,
        store_upload_id: None,
    }
}

/// Inserts an upload the way the server does: its storage guarded by a
/// deletion-queue entry until the upload's row exists.
async fn insert(store: &dyn MetadataStore, upload: &UploadRecord) {
    let key = BlobKey::upload(upload.upload_id, upload.file_uid, upload.store_upload_id.as_deref());
    let guard = store.enqueue_blob_deletion(&key, NOW + 86_400).await.unwrap();
    store.insert_upload(upload, guard, None).await.unwrap();
}

fn part(n: u32, token: &str) -> RecordedPart {
    RecordedPart { part_number: n, token: PartToken::from_wire(token), crc32c: Some(Crc32c(n + 1)), num_bytes: 5 << 20 }
}

fn claim(n: u32, token: &str) -> TokenClaim {
    TokenClaim { part_number: n, token: PartToken::from_wire(token) }
}

fn registration(org: OrgId, upload: &UploadRecord, status: FileStatus) -> Registration {
    Registration {
        org_id: org,
        upload_id: upload.upload_id,
        status,
        checksum_crc32c: Some(Crc32c(42)),
        verified_parts: None,
        answers_a_complete: true,
        now: NOW,
        delete_displaced_after: NOW + 3600,
    }
}

async fn bootstrap_happens_once(store: Arc<dyn MetadataStore>) {
    let key = KeyId::generate();
    assert!(store.bootstrap("default", &key, b"hash", NOW).await.unwrap());
    assert!(!store.bootstrap("default", &KeyId::generate(), b"other", NOW).await.unwrap());
    let org = store.find_org("default").await.unwrap().unwrap();
    assert_eq!(store.find_api_key(&key).await.unwrap().unwrap().org_id, org.org_id);
    assert!(matches!(store.create_org("default", NOW).await, Err(MetaError::OrgExists(_))));
}

async fn keys_are_found_listed_and_revoked(store: Arc<dyn MetadataStore>) {
    let org = org(store.as_ref(), "research").await;
    let (a, b) = (KeyId::generate(), KeyId::generate());
    store.create_api_key(&org, &a, &[1; 32], NOW).await.unwrap();
    store.create_api_key(&org, &b, &[2; 32], NOW + 1).await.unwrap();
    let keys = store.list_api_keys(&org).await.unwrap();
    assert_eq!(keys.iter().map(|k| k.key_id).collect::<Vec<_>>(), [a, b]);
    assert_eq!(keys[0].secret_hash, vec![1; 32]);
    assert!(store.revoke_api_key(&a, NOW + 5).await.unwrap());
    assert!(store.revoke_api_key(&a, NOW + 9).await.unwrap());
    assert_eq!(store.find_api_key(&a).await.unwrap().unwrap().revoked_at, Some(NOW + 5));
    assert!(!store.revoke_api_key(&KeyId::generate(), NOW).await.unwrap());
}

async fn uploads_are_scoped_to_their_org(store: Arc<dyn MetadataStore>) {
    let (mine, theirs) = (org(store.as_ref(), "mine").await, org(store.as_ref(), "theirs").await);
    let u = upload(mine, "a.csv", NOW);
    insert(store.as_ref(), &u).await;
    assert_eq!(store.get_upload(&mine, &u.upload_id).await.unwrap(), Some(u.clone()));
    assert_eq!(store.get_upload(&theirs, &u.upload_id).await.unwrap(), None);
    assert_eq!(store.find_resumable_upload(&theirs, "a.csv").await.unwrap(), None);
    assert!(matches!(store.abort_upload(&theirs, &u.upload_id, NOW).await, Err(MetaError::UploadNotFound(_))));
    let r = store.complete_upload(&registration(theirs, &u, FileStatus::Registered)).await;
    assert!(matches!(r, Err(MetaError::UploadNotFound(_))), "{r:?}");
    assert_eq!(store.get_upload_for_part_put(&u.upload_id).await.unwrap(), Some(u));
}

async fn resume_finds_the_newest_active_upload(store: Arc<dyn MetadataStore>) {
    let org = org(store.as_ref(), "o").await;
    let (old, new) = (upload(org, "a.csv", NOW), upload(org, "a.csv", NOW + 10));
    insert(store.as_ref(), &old).await;
    insert(store.as_ref(), &new).await;
    assert_eq!(store.find_resumable_upload(&org, "a.csv").await.unwrap().unwrap().upload_id, new.upload_id);
    store.abort_upload(&org, &new.upload_id, NOW).await.unwrap();
    assert_eq!(store.find_resumable_upload(&org, "a.csv").await.unwrap().unwrap().upload_id, old.upload_id);
}

async fn parts_are_recorded_only_while_the_upload_is_active(store: Arc<dyn MetadataStore>) {
    let org = org(store.as_ref(), "o").await;
    let u = upload(org, "a.csv", NOW);
    insert(store.as_ref(), &u).await;
    store.record_part(&u.upload_id, &part(1, "t1"), NOW + 7).await.unwrap();
    assert!(store.has_part(&u.upload_id, 1).await.unwrap());
    assert_eq!(store.get_upload(&org, &u.upload_id).await.unwrap().unwrap().last_activity_at, NOW + 7);
    store.record_part(&u.upload_id, &part(1, "t1b"), NOW).await.unwrap();
    assert_eq!(store.list_parts(&u.upload_id).await.unwrap()[&1].token, PartToken::from_wire("t1b"));
    store.forget_part(&u.upload_id, 1).await.unwrap();
    assert!(!store.has_part(&u.upload_id, 1).await.unwrap());

    store.abort_upload(&org, &u.upload_id, NOW).await.unwrap();
    let late = store.record_part(&u.upload_id, &part(0, "t0"), NOW).await;
    assert!(matches!(late, Err(MetaError::UploadNotActive(_, UploadState::Aborted))), "{late:?}");
    let unknown = store.record_part(&UploadId::generate(), &part(0, "t0"), NOW).await;
    assert!(matches!(unknown, Err(MetaError::UploadNotFound(_))), "{unknown:?}");
}

async fn checkpoints_are_all_or_nothing(store: Arc<dyn MetadataStore>) {
    let org = org(store.as_ref(), "o").await;
    let u = upload(org, "a.csv", NOW);
    insert(store.as_ref(), &u).await;
    store.record_part(&u.upload_id, &part(0, "t0"), NOW).await.unwrap();
    store.record_part(&u.upload_id, &part(1, "t1"), NOW).await.unwrap();
    let refused = store.checkpoint(&org, &u.upload_id, &[claim(0, "t0"), claim(1, "bad")], None, NOW).await.unwrap();
    assert_eq!(refused.unwrap_err().invalid_tokens, [1]);
    assert!(store.list_checkpoints(&u.upload_id).await.unwrap().is_empty());
    let done = store.checkpoint(&org, &u.upload_id, &[claim(0, "t0"), claim(1, "t1"), claim(0, "t0")], None, NOW).await;
    assert_eq!(done.unwrap(), Ok(2));
    assert_eq!(store.list_checkpoints(&u.upload_id).await.unwrap().len(), 2);
}

async fn of_racing_completes_exactly_one_wins(store: Arc<dyn MetadataStore>) {
    let org = org(store.as_ref(), "o").await;
    for _ in 0..10 {
        let u = upload(org, "race.csv", NOW);
        insert(store.as_ref(), &u).await;
        let racers: Vec<_> = (0..8)
            .map(|_| {
                let (store, r) = (store.clone(), registration(org, &u, FileStatus::Registered));
                tokio::spawn(async move { store.complete_upload(&r).await })
            })
            .collect();
        let mut wins = 0;
        for racer in racers {
            match racer.await.unwrap() {
                Ok(_) => wins += 1,
                Err(MetaError::UploadNotActive(_, UploadState::Completed)) => {}
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(wins, 1);
        assert_eq!(store.get_file(&org, "race.csv").await.unwrap().unwrap().file_uid, u.file_uid);
    }
}

/// A registration made for a request other than a complete (a checkpoint
/// that found the store's upload assembled) is taken by exactly one of the
/// completes racing for it; one made for a complete by none.
async fn a_registration_no_complete_was_answered_for_goes_to_one_complete(store: Arc<dyn MetadataStore>) {
    let org = org(store.as_ref(), "o").await;
    let unanswered = upload(org, "rolled.csv", NOW);
    insert(store.as_ref(), &unanswered).await;
    let rolled = Registration { answers_a_complete: false, ..registration(org, &unanswered, FileStatus::Registered) };
    let registered = store.complete_upload(&rolled).await.unwrap();
    let racers: Vec<_> = (0..8)
        .map(|_| {
            let (store, id) = (store.clone(), unanswered.upload_id);
            tokio::spawn(async move { store.take_unanswered_complete(&org, &id).await.unwrap() })
        })
        .collect();
    let mut taken = Vec::new();
    for racer in racers {
        taken.extend(racer.await.unwrap());
    }
    assert_eq!(taken, vec![registered.clone()]);
    let answered = upload(org, "answered.csv", NOW);
    insert(store.as_ref(), &answered).await;
    store.complete_upload(&registration(org, &answered, FileStatus::Registered)).await.unwrap();
    assert_eq!(store.take_unanswered_complete(&org, &answered.upload_id).await.unwrap(), None);
    // Another org's complete takes nothing.
    let other = self::org(store.as_ref(), "p").await;
    let again = upload(org, "rolled-again.csv", NOW);
    insert(store.as_ref(), &again).await;
    store
        .complete_upload(&Registration {
            answers_a_complete: false,
            ..registration(org, &again, FileStatus::Registered)
        })
        .await
        .unwrap();
    assert_eq!(store.take_unanswered_complete(&other, &again.upload_id).await.unwrap(), None);
    // Once the file is deleted, there is nothing to answer 200 for.
    store.delete_file(&org, "rolled-again.csv", NOW, NOW).await.unwrap();
    assert_eq!(store.take_unanswered_complete(&org, &again.upload_id).await.unwrap(), None);
}

async fn registering_a_taken_name_displaces_the_old_file_into_the_deletion_queue(store: Arc<dyn MetadataStore>) {
    let org = org(store.as_ref(), "o").await;
    let (first, second) = (upload(org, "a.csv", NOW), upload(org, "a.csv", NOW));
    for u in [&first, &second] {
        insert(store.as_ref(), u).await;
    }
    let a = store.complete_upload(&registration(org, &first, FileStatus::Registered)).await.unwrap();
    let b = store.complete_upload(&registration(org, &second, FileStatus::Registered)).await.unwrap();
    assert_eq!((a.displaced, b.displaced), (None, Some(first.file_uid)));
    assert_eq!(b.file.file_index, a.file.file_index + 1);
    assert_eq!(store.get_file(&org, "a.csv").await.unwrap().unwrap().file_uid, second.file_uid);
    // Queued, but not due until the grace delay has passed.
    assert!(store.claim_blob_deletions(NOW, 60, 10).await.unwrap().is_empty());
    let due = store.claim_blob_deletions(NOW + 3600, 60, 10).await.unwrap();
    assert_eq!(due.iter().map(|d| d.blob_key.clone()).collect::<Vec<_>>(), [BlobKey::File(first.file_uid)]);
    store.finish_blob_deletion(due[0].id).await.unwrap();
    assert!(store.claim_blob_deletions(NOW + 7200, 60, 10).await.unwrap().is_empty());
}

async fn a_corrupt_file_never_displaces_a_good_one(store: Arc<dyn MetadataStore>) {
    let org = org(store.as_ref(), "o").await;
    let (good, bad) = (upload(org, "a.csv", NOW), upload(org, "a.csv", NOW));
    for u in [&good, &bad] {
        insert(store.as_ref(), u).await;
    }
    store.complete_upload(&registration(org, &good, FileStatus::Registered)).await.unwrap();
    let corrupt = store.complete_upload(&registration(org, &bad, FileStatus::Corrupt)).await.unwrap();
    assert!(!corrupt.holds_name);
    assert_eq!(store.get_file(&org, "a.csv").await.unwrap().unwrap().file_uid, good.file_uid);
    let due = store.claim_blob_deletions(NOW, 60, 10).await.unwrap();
    assert_eq!(due.iter().map(|d| d.blob_key.clone()).collect::<Vec<_>>(), [BlobKey::File(bad.file_uid)]);
}

async fn abort_is_idempotent_and_queues_the_uploads_storage(store: Arc<dyn MetadataStore>) {
    let org = org(store.as_ref(), "o").await;
    let u = upload(org, "a.csv", NOW);
    insert(store.as_ref(), &u).await;
    store.record_part(&u.upload_id, &part(0, "t0"), NOW).await.unwrap();
    let AbortOutcome::Aborted { deletion } = store.abort_upload(&org, &u.upload_id, NOW).await.unwrap() else {
        panic!("the first abort found nothing to abort");
    };
    assert_eq!(store.abort_upload(&org, &u.upload_id, NOW).await.unwrap(), AbortOutcome::AlreadyAborted);
    assert!(store.list_parts(&u.upload_id).await.unwrap().is_empty());
    let due = store.claim_blob_deletions(NOW, 60, 10).await.unwrap();
    assert_eq!((due[0].id, due[0].blob_key.clone()), (deletion, BlobKey::upload(u.upload_id, u.file_uid, None)));

    let done = upload(org, "b.csv", NOW);
    insert(store.as_ref(), &done).await;
    store.complete_upload(&registration(org, &done, FileStatus::Registered)).await.unwrap();
    let refused = store.abort_upload(&org, &done.upload_id, NOW).await;
    assert!(matches!(refused, Err(MetaError::UploadNotActive(_, UploadState::Completed))), "{refused:?}");
}

async fn a_claimed_deletion_is_not_handed_out_again_until_its_lease_ends(store: Arc<dyn MetadataStore>) {
    let key = BlobKey::File(FileUid::generate());
    let id = store.enqueue_blob_deletion(&key, NOW).await.unwrap();
    assert!(store.claim_blob_deletions(NOW - 1, 60, 10).await.unwrap().is_empty(), "handed out before due");
    let first = store.claim_blob_deletions(NOW, 60, 10).await.unwrap();
    assert_eq!(first.iter().map(|d| d.id).collect::<Vec<_>>(), [id]);
    assert!(store.claim_blob_deletions(NOW + 59, 60, 10).await.unwrap().is_empty(), "handed out twice");
    // Its janitor died: once the lease ends another takes it.
    assert_eq!(store.claim_blob_deletions(NOW + 60, 60, 10).await.unwrap()[0].blob_key, key);
}

async fn idle_uploads_expire_into_the_deletion_queue(store: Arc<dyn MetadataStore>) {
    let org = org(store.as_ref(), "o").await;
    let (idle, busy) = (upload(org, "idle.csv", NOW), upload(org, "busy.csv", NOW));
    for u in [&idle, &busy] {
        insert(store.as_ref(), u).await;
    }
    store.touch_upload(&busy.upload_id, NOW + 100).await.unwrap();
    assert_eq!(store.workload(NOW + 100).await.unwrap().active_uploads, 2);
    let expired = store.expire_idle_uploads(NOW + 50, NOW + 200, 10).await.unwrap();
    assert_eq!(expired, [idle.upload_id]);
    assert_eq!(store.get_upload(&org, &idle.upload_id).await.unwrap().unwrap().state, UploadState::Aborted);
    assert_eq!(
        store.workload(NOW + 200).await.unwrap(),
        Workload { active_uploads: 1, deletions_due: 1, ..Workload::default() },
        "the expired upload's storage waits for the janitor"
    );
    let due = store.claim_blob_deletions(NOW + 200, 60, 10).await.unwrap();
    assert_eq!(
        due.iter().map(|d| d.blob_key.clone()).collect::<Vec<_>>(),
        [BlobKey::upload(idle.upload_id, idle.file_uid, None)]
    );
}

fn new_file(org: OrgId, name: &str, file_type: &str) -> NewFile {
    NewFile {
        file_uid: FileUid::generate(),
        org_id: org,
        file_name: name.into(),
        file_type: file_type.into(),
        num_bytes: 10,
        checksum_crc32c: Some(Crc32c(7)),
    }
}

async fn a_simple_upload_registers_and_clears_its_guard(store: Arc<dyn MetadataStore>) {
    let org = org(store.as_ref(), "o").await;
    let file = new_file(org, "a.csv", "text/csv");
    let guard = store.enqueue_blob_deletion(&BlobKey::File(file.file_uid), NOW + 86_400).await.unwrap();
    let registered = store.register_file(&file, guard, None, NOW, NOW + 60).await.unwrap();
    assert!(registered.holds_name);
    assert_eq!(store.get_file(&org, "a.csv").await.unwrap().unwrap().status, FileStatus::Registered);
    assert!(store.claim_blob_deletions(NOW + 86_400, 60, 10).await.unwrap().is_empty(), "the guard outlived the file");
}

async fn deleting_a_file_frees_the_name_and_queues_the_bytes(store: Arc<dyn MetadataStore>) {
    let org = org(store.as_ref(), "o").await;
    let file = new_file(org, "a.csv", "text/csv");
    let guard = store.enqueue_blob_deletion(&BlobKey::File(file.file_uid), NOW).await.unwrap();
    store.register_file(&file, guard, None, NOW, NOW).await.unwrap();
    let deleted = store.delete_file(&org, "a.csv", NOW + 5, NOW + 65).await.unwrap().unwrap();
    assert_eq!(deleted.file_uid, file.file_uid);
    assert_eq!(store.get_file(&org, "a.csv").await.unwrap(), None);
    assert_eq!(store.delete_file(&org, "a.csv", NOW + 6, NOW + 66).await.unwrap(), None);
    let stats = store.file_stats(&org).await.unwrap();
    assert_eq!((stats.num_files, stats.num_bytes, stats.last_updated), (0, 0, NOW + 5));
    assert!(store.claim_blob_deletions(NOW + 64, 60, 10).await.unwrap().is_empty());
    let due = store.claim_blob_deletions(NOW + 65, 60, 10).await.unwrap();
    assert_eq!(due.iter().map(|d| d.blob_key.clone()).collect::<Vec<_>>(), [BlobKey::File(file.file_uid)]);
}

async fn listing_is_by_file_index_filtered_and_paged(store: Arc<dyn MetadataStore>) {
    let (org, other) = (org(store.as_ref(), "o").await, org(store.as_ref(), "other").await);
    let names = ["a.csv", "b.png", "c.csv", "d.csv", "e.png"];
    for (i, name) in names.iter().enumerate() {
        let file_type = if name.ends_with("csv") { "text/csv" } else { "image/png" };
        let file = new_file(org, name, file_type);
        let guard = store.enqueue_blob_deletion(&BlobKey::File(file.file_uid), NOW).await.unwrap();
        store.register_file(&file, guard, None, NOW + i as i64, NOW).await.unwrap();
    }
    let file = new_file(other, "z.csv", "text/csv");
    let guard = store.enqueue_blob_deletion(&BlobKey::File(file.file_uid), NOW).await.unwrap();
    store.register_file(&file, guard, None, NOW, NOW).await.unwrap();
    store.delete_file(&org, "c.csv", NOW + 9, NOW).await.unwrap();

    let listed = |files: Vec<ferry_meta::FileRecord>| files.into_iter().map(|f| f.file_name).collect::<Vec<_>>();
    let shard = |file_type, offset, limit| store.list_files_shard(&org, file_type, offset, limit);
    assert_eq!(listed(shard(None, 0, 100).await.unwrap()), ["a.csv", "b.png", "d.csv", "e.png"]);
    assert_eq!(listed(shard(None, 1, 2).await.unwrap()), ["b.png", "d.csv"]);
    assert_eq!(listed(shard(Some("text/csv"), 0, 100).await.unwrap()), ["a.csv", "d.csv"]);
    let stats = store.file_stats(&org).await.unwrap();
    assert_eq!((stats.num_files, stats.num_bytes, stats.num_ingested), (4, 40, 0));
    assert_eq!(store.file_stats(&other).await.unwrap().num_files, 1);
}

async fn register(store: &dyn MetadataStore, file: &NewFile, now: i64) {
    let guard = store.enqueue_blob_deletion(&BlobKey::File(file.file_uid), now).await.unwrap();
    store.register_file(file, guard, None, now, now).await.unwrap();
}

async fn pages_run_newest_first_and_step_back_by_their_bounds(store: Arc<dyn MetadataStore>) {
    let (org, other) = (org(store.as_ref(), "o").await, org(store.as_ref(), "other").await);
    for (i, name) in ["a.csv", "b.png", "c.csv", "d.csv", "e.png", "f.csv", "g.csv"].iter().enumerate() {
        let file_type = if name.ends_with("csv") { "text/csv" } else { "image/png" };
        register(store.as_ref(), &new_file(org, name, file_type), NOW + i as i64).await;
    }
    register(store.as_ref(), &new_file(other, "z.csv", "text/csv"), NOW).await;
    let page = |file_type, from| store.list_files_page(&org, file_type, from, 3);
    let names = |page: &FilePage| page.files.iter().map(|f| f.file_name.as_str()).collect::<Vec<_>>().join(" ");
    let index = |page: &FilePage, i: usize| page.files[i].file_index as i64;

    let first = page(None, ListPosition::Newest).await.unwrap();
    assert_eq!((names(&first).as_str(), first.newer), ("g.csv f.csv e.png", None));
    assert_eq!(first.older, Some(index(&first, 2)));
    let second = page(None, ListPosition::OlderThan(first.older.unwrap())).await.unwrap();
    assert_eq!(names(&second), "d.csv c.csv b.png");
    assert_eq!((second.newer, second.older), (Some(index(&second, 0)), Some(index(&second, 2))));
    let last = page(None, ListPosition::OlderThan(second.older.unwrap())).await.unwrap();
    assert_eq!((names(&last).as_str(), last.older), ("a.csv", None));
    // Stepping back from a page gives the page before it, whole.
    let back = page(None, ListPosition::NewerThan(last.newer.unwrap())).await.unwrap();
    assert_eq!(back, second);
    let front = page(None, ListPosition::NewerThan(second.newer.unwrap())).await.unwrap();
    assert_eq!((names(&front).as_str(), front.newer), ("g.csv f.csv e.png", None));
    assert_eq!(front.older, first.older);

    let csv = page(Some("text/csv"), ListPosition::Newest).await.unwrap();
    assert_eq!(names(&csv), "g.csv f.csv d.csv");
    let csv = page(Some("text/csv"), ListPosition::OlderThan(csv.older.unwrap())).await.unwrap();
    assert_eq!((names(&csv).as_str(), csv.older), ("c.csv a.csv", None));

    // A bound whose files are gone still continues the walk.
    store.delete_file(&org, "d.csv", NOW + 9, NOW).await.unwrap();
    store.delete_file(&org, "c.csv", NOW + 9, NOW).await.unwrap();
    let after_deletes = page(None, ListPosition::OlderThan(first.older.unwrap())).await.unwrap();
    assert_eq!(names(&after_deletes), "b.png a.csv");
    assert_eq!(after_deletes.older, None);
    // Past the oldest file: an empty page whose way back is the page before.
    let empty = page(None, ListPosition::OlderThan(index(&last, 0))).await.unwrap();
    assert_eq!((empty.files.len(), empty.older), (0, None));
    let before_empty = page(None, ListPosition::NewerThan(empty.newer.unwrap())).await.unwrap();
    assert_eq!(names(&before_empty), "e.png b.png a.csv");
}

async fn the_totals_follow_registrations_replacements_ingests_and_deletions(store: Arc<dyn MetadataStore>) {
    let org = org(store.as_ref(), "o").await;
    let totals = || async {
        let stats = store.file_stats(&org).await.unwrap();
        (stats.num_files, stats.num_bytes, stats.num_ingested)
    };
    let (a, b) = (new_file(org, "a.csv", "text/csv"), new_file(org, "b.csv", "text/csv"));
    register(store.as_ref(), &a, NOW).await;
    register(store.as_ref(), &b, NOW).await;
    assert_eq!(totals().await, (2, 20, 0));
    // b is ingested, then replaced by a larger b: the new one is not ingested.
    store.claim_file_to_ingest(&b.file_uid, NOW, 60).await.unwrap().unwrap();
    store.finish_ingest(&b.file_uid, MetadataStatus::Extracted, None, None, NOW).await.unwrap();
    assert_eq!(totals().await, (2, 20, 1));
    let larger_b = NewFile { num_bytes: 30, ..new_file(org, "b.csv", "text/csv") };
    register(store.as_ref(), &larger_b, NOW).await;
    assert_eq!(totals().await, (2, 40, 0));
    // a corrupt a.csv takes no name from the good one, and counts for nothing.
    let corrupt = Registration {
        org_id: org,
        upload_id: UploadId::generate(),
        checksum_crc32c: None,
        status: FileStatus::Corrupt,
        verified_parts: None,
        answers_a_complete: true,
        now: NOW,
        delete_displaced_after: NOW,
    };
    let upload = UploadRecord { upload_id: corrupt.upload_id, num_bytes: 99, ..upload(org, "a.csv", NOW) };
    insert(store.as_ref(), &upload).await;
    store.complete_upload(&corrupt).await.unwrap();
    assert_eq!(totals().await, (2, 40, 0));
    // A file deleted while it was being ingested is not counted once done.
    store.claim_file_to_ingest(&larger_b.file_uid, NOW, 60).await.unwrap().unwrap();
    store.delete_file(&org, "b.csv", NOW, NOW).await.unwrap();
    assert_eq!(totals().await, (1, 10, 0));
    store.finish_ingest(&larger_b.file_uid, MetadataStatus::Extracted, None, None, NOW).await.unwrap();
    assert_eq!(totals().await, (1, 10, 0));
    assert_eq!(store.org_usage(&org).await.unwrap(), 10, "a.csv alone: the corrupt file holds no name");
}

async fn files_are_ingested_once_and_a_dead_extractors_files_come_back(store: Arc<dyn MetadataStore>) {
    let org = org(store.as_ref(), "o").await;
    let (a, b) = (new_file(org, "a.csv", "text/csv"), new_file(org, "b.csv", "text/csv"));
    for file in [&a, &b] {
        let guard = store.enqueue_blob_deletion(&BlobKey::File(file.file_uid), NOW).await.unwrap();
        store.register_file(file, guard, None, NOW, NOW).await.unwrap();
    }
    let claimed = store.claim_file_to_ingest(&a.file_uid, NOW, 60).await.unwrap().unwrap();
    assert_eq!(claimed.status, FileStatus::Ingesting);
    assert_eq!(store.claim_file_to_ingest(&a.file_uid, NOW, 60).await.unwrap(), None);
    // The sweep takes only b: a is leased.
    let swept = store.claim_files_to_ingest(NOW + 1, 60, 10).await.unwrap();
    assert_eq!(swept.iter().map(|f| f.file_uid).collect::<Vec<_>>(), [b.file_uid]);
    store.finish_ingest(&b.file_uid, MetadataStatus::Extracted, Some("{\"num_rows\":3}"), None, NOW + 2).await.unwrap();
    let done = store.get_file(&org, "b.csv").await.unwrap().unwrap();
    assert_eq!((done.status, done.metadata_status), (FileStatus::Ingested, MetadataStatus::Extracted));
    assert_eq!(done.attributes.as_deref(), Some("{\"num_rows\":3}"));
    assert_eq!(store.file_stats(&org).await.unwrap().num_ingested, 1);
    // a's extractor never finished: after its lease a sweep takes it again.
    let again = store.claim_files_to_ingest(NOW + 60, 60, 10).await.unwrap();
    assert_eq!(again.iter().map(|f| f.file_uid).collect::<Vec<_>>(), [a.file_uid]);
}

/// Registrations, extractions and deletions in one org, all at once: each
/// takes the org's row, so a store that locks rows in different orders in
/// different operations deadlocks here (PostgreSQL did, before its lock
/// order was fixed).
async fn concurrent_work_in_one_org_never_deadlocks(store: Arc<dyn MetadataStore>) {
    let org = org(store.as_ref(), "o").await;
    let mut previous: Option<FileUid> = None;
    for round in 0..30 {
        let mut tasks = tokio::task::JoinSet::new();
        for name in ["same.csv", "same.csv", &format!("other-{round}.csv")] {
            let (store, file) = (store.clone(), new_file(org, name, "text/csv"));
            tasks.spawn(async move {
                let guard = store.enqueue_blob_deletion(&BlobKey::File(file.file_uid), NOW).await?;
                store.register_file(&file, guard, None, NOW, NOW).await.map(|_| ())
            });
        }
        if let Some(uid) = previous {
            let store = store.clone();
            tasks.spawn(async move {
                if store.claim_file_to_ingest(&uid, NOW, 60).await?.is_some() {
                    store.finish_ingest(&uid, MetadataStatus::Extracted, None, None, NOW).await?;
                }
                Ok(())
            });
        }
        let store_for_delete = store.clone();
        let old = format!("other-{}.csv", round.max(1) - 1);
        tasks.spawn(async move { store_for_delete.delete_file(&org, &old, NOW, NOW).await.map(|_| ()) });
        while let Some(outcome) = tasks.join_next().await {
            outcome.unwrap().unwrap_or_else(|e| panic!("round {round}: {e}"));
        }
        previous = store.get_file(&org, "same.csv").await.unwrap().map(|f| f.file_uid);
    }
}

/// With an S3-compatible store the parts are the store's (from ListParts):
/// checkpoints are checked against those, the upload keeps the store's id
/// for its deletion key, and a checksum learnt at ingestion is recorded.
async fn a_store_that_keeps_its_own_parts_is_checked_against_them(store: Arc<dyn MetadataStore>) {
    let org = org(store.as_ref(), "o").await;
    let u = UploadRecord { store_upload_id: Some("2~abc/def".into()), ..upload(org, "s3.csv", NOW) };
    insert(store.as_ref(), &u).await;
    let mut store_parts = std::collections::BTreeMap::new();
    store_parts.insert(0, RecordedPart { crc32c: None, ..part(0, "etag0") });
    let claims = [claim(0, "etag0"), claim(1, "x")];
    let refused = store.checkpoint(&org, &u.upload_id, &claims, Some(&store_parts), NOW).await.unwrap();
    assert_eq!(refused.unwrap_err().invalid_tokens, [1]);
    assert_eq!(
        store.checkpoint(&org, &u.upload_id, &[claim(0, "\"etag0\"")], Some(&store_parts), NOW).await.unwrap(),
        Ok(1)
    );
    assert_eq!(
        store.get_upload(&org, &u.upload_id).await.unwrap().unwrap().store_upload_id.as_deref(),
        Some("2~abc/def")
    );

    store.abort_upload(&org, &u.upload_id, NOW).await.unwrap();
    let due = store.claim_blob_deletions(NOW, 60, 10).await.unwrap();
    assert_eq!(due[0].blob_key, BlobKey::upload(u.upload_id, u.file_uid, Some("2~abc/def")));

    let file = NewFile { checksum_crc32c: None, ..new_file(org, "late.csv", "text/csv") };
    let guard = store.enqueue_blob_deletion(&BlobKey::File(file.file_uid), NOW).await.unwrap();
    store.register_file(&file, guard, None, NOW, NOW).await.unwrap();
    assert_eq!(store.get_file(&org, "late.csv").await.unwrap().unwrap().checksum_crc32c, None);
    store.claim_file_to_ingest(&file.file_uid, NOW, 60).await.unwrap().unwrap();
    store.finish_ingest(&file.file_uid, MetadataStatus::NotExtracted, None, Some(Crc32c(99)), NOW).await.unwrap();
    assert_eq!(store.get_file(&org, "late.csv").await.unwrap().unwrap().checksum_crc32c, Some(Crc32c(99)));
}

/// A client sends parts in parallel and checkpoints each as it lands: the
/// records and checkpoints of one upload all meet on its row. (PostgreSQL
/// deadlocked here while each transaction took a shared lock on the row
/// and then updated it.)
async fn parts_of_one_upload_recorded_and_checkpointed_at_once_never_deadlock(store: Arc<dyn MetadataStore>) {
    let org = org(store.as_ref(), "o").await;
    let u = UploadRecord { num_bytes: 16 * (5 << 20), ..upload(org, "parallel.bin", NOW) };
    insert(store.as_ref(), &u).await;
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..16u32 {
        let (store, upload_id) = (store.clone(), u.upload_id);
        tasks.spawn(async move {
            let token = format!("t{n}");
            store.record_part(&upload_id, &part(n, &token), NOW + 1).await?;
            store.checkpoint(&org, &upload_id, &[claim(n, &token)], None, NOW + 1).await.map(|r| r.unwrap())
        });
    }
    while let Some(outcome) = tasks.join_next().await {
        assert_eq!(outcome.unwrap().unwrap(), 1);
    }
    assert_eq!(store.list_checkpoints(&u.upload_id).await.unwrap().len(), 16);
}

async fn a_quota_counts_files_and_uploads_in_progress(store: Arc<dyn MetadataStore>) {
    let org = org(store.as_ref(), "o").await;
    let quota = Some(100);
    let file = NewFile { num_bytes: 60, ..new_file(org, "a.csv", "text/csv") };
    let guard = store.enqueue_blob_deletion(&BlobKey::File(file.file_uid), NOW).await.unwrap();
    store.register_file(&file, guard, quota, NOW, NOW).await.unwrap();
    let u = UploadRecord { num_bytes: 30, ..upload(org, "b.csv", NOW) };
    let key = BlobKey::upload(u.upload_id, u.file_uid, None);
    let guard = store.enqueue_blob_deletion(&key, NOW).await.unwrap();
    store.insert_upload(&u, guard, quota).await.unwrap();
    assert_eq!(store.org_usage(&org).await.unwrap(), 90);
    // 90 in use: 11 more is too many, whether an upload or a file.
    let over = UploadRecord { num_bytes: 11, ..upload(org, "c.csv", NOW) };
    let guard = store.enqueue_blob_deletion(&BlobKey::upload(over.upload_id, over.file_uid, None), NOW).await.unwrap();
    let refused = store.insert_upload(&over, guard, quota).await;
    assert!(matches!(refused, Err(MetaError::QuotaExceeded { quota: 100, used: 90 })), "{refused:?}");
    let big = NewFile { num_bytes: 11, ..new_file(org, "d.csv", "text/csv") };
    let guard = store.enqueue_blob_deletion(&BlobKey::File(big.file_uid), NOW).await.unwrap();
    assert!(matches!(store.register_file(&big, guard, quota, NOW, NOW).await, Err(MetaError::QuotaExceeded { .. })));
    // Aborting frees the upload's share.
    store.abort_upload(&org, &u.upload_id, NOW).await.unwrap();
    assert_eq!(store.org_usage(&org).await.unwrap(), 60);
    let guard = store.enqueue_blob_deletion(&BlobKey::upload(over.upload_id, over.file_uid, None), NOW).await.unwrap();
    store.insert_upload(&over, guard, quota).await.unwrap();
}

async fn bytes_whose_guard_a_janitor_took_are_never_registered(store: Arc<dyn MetadataStore>) {
    let org = org(store.as_ref(), "o").await;
    let file = new_file(org, "slow.csv", "text/csv");
    let guard = store.enqueue_blob_deletion(&BlobKey::File(file.file_uid), NOW).await.unwrap();
    // The write took longer than the guard: a janitor claims it...
    assert_eq!(store.claim_blob_deletions(NOW + 1, 60, 10).await.unwrap()[0].id, guard);
    // ...and the registration must not point a name at deleted bytes.
    let refused = store.register_file(&file, guard, None, NOW + 2, NOW + 2).await;
    assert!(matches!(refused, Err(MetaError::GuardLost)), "{refused:?}");
    assert_eq!(store.get_file(&org, "slow.csv").await.unwrap(), None);

    let u = upload(org, "slow.bin", NOW);
    let guard = store.enqueue_blob_deletion(&BlobKey::upload(u.upload_id, u.file_uid, None), NOW).await.unwrap();
    store.claim_blob_deletions(NOW + 1, 60, 10).await.unwrap();
    assert!(matches!(store.insert_upload(&u, guard, None).await, Err(MetaError::GuardLost)));
    assert_eq!(store.get_upload(&org, &u.upload_id).await.unwrap(), None);
}

/// A complete commits only if the part records are still the ones it
/// checked: a part rewritten, forgotten or added since makes the commit a
/// refusal that changes nothing, and the upload stays completable.
async fn a_complete_commits_only_the_parts_it_verified(store: Arc<dyn MetadataStore>) {
    let org = org(store.as_ref(), "acme").await;
    let up = upload(org, "verified.csv", NOW);
    insert(store.as_ref(), &up).await;
    store.record_part(&up.upload_id, &part(0, "a0"), NOW).await.unwrap();
    store.record_part(&up.upload_id, &part(1, "a1"), NOW).await.unwrap();
    let verified = |tokens: &[&str]| {
        let mut r = registration(org, &up, FileStatus::Registered);
        r.verified_parts = Some(tokens.iter().enumerate().map(|(n, t)| (n as u32, PartToken::from_wire(t))).collect());
        r
    };
    // Part 1 was sent again with other bytes after the check.
    store.record_part(&up.upload_id, &part(1, "b1"), NOW).await.unwrap();
    assert!(matches!(store.complete_upload(&verified(&["a0", "a1"])).await, Err(MetaError::PartsChanged)));
    // A record the complete never saw, or one forgotten since (a rewrite
    // under way), is refused too.
    assert!(matches!(store.complete_upload(&verified(&["a0"])).await, Err(MetaError::PartsChanged)));
    store.forget_part(&up.upload_id, 1).await.unwrap();
    assert!(matches!(store.complete_upload(&verified(&["a0", "b1"])).await, Err(MetaError::PartsChanged)));
    // Nothing changed: no file, the upload active with its records.
    assert!(store.get_file(&org, "verified.csv").await.unwrap().is_none());
    assert_eq!(store.get_upload(&org, &up.upload_id).await.unwrap().unwrap().state, UploadState::Active);
    assert_eq!(store.list_parts(&up.upload_id).await.unwrap().len(), 1);
    // With the records as verified, it commits.
    store.record_part(&up.upload_id, &part(1, "b1"), NOW).await.unwrap();
    let registered = store.complete_upload(&verified(&["a0", "b1"])).await.unwrap();
    assert_eq!(registered.file.file_uid, up.file_uid);
}

fn endpoint(org: OrgId, event_types: Vec<EventType>) -> WebhookEndpoint {
    WebhookEndpoint {
        endpoint_id: EndpointId::generate(),
        org_id: org,
        url: "https://hooks.example.com/".into(),
        secret: SigningSecret::generate(),
        event_types,
        created_at: NOW,
    }
}

async fn events_go_to_the_endpoints_that_want_them_with_their_changes(store: Arc<dyn MetadataStore>) {
    let (org, other) = (org(store.as_ref(), "o").await, org(store.as_ref(), "other").await);
    let all = endpoint(org, Vec::new());
    let deletions = endpoint(org, vec![EventType::FileDeleted]);
    for e in [&all, &deletions, &endpoint(other, Vec::new())] {
        store.add_webhook(e).await.unwrap();
    }
    assert_eq!(store.list_webhooks(&org).await.unwrap(), [all.clone(), deletions.clone()]);
    let first = new_file(org, "a.csv", "text/csv");
    register(store.as_ref(), &first, NOW).await;
    let second = new_file(org, "a.csv", "text/csv");
    register(store.as_ref(), &second, NOW + 1).await;
    // A change that fails writes no event: the name is free, nothing to delete.
    assert_eq!(store.delete_file(&org, "b.csv", NOW + 2, NOW + 2).await.unwrap(), None);

    let due = store.claim_deliveries(NOW * 1000 + 5000, 60_000, 100).await.unwrap();
    let mut seen: Vec<(EndpointId, EventType, String)> = due
        .iter()
        .map(|d| {
            let what = match &d.event.subject {
                Subject::File(f) => f.file_uid.to_string(),
                Subject::DepartedFile(f, Departure::Replaced) => format!("{} replaced", f.file_uid),
                other => panic!("{other:?}"),
            };
            (d.endpoint.endpoint_id, d.event.event_type, what)
        })
        .collect();
    seen.sort_by_key(|s| (s.0, s.2.clone()));
    let mut expected = vec![
        (all.endpoint_id, EventType::FileRegistered, first.file_uid.to_string()),
        (all.endpoint_id, EventType::FileRegistered, second.file_uid.to_string()),
        (all.endpoint_id, EventType::FileDeleted, format!("{} replaced", first.file_uid)),
        (deletions.endpoint_id, EventType::FileDeleted, format!("{} replaced", first.file_uid)),
    ];
    expected.sort_by_key(|s| (s.0, s.2.clone()));
    assert_eq!(seen, expected);
    let workload = store.workload(NOW).await.unwrap();
    assert_eq!((workload.deliveries_pending, workload.deliveries_failed), (4, 0));

    // A removed endpoint gets nothing more.
    assert!(store.remove_webhook(&all.endpoint_id, NOW + 3).await.unwrap());
    assert!(!store.remove_webhook(&all.endpoint_id, NOW + 3).await.unwrap());
    assert_eq!(store.workload(NOW).await.unwrap().deliveries_pending, 1);
}

async fn a_leased_delivery_is_not_handed_out_again_until_its_lease_ends(store: Arc<dyn MetadataStore>) {
    let org = org(store.as_ref(), "o").await;
    let hook = endpoint(org, vec![EventType::FileRegistered]);
    store.add_webhook(&hook).await.unwrap();
    register(store.as_ref(), &new_file(org, "a.csv", "text/csv"), NOW).await;
    let at = NOW * 1000;
    let first = store.claim_deliveries(at, 20_000, 10).await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].attempts, 0);
    let event_id = first[0].event.event_id;
    assert!(store.claim_deliveries(at + 19_999, 20_000, 10).await.unwrap().is_empty(), "handed out twice");
    // Its worker died: once the lease ends another takes it.
    let again = store.claim_deliveries(at + 20_000, 20_000, 10).await.unwrap();
    assert_eq!(again[0].event.event_id, event_id);
    // A failed attempt is due again at the time it says, with its count.
    let retry = Attempt::RetryAt { at: at + 30_000, status: "500".into() };
    store.finish_attempt(&event_id, &hook.endpoint_id, retry, at + 20_100).await.unwrap();
    assert!(store.claim_deliveries(at + 29_999, 20_000, 10).await.unwrap().is_empty());
    let third = store.claim_deliveries(at + 30_000, 20_000, 10).await.unwrap();
    assert_eq!(third[0].attempts, 1);
    let gave_up = Attempt::GaveUp { status: "could not connect".into() };
    store.finish_attempt(&event_id, &hook.endpoint_id, gave_up, at + 30_100).await.unwrap();
    let failed = store.failed_deliveries(&org).await.unwrap();
    assert_eq!((failed.len(), failed[0].attempts, failed[0].last_status.as_deref()), (1, 2, Some("could not connect")));
    assert_eq!(store.workload(NOW).await.unwrap().deliveries_failed, 1);
    // Sent again by the operator, then delivered: kept a week, then pruned.
    assert_eq!(store.redeliver(&event_id, at + 40_000).await.unwrap(), 1);
    let fourth = store.claim_deliveries(at + 40_000, 20_000, 10).await.unwrap();
    assert_eq!(fourth[0].event.event_id, event_id);
    let delivered = Attempt::Delivered { status: "204".into() };
    store.finish_attempt(&event_id, &hook.endpoint_id, delivered, at + 40_100).await.unwrap();
    assert!(store.claim_deliveries(at + 90_000, 20_000, 10).await.unwrap().is_empty());
    assert_eq!(store.prune_deliveries(at + 40_000).await.unwrap(), 0);
    assert_eq!(store.prune_deliveries(at + 40_101).await.unwrap(), 1);
    assert_eq!(store.redeliver(&event_id, at + 50_000).await.unwrap(), 0, "the pruned event is gone");
}
