//! A CSW exception: what OWS clients read from an `ows:ExceptionReport`.

use super::xml_out::XmlOut;

const OWS_NS: &str = "http://www.opengis.net/ows";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code} ({locator}): {text}")]
pub struct CswError {
    /// An OWS exception code (`InvalidParameterValue`, `MissingParameterValue`, ...).
    pub code: &'static str,
    /// The parameter at fault.
    pub locator: String,
    pub text: String,
}

impl CswError {
    pub fn invalid(locator: &str, text: impl Into<String>) -> CswError {
        CswError {
            code: "InvalidParameterValue",
            locator: locator.to_string(),
            text: text.into(),
        }
    }

    pub fn missing(locator: &str) -> CswError {
        CswError {
            code: "MissingParameterValue",
            locator: locator.to_string(),
            text: format!("{locator} is required"),
        }
    }

    pub fn not_supported(request: &str) -> CswError {
        CswError {
            code: "OperationNotSupported",
            locator: "request".to_string(),
            text: format!(
                "{request:?} is not offered: GetCapabilities, DescribeRecord, GetRecords and GetRecordById are"
            ),
        }
    }

    /// The catalogue failed (not the request): the text says so without internals.
    pub fn internal(text: impl Into<String>) -> CswError {
        CswError {
            code: "NoApplicableCode",
            locator: "request".to_string(),
            text: text.into(),
        }
    }

    pub fn to_xml(&self) -> String {
        let mut x = XmlOut::new();
        x.open(
            "ows:ExceptionReport",
            &[
                ("xmlns:ows", OWS_NS),
                ("xmlns:xsi", "http://www.w3.org/2001/XMLSchema-instance"),
                ("version", "1.2.0"),
                (
                    "xsi:schemaLocation",
                    "http://www.opengis.net/ows http://schemas.opengis.net/ows/1.0.0/owsExceptionReport.xsd",
                ),
            ],
        )
        .open(
            "ows:Exception",
            &[("exceptionCode", self.code), ("locator", &self.locator)],
        )
        .leaf("ows:ExceptionText", &[], &self.text)
        .close("ows:Exception")
        .close("ows:ExceptionReport");
        x.finish()
    }
}
