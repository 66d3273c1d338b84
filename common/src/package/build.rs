//! Writing one package's zip into a sink, as the rows arrive: datastore rows as CSV or TSV,
//! a resource file as it streams, or a Darwin Core Archive. A datastore table whose
//! invocation's time runs short stops between pages (`Built::OutOfTime`) and goes on from
//! there in the next (`resume_package`).

use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::archive::ZipStreamWriter;
use super::datastore::{Cursor, Datastore, DatastoreInfo};
use super::request::{PackageKind, PackageRequest};
use super::settings::PackagerSettings;
use super::sink::ByteSink;
use super::writing::{BuildSummary, check_time, csv_error, into_bytes, out_of_time, table_writer};
use super::{PackageError, dwc};
use crate::fetch::HttpFetcher;

/// Where a table stopped: the next page's place, and the rows written before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TablePlace {
    pub cursor: Cursor,
    pub rows: u64,
}

/// How a build ended.
pub enum Built<S: ByteSink> {
    /// The zip is whole: the sink holds it.
    Whole(S, BuildSummary),
    /// The invocation's time ran short between two pages of a table: the zip so far, and
    /// where its rows go on.
    OutOfTime(Box<ZipStreamWriter<S>>, TablePlace),
}

impl<S: ByteSink> Built<S> {
    /// The whole zip, where no deadline applies (the command line): a build that ran out of
    /// time is `OutOfTime`.
    pub fn whole(self) -> Result<(S, BuildSummary), PackageError> {
        match self {
            Built::Whole(sink, summary) => Ok((sink, summary)),
            Built::OutOfTime(..) => Err(PackageError::OutOfTime),
        }
    }
}

/// Builds the zip `request` asks for into `sink`. On error the sink holds part of a zip: the
/// caller discards it (aborts the upload).
pub async fn write_package<S: ByteSink>(
    fetcher: &dyn HttpFetcher,
    settings: &PackagerSettings,
    request: &PackageRequest,
    sink: S,
) -> Result<Built<S>, PackageError> {
    let zip = ZipStreamWriter::new(sink, settings.compression_level);
    build(fetcher, settings, request, zip, None).await
}

/// Goes on with a datastore table a previous invocation left `OutOfTime`.
pub async fn resume_package<S: ByteSink>(
    fetcher: &dyn HttpFetcher,
    settings: &PackagerSettings,
    request: &PackageRequest,
    zip: ZipStreamWriter<S>,
    place: TablePlace,
) -> Result<Built<S>, PackageError> {
    build(fetcher, settings, request, zip, Some(place)).await
}

async fn build<S: ByteSink>(
    fetcher: &dyn HttpFetcher,
    settings: &PackagerSettings,
    request: &PackageRequest,
    mut zip: ZipStreamWriter<S>,
    place: Option<TablePlace>,
) -> Result<Built<S>, PackageError> {
    if place.is_some() && request.kind != PackageKind::Datastore {
        return Err(PackageError::Archive(
            "only a datastore table goes on in another invocation".into(),
        ));
    }
    let summary = match request.kind {
        PackageKind::Url => write_file(fetcher, request, &mut zip).await?,
        PackageKind::Datastore => {
            let datastore = Datastore::new(fetcher, request)?;
            let info = datastore.describe().await?;
            match write_table(&datastore, &info, settings, request, &mut zip, place).await? {
                TableEnd::Whole(summary) => summary,
                TableEnd::OutOfTime(place) => return Ok(Built::OutOfTime(Box::new(zip), place)),
            }
        }
        PackageKind::DwcArchive => {
            let datastore = Datastore::new(fetcher, request)?;
            let info = datastore.describe().await?;
            dwc::write_archive(&datastore, &info, settings, request, &mut zip).await?
        }
    };
    Ok(Built::Whole(zip.finish().await?, summary))
}

enum TableEnd {
    Whole(BuildSummary),
    OutOfTime(TablePlace),
}

async fn write_table<S: ByteSink>(
    datastore: &Datastore<'_>,
    info: &DatastoreInfo,
    settings: &PackagerSettings,
    request: &PackageRequest,
    zip: &mut ZipStreamWriter<S>,
    place: Option<TablePlace>,
) -> Result<TableEnd, PackageError> {
    let TablePlace {
        mut cursor,
        mut rows,
    } = match place {
        Some(place) => place,
        None => {
            zip.start_entry(&request.entry_name()).await?;
            let mut header = table_writer(request.format.delimiter(), 4096);
            header.write_record(&info.fields).map_err(csv_error)?;
            zip.write(&into_bytes(header)?).await?;
            TablePlace {
                cursor: Cursor::new(request),
                rows: 0,
            }
        }
    };
    // The next page, asked for while this one streams in (dropped if this one is the last).
    let mut ahead = None;
    let page_size = info.page_size(settings.page_size);
    // Every invocation writes a page at least, so a build always moves on.
    let mut first = true;
    while let Some(want) = cursor.next_limit(page_size) {
        if !first && out_of_time() {
            return Ok(TableEnd::OutOfTime(TablePlace { cursor, rows }));
        }
        first = false;
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
    Ok(TableEnd::Whole(BuildSummary {
        rows,
        uncompressed: summary.uncompressed,
    }))
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
