//! The little HTML the examples serve: escaping and a page frame.

use actix_web::HttpResponse;
use actix_web::http::header::{self, ContentType};

/// Escapes text for HTML element content and double-quoted attribute values.
///
/// # Examples
///
/// ```
/// use latchkey_examples::html::escape;
///
/// assert_eq!(escape(r#"<a href="x">&'"#), "&lt;a href=&quot;x&quot;&gt;&amp;&#x27;");
/// ```
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            _ => out.push(c),
        }
    }
    out
}

/// A complete page around `body` (already escaped where needed).
pub fn page(title: &str, body: &str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(ContentType::html())
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(format!(
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\"><title>{}</title></head>\n<body>\n{body}\n</body>\n</html>\n",
            escape(title)
        ))
}

/// A `303 See Other` to `location`, the answer to a form POST.
pub fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, location))
        .finish()
}
