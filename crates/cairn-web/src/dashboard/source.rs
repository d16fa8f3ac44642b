//! The footer every dashboard page carries: the version, where the source is offered and
//! the license (`/license`). The GNU AGPL-3.0 asks a modified program that users reach
//! over a network to offer them its source (section 13); `cairn serve --source-url` says
//! where, and defaults to the repository the workspace's Cargo.toml names.

use axum::http::header;
use axum::response::{IntoResponse, Response};
use std::sync::OnceLock;

/// The version shown in the footer.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// `cairn serve --source-url`'s default: `[workspace.package] repository` at build time
/// (empty when the workspace names none; the footer then links the license only).
pub const DEFAULT_SOURCE_URL: &str = env!("CARGO_PKG_REPOSITORY");

/// Set once by `cairn serve`. A process-wide value rather than a field of `AppState`:
/// every page renders the footer through `base.html`, and the source of a running
/// binary does not change while it runs.
static SOURCE_URL: OnceLock<String> = OnceLock::new();

/// Records `--source-url` for the footer; later calls are ignored.
pub fn set_source_url(url: String) {
    let _ = SOURCE_URL.set(url);
}

/// Where the footer's "Source code" link points ("" when nowhere).
pub fn source_url() -> &'static str {
    SOURCE_URL
        .get()
        .map(String::as_str)
        .unwrap_or(DEFAULT_SOURCE_URL)
}

/// Parses `--source-url`: an absolute `https://` or `http://` URL (never `javascript:` or
/// another scheme a link could run), or empty for none.
pub fn parse_source_url(s: &str) -> Result<String, String> {
    let s = s.trim();
    let rest = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"));
    match rest {
        _ if s.is_empty() => Ok(String::new()),
        Some(r) if !r.is_empty() && !r.starts_with('/') && !s.contains(char::is_whitespace) => {
            Ok(s.to_owned())
        }
        _ => Err("expected an http:// or https:// URL".to_owned()),
    }
}

/// `GET /license`: the license text (the repository's LICENSE file, built in).
pub async fn license() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        include_str!("../../../../LICENSE"),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::parse_source_url;

    #[test]
    fn source_url_takes_http_urls_only() {
        assert_eq!(
            parse_source_url("https://git.example.com/a/cairn").as_deref(),
            Ok("https://git.example.com/a/cairn")
        );
        assert_eq!(
            parse_source_url(" http://10.0.0.1:3000/cairn ").as_deref(),
            Ok("http://10.0.0.1:3000/cairn")
        );
        assert_eq!(parse_source_url("").as_deref(), Ok(""));
        for bad in [
            "javascript:alert(1)",
            "https://",
            "https:///x",
            "ftp://example.com/cairn",
            "/source",
            "https://example.com/a b",
        ] {
            assert!(parse_source_url(bad).is_err(), "{bad} accepted");
        }
    }
}
