//! The page itself, embedded in the binary (no build step, no CDN: it works on an offline
//! LAN). Plain HTML, CSS and JavaScript without a library; the script builds the page with
//! `textContent`, never from markup, so a console line is always text.

pub(super) struct Asset {
    pub content_type: &'static str,
    pub body: &'static [u8],
}

pub(super) fn find(path: &str) -> Option<Asset> {
    let (content_type, body): (&str, &[u8]) = match path {
        "/" | "/index.html" => (
            "text/html; charset=utf-8",
            include_bytes!("assets/index.html"),
        ),
        "/app.js" => (
            "text/javascript; charset=utf-8",
            include_bytes!("assets/app.js"),
        ),
        "/app.css" => ("text/css; charset=utf-8", include_bytes!("assets/app.css")),
        "/favicon.svg" => ("image/svg+xml", include_bytes!("assets/favicon.svg")),
        _ => return None,
    };
    Some(Asset { content_type, body })
}
