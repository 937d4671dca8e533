//! DigitalOcean's list envelope: `{<key>: [...], links: {pages: {first,prev,next,last}},
//! meta: {total}}`, pages chosen by `page` (1-based) and `per_page` (default 20, max 200).

use serde_json::{Value, json};

/// DigitalOcean's largest page.
const MAX_PER_PAGE: usize = 200;

/// A page request.
pub struct Page {
    pub page: usize,
    pub per_page: usize,
    /// `scheme://host/path?other=params` to build `links.pages` from.
    pub base: String,
}

/// The envelope of the `page` of `all`, each item rendered by `to_json`.
pub fn paginate<T>(key: &str, all: &[T], page: &Page, to_json: impl Fn(&T) -> Value) -> Value {
    let (range, links, meta) = page.of(all.len());
    let items: Vec<Value> = all[range].iter().map(to_json).collect();
    json!({ key: items, "links": links, "meta": meta })
}

impl Page {
    /// The slice of `total` items on this page, and its `links` and `meta` objects.
    pub fn of(&self, total: usize) -> (std::ops::Range<usize>, Value, Value) {
        let per = self.per_page.clamp(1, MAX_PER_PAGE);
        let last = total.div_ceil(per).max(1);
        let p = self.page.max(1);
        let start = p.saturating_sub(1).saturating_mul(per).min(total);
        let end = (start + per).min(total);
        let sep = if self.base.contains('?') { '&' } else { '?' };
        let url = |n: usize| format!("{}{sep}page={n}&per_page={per}", self.base);
        let mut pages = serde_json::Map::new();
        if p > 1 {
            pages.insert("first".into(), url(1).into());
            pages.insert("prev".into(), url(p - 1).into());
        }
        if p < last {
            pages.insert("next".into(), url(p + 1).into());
            pages.insert("last".into(), url(last).into());
        }
        (
            start..end,
            json!({ "pages": pages }),
            json!({ "total": total }),
        )
    }
}
