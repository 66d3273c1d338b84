//! Web Accessible Folders: Apache, nginx and IIS directory listings (and hand-written index
//! pages), read recursively below the source URL.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::LazyLock;

use async_trait::async_trait;
use regex::Regex;

use super::{GatherError, GatherPage, Gathered, Harvester, HarvesterInfo};
use crate::domain::job::Listed;
use crate::domain::keys::safe_segment;
use crate::domain::source::{FieldError, Source};
use crate::fetch::FetchRequest;
use crate::services::Services;

/// Listing pages read at most per gather, and how deep folders may nest.
const MAX_PAGES: usize = 10_000;
const MAX_DEPTH: usize = 20;
const MAX_LISTING_BYTES: u64 = 20 * 1024 * 1024;

pub struct WafHarvester;

static HREF: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"(?i)<a\s[^>]*?href\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>"']+))"#)
        .expect("valid regex")
});

/// The title nginx's and Apache's generated listings share; only theirs are read for entries
/// (a hand-written page may put any text after a link, and IIS puts the time before it).
static GENERATED_INDEX: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)<title>\s*Index of ").expect("valid regex"));
static CLOSE_LINK: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)</a\s*>").expect("valid regex"));
static TAG: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"<[^>]*>").expect("valid regex"));
/// An entry names its time to the minute at least (nginx `03-Dec-2026 03:01`, Apache
/// `2026-12-03 03:01`).
static TIME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\d{4}.*\b\d{1,2}:\d{2}\b").expect("valid regex"));

/// The rest of a generated listing's line after a link (`from`: the end of its opening tag):
/// the modification time and size, tags and spacing dropped. `None` without a time.
fn listing_entry(html: &str, from: usize) -> Option<String> {
    let rest = &html[from..];
    let close = CLOSE_LINK.find(rest)?;
    let line = &rest[close.end()..];
    let line = &line[..line.find('\n').unwrap_or(line.len())];
    let text = TAG.replace_all(line, " ").replace("&nbsp;", " ");
    let entry = text.split_whitespace().collect::<Vec<_>>().join(" ");
    TIME.is_match(&entry).then_some(entry)
}

/// A document link of a listing page, with its listing entry when the page gives one.
#[derive(Debug)]
pub struct ListedLink {
    pub url: url::Url,
    pub entry: Option<String>,
}

/// Links of a listing page that stay inside `base` (a folder URL ending in `/`): folders
/// (to descend into) and XML documents. Sort links, parents and other sites are dropped.
pub fn parse_listing(
    html: &str,
    page: &url::Url,
    base: &url::Url,
) -> (Vec<url::Url>, Vec<ListedLink>) {
    let mut folders = Vec::new();
    let mut documents = Vec::new();
    let generated = GENERATED_INDEX.is_match(html);
    for cap in HREF.captures_iter(html) {
        let raw = cap
            .get(1)
            .or_else(|| cap.get(2))
            .or_else(|| cap.get(3))
            .map(|m| m.as_str().trim().replace("&amp;", "&"))
            .unwrap_or_default();
        if raw.is_empty() || raw.starts_with('?') || raw.starts_with('#') {
            continue;
        }
        let Ok(mut link) = page.join(&raw) else {
            continue;
        };
        link.set_fragment(None);
        if link.query().is_some()
            || link.scheme() != base.scheme()
            || link.host_str() != base.host_str()
            || link.port_or_known_default() != base.port_or_known_default()
            || !link.path().starts_with(base.path())
            || link.path() == page.path()
            || link.path().len() <= base.path().len()
        {
            continue;
        }
        if link.path().ends_with('/') {
            folders.push(link);
        } else if link.path().to_ascii_lowercase().ends_with(".xml") {
            let entry = generated
                .then(|| listing_entry(html, cap.get(0).map_or(0, |m| m.end())))
                .flatten();
            documents.push(ListedLink { url: link, entry });
        }
    }
    (folders, documents)
}

/// The folder a source URL names: itself when it ends in `/`, else its parent (an index page).
fn base_folder(url: &url::Url) -> url::Url {
    let mut base = url.clone();
    base.set_query(None);
    base.set_fragment(None);
    if !base.path().ends_with('/') {
        let path = base.path();
        let parent = &path[..path.rfind('/').map_or(0, |i| i + 1)];
        let parent = if parent.is_empty() { "/" } else { parent }.to_string();
        base.set_path(&parent);
    }
    base
}

#[async_trait]
impl Harvester for WafHarvester {
    fn info(&self) -> HarvesterInfo {
        HarvesterInfo {
            name: "waf",
            title: "Web Accessible Folder (WAF)",
            description: "XML records in a directory listing (Apache, nginx, IIS), read recursively",
        }
    }

    fn validate_config(&self, config: &serde_json::Value) -> Result<(), FieldError> {
        let object = config
            .as_object()
            .ok_or_else(|| FieldError::new("config", "must be a JSON object"))?;
        for (key, value) in object.iter() {
            // The WAF harvester has no options of its own; refuse typos rather than silently
            // ignoring them.
            match key.as_str() {
                super::default_tags::DEFAULT_TAGS => super::default_tags::validate(value)?,
                crate::domain::source::SHRINK_THRESHOLD => {}
                _ => {
                    return Err(FieldError::new(
                        format!("config.{key}"),
                        "unknown option for a WAF source",
                    ));
                }
            }
        }
        Ok(())
    }

    async fn gather_page(
        &self,
        services: &Services,
        source: &Source,
        cursor: Option<&serde_json::Value>,
    ) -> Result<GatherPage, GatherError> {
        let start = url::Url::parse(&source.url).map_err(|e| GatherError {
            message: format!("invalid source URL: {e}"),
            url: Some(source.url.clone()),
        })?;
        let base = base_folder(&start);
        let mut walk: Walk = match cursor {
            None => Walk {
                pending: VecDeque::from([(start.to_string(), 0)]),
                seen: BTreeSet::from([start.to_string()]),
            },
            Some(value) => serde_json::from_value(value.clone()).map_err(|e| GatherError {
                message: format!("unreadable gather cursor: {e}"),
                url: None,
            })?,
        };
        let Some((page, depth)) = walk.pending.pop_front() else {
            return Ok(GatherPage::default());
        };
        let resp = services
            .fetcher
            .get(&FetchRequest::new(&page, MAX_LISTING_BYTES))
            .await?;
        let page_url = url::Url::parse(&page).map_err(|e| GatherError {
            message: format!("invalid listing URL: {e}"),
            url: Some(page.clone()),
        })?;
        let final_url = url::Url::parse(&resp.final_url).unwrap_or(page_url);
        let html = String::from_utf8_lossy(&resp.body);
        let (folders, docs) = parse_listing(&html, &final_url, &base);
        let mut documents: BTreeMap<String, Gathered> = BTreeMap::new();
        for ListedLink { url: doc, entry } in docs {
            let relative = &doc.path()[base.path().len()..];
            let waf_name = relative
                .split('/')
                .filter(|s| !s.is_empty())
                .map(safe_segment)
                .collect::<Vec<_>>()
                .join("/");
            let guid = doc.to_string();
            documents.entry(guid.clone()).or_insert(Gathered {
                guid,
                url: doc.to_string(),
                waf_name,
                kept_sha256: None,
                listed: entry
                    .zip(resp.date.clone())
                    .map(|(entry, served)| Listed { entry, served }),
            });
        }
        if depth < MAX_DEPTH {
            for folder in folders {
                let folder = folder.to_string();
                if walk.seen.insert(folder.clone()) {
                    walk.pending.push_back((folder, depth + 1));
                }
            }
            if walk.seen.len() > MAX_PAGES {
                return Err(GatherError {
                    message: format!("more than {MAX_PAGES} listing pages"),
                    url: Some(page),
                });
            }
        }
        let next = if walk.pending.is_empty() {
            None
        } else {
            Some(serde_json::to_value(&walk).map_err(|e| GatherError {
                message: format!("gather cursor: {e}"),
                url: None,
            })?)
        };
        Ok(GatherPage {
            documents: documents.into_values().collect(),
            next,
            ..GatherPage::default()
        })
    }
}

/// The WAF's cursor: folders still to list (breadth first, with their depth) and every page
/// read or queued (a folder linked from two places, or a link loop, is read once).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Walk {
    pending: VecDeque<(String, usize)>,
    seen: BTreeSet<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn links(html: &str, page: &str) -> (Vec<String>, Vec<String>) {
        let page = url::Url::parse(page).unwrap();
        let base = base_folder(&page);
        let (f, d) = parse_listing(html, &page, &base);
        (
            f.into_iter().map(|u| u.to_string()).collect(),
            d.into_iter().map(|l| l.url.to_string()).collect(),
        )
    }

    #[test]
    fn apache_listing_skips_sort_and_parent_links() {
        let html = r#"<table><tr><th><a href="?C=N;O=D">Name</a></th></tr>
<tr><td><a href="/waf/">Parent Directory</a></td></tr>
<tr><td><a href="sub/">sub/</a></td></tr>
<tr><td><a href="1463.xml">1463.xml</a></td></tr>
<tr><td><a href="notes.txt">notes.txt</a></td></tr></table>"#;
        let (f, d) = links(html, "http://h/waf/a/");
        assert_eq!(f, ["http://h/waf/a/sub/"]);
        assert_eq!(d, ["http://h/waf/a/1463.xml"]);
    }

    #[test]
    fn iis_listing_with_absolute_uppercase_hrefs() {
        let html = r#"<pre><A HREF="/">[To Parent Directory]</A><br><br> 4:53 PM 27383 <A HREF="/meta/A.xml">A.xml</A><br>
<A HREF="/meta/sub/">sub</A></pre>"#;
        let (f, d) = links(html, "http://h/meta/");
        assert_eq!(f, ["http://h/meta/sub/"]);
        assert_eq!(d, ["http://h/meta/A.xml"]);
    }

    #[test]
    fn index_page_base_is_its_folder_and_other_sites_are_ignored() {
        let html = r#"<a href="wales1.xml">1</a> <a href='http://other/x.xml'>2</a> <a href=../up.xml>3</a>"#;
        let (f, d) = links(html, "http://h/waf/index.html");
        assert!(f.is_empty());
        assert_eq!(d, ["http://h/waf/wales1.xml"]);
    }
}
