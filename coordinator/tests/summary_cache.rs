//! `summary.json` is rendered once per evaluation and base URL and then
//! served as bytes: callers reaching the page under different names still
//! get their own links, and a cached body is the same as a fresh one.
mod common;

use common::*;

async fn summary(client: &reqwest::Client, base: &str, host: &str) -> serde_json::Value {
    client
        .get(format!("{base}/api/v2/summary.json"))
        .header("x-forwarded-host", host)
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("json")
}

#[tokio::test]
async fn cached_summaries_keep_each_callers_base_url() {
    let h = start_default().await;
    let base = format!("http://{}", h.running.http_addr());
    let client = reqwest::Client::new();
    let a1 = summary(&client, &base, "status.a.example").await;
    let b = summary(&client, &base, "status.b.example").await;
    let a2 = summary(&client, &base, "status.a.example").await;
    assert_eq!(a1["page"]["url"], "https://status.a.example");
    assert_eq!(b["page"]["url"], "https://status.b.example");
    assert_eq!(a1, a2);
    // Many names: each still gets its own (past the cache's bound too).
    for i in 0..12 {
        let host = format!("name{i}.example");
        let v = summary(&client, &base, &host).await;
        assert_eq!(v["page"]["url"], format!("https://{host}"));
    }
}
