import WharfHTTP

/// The web dashboard (Protocol/http.md, "Dashboard"): a page, one script module and one style sheet,
/// built into the binary from `HTTP/Dashboard/`. The page talks to the server only through `POST /rpc`
/// and `GET /events`, so it shows nothing the API does not.
///
/// Every response carries headers that keep the page in its own box: a Content-Security-Policy that
/// allows only this origin's script, style and fetches (no inline script or style, no frames, no
/// plugins), `X-Frame-Options: DENY`, `nosniff` and no referrer.
enum DashboardAssets {
    static let securityHeaders: [(name: String, value: String)] = [
        (
            "Content-Security-Policy",
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
                + "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
        ),
        ("X-Frame-Options", "DENY"),
        ("X-Content-Type-Options", "nosniff"),
        ("Referrer-Policy", "no-referrer"),
        ("Cache-Control", "no-cache"),
    ]

    /// Path → (content type, bytes).
    static let files: [Substring: (type: String, bytes: [UInt8])] = [
        "/": ("text/html; charset=utf-8", PackageResources.index_html),
        "/ui/app.js": ("text/javascript; charset=utf-8", PackageResources.app_js),
        "/ui/style.css": ("text/css; charset=utf-8", PackageResources.style_css),
        "/ui/icon.svg": ("image/svg+xml", PackageResources.icon_svg),
    ]

    static func response(for path: Substring) -> HTTPResponse? {
        guard let file = files[path] else { return nil }
        return HTTPResponse(status: 200, contentType: file.type, body: file.bytes, headers: securityHeaders)
    }
}
