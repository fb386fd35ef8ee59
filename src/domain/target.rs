//! Where a URL template sends: its scheme, host and port. Credentials stored for one target
//! (credential headers, the OAuth client secret) must be given again before they go to
//! another.

/// The scheme, host and port a URL sends to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub scheme: String,
    pub host: String,
    pub port: u16,
}

/// The target of a URL template, read from its literal prefix (the text before the first
/// `{{` or `{%`); `None` when a tag is in its scheme, host or port, or it does not parse.
pub fn url_target(url: &str) -> Option<Target> {
    let text = url.trim();
    let literal_end = [text.find("{{"), text.find("{%")].into_iter().flatten().min().unwrap_or(text.len());
    let lower = text.to_ascii_lowercase();
    let scheme_len = ["https://", "http://"].into_iter().find(|p| lower.starts_with(p))?.len();
    let authority_end =
        text.get(scheme_len..)?.find(['/', '?', '#', '\\']).map_or(text.len(), |end| end.saturating_add(scheme_len));
    if literal_end < authority_end {
        return None;
    }
    let parsed = url::Url::parse(text.get(..authority_end)?).ok()?;
    Some(Target {
        scheme: parsed.scheme().to_owned(),
        host: parsed.host_str()?.to_owned(),
        port: parsed.port_or_known_default()?,
    })
}

/// Whether a URL changed from `old` to `new` may send to another target: the text changed
/// and either the scheme, host or port differ or one of them is not known before rendering.
/// No URL before and one now counts as a change; no URL now sends nowhere.
pub fn target_changes(old: Option<&str>, new: Option<&str>) -> bool {
    match (old, new) {
        (_, None) => false,
        (None, Some(_)) => true,
        (Some(old), Some(new)) if old.trim() == new.trim() => false,
        (Some(old), Some(new)) => match (url_target(old), url_target(new)) {
            (Some(old), Some(new)) => old != new,
            _ => true,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_target_is_read_from_the_literal_prefix() {
        let target = url_target("HTTPS://Hooks.Example.org/{{ item.id }}").expect("target");
        assert_eq!(target, Target { scheme: "https".into(), host: "hooks.example.org".into(), port: 443 });
        assert_eq!(url_target("http://h:8080?x={{ event }}").map(|t| t.port), Some(8080));
        assert_eq!(url_target("https://{{ item.host }}/x"), None);
        assert_eq!(url_target("https://h{% if x %}.evil{% endif %}/x"), None);
        assert_eq!(url_target("https://h:{{ port }}/x"), None);
        assert_eq!(url_target("ftp://h/"), None);
    }

    #[test]
    fn only_a_new_scheme_host_or_port_is_a_change() {
        assert!(!target_changes(Some("https://h/a"), Some("https://h/b/{{ item.id }}")));
        assert!(!target_changes(Some("https://h/a"), Some("https://H:443/a")));
        assert!(target_changes(Some("https://h/a"), Some("http://h/a")));
        assert!(target_changes(Some("https://h/a"), Some("https://h:8443/a")));
        assert!(target_changes(Some("https://h/a"), Some("https://other/a")));
        assert!(target_changes(Some("https://{{ x }}/a"), Some("https://{{ x }}/b")));
        assert!(!target_changes(Some("https://{{ x }}/a"), Some("https://{{ x }}/a")));
        assert!(target_changes(None, Some("https://h/")));
        assert!(!target_changes(Some("https://h/"), None));
    }
}
