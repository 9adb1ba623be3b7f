//! Field checks shared by several resources. Each returns messages that name the field.

/// Collects validation messages; empty means valid.
#[derive(Debug, Default)]
pub struct Problems(pub Vec<String>);

impl Problems {
    pub fn add(&mut self, message: impl Into<String>) {
        self.0.push(message.into());
    }

    /// `field` must have between `min` and `max` characters.
    pub fn text_len(&mut self, field: &str, value: &str, min: usize, max: usize) {
        let n = value.chars().count();
        if n < min {
            if min == 1 {
                self.add(format!("{field} must not be empty"));
            } else {
                self.add(format!("{field} must have at least {min} characters"));
            }
        } else if n > max {
            self.add(format!("{field} must have at most {max} characters"));
        }
    }

    /// `field` must be within `min..=max`.
    pub fn range(&mut self, field: &str, value: i64, min: i64, max: i64) {
        if value < min {
            self.add(format!("{field} must be >= {min}"));
        } else if value > max {
            self.add(format!("{field} must be <= {max}"));
        }
    }

    pub fn into_result(self) -> Result<(), crate::error::ApiError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(crate::error::ApiError::Invalid(self.0))
        }
    }
}

/// A browser origin: `*`, or `scheme://host[:port]` with http(s), nothing after.
pub fn is_origin(value: &str) -> bool {
    if value == "*" {
        return true;
    }
    let Ok(url) = url::Url::parse(value) else {
        return false;
    };
    matches!(url.scheme(), "http" | "https")
        && url.host_str().is_some()
        && url.username().is_empty()
        && url.password().is_none()
        && url.query().is_none()
        && url.fragment().is_none()
        && url.path() == "/"
        && !value.ends_with('/')
        && url.origin().ascii_serialization() == value.to_ascii_lowercase()
}

/// An absolute URL with one of `schemes` and a host.
pub fn is_url_with_scheme(value: &str, schemes: &[&str]) -> bool {
    match url::Url::parse(value) {
        Ok(url) => schemes.contains(&url.scheme()) && url.host_str().is_some_and(|h| !h.is_empty()),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins() {
        assert!(is_origin("*"));
        assert!(is_origin("https://app.example.com"));
        assert!(is_origin("http://localhost:3000"));
        assert!(!is_origin("https://app.example.com/"));
        assert!(!is_origin("https://app.example.com/path"));
        assert!(!is_origin("ftp://app.example.com"));
        assert!(!is_origin("app.example.com"));
        assert!(!is_origin("https://user@app.example.com"));
    }

    #[test]
    fn urls() {
        assert!(is_url_with_scheme(
            "rtmp://a.b/live/key",
            &["rtmp", "rtmps", "srt"]
        ));
        assert!(!is_url_with_scheme("http://a.b/live", &["rtmp"]));
        assert!(!is_url_with_scheme("rtmp://", &["rtmp"]));
    }
}
