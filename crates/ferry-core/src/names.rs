//! File-name rules. A name is a label in the metadata store and never a path
//! on disk (blobs are named by ids), but the rules still refuse anything that
//! would be a path component or confuse a terminal or a log.

/// The longest file name, in bytes of UTF-8.
pub const MAX_FILE_NAME_BYTES: usize = 255;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidFileName {
    #[error("the file name is empty")]
    Empty,
    #[error("the file name is {0} bytes long; the limit is {MAX_FILE_NAME_BYTES}")]
    TooLong(usize),
    #[error("the file name contains a control character")]
    ControlCharacter,
    #[error("the file name contains `/` or `\\`")]
    PathSeparator,
    #[error("the file name may not be `.` or `..`")]
    DotName,
}

pub fn validate_file_name(name: &str) -> Result<(), InvalidFileName> {
    if name.is_empty() {
        return Err(InvalidFileName::Empty);
    }
    if name.len() > MAX_FILE_NAME_BYTES {
        return Err(InvalidFileName::TooLong(name.len()));
    }
    if name.chars().any(char::is_control) {
        return Err(InvalidFileName::ControlCharacter);
    }
    if name.contains(['/', '\\']) {
        return Err(InvalidFileName::PathSeparator);
    }
    if name == "." || name == ".." {
        return Err(InvalidFileName::DotName);
    }
    Ok(())
}

/// The longest org name.
pub const MAX_ORG_NAME_CHARS: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidOrgName {
    #[error("the org name is empty")]
    Empty,
    #[error("the org name is {0} characters long; the limit is {MAX_ORG_NAME_CHARS}")]
    TooLong(usize),
    #[error("the org name may hold only lowercase letters, digits, `.`, `_` and `-` (it has {0:?})")]
    Character(char),
    #[error("the org name may not be `.` or `..`")]
    DotName,
}

/// Org names are typed by operators and shown in logs and listings: plain
/// lowercase words, so that none is a path, a second line or a lookalike.
pub fn validate_org_name(name: &str) -> Result<(), InvalidOrgName> {
    if name.is_empty() {
        return Err(InvalidOrgName::Empty);
    }
    let chars = name.chars().count();
    if chars > MAX_ORG_NAME_CHARS {
        return Err(InvalidOrgName::TooLong(chars));
    }
    if let Some(c) = name.chars().find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '.' | '_' | '-')) {
        return Err(InvalidOrgName::Character(c));
    }
    if name == "." || name == ".." {
        return Err(InvalidOrgName::DotName);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn org_names_are_plain_lowercase_words() {
        for name in ["default", "research", "ml-team.eu_2", "a", &"x".repeat(64)] {
            assert_eq!(validate_org_name(name), Ok(()), "{name}");
        }
        let cases = [
            ("", InvalidOrgName::Empty),
            (&*"x".repeat(5000), InvalidOrgName::TooLong(5000)),
            ("../x", InvalidOrgName::Character('/')),
            ("a\nb", InvalidOrgName::Character('\n')),
            ("Research", InvalidOrgName::Character('R')),
            ("my org", InvalidOrgName::Character(' ')),
            (".", InvalidOrgName::DotName),
            ("..", InvalidOrgName::DotName),
        ];
        for (name, expected) in cases {
            assert_eq!(validate_org_name(name), Err(expected), "{name:?}");
        }
    }

    #[test]
    fn accepts_ordinary_names() {
        for name in ["report.csv", "my data.csv", "übung.json", "..hidden", "a", &"x".repeat(255)] {
            assert_eq!(validate_file_name(name), Ok(()), "{name}");
        }
    }

    #[test]
    fn refuses_each_kind_of_bad_name() {
        use InvalidFileName::*;
        let cases = [
            ("", Empty),
            (&*"é".repeat(128), TooLong(256)),
            ("a\0b", ControlCharacter),
            ("a\nb", ControlCharacter),
            ("a\u{85}b", ControlCharacter),
            ("../etc/passwd", PathSeparator),
            ("a\\b", PathSeparator),
            (".", DotName),
            ("..", DotName),
        ];
        for (name, expected) in cases {
            assert_eq!(validate_file_name(name), Err(expected), "{name:?}");
        }
    }
}
