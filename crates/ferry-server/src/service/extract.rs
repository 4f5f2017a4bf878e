//! Attribute extraction: what a file's content says about it. Runs on a
//! blocking reader, in bounded memory whatever the file's size: images are
//! read to their header only, CSV record by record, JSONL value by value.

use std::io::{BufReader, Cursor, Read};

use serde::de::IgnoredAny;

/// How much of an image is read to find its header. Headers sit at the
/// start; metadata blocks before the frame header rarely come near this.
const IMAGE_PREFIX: u64 = 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attributes {
    Image { width: u32, height: u32, num_channels: u32 },
    Csv { num_rows: u64, num_columns: u64, column_headers: Vec<String> },
    Jsonl { num_rows: u64 },
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ExtractError(String);

fn failed(what: &str, e: impl std::fmt::Display) -> ExtractError {
    ExtractError(format!("{what}: {e}"))
}

/// Whether files of this type have attributes to extract.
pub fn has_attributes(file_type: &str) -> bool {
    matches!(file_type, "image/png" | "image/jpeg" | "text/csv" | "application/x-ndjson")
}

/// Extracts the attributes of a file of `file_type` from its bytes.
/// Returns `None` for a type without attributes.
pub fn extract(file_type: &str, reader: &mut impl Read) -> Option<Result<Attributes, ExtractError>> {
    Some(match file_type {
        "image/png" => png(reader),
        "image/jpeg" => jpeg(reader),
        "text/csv" => csv(reader),
        "application/x-ndjson" => jsonl(reader),
        _ => return None,
    })
}

fn prefix(reader: impl Read) -> Result<Cursor<Vec<u8>>, ExtractError> {
    let mut bytes = Vec::new();
    reader.take(IMAGE_PREFIX).read_to_end(&mut bytes).map_err(|e| failed("reading", e))?;
    Ok(Cursor::new(bytes))
}

fn png(reader: impl Read) -> Result<Attributes, ExtractError> {
    let mut decoder = png::Decoder::new(prefix(reader)?);
    let info = decoder.read_header_info().map_err(|e| failed("PNG header", e))?;
    Ok(Attributes::Image { width: info.width, height: info.height, num_channels: info.color_type.samples() as u32 })
}

fn jpeg(reader: impl Read) -> Result<Attributes, ExtractError> {
    let mut decoder = zune_jpeg::JpegDecoder::new(prefix(reader)?);
    decoder.decode_headers().map_err(|e| failed("JPEG header", e))?;
    let info = decoder.info().ok_or_else(|| ExtractError("JPEG header: no frame header".into()))?;
    Ok(Attributes::Image { width: info.width.into(), height: info.height.into(), num_channels: info.components.into() })
}

fn csv(reader: impl Read) -> Result<Attributes, ExtractError> {
    // Rows of differing widths are tolerated: the header fixes the columns.
    let mut csv = csv::ReaderBuilder::new().flexible(true).from_reader(reader);
    let column_headers: Vec<String> =
        csv.headers().map_err(|e| failed("CSV header", e))?.iter().map(str::to_owned).collect();
    let mut record = csv::ByteRecord::new();
    let mut num_rows = 0;
    while csv.read_byte_record(&mut record).map_err(|e| failed("CSV row", e))? {
        num_rows += 1;
    }
    Ok(Attributes::Csv { num_rows, num_columns: column_headers.len() as u64, column_headers })
}

/// Counts the JSON values of a JSON Lines file, one per line. The values
/// are skipped, not built, so memory stays small even for a huge line.
fn jsonl(reader: impl Read) -> Result<Attributes, ExtractError> {
    let mut num_rows = 0;
    for value in serde_json::Deserializer::from_reader(BufReader::new(reader)).into_iter::<IgnoredAny>() {
        value.map_err(|e| failed(&format!("JSONL row {}", num_rows + 1), e))?;
        num_rows += 1;
    }
    Ok(Attributes::Jsonl { num_rows })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_counts_rows_and_names_columns() {
        let csv = "t,x,y\n1,2,3\n4,5,6\n\"7\",\"8,9\",10\n";
        let attributes = extract("text/csv", &mut csv.as_bytes()).unwrap().unwrap();
        let headers = vec!["t".to_string(), "x".into(), "y".into()];
        assert_eq!(attributes, Attributes::Csv { num_rows: 3, num_columns: 3, column_headers: headers });
    }

    #[test]
    fn jsonl_counts_values_and_refuses_broken_lines() {
        let jsonl = "{\"a\": 1}\n\n[1, 2]\n\"x\"\n";
        assert_eq!(
            extract("application/x-ndjson", &mut jsonl.as_bytes()).unwrap().unwrap(),
            Attributes::Jsonl { num_rows: 3 }
        );
        assert!(extract("application/x-ndjson", &mut "{\"a\": 1}\n{oops\n".as_bytes()).unwrap().is_err());
    }

    #[test]
    fn broken_images_fail_and_other_types_have_nothing() {
        assert!(extract("image/png", &mut &b"not a png"[..]).unwrap().is_err());
        assert!(extract("image/jpeg", &mut &b"\xff\xd8 not really"[..]).unwrap().is_err());
        assert!(extract("video/mp4", &mut &b""[..]).is_none());
    }
}
