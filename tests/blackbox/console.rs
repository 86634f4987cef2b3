//! The web console in a real browser: the built gateway with the tiny fixture CLIP as
//! `clipo`, headless Chromium at `/console/`: sign in, drop three pictures into a new scope,
//! search by text and by one of them (it comes first, its thumbnail loaded), run the copied
//! curl command against the gateway, visit every page (and the playground at phone width),
//! then drop the scope. Screenshots of each page are kept under the target folder; any
//! console error or failed request in the page fails the test.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};

use super::browser::Browser;
use super::media::install_fixture_clipo;
use super::{ADMIN, ENV_KEY, Server, aimp, clip_fixtures, get};

const SCOPE: &str = "console-test";
const WAIT: Duration = Duration::from_secs(60);

/// The API page's three snippets, byte for byte: the console's "copy as" writes them so.
const PAGE_CURL: &str = r#"curl -X POST "$AIMP_GATEWAY_URL/api/runs" \
  -H "X-API-Key: $AIMP_API_KEY" \
  -H "Content-Type: application/json" \
  -d '{
    "model": "demo-model",
    "mode": "execute",
    "scope": "playground",
    "input": {
      "text": "Write a one-line summary."
    },
    "params": {}
  }'"#;
const PAGE_PYTHON: &str = r#"import os
import requests

gateway_url = os.environ["AIMP_GATEWAY_URL"].rstrip("/")
api_key = os.environ["AIMP_API_KEY"]

response = requests.post(
    f"{gateway_url}/api/runs",
    headers={
        "X-API-Key": api_key,
        "Content-Type": "application/json",
    },
    json={
        "model": "demo-model",
        "mode": "execute",
        "scope": "playground",
        "input": {"text": "Write a one-line summary."},
        "params": {},
    },
    timeout=60,
)
response.raise_for_status()
print(response.json())"#;
const PAGE_JAVASCRIPT: &str = r##"const gatewayUrl = process.env.AIMP_GATEWAY_URL.replace(/\/$/, "");

const response = await fetch(`${gatewayUrl}/api/runs`, {
  method: "POST",
  headers: {
    "X-API-Key": process.env.AIMP_API_KEY,
    "Content-Type": "application/json",
  },
  body: JSON.stringify({
    model: "demo-model",
    mode: "execute",
    scope: "playground",
    input: { text: "Write a one-line summary." },
    params: {},
  }),
});

if (!response.ok) {
  throw new Error(`AIMP request failed: ${response.status}`);
}

console.log(await response.json());"##;

fn screenshots() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot folder");
    dir
}

#[test]
fn the_console_signs_in_indexes_searches_copies_curl_and_drops_a_scope() {
    let Some(browser) = Browser::start(1280, 900) else {
        return;
    };
    let data = tempfile::tempdir().expect("tempdir");
    let models = data.path().join("models");
    install_fixture_clipo(data.path(), &models);
    let mut cmd = aimp(data.path(), &models);
    cmd.env("AIMP_API_KEY", ENV_KEY)
        .env("AIMP_MODELS", "clipo")
        .env("AIMP_OFFLINE", "1");
    let server = Server::start(cmd);
    let shots = screenshots();
    let shot = |name: &str| browser.screenshot(&shots.join(format!("{name}.png")));
    let images = clip_fixtures().join("images");
    let pictures = [
        images.join("photo.jpg"),
        images.join("landscape_rgb.png"),
        images.join("square.webp"),
    ];

    // Sign in: a wrong key is a clear message, the right one opens the console.
    browser.open(&format!("{}/console", server.base));
    browser.wait_for(
        "the sign-in form",
        "return !!document.querySelector('#api-key')",
        WAIT,
    );
    shot("01-sign-in");
    browser.type_into("#api-key", "aimp_not_a_key_of_this_gateway_000000000000");
    browser.click("#signin button[type=submit]");
    browser.wait_for(
        "the wrong key's message",
        "return (document.querySelector('#signin-status')?.textContent || '').includes('not accepted')",
        WAIT,
    );
    // The refused check is the one failed request this test expects.
    let refused = browser.log();
    assert!(
        refused.len() == 1 && refused[0].1.contains("401"),
        "{refused:#?}"
    );
    browser.eval("document.querySelector('#api-key').value = ''", json!([]));
    browser.type_into("#api-key", ENV_KEY);
    browser.click("#signin button[type=submit]");
    browser.wait_for(
        "the Knowledge Bases page",
        "return !document.querySelector('#nav').hidden && !!document.querySelector('main h1')",
        WAIT,
    );

    // The snippets the console writes for the API page's request are the page's own.
    let written = browser.eval(
        "return import('./snippets.js').then((m) => { \
           const body = {model: 'demo-model', mode: 'execute', scope: 'playground', \
                         input: {text: 'Write a one-line summary.'}, params: {}}; \
           return [m.curl('api/runs', body), m.python('api/runs', body), m.javascript('api/runs', body)]; })",
        json!([]),
    );
    assert_eq!(written[0], PAGE_CURL);
    assert_eq!(written[1], PAGE_PYTHON);
    assert_eq!(written[2], PAGE_JAVASCRIPT);

    // Index: three pictures dropped into a new scope.
    browser.open(&format!("{}/console/#/index", server.base));
    browser.wait_for(
        "the index page",
        "return !!document.querySelector('#index-scope')",
        WAIT,
    );
    browser.type_into("#index-scope", SCOPE);
    let paths: Vec<&std::path::Path> = pictures.iter().map(PathBuf::as_path).collect();
    browser.drop_files("#drop-zone", &paths);
    browser.wait_for(
        "the progress bar to finish",
        "const p = document.querySelector('#index-progress'); \
         return !!p && !p.hidden && p.value == p.max && \
                document.querySelector('#index-summary').textContent.includes('3 indexed')",
        WAIT,
    );
    assert!(browser.text("#index-summary").contains("0 failed"));
    shot("02-index");

    // Search by text: the three come back as a grid.
    browser.open(&format!(
        "{}/console/#/playground?model=clipo&scope={SCOPE}",
        server.base
    ));
    browser.wait_for(
        "the playground",
        "return !!document.querySelector('#query-text')",
        WAIT,
    );
    browser.type_into("#query-text", "a photo of a landscape");
    browser.click("#search");
    browser.wait_for(
        "three results",
        "return document.querySelectorAll('#results .result').length === 3",
        WAIT,
    );
    let url = browser.eval("return location.hash", json!([]));
    assert!(
        url.as_str()
            .is_some_and(|h| h.contains("text=a+photo") && h.contains(SCOPE)),
        "the query is in the URL: {url}"
    );
    shot("03-playground-text");

    // Search by a picture dropped on the page: it is first, with its thumbnail loaded.
    browser.drop_files("#drop-zone", &[pictures[0].as_path()]);
    browser.wait_for(
        "photo.jpg first, its thumbnail loaded",
        "const first = document.querySelector('#results .result'); \
         const img = first && first.querySelector('img'); \
         return !!first && first.dataset.id === 'photo.jpg' && !!img && img.complete && img.naturalWidth > 0 \
                && !!document.querySelector('#query-thumb');",
        WAIT,
    );
    shot("04-playground-picture");

    // "Copy as curl" gives the exact request; run as the API page's snippets are.
    browser.click("#copy-curl");
    browser.wait_for(
        "the curl snippet",
        "return (document.querySelector('#snippet-text')?.textContent || '').startsWith('curl')",
        WAIT,
    );
    let snippet = browser.text("#snippet-text");
    assert!(snippet.contains("\"media_ref\": \"media_"), "{snippet}");
    let out = std::process::Command::new("bash")
        .args(["-c", &format!("{snippet} --silent --show-error")])
        .env("AIMP_GATEWAY_URL", &server.base)
        .env("AIMP_API_KEY", ENV_KEY)
        .output()
        .expect("run the copied curl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: Value = serde_json::from_slice(&out.stdout).expect("a JSON answer");
    assert_eq!(answer["status"], "succeeded", "{answer}");
    assert_eq!(
        answer["output"]["results"][0]["id"], "photo.jpg",
        "{answer}"
    );
    shot("05-playground-snippet");

    // "More like this" on a result searches by it.
    browser.click("#results .result:nth-child(2) .more-like-this");
    browser.wait_for(
        "the second result's own search",
        "return location.hash.includes('media_ref=') && \
                document.querySelectorAll('#results .result').length === 3",
        WAIT,
    );

    // At phone width the playground fits: nothing wider than the window.
    browser.resize(390, 844);
    browser.wait_for(
        "the page to fit 390 px",
        "return document.documentElement.scrollWidth <= window.innerWidth",
        WAIT,
    );
    shot("06-playground-390px");
    browser.resize(1280, 900);

    // Every other page: Knowledge Bases, one scope's items, models, recall, keys.
    browser.open(&format!("{}/console/#/knowledge", server.base));
    let row = format!("clipo/images/{SCOPE}");
    browser.wait_for(
        "the scope in Knowledge Bases",
        &format!("return !!document.querySelector('tr[data-kb=\"{row}\"]')"),
        WAIT,
    );
    shot("07-knowledge-bases");
    browser.open(&format!(
        "{}/console/#/browse?model=clipo&collection=images&scope={SCOPE}&limit=25",
        server.base
    ));
    browser.wait_for(
        "three items with thumbnails",
        "const imgs = [...document.querySelectorAll('#items img')]; \
         return imgs.length === 3 && imgs.every((i) => i.complete && i.naturalWidth > 0)",
        WAIT,
    );
    shot("08-browse");
    browser.open(&format!("{}/console/#/models", server.base));
    browser.wait_for(
        "the models",
        "return !!document.querySelector('tr[data-model=clipo]')",
        WAIT,
    );
    shot("09-models");
    browser.open(&format!(
        "{}/console/#/recall?model=clipo&collection=images&scope={SCOPE}",
        server.base
    ));
    browser.wait_for(
        "the recall form",
        "return !!document.querySelector('#recall-run')",
        WAIT,
    );
    browser.click("#recall-run");
    browser.wait_for(
        "a recall figure",
        "return (document.querySelector('#recall-value')?.textContent || '').startsWith('recall@10 1.000')",
        WAIT,
    );
    shot("10-recall");
    browser.open(&format!("{}/console/#/keys", server.base));
    browser.wait_for(
        "the admin token form",
        "return !!document.querySelector('#admin-token')",
        WAIT,
    );
    browser.type_into("#admin-token", ADMIN);
    browser.click("main form button[type=submit]");
    browser.wait_for(
        "the key list",
        "return !!document.querySelector('#new-key-name')",
        WAIT,
    );
    shot("11-keys");

    // Drop the scope after the confirmation that names it.
    browser.open(&format!("{}/console/#/knowledge", server.base));
    browser.wait_for(
        "the scope's row",
        &format!("return !!document.querySelector('tr[data-kb=\"{row}\"]')"),
        WAIT,
    );
    browser.click(&format!("tr[data-kb=\"{row}\"] button.danger"));
    browser.wait_for(
        "the confirmation naming the scope",
        &format!(
            "return (document.querySelector('dialog[open]')?.textContent || '').includes('{row}')"
        ),
        WAIT,
    );
    shot("12-drop-confirmation");
    browser.click("#confirm-yes");
    browser.wait_for(
        "the scope gone",
        &format!("return !document.querySelector('tr[data-kb=\"{row}\"]') && !document.querySelector('dialog[open]')"),
        WAIT,
    );
    let (status, list) = get(
        &format!("{}/api/knowledge-bases", server.base),
        &[("X-API-Key", ENV_KEY)],
    );
    assert_eq!(status, 200);
    assert!(
        !list["data"]
            .as_array()
            .expect("data")
            .iter()
            .any(|kb| kb["scope"] == SCOPE),
        "{list}"
    );

    let problems: Vec<(String, String)> = browser
        .log()
        .into_iter()
        .filter(|(level, _)| level == "SEVERE" || level == "WARNING")
        .collect();
    assert!(problems.is_empty(), "the page logged errors: {problems:#?}");
    println!("screenshots: {}", shots.display());
}

/// The README's screenshot: the playground searching real sentences with demo-model's real
/// weights. `cargo test --test blackbox console_screenshot_for_the_readme -- --ignored`
/// writes `docs/console-playground.png`.
#[test]
#[ignore = "writes the README's screenshot"]
fn console_screenshot_for_the_readme() {
    let Some(browser) = Browser::start(1280, 1000) else {
        return;
    };
    let data = tempfile::tempdir().expect("tempdir");
    let mut cmd = aimp(data.path(), &super::shared_models());
    cmd.env("AIMP_API_KEY", ENV_KEY);
    let server = Server::start(cmd);
    let texts = [
        "The court hearing was moved to Friday morning.",
        "Quarterly revenue grew by ten percent over last year.",
        "The contract was signed by both parties in March.",
        "Our team shipped the new search feature this week.",
        "A heavy storm closed the mountain pass overnight.",
        "The recipe needs two cups of flour and one egg.",
        "The judge dismissed the appeal for lack of evidence.",
        "Sales in the northern region fell short of the forecast.",
        "The hiking trail follows the river to a waterfall.",
        "Bake the bread for forty minutes at two hundred degrees.",
        "The lawyers asked for more time to review the documents.",
        "Profit margins improved after the supplier lowered prices.",
    ];
    let ids: Vec<String> = (1..=texts.len()).map(|i| format!("note-{i}")).collect();
    let (status, reply) = super::post(
        &format!("{}/api/runs", server.base),
        &[("X-API-Key", ENV_KEY)],
        &json!({"model": "demo-model", "mode": "index", "scope": "notes",
                "input": {"texts": texts, "text_ids": ids}})
        .to_string(),
    );
    assert_eq!(status, 200, "{reply}");
    browser.open(&format!("{}/console/", server.base));
    browser.wait_for(
        "sign-in",
        "return !!document.querySelector('#api-key')",
        WAIT,
    );
    browser.type_into("#api-key", ENV_KEY);
    browser.click("#signin button[type=submit]");
    browser.wait_for(
        "signed in",
        "return !document.querySelector('#nav').hidden",
        WAIT,
    );
    browser.open(&format!(
        "{}/console/#/playground?model=demo-model&scope=notes&text=a+legal+dispute&top_k=6",
        server.base
    ));
    browser.wait_for(
        "six results",
        "return document.querySelectorAll('#results .result').length === 6",
        WAIT,
    );
    browser.eval(
        "document.querySelector('#summary').scrollIntoView({block: 'center'})",
        json!([]),
    );
    let out = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/console-playground.png");
    browser.screenshot(&out);
    println!("wrote {}", out.display());
}
