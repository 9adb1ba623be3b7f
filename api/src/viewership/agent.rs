//! Device type, browser and operating system from a `User-Agent`, the dimensions views are broken
//! down by. A short list of what players run in, checked in an order that tells look-alikes apart
//! (Edge and Opera say "Chrome", Chrome says "Safari", Android says "Linux").

/// What a user agent says about the viewer.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Agent {
    /// `desktop`, `mobile`, `tablet`, `tv`, or `""` when unknown.
    pub device_type: String,
    pub browser: String,
    pub os: String,
}

/// Longest user agent read; the rest is ignored.
const MAX_AGENT_BYTES: usize = 512;

pub fn parse(user_agent: &str) -> Agent {
    let ua = match user_agent.char_indices().nth(MAX_AGENT_BYTES) {
        Some((end, _)) => &user_agent[..end],
        None => user_agent,
    };
    let has = |needle: &str| ua.contains(needle);
    let browser = if has("Lavf/") {
        "ffmpeg"
    } else if has("Edg/") || has("Edge/") {
        "Edge"
    } else if has("OPR/") || has("Opera") {
        "Opera"
    } else if has("SamsungBrowser/") {
        "Samsung Internet"
    } else if has("Firefox/") || has("FxiOS/") {
        "Firefox"
    } else if has("Chrome/") || has("CriOS/") || has("Chromium/") {
        "Chrome"
    } else if has("Safari/") || has("AppleCoreMedia/") {
        "Safari"
    } else if has("VLC/") || has("LibVLC/") {
        "VLC"
    } else if has("ExoPlayer") {
        "ExoPlayer"
    } else {
        ""
    };
    let os = if has("Windows") {
        "Windows"
    } else if has("iPhone") || has("iPad") || has("iPod") || has("iOS") {
        "iOS"
    } else if has("Android") {
        "Android"
    } else if has("CrOS") {
        "Chrome OS"
    } else if has("Mac OS X") || has("Macintosh") {
        "Mac OS"
    } else if has("Linux") || has("X11") {
        "Linux"
    } else {
        ""
    };
    let device_type = if has("SmartTV") || has("SMART-TV") || has("AppleTV") || has("CrKey") {
        "tv"
    } else if has("iPad") || has("Tablet") || (has("Android") && !has("Mobile")) {
        "tablet"
    } else if has("Mobi") || has("iPhone") || has("iPod") {
        "mobile"
    } else if !os.is_empty() && os != "iOS" && os != "Android" {
        "desktop"
    } else {
        ""
    };
    Agent {
        device_type: device_type.into(),
        browser: browser.into(),
        os: os.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn triple(ua: &str) -> (String, String, String) {
        let a = parse(ua);
        (a.device_type, a.browser, a.os)
    }

    #[test]
    fn common_players() {
        let t = |d: &str, b: &str, o: &str| (d.to_string(), b.to_string(), o.to_string());
        assert_eq!(
            triple(
                "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/131.0.0.0 Safari/537.36"
            ),
            t("desktop", "Chrome", "Linux")
        );
        assert_eq!(
            triple(
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36 Edg/120.0"
            ),
            t("desktop", "Edge", "Windows")
        );
        assert_eq!(
            triple(
                "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1"
            ),
            t("mobile", "Safari", "iOS")
        );
        assert_eq!(
            triple(
                "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Mobile Safari/537.36"
            ),
            t("mobile", "Chrome", "Android")
        );
        assert_eq!(
            triple(
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0; rv:121.0) Gecko/20100101 Firefox/121.0"
            ),
            t("desktop", "Firefox", "Mac OS")
        );
        assert_eq!(triple("Lavf/59.27.100"), t("", "ffmpeg", ""));
        assert_eq!(triple(""), t("", "", ""));
    }
}
