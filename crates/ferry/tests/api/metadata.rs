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

#[tokio::test]
async fn the_listing_is_ordered_filtered_and_sharded() {
    let server = Server::start();
    let client = server.client();
    for i in 0..7 {
        let (name, file_type) =
            if i % 2 == 0 { (format!("f{i}.csv"), "text/csv") } else { (format!("f{i}.txt"), "text/plain") };
        client.simple_upload(&name, format!("{i}\n").into_bytes(), Some(file_type)).await.assert_ok();
    }
    client.delete("f2.csv").await.assert_ok();
    let names = |reply: Reply| -> Vec<String> {
        reply.assert_ok().as_array().unwrap().iter().map(|f| f["file_id"].as_str().unwrap().to_owned()).collect()
    };
    assert_eq!(
        names(client.get("/v0.5/files/metadata").await),
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
    assert_eq!(names(client.get("/v0.5/files/metadata?file_type=text/csv").await), ["f0.csv", "f4.csv", "f6.csv"]);
    assert!(names(client.get("/v0.5/files/metadata?shard_index=9").await).is_empty());
    // Found by schemathesis: a shard number whose offset overflows.
    assert!(names(client.get("/v0.5/files/metadata?shard_index=9223372036854775807").await).is_empty());
    let indexes: Vec<u64> = client
        .get("/v0.5/files/metadata")
        .await
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["file_index"].as_u64().unwrap())
        .collect();
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
    assert!(names(server.new_org("other").get("/v0.5/files/metadata").await).is_empty());
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
