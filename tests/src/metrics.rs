//! Prometheus answers read as a scraper would: the content type checked, the text parsed with
//! `prometheus-parse`, samples looked up by name and labels.

use anyhow::{Result, ensure};

/// Checks a `GET …/metrics` answer (200, Prometheus text 0.0.4) and parses it.
pub async fn parse(r: reqwest::Response) -> Result<prometheus_parse::Scrape> {
    let url = r.url().to_string();
    ensure!(r.status() == 200, "GET {url}: {}", r.status());
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    ensure!(ct.starts_with("text/plain; version=0.0.4"), "{url}: {ct}");
    let text = r.text().await?;
    Ok(prometheus_parse::Scrape::parse(
        text.lines().map(|l| Ok(l.to_string())),
    )?)
}

/// The samples of `name` whose labels include `labels`, summed (0 when absent).
pub fn sample(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}
