//! Writing one package's zip into a sink, as the rows arrive: datastore rows as CSV or TSV,
//! a resource file as it streams, or a Darwin Core Archive.

use futures::StreamExt;

use super::archive::ZipStreamWriter;
use super::datastore::{Cursor, Datastore, DatastoreInfo};
use super::request::{PackageKind, PackageRequest};
use super::settings::PackagerSettings;
use super::sink::ByteSink;
use super::writing::{BuildSummary, check_time, csv_error, into_bytes, table_writer};
use super::{PackageError, dwc};
use crate::fetch::HttpFetcher;

/// Builds the zip `request` asks for into `sink` and returns the sink (to complete it).
/// On error the sink holds part of a zip: the caller discards it (aborts the upload).
pub async fn write_package<S: ByteSink>(
    fetcher: &dyn HttpFetcher,
    settings: &PackagerSettings,
    request: &PackageRequest,
    sink: S,
) -> Result<(S, BuildSummary), PackageError> {
    let mut zip = ZipStreamWriter::new(sink, settings.compression_level);
    let summary = match request.kind {
        PackageKind::Url => write_file(fetcher, request, &mut zip).await?,
        PackageKind::Datastore => {
            let datastore = Datastore::new(fetcher, request)?;
            let info = datastore.describe().await?;
            write_table(&datastore, &info, settings, request, &mut zip).await?
        }
        PackageKind::DwcArchive => {
            let datastore = Datastore::new(fetcher, request)?;
            let info = datastore.describe().await?;
            dwc::write_archive(&datastore, &info, settings, request, &mut zip).await?
        }
    };
    Ok((zip.finish().await?, summary))
}

async fn write_table<S: ByteSink>(
    datastore: &Datastore<'_>,
    info: &DatastoreInfo,
    settings: &PackagerSettings,
    request: &PackageRequest,
    zip: &mut ZipStreamWriter<S>,
) -> Result<BuildSummary, PackageError> {
    let delimiter = request.format.delimiter();
    zip.start_entry(&request.entry_name()).await?;
    let mut header = table_writer(delimiter, 4096);
    header.write_record(&info.fields).map_err(csv_error)?;
    zip.write(&into_bytes(header)?).await?;
    let mut cursor = Cursor::new(request);
    let mut rows = 0;
    // The next page, asked for while this one streams in (dropped if this one is the last).
    let mut ahead = None;
    let page_size = info.page_size(settings.page_size);
    while let Some(want) = cursor.next_limit(page_size) {
        check_time()?;
        let got = if info.delimited {
            let page = match ahead.take() {
                Some((offset, limit, page)) if offset == cursor.offset && limit == want => page?,
                _ => datastore.open_page(info, cursor.offset, want).await?,
            };
            let next = cursor.after_full_page(want);
            match next.next_limit(page_size) {
                Some(next_want) => {
                    let (got, opened) = tokio::join!(
                        datastore.read_page(page, info, &mut *zip),
                        datastore.open_page(info, next.offset, next_want)
                    );
                    ahead = Some((next.offset, next_want, opened));
                    got?
                }
                None => datastore.read_page(page, info, &mut *zip).await?,
            }
        } else {
            let records = datastore.fetch_page(info, cursor.offset, want).await?;
            let (text, got) = datastore.page_text(info, records)?;
            zip.write(&text).await?;
            got
        };
        cursor.advance(want, got);
        rows += got;
    }
    let summary = zip.finish_entry().await?;
    Ok(BuildSummary {
        rows,
        uncompressed: summary.uncompressed,
    })
}

async fn write_file<S: ByteSink>(
    fetcher: &dyn HttpFetcher,
    request: &PackageRequest,
    zip: &mut ZipStreamWriter<S>,
) -> Result<BuildSummary, PackageError> {
    let url = request
        .resource_url
        .as_deref()
        .ok_or_else(|| PackageError::bad("resource_url", "Parameter resource_url is required"))?;
    let mut body = fetcher.get_stream(url, request.key.as_deref()).await?;
    zip.start_entry(&request.entry_name()).await?;
    while let Some(chunk) = body.next().await {
        check_time()?;
        zip.write(&chunk?).await?;
    }
    let summary = zip.finish_entry().await?;
    Ok(BuildSummary {
        rows: 0,
        uncompressed: summary.uncompressed,
    })
}
