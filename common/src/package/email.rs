//! The emails: ckanpackager's templates with their placeholders, plus `{download_url}`.

use super::request::PackageRequest;
use super::settings::PackagerSettings;
use crate::mail::Email;

/// Python's `str.format` for named fields: `{name}` is replaced, `{{` and `}}` are braces, and
/// an unknown `{name}` stays as written.
pub fn format_template(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len() + 64);
    let mut rest = template;
    while let Some(i) = rest.find(['{', '}']) {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if tail.starts_with("{{") || tail.starts_with("}}") {
            out.push_str(&tail[..1]);
            rest = &tail[2..];
            continue;
        }
        if tail.starts_with('{')
            && let Some(end) = tail.find('}')
            && let Some((_, value)) = values.iter().find(|(k, _)| *k == &tail[1..end])
        {
            out.push_str(value);
            rest = &tail[end + 1..];
            continue;
        }
        out.push_str(&tail[..1]);
        rest = &tail[1..];
    }
    out.push_str(rest);
    out
}

/// The email carrying the link, with the DOI paragraphs when the request has a DOI.
pub fn link_email(
    settings: &PackagerSettings,
    from: &str,
    request: &PackageRequest,
    zip_file_name: &str,
    download_url: &str,
) -> Email {
    let host = request.host();
    let doi = request.doi.clone().unwrap_or_default();
    let mut values = vec![
        ("resource_id", request.resource_id.as_str()),
        ("zip_file_name", zip_file_name),
        ("ckan_host", host.as_str()),
        ("doi", doi.as_str()),
        ("download_url", download_url),
        ("doi_body", ""),
        ("doi_body_html", ""),
    ];
    let (doi_body, doi_body_html) = if doi.is_empty() {
        (String::new(), String::new())
    } else {
        (
            format_template(&settings.doi_body, &values),
            format_template(&settings.doi_body_html, &values),
        )
    };
    values.truncate(5);
    values.push(("doi_body", &doi_body));
    values.push(("doi_body_html", &doi_body_html));
    Email {
        from: from.to_string(),
        to: vec![request.email.clone()],
        subject: format_template(&settings.email_subject, &values),
        text: format_template(&settings.email_body, &values),
        html: Some(format_template(&settings.email_body_html, &values)),
    }
}

/// The email telling the requester the package could not be made.
pub fn failure_email(from: &str, request: &PackageRequest, reason: &str) -> Email {
    let host = request.host();
    Email {
        from: from.to_string(),
        to: vec![request.email.clone()],
        subject: format!(
            "Your download of {} from {host} failed",
            request.resource_id
        ),
        text: format!(
            "Hello,\n\nThe resource {} you requested on {host} could not be packaged:\n{reason}\n\nNo file was made. Please try again later, or contact the site.\n",
            request.resource_id
        ),
        html: None,
    }
}

/// The email telling the requester why the request itself was refused.
pub fn refusal_email(from: &str, to: &str, resource_id: &str, reason: &str) -> Email {
    Email {
        from: from.to_string(),
        to: vec![to.to_string()],
        subject: format!("Your download request for {resource_id} was refused"),
        text: format!("Hello,\n\nYour download request could not be accepted:\n{reason}\n"),
        html: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_follow_python_format() {
        let v = [("a", "1"), ("b", "two")];
        assert_eq!(format_template("{a}-{b}", &v), "1-two");
        assert_eq!(format_template("{{a}} {c} }", &v), "{a} {c} }");
    }
}
