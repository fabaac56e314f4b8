//! A git repository's URL as pythond shows and uses it: the checkout name it gives,
//! the form with its secrets hidden (for logs, status and debug output) and the
//! secrets it carries (userinfo, query-string tokens), so that messages from libgit2
//! can be scrubbed of them (docs/RELOAD.md, "Syncing").
//!
//! It lives with the configuration because both the config's `Debug` output and the
//! git sync need it, and the git sync already depends on the config.

use crate::percent::percent_decode;

/// Shown in place of a secret.
pub const REDACTED: &str = "***";

/// The checkout name for a URL: its last path segment without `.git`, limited to
/// `[A-Za-z0-9._-]` (`repo` if nothing is left).
pub fn repo_name(url: &str) -> String {
    let (url, _, _) = split_query(url);
    let trimmed = url.trim_end_matches('/');
    let last = trimmed
        .rsplit(['/', ':'])
        .next()
        .unwrap_or(trimmed)
        .trim_end_matches(".git");
    let name: String = last
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let name = name.trim_start_matches('.').to_string();
    if name.is_empty() {
        "repo".to_string()
    } else {
        name
    }
}

/// `url` with the userinfo of `scheme://userinfo@host/...` hidden: the password
/// becomes `***` (`https://me:***@host/x`), and a user name alone — often a token —
/// too (`https://***@host/x`). Every query-string value becomes `***` too
/// (`?private_token=***`), and a fragment is dropped. Other URLs are returned as they
/// are.
pub fn redact_url(url: &str) -> String {
    let (base, query, _) = split_query(url);
    let mut shown = redact_userinfo(base);
    if let Some(query) = query {
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _)) => format!("{key}={REDACTED}"),
                None if pair.is_empty() => String::new(),
                None => REDACTED.to_string(),
            })
            .collect();
        shown.push('?');
        shown.push_str(&pairs.join("&"));
    }
    shown
}

fn redact_userinfo(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_string();
    };
    let userinfo = &rest[..at];
    let shown = match userinfo.split_once(':') {
        Some((user, _)) => format!("{user}:{REDACTED}"),
        None if url.starts_with("ssh://") => userinfo.to_string(),
        None => REDACTED.to_string(),
    };
    format!("{}{shown}{}", &url[..scheme_end + 3], &rest[at..])
}

/// The secrets in a URL's userinfo and query string, and the user/password pair the
/// userinfo gives.
pub fn url_secrets(url: &str) -> (Vec<String>, Option<(String, String)>) {
    let (base, query, _) = split_query(url);
    let (mut secrets, userpass) = userinfo_secrets(base);
    secrets.extend(query.map(query_secrets).unwrap_or_default());
    (secrets, userpass)
}

fn userinfo_secrets(url: &str) -> (Vec<String>, Option<(String, String)>) {
    let Some(scheme_end) = url.find("://") else {
        return (Vec::new(), None);
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return (Vec::new(), None);
    };
    let userinfo = &rest[..at];
    match userinfo.split_once(':') {
        Some((user, password)) => (
            vec![password.to_string(), percent_decode(password)],
            Some((percent_decode(user), percent_decode(password))),
        ),
        None if url.starts_with("ssh://") => (Vec::new(), None),
        None => (
            vec![userinfo.to_string(), percent_decode(userinfo)],
            Some((percent_decode(userinfo), String::new())),
        ),
    }
}

/// `url` without its query string and fragment, and the query string (after `?`,
/// before any `#`) if it has one. Tokens travel there (`?private_token=...`).
fn split_query(url: &str) -> (&str, Option<&str>, Option<&str>) {
    let (rest, fragment) = match url.split_once('#') {
        Some((rest, fragment)) => (rest, Some(fragment)),
        None => (url, None),
    };
    match rest.split_once('?') {
        Some((base, query)) => (base, Some(query), fragment),
        None => (rest, None, fragment),
    }
}

/// Shorter query-string values are no tokens, and scrubbing them (`?ref=1`) from
/// every message would mangle the messages; the URL itself is always redacted whole.
const MIN_QUERY_SECRET: usize = 4;

/// The values of a query string (`a=1234&b=5678` gives `1234`, `5678`; a bare `tok3n`
/// gives `tok3n`), raw and percent-decoded: each may be a secret.
fn query_secrets(query: &str) -> Vec<String> {
    query
        .split('&')
        .map(|pair| pair.split_once('=').map_or(pair, |(_, value)| value))
        .filter(|value| value.len() >= MIN_QUERY_SECRET)
        .flat_map(|value| [value.to_string(), percent_decode(value)])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_is_redacted() {
        assert_eq!(
            redact_url("https://me:s3cret@example.com/x.git"),
            "https://me:***@example.com/x.git"
        );
        assert_eq!(
            redact_url("https://tok3n@example.com/x.git"),
            "https://***@example.com/x.git"
        );
        assert_eq!(redact_url("git@example.com:x.git"), "git@example.com:x.git");
        assert_eq!(
            redact_url("ssh://git@example.com/x.git"),
            "ssh://git@example.com/x.git"
        );
        assert_eq!(redact_url("file:///tmp/x"), "file:///tmp/x");
    }

    #[test]
    fn names_come_from_the_url() {
        assert_eq!(repo_name("https://example.com/team/scripts.git"), "scripts");
        assert_eq!(repo_name("git@example.com:team/scripts.git"), "scripts");
        assert_eq!(repo_name("file:///tmp/a b/"), "a_b");
        assert_eq!(repo_name("/"), "repo");
    }
}
