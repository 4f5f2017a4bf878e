//! Spec §4.3 and §4.6: metadata, listing, attribute extraction and info.

use std::io::Cursor;

use serde_json::{Value, json};

use crate::harness::*;

fn png(width: u32, height: u32, color: png::ColorType) -> Vec<u8> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(Cursor::new(&mut out), width, height);
    encoder.set_color(color);
    encoder.set_depth(png::BitDepth::Eight);
    let channels = match color {
        png::ColorType::Rgba => 4,
        png::ColorType::Rgb => 3,
        _ => 1,
    };
    let mut writer = encoder.write_header().unwrap();
    writer.write_image_data(&vec![128u8; (width * height * channels) as usize]).unwrap();
    writer.finish().unwrap();
    out
}

fn jpeg(width: u16, height: u16) -> Vec<u8> {
    let mut out = Vec::new();
    let encoder = jpeg_encoder::Encoder::new(&mut out, 80);
    encoder
        .encode(&vec![90u8; width as usize * height as usize * 3], width, height, jpeg_encoder::ColorType::Rgb)
        .unwrap();
    out
}

/// Waits until the file's attributes were extracted, and returns its metadata.
async fn ingested(client: &Client, name: &str) -> Value {
    eventually(&format!("{name} is ingested"), || async {
        client.metadata(name).await.assert_ok()["file_status"] == "FILE_STATUS_INGESTED"
    })
    .await;
    client.metadata(name).await.assert_ok()
}

#[tokio::test]
async fn a_files_record_has_every_field_of_the_contract() {
    let server = Server::start();
    let client = server.client();
    let data = b"t,x,y\n1,2,3\n".to_vec();
    let uploaded = client.simple_upload("report.csv", data.clone(), None).await.assert_ok();
    let record = ingested(&client, "report.csv").await;
    let created_at = record["created_at"].as_str().unwrap();
    assert!(created_at.ends_with('Z') && created_at.len() == 20, "{created_at}");
    assert_eq!(
        record,
        json!({"file_id": "report.csv", "file_uid": uploaded["file_uid"], "is_valid": true,
               "file_type": "text/csv", "num_bytes": data.len(), "file_status": "FILE_STATUS_INGESTED",
               "ingested": true, "file_index": 0, "file_tags": {}, "created_at": created_at,
               "checksum_crc32c": crc32c_base64(&data),
               "file_attributes": {"metadata_status": "extracted", "num_rows": 1, "num_columns": 3,
                                   "column_headers": ["t", "x", "y"]}})
    );
    client.metadata("nope.csv").await.assert_error(404, "file_not_found");
}

#[tokio::test]
async fn attributes_are_extracted_from_real_images_csv_and_jsonl() {
    let server = Server::start();
    let client = server.client();
    client.simple_upload("rgba.png", png(640, 480, png::ColorType::Rgba), None).await.assert_ok();
    client.simple_upload("gray.png", png(3, 2, png::ColorType::Grayscale), None).await.assert_ok();
    client.simple_upload("photo.jpg", jpeg(320, 200), None).await.assert_ok();
    let csv: String =
        std::iter::once("id,name\n".to_string()).chain((0..5000).map(|i| format!("{i},\"n, {i}\"\n"))).collect();
    client.simple_upload("big.csv", csv.into_bytes(), None).await.assert_ok();
    client.simple_upload("rows.jsonl", b"{\"a\": 1}\n{\"a\": [2]}\n\n\"three\"\n".to_vec(), None).await.assert_ok();
    // A direct-to-cloud upload gets its attributes too.
    let image = png(16, 8, png::ColorType::Rgb);
    let body = json!({"filename": "direct.png", "file_type": "image/png", "num_bytes": image.len()});
    let upload = Upload(client.post("/v0.5/files/uploads/initiate", body).await.assert_ok());
    let tokens = upload.put_all(&image).await;
    client.complete(upload.id(), tokens).await.assert_ok();
    client.simple_upload("movie.mp4", bytes(1000, 1), None).await.assert_ok();

    let expectations = [
        ("rgba.png", json!({"metadata_status": "extracted", "width": 640, "height": 480, "num_channels": 4})),
        ("gray.png", json!({"metadata_status": "extracted", "width": 3, "height": 2, "num_channels": 1})),
        ("photo.jpg", json!({"metadata_status": "extracted", "width": 320, "height": 200, "num_channels": 3})),
        (
            "big.csv",
            json!({"metadata_status": "extracted", "num_rows": 5000, "num_columns": 2, "column_headers": ["id", "name"]}),
        ),
        ("rows.jsonl", json!({"metadata_status": "extracted", "num_rows": 3})),
        ("direct.png", json!({"metadata_status": "extracted", "width": 16, "height": 8, "num_channels": 3})),
        ("movie.mp4", json!({"metadata_status": "not_extracted"})),
    ];
    for (name, attributes) in expectations {
        assert_eq!(ingested(&client, name).await["file_attributes"], attributes, "{name}");
    }
}

#[tokio::test]
async fn a_failed_extraction_leaves_the_file_whole_and_usable() {
    let server = Server::start();
    let client = server.client();
    let broken = b"\x89PNG\r\n\x1a\nthis is not a png at all".to_vec();
    client.simple_upload("broken.png", broken.clone(), None).await.assert_ok();
    client.simple_upload("broken.jsonl", b"{\"ok\": 1}\n{not json\n".to_vec(), None).await.assert_ok();
    for name in ["broken.png", "broken.jsonl"] {
        let record = ingested(&client, name).await;
        assert_eq!(record["file_attributes"], json!({"metadata_status": "failed"}), "{name}");
        assert_eq!(record["is_valid"], true);
    }
    assert_eq!(client.download("broken.png").await.body, broken);
}

fn names_of(files: &Value) -> Vec<String> {
    files.as_array().unwrap().iter().map(|f| f["file_id"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn shards_list_by_file_index_as_the_older_clients_ask() {
    let server = Server::start();
    let client = server.client();
    for i in 0..7 {
        let (name, file_type) =
            if i % 2 == 0 { (format!("f{i}.csv"), "text/csv") } else { (format!("f{i}.txt"), "text/plain") };
        client.simple_upload(&name, format!("{i}\n").into_bytes(), Some(file_type)).await.assert_ok();
    }
    client.delete("f2.csv").await.assert_ok();
    let names = |reply: Reply| names_of(&reply.assert_ok());
    assert_eq!(
        names(client.get("/v0.5/files/metadata?shard_index=-1").await),
        ["f0.csv", "f1.txt", "f3.txt", "f4.csv", "f5.txt", "f6.csv"]
    );
    assert_eq!(
        names(client.get("/v0.5/files/metadata?shard_index=1&max_items_per_shard=4").await),
        ["f5.txt", "f6.csv"]
    );
    assert_eq!(
        names(client.get("/v0.5/files/metadata?shard_index=-1&max_items_per_shard=2").await),
        ["f0.csv", "f1.txt"]
    );
    // -1 for both, the documented defaults, as the older client sends them.
    assert_eq!(
        names(client.get("/v0.5/files/metadata?shard_index=-1&max_items_per_shard=-1").await),
        ["f0.csv", "f1.txt", "f3.txt", "f4.csv", "f5.txt", "f6.csv"]
    );
    assert_eq!(
        names(client.get("/v0.5/files/metadata?max_items_per_shard=-1&file_type=text/csv").await),
        ["f0.csv", "f4.csv", "f6.csv"]
    );
    assert!(names(client.get("/v0.5/files/metadata?shard_index=9").await).is_empty());
    // Found by schemathesis: a shard number whose offset overflows.
    assert!(names(client.get("/v0.5/files/metadata?shard_index=9223372036854775807").await).is_empty());
    let shard = client.get("/v0.5/files/metadata?shard_index=0").await.json();
    let indexes: Vec<u64> = shard.as_array().unwrap().iter().map(|f| f["file_index"].as_u64().unwrap()).collect();
    assert!(indexes.windows(2).all(|w| w[0] < w[1]), "{indexes:?}");

    for bad in [
        "max_items_per_shard=0",
        "max_items_per_shard=-2",
        "max_items_per_shard=1001",
        "shard_index=-2",
        "shard_index=x",
    ] {
        client.get(&format!("/v0.5/files/metadata?{bad}")).await.assert_error(400, "invalid_parameter");
    }
    // Another org sees none of it.
    assert!(names(server.new_org("other").get("/v0.5/files/metadata?shard_index=-1").await).is_empty());
}

/// A page of the listing, and its four fields.
async fn page(client: &Client, query: &str) -> (Vec<String>, bool, Option<String>, Option<String>) {
    let page = client.get(&format!("/v0.5/files/metadata{query}")).await.assert_ok();
    let cursor = |field: &str| page[field].as_str().map(str::to_owned);
    (names_of(&page["data"]), page["has_more"].as_bool().unwrap(), cursor("next_cursor"), cursor("prev_cursor"))
}

#[tokio::test]
async fn pages_run_newest_first_and_step_back_with_their_cursors() {
    let server = Server::start();
    let client = server.client();
    for i in 0..7 {
        let (name, file_type) =
            if i % 3 == 0 { (format!("f{i}.csv"), "text/csv") } else { (format!("f{i}.txt"), "text/plain") };
        client.simple_upload(&name, format!("{i}\n").into_bytes(), Some(file_type)).await.assert_ok();
    }
    let (first, more, next, prev) = page(&client, "?limit=3").await;
    assert_eq!((first, more, prev), (vec!["f6.csv".into(), "f5.txt".into(), "f4.txt".into()], true, None));
    let (second, more, next, prev) = page(&client, &format!("?limit=3&after={}", next.unwrap())).await;
    assert_eq!((second.clone(), more), (vec!["f3.csv".into(), "f2.txt".into(), "f1.txt".into()], true));
    let back = page(&client, &format!("?limit=3&before={}", prev.unwrap())).await;
    assert_eq!((back.0, back.1, back.3), (vec!["f6.csv".into(), "f5.txt".into(), "f4.txt".into()], false, None));
    let (last, more, end, prev) = page(&client, &format!("?limit=3&after={}", next.unwrap())).await;
    assert_eq!((last, more, end), (vec!["f0.csv".into()], false, None));
    assert_eq!(page(&client, &format!("?limit=3&before={}", prev.unwrap())).await.0, second);
    // The default page holds 100; the filter is by exact type.
    assert_eq!(page(&client, "").await.0.len(), 7);
    let (csv, more, ..) = page(&client, "?file_type=text/csv").await;
    assert_eq!((csv, more), (vec!["f6.csv".into(), "f3.csv".into(), "f0.csv".into()], false));
    // Another org's list is empty, and this org's cursors mean nothing there.
    let other = server.new_org("other");
    let (_, _, next, _) = page(&client, "?limit=1").await;
    assert!(page(&other, "").await.0.is_empty());
    let foreign = other.get(&format!("/v0.5/files/metadata?after={}", next.unwrap())).await;
    foreign.assert_error(400, "invalid_parameter");
    assert!(
        foreign.json()["errors"][0]["message"].as_str().unwrap().contains("another organization"),
        "{}",
        foreign.json()
    );
}

#[tokio::test]
async fn a_bad_page_query_is_refused_with_a_way_forward() {
    let server = Server::start();
    let client = server.client();
    client.simple_upload("a.csv", b"x\n".to_vec(), None).await.assert_ok();
    for bad in ["limit=0", "limit=1001", "limit=x", "after=nonsense", "before=AAAA", "after=", "after=%00"] {
        let reply = client.get(&format!("/v0.5/files/metadata?{bad}")).await;
        reply.assert_error(400, "invalid_parameter");
        assert!(!reply.json()["errors"][0]["suggestion"].as_str().unwrap_or_default().is_empty(), "{bad}: {reply:?}");
    }
    // Both ways at once cannot be served.
    client.simple_upload("b.csv", b"x\n".to_vec(), None).await.assert_ok();
    let (_, _, next, _) = page(&client, "?limit=1").await;
    let next = next.unwrap();
    client
        .get(&format!("/v0.5/files/metadata?after={next}&before={next}"))
        .await
        .assert_error(400, "invalid_parameter");
}

/// A walk with `after` while files are added and deleted around it: every
/// file that existed throughout is visited exactly once.
#[tokio::test]
async fn a_walk_visits_every_file_that_stayed_once_while_others_come_and_go() {
    let server = Server::start();
    let client = server.client();
    for i in 0..40 {
        client.simple_upload(&format!("stays-{i:02}.txt"), vec![b'x'], None).await.assert_ok();
        if i % 4 == 0 {
            client.simple_upload(&format!("goes-{i:02}.txt"), vec![b'y'], None).await.assert_ok();
        }
    }
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    let mut step = 0;
    loop {
        let query = match &after {
            None => "?limit=7".to_owned(),
            Some(cursor) => format!("?limit=7&after={cursor}"),
        };
        let (names, more, next, _) = page(&client, &query).await;
        seen.extend(names);
        // Between pages: a new file (newer than the walk's start, so not in
        // it) and a deleted one (some not reached yet).
        step += 1;
        client.simple_upload(&format!("new-{step}.txt"), vec![b'z'], None).await.assert_ok();
        if step * 4 < 40 {
            client.delete(&format!("goes-{:02}.txt", step * 4)).await.assert_ok();
        }
        if !more {
            break;
        }
        after = next;
    }
    let stayed: Vec<String> = seen.iter().filter(|n| n.starts_with("stays-")).cloned().collect();
    let expected: Vec<String> = (0..40).rev().map(|i| format!("stays-{i:02}.txt")).collect();
    assert_eq!(stayed, expected, "every file that stayed, newest first, each once");
    assert!(seen.iter().all(|n| !n.starts_with("new-")), "a file newer than the walk's start: {seen:?}");
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), seen.len(), "a file twice: {seen:?}");
}

#[tokio::test]
async fn info_counts_files_bytes_and_ingested_files() {
    let server = Server::start();
    let client = server.client();
    let empty = client.get("/v0.5/files/info").await.assert_ok();
    assert_eq!((empty["num_files"].as_u64(), empty["num_bytes"].as_u64()), (Some(0), Some(0)));
    client.simple_upload("a.csv", b"x\n1\n".to_vec(), None).await.assert_ok();
    client.simple_upload("b.bin", bytes(1000, 2), None).await.assert_ok();
    ingested(&client, "a.csv").await;
    ingested(&client, "b.bin").await;
    let info = client.get("/v0.5/files/info").await.assert_ok();
    assert_eq!(
        (info["num_files"].as_u64(), info["num_bytes"].as_u64(), info["num_ingested"].as_u64()),
        (Some(2), Some(1004), Some(2))
    );
    let last_updated = info["last_updated"].as_f64().unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    assert!((now - last_updated).abs() < 60.0, "{last_updated} vs {now}");
}
