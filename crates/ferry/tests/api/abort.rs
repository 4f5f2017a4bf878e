//! Spec §3.6: abort.

use serde_json::json;

use crate::harness::*;

#[tokio::test]
async fn abort_answers_200_empty_frees_the_staging_file_and_can_repeat() {
    let server = Server::start();
    let client = server.client();
    let data = bytes(PART + 1, 50);
    let upload = client.start_upload("abort.bin", data.len()).await;
    put_part(&upload.parts()[0], &data).await;
    assert_eq!(server.blobs("staging").await.len(), 1);

    // A body that is not a JSON object is a confused client: refused, and
    // the upload is left as it was.
    let path = format!("/v0.5/files/uploads/{}/abort", upload.id());
    client.post(&path, json!(-2608857)).await.assert_error(400, "invalid_parameter");
    assert_eq!(server.blobs("staging").await.len(), 1);

    let reply = client.abort(upload.id()).await;
    reply.assert_ok_empty();
    assert!(server.blobs("staging").await.is_empty(), "the upload's storage is still there");
    client.abort(upload.id()).await.assert_ok_empty();
    // Without any body at all, too.
    let bare = client.call(reqwest::Method::POST, &path, None).await;
    bare.assert_ok_empty();

    client.part_urls(upload.id(), json!([0])).await.assert_error(404, "upload_not_found");
    client.complete(upload.id(), json!([])).await.assert_error(404, "upload_not_found");
    let fresh = client.resume("abort.bin", data.len()).await.assert_ok();
    assert_eq!(fresh["is_resume"], false, "an aborted upload was resumed");
}

#[tokio::test]
async fn abort_of_a_completed_upload_is_409_and_of_an_unknown_one_404() {
    let server = Server::start();
    let client = server.client();
    let data = bytes(10, 51);
    let upload = client.start_upload("kept.bin", data.len()).await;
    let tokens = upload.put_all(&data).await;
    client.complete(upload.id(), tokens).await.assert_ok();
    client.abort(upload.id()).await.assert_error(409, "upload_completed");
    assert_eq!(client.download("kept.bin").await.body, data);
    client.abort("upl_01jfz8k2m4c5v6b7n8p9q0r1s2").await.assert_error(404, "upload_not_found");
}
