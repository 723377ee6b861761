//! The interactive API docs at `/docs` work without internet access: the page, everything it
//! loads and the OpenAPI document it shows all come from the service itself.

use crate::helpers::*;
use reqwest::{StatusCode, Url};

#[tokio::test]
async fn docs_page_loads_everything_from_the_service_itself() {
    // Arrange
    let app = spawn_app().await;

    // Act: the page (after the redirect from `/docs` to `/docs/`), then its initializer script,
    // which holds the Swagger UI configuration.
    let page = app
        .client
        .get(format!("{}/docs", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let page_url = page.url().clone();
    let html = page.text().await.unwrap();
    let mut references: Vec<Url> = attribute_urls(&html)
        .iter()
        .map(|reference| page_url.join(reference).unwrap())
        .collect();
    let initializer = references
        .iter()
        .find(|url| url.path().ends_with("/swagger-initializer.js"))
        .cloned()
        .expect("the page loads swagger-initializer.js");
    let config = app
        .client
        .get(initializer.clone())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    references.extend(
        url_like_strings(&config)
            .iter()
            .map(|reference| initializer.join(reference).unwrap()),
    );

    // Assert
    assert!(
        references
            .iter()
            .any(|url| url.path() == "/api/v1/openapi.json"),
        "the page shows the service's own OpenAPI document: {references:?}"
    );
    assert!(
        config.contains(r#""validatorUrl": "none""#),
        "the online spec validator (another host by default) is off:\n{config}"
    );
    for url in &references {
        assert_eq!(
            url.origin(),
            page_url.origin(),
            "{url} is not on the service's own origin"
        );
        let response = app.client.get(url.clone()).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{url}");
    }
}

/// Every `src=` and `href=` attribute value of `html`, as written.
fn attribute_urls(html: &str) -> Vec<String> {
    let mut urls = Vec::new();
    for attribute in ["src=", "href="] {
        for (at, _) in html.match_indices(attribute) {
            let rest = &html[at + attribute.len()..];
            let Some(quote) = rest.chars().next().filter(|c| *c == '"' || *c == '\'') else {
                continue;
            };
            let value = &rest[1..];
            let end = value.find(quote).expect("a closing quote");
            urls.push(value[..end].to_string());
        }
    }
    urls
}

/// Every double-quoted string of `script` that looks like a URL: a path or an absolute URL.
fn url_like_strings(script: &str) -> Vec<String> {
    script
        .split('"')
        .skip(1)
        .step_by(2)
        .filter(|s| s.starts_with('/') || s.starts_with("./") || s.contains("://"))
        .map(str::to_string)
        .collect()
}
