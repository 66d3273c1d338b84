//! `/csw`: CSW 2.0.2 by GET (key-value pairs) and by POST (an XML request, or the same pairs
//! form-encoded). Exceptions answer 400 with an `ows:ExceptionReport`, as OWS clients read.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::{AppState, query_pairs};
use crate::csw::{self, CswError, CswRequest};

async fn respond(state: &AppState, request: Result<CswRequest, CswError>) -> Response {
    let answer = match request {
        Ok(request) => csw::answer(&state.services, request).await,
        Err(e) => Err(e),
    };
    let (status, body) = match answer {
        Ok(xml) => (StatusCode::OK, xml),
        Err(e) if e.code == "NoApplicableCode" => (StatusCode::INTERNAL_SERVER_ERROR, e.to_xml()),
        Err(e) => (StatusCode::BAD_REQUEST, e.to_xml()),
    };
    (
        status,
        [(header::CONTENT_TYPE, "application/xml; charset=utf-8")],
        body,
    )
        .into_response()
}

#[utoipa::path(
    get,
    path = "/csw",
    tag = "standards",
    description = "CSW 2.0.2 by KVP: GetCapabilities, DescribeRecord, GetRecords, GetRecordById.",
    responses((status = 200, description = "the answer", body = String, content_type = "application/xml"), (status = 400, description = "an ows:ExceptionReport naming the parameter", body = String, content_type = "application/xml"))
)]
pub async fn get(State(state): State<Arc<AppState>>, RawQuery(query): RawQuery) -> Response {
    let request = csw::from_kvp(&query_pairs(query.as_deref().unwrap_or("")));
    respond(&state, request).await
}

#[utoipa::path(
    post,
    path = "/csw",
    tag = "standards",
    description = "CSW 2.0.2 by a POSTed XML request (or KVP form-encoded).",
    responses((status = 200, description = "the answer", body = String, content_type = "application/xml"), (status = 400, description = "an ows:ExceptionReport", body = String, content_type = "application/xml"))
)]
pub async fn post(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    let starts_xml = body
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'<' || *b == 0xEF || *b == 0xFE || *b == 0xFF);
    let request = if starts_xml {
        csw::from_xml(&body)
    } else {
        csw::from_kvp(&query_pairs(&String::from_utf8_lossy(&body)))
    };
    respond(&state, request).await
}
