//! `sheaf package datastore`: the packager's work from the command line, into a file or the
//! store, with the same request checks, zip writer and emails as the API.

use std::process::ExitCode;

use anyhow::Context;
use common::package::{self, FileSink, PackageKind, PackageRequest, Params, write_package};
use common::services::Services;

use crate::PackageCommand;

/// Stands in for the email ckanpackager requires when none is given; nothing is sent to it.
const NO_EMAIL: &str = "nobody@localhost";

pub async fn run(
    services: &Services,
    command: PackageCommand,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let PackageCommand::Datastore {
        api_url,
        resource_id,
        email,
        filters,
        q,
        limit,
        offset,
        format,
        dwc,
        key,
        out,
    } = command;
    let mut params = Params::new();
    params.insert("api_url".into(), api_url);
    params.insert("resource_id".into(), resource_id);
    params.insert(
        "email".into(),
        email.clone().unwrap_or_else(|| NO_EMAIL.into()),
    );
    params.insert("format".into(), format);
    let optional = [
        ("filters", filters),
        ("q", q),
        ("limit", limit.map(|n| n.to_string())),
        ("offset", offset.map(|n| n.to_string())),
        ("key", key),
    ];
    for (name, value) in optional {
        if let Some(value) = value {
            params.insert(name.into(), value);
        }
    }
    let kind = if dwc {
        PackageKind::DwcArchive
    } else {
        PackageKind::Datastore
    };
    let settings = &services.settings.packager;
    let request = PackageRequest::from_params(kind, &params, settings.address_policy)?;
    if let Some(path) = out {
        let mut sink = FileSink::create(&path).await?;
        let (_, summary) = write_package(services.fetcher.as_ref(), settings, &request, &mut sink)
            .await
            .and_then(package::Built::whole)
            .inspect_err(|_| {
                let _ = std::fs::remove_file(&path);
            })?;
        sink.close().await?;
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        if json {
            crate::output::json(&serde_json::json!({
                "file": path, "rows": summary.rows, "bytes": size
            }))?;
        } else {
            println!("{}: {} rows, {size} bytes", path.display(), summary.rows);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let doc = match package::fresh_package(services, &request.cache_key()).await? {
        Some(doc) => doc,
        None => match package::build_package(services, &request).await? {
            package::Build::Whole(doc) => doc,
            // Only a function near its deadline sets a build aside; this process has none.
            package::Build::Continues => return Err(package::PackageError::OutOfTime.into()),
        },
    };
    let link = package::download_link(services, &services.settings.public_url, &doc)
        .await
        .context("signing the download link")?;
    if email.is_some() {
        let file_name = doc.zip.rsplit('/').next().unwrap_or(&doc.zip);
        let mail = package::link_email(
            settings,
            &services.settings.mail_from,
            &request,
            file_name,
            &link,
        );
        services.mailer.send(&mail).await?;
    }
    if json {
        crate::output::json(&serde_json::json!({
            "package": doc, "download_url": link
        }))?;
    } else {
        println!(
            "{}: {} rows, {} bytes\n{link}",
            doc.zip, doc.rows, doc.bytes
        );
    }
    Ok(ExitCode::SUCCESS)
}
