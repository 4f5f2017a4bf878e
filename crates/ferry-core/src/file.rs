//! A registered file's life after its upload completed.

/// Where a file is in its life. Only a file whose bytes are known good can
/// be downloaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileStatus {
    /// Stored; attributes not yet extracted.
    Registered,
    /// Attributes are being extracted.
    Ingesting,
    /// Attributes extracted (or extraction failed; the file is still whole).
    Ingested,
    /// The whole-file checksum did not match what the client sent.
    Corrupt,
}

impl FileStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Registered => "registered",
            Self::Ingesting => "ingesting",
            Self::Ingested => "ingested",
            Self::Corrupt => "corrupt",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Registered, Self::Ingesting, Self::Ingested, Self::Corrupt].into_iter().find(|s| s.as_str() == text)
    }

    pub fn is_downloadable(self) -> bool {
        self != Self::Corrupt
    }
}

/// Whether a file's attributes (image size, CSV shape, ...) were extracted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetadataStatus {
    NotExtracted,
    Extracted,
    /// Extraction failed; the file itself is whole and downloadable.
    Failed,
}

impl MetadataStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotExtracted => "not_extracted",
            Self::Extracted => "extracted",
            Self::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::NotExtracted, Self::Extracted, Self::Failed].into_iter().find(|s| s.as_str() == text)
    }
}
