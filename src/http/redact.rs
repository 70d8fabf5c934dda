//! What request logs may say about a URI: the token of a webhook URL authorises pushes by
//! itself, so it never reaches a log line or a trace; and a hook's query string may be the
//! record itself (systems that call back with their values in the URL), so it is not logged.

use axum::http::Uri;

/// Characters of a hook token kept in logs, enough to tell sources apart when reading them.
const KEPT: usize = 4;

/// The request target as logs show it: `/hooks/<token>` becomes `/hooks/abcd…` and its query
/// string `?…`; other query strings are kept.
pub fn loggable_uri(uri: &Uri) -> String {
    let path = uri.path();
    let hook = path.strip_prefix("/hooks/").is_some_and(|t| !t.is_empty());
    let shown = match path.strip_prefix("/hooks/") {
        Some(token) if !token.is_empty() => {
            let (token, rest) = token.split_once('/').map_or((token, ""), |(t, r)| (t, r));
            let kept: String = token.chars().take(KEPT).collect();
            if rest.is_empty() {
                format!("/hooks/{kept}…")
            } else {
                format!("/hooks/{kept}…/{rest}")
            }
        }
        _ => path.to_string(),
    };
    match uri.query() {
        Some(_) if hook => format!("{shown}?…"),
        Some(q) => format!("{shown}?{q}"),
        None => shown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(s: &str) -> String {
        loggable_uri(&s.parse::<Uri>().unwrap())
    }

    #[test]
    fn hook_tokens_are_cut_to_a_prefix() {
        let token = "Zx81abcdefghijklmnopqrst";
        let line = shown(&format!("/hooks/{token}"));
        assert_eq!(line, "/hooks/Zx81…");
        assert!(!line.contains(token));
        // A callback's values (an order number, a customer's e-mail) stay out of logs too.
        assert_eq!(
            shown(&format!(
                "/hooks/{token}?SalesOrderNumber=1042&Email=jo%40example.com"
            )),
            "/hooks/Zx81…?…"
        );
        assert_eq!(shown(&format!("/hooks/{token}/x")), "/hooks/Zx81…/x");
        assert_eq!(shown("/hooks/ab"), "/hooks/ab…");
    }

    #[test]
    fn other_paths_are_unchanged() {
        assert_eq!(shown("/api/v1/sources?limit=5"), "/api/v1/sources?limit=5");
        assert_eq!(shown("/hooks/"), "/hooks/");
        assert_eq!(shown("/hooksy/abc"), "/hooksy/abc");
        assert_eq!(shown("/"), "/");
    }
}
