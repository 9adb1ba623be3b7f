//! What a viewer's request presents to the playback gate: a playback JWT, an access key, a grant
//! the gate issued earlier, and the page it comes from.
//!
//! As Livepeer's playback nodes read them: `?jwt=`, the `Livepeer-Jwt` header or the
//! `Livepeer-Jwt` cookie; `?accessKey=`, the `Livepeer-Access-Key` header or cookie. The query
//! wins over the header, the header over the cookie. Grants only travel in the query (`?grant=`):
//! the gate writes them into the playlists it serves.

use axum::http::{HeaderMap, header};

/// Longest credential read; longer ones are refused, not parsed.
pub const MAX_CREDENTIAL_BYTES: usize = 8 * 1024;

pub const JWT_PARAM: &str = "jwt";
pub const ACCESS_KEY_PARAM: &str = "accessKey";
pub const GRANT_PARAM: &str = "grant";
const JWT_HEADER: &str = "livepeer-jwt";
const ACCESS_KEY_HEADER: &str = "livepeer-access-key";
const JWT_COOKIE: &str = "Livepeer-Jwt";
const ACCESS_KEY_COOKIE: &str = "Livepeer-Access-Key";

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub jwt: Option<String>,
    pub access_key: Option<String>,
    pub grant: Option<String>,
    /// The browser page playing, as `scheme://host[:port]`: the `Origin` header, or the origin of
    /// the `Referer` when `Origin` is absent or `null`. `None` outside browsers.
    pub origin: Option<String>,
}

impl Credentials {
    /// Reads them from a request's query string and headers.
    pub fn read(query: Option<&str>, headers: &HeaderMap) -> Credentials {
        let mut found = Credentials::default();
        for (name, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            let slot = match name.as_ref() {
                JWT_PARAM => &mut found.jwt,
                ACCESS_KEY_PARAM => &mut found.access_key,
                GRANT_PARAM => &mut found.grant,
                _ => continue,
            };
            if slot.is_none() && !value.is_empty() {
                *slot = Some(value.into_owned());
            }
        }
        if found.jwt.is_none() {
            found.jwt = header_value(headers, JWT_HEADER).or_else(|| cookie(headers, JWT_COOKIE));
        }
        if found.access_key.is_none() {
            found.access_key = header_value(headers, ACCESS_KEY_HEADER)
                .or_else(|| cookie(headers, ACCESS_KEY_COOKIE));
        }
        found.origin = page_origin(headers);
        found
    }

    /// Whether any credential is longer than the gate reads.
    pub fn oversized(&self) -> bool {
        [&self.jwt, &self.access_key, &self.grant]
            .into_iter()
            .flatten()
            .any(|c| c.len() > MAX_CREDENTIAL_BYTES)
    }
}

fn header_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_string)
}

/// The first cookie called `name`, across every `Cookie` header.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, v)| *n == name && !v.is_empty())
        .map(|(_, v)| {
            let v = v.trim_matches('"');
            percent_decode(v)
        })
}

fn percent_decode(value: &str) -> String {
    url::form_urlencoded::parse(format!("v={}", value.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// `scheme://host[:port]` of the page, from `Origin` or else `Referer`.
fn page_origin(headers: &HeaderMap) -> Option<String> {
    let origin = headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty() && *v != "null");
    if let Some(origin) = origin {
        return Some(normalize_origin(origin));
    }
    let referer = headers.get(header::REFERER)?.to_str().ok()?;
    let url = url::Url::parse(referer.trim()).ok()?;
    match url.origin() {
        url::Origin::Tuple(..) => Some(url.origin().ascii_serialization()),
        url::Origin::Opaque(_) => None,
    }
}

/// Origins compare without a trailing `/` and case-insensitively in scheme and host.
pub fn normalize_origin(origin: &str) -> String {
    origin.trim().trim_end_matches('/').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn the_query_wins_over_the_header_and_the_header_over_the_cookie() {
        let h = headers(&[
            ("livepeer-jwt", "from-header"),
            (
                "cookie",
                "a=b; Livepeer-Jwt=from-cookie; Livepeer-Access-Key=k%2B1",
            ),
        ]);
        let c = Credentials::read(Some("jwt=from-query&x=1"), &h);
        assert_eq!(c.jwt.as_deref(), Some("from-query"));
        let c = Credentials::read(None, &h);
        assert_eq!(c.jwt.as_deref(), Some("from-header"));
        assert_eq!(c.access_key.as_deref(), Some("k+1"));
        let c = Credentials::read(None, &headers(&[("cookie", "Livepeer-Jwt=from-cookie")]));
        assert_eq!(c.jwt.as_deref(), Some("from-cookie"));
        let c = Credentials::read(Some("accessKey=a%20b&grant=g"), &HeaderMap::new());
        assert_eq!(c.access_key.as_deref(), Some("a b"));
        assert_eq!(c.grant.as_deref(), Some("g"));
        assert_eq!(c.origin, None);
    }

    #[test]
    fn the_page_comes_from_origin_or_referer() {
        let c = Credentials::read(None, &headers(&[("origin", "https://App.example.com/")]));
        assert_eq!(c.origin.as_deref(), Some("https://app.example.com"));
        let c = Credentials::read(
            None,
            &headers(&[
                ("origin", "null"),
                ("referer", "https://site.example:8443/watch?v=1"),
            ]),
        );
        assert_eq!(c.origin.as_deref(), Some("https://site.example:8443"));
    }
}
