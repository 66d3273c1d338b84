//! GetCapabilities and DescribeRecord: what the service offers, for clients to read first.

use super::render::{DC_NS, DCT_NS, OWS_NS};
use super::request::{CSW_NS, GMD_NS, MAX_RECORDS};
use super::xml_out::XmlOut;

const OGC_NS: &str = "http://www.opengis.net/ogc";
const GML_NS: &str = "http://www.opengis.net/gml";
const XLINK_NS: &str = "http://www.w3.org/1999/xlink";

const QUERYABLES: [&str; 12] = [
    "csw:AnyText",
    "dc:title",
    "dct:abstract",
    "dc:subject",
    "dc:identifier",
    "dc:format",
    "dc:type",
    "dct:modified",
    "ows:BoundingBox",
    "apiso:TempExtent_begin",
    "apiso:TempExtent_end",
    "apiso:Title",
];

fn parameter(x: &mut XmlOut, name: &str, values: &[&str]) {
    x.open("ows:Parameter", &[("name", name)]);
    for value in values {
        x.leaf("ows:Value", &[], value);
    }
    x.close("ows:Parameter");
}

fn operation(x: &mut XmlOut, name: &str, base: &str, parameters: &[(&str, &[&str])]) {
    x.open("ows:Operation", &[("name", name)])
        .open("ows:DCP", &[])
        .open("ows:HTTP", &[])
        .empty("ows:Get", &[("xlink:type", "simple"), ("xlink:href", base)])
        .empty(
            "ows:Post",
            &[("xlink:type", "simple"), ("xlink:href", base)],
        )
        .close("ows:HTTP")
        .close("ows:DCP");
    for (name, values) in parameters {
        parameter(x, name, values);
    }
    x.close("ows:Operation");
}

pub fn capabilities(base: &str) -> String {
    let mut x = XmlOut::new();
    x.open(
        "csw:Capabilities",
        &[
            ("xmlns:csw", CSW_NS),
            ("xmlns:ows", OWS_NS),
            ("xmlns:ogc", OGC_NS),
            ("xmlns:gml", GML_NS),
            ("xmlns:xlink", XLINK_NS),
            ("xmlns:xsi", "http://www.w3.org/2001/XMLSchema-instance"),
            ("version", "2.0.2"),
            (
                "xsi:schemaLocation",
                "http://www.opengis.net/cat/csw/2.0.2 http://schemas.opengis.net/csw/2.0.2/CSW-discovery.xsd",
            ),
        ],
    );
    x.open("ows:ServiceIdentification", &[])
        .leaf("ows:Title", &[], "Sheaf catalogue")
        .leaf(
            "ows:Abstract",
            &[],
            "Metadata harvested from WAF, CSW, CKAN and OAI-PMH sources into one catalogue.",
        )
        .leaf("ows:ServiceType", &[("codeSpace", "OGC")], "CSW")
        .leaf("ows:ServiceTypeVersion", &[], "2.0.2")
        .leaf("ows:Fees", &[], "none")
        .leaf("ows:AccessConstraints", &[], "none")
        .close("ows:ServiceIdentification");
    x.open("ows:ServiceProvider", &[])
        .leaf("ows:ProviderName", &[], "Sheaf")
        .empty(
            "ows:ProviderSite",
            &[("xlink:type", "simple"), ("xlink:href", base)],
        )
        .empty("ows:ServiceContact", &[])
        .close("ows:ServiceProvider");
    let schemas: &[&str] = &[CSW_NS, GMD_NS];
    let sets: &[&str] = &["brief", "summary", "full"];
    let type_names: &[&str] = &["csw:Record", "gmd:MD_Metadata"];
    x.open("ows:OperationsMetadata", &[]);
    operation(
        &mut x,
        "GetCapabilities",
        base,
        &[(
            "sections",
            &[
                "ServiceIdentification",
                "ServiceProvider",
                "OperationsMetadata",
                "Filter_Capabilities",
            ],
        )],
    );
    operation(
        &mut x,
        "DescribeRecord",
        base,
        &[
            ("typeName", &["csw:Record"]),
            ("schemaLanguage", &["http://www.w3.org/XML/Schema"]),
        ],
    );
    operation(
        &mut x,
        "GetRecords",
        base,
        &[
            ("typeNames", type_names),
            ("outputSchema", schemas),
            ("outputFormat", &["application/xml"]),
            ("resultType", &["hits", "results"]),
            ("ElementSetName", sets),
            ("CONSTRAINTLANGUAGE", &["FILTER", "CQL_TEXT"]),
        ],
    );
    operation(
        &mut x,
        "GetRecordById",
        base,
        &[("outputSchema", schemas), ("ElementSetName", sets)],
    );
    parameter(&mut x, "service", &["CSW"]);
    parameter(&mut x, "version", &["2.0.2"]);
    x.open("ows:Constraint", &[("name", "MaxRecordDefault")])
        .leaf("ows:Value", &[], &MAX_RECORDS.to_string())
        .close("ows:Constraint");
    x.open("ows:Constraint", &[("name", "Queryables")]);
    for name in QUERYABLES {
        x.leaf("ows:Value", &[], name);
    }
    x.close("ows:Constraint");
    x.close("ows:OperationsMetadata");
    x.open("ogc:Filter_Capabilities", &[])
        .open("ogc:Spatial_Capabilities", &[])
        .open("ogc:GeometryOperands", &[])
        .leaf("ogc:GeometryOperand", &[], "gml:Envelope")
        .close("ogc:GeometryOperands")
        .open("ogc:SpatialOperators", &[])
        .empty("ogc:SpatialOperator", &[("name", "BBOX")])
        .close("ogc:SpatialOperators")
        .close("ogc:Spatial_Capabilities")
        .open("ogc:Scalar_Capabilities", &[])
        .empty("ogc:LogicalOperators", &[])
        .open("ogc:ComparisonOperators", &[]);
    for op in [
        "LessThan",
        "GreaterThan",
        "LessThanEqualTo",
        "GreaterThanEqualTo",
        "EqualTo",
        "NotEqualTo",
        "Like",
        "Between",
    ] {
        x.leaf("ogc:ComparisonOperator", &[], op);
    }
    x.close("ogc:ComparisonOperators")
        .close("ogc:Scalar_Capabilities")
        .open("ogc:Id_Capabilities", &[])
        .empty("ogc:EID", &[])
        .close("ogc:Id_Capabilities")
        .close("ogc:Filter_Capabilities")
        .close("csw:Capabilities");
    x.finish()
}

/// The record type's schema: the official `record.xsd`, by reference.
pub fn describe_record() -> String {
    let mut x = XmlOut::new();
    x.open(
        "csw:DescribeRecordResponse",
        &[
            ("xmlns:csw", CSW_NS),
            ("xmlns:xsi", "http://www.w3.org/2001/XMLSchema-instance"),
            (
                "xsi:schemaLocation",
                "http://www.opengis.net/cat/csw/2.0.2 http://schemas.opengis.net/csw/2.0.2/CSW-discovery.xsd",
            ),
        ],
    )
    .open(
        "csw:SchemaComponent",
        &[
            ("schemaLanguage", "http://www.w3.org/XML/Schema"),
            ("targetNamespace", CSW_NS),
        ],
    )
    .open(
        "xs:schema",
        &[
            ("xmlns:xs", "http://www.w3.org/2001/XMLSchema"),
            ("xmlns:dc", DC_NS),
            ("xmlns:dct", DCT_NS),
            ("targetNamespace", CSW_NS),
            ("elementFormDefault", "qualified"),
        ],
    )
    .empty(
        "xs:include",
        &[("schemaLocation", "http://schemas.opengis.net/csw/2.0.2/record.xsd")],
    )
    .close("xs:schema")
    .close("csw:SchemaComponent")
    .close("csw:DescribeRecordResponse");
    x.finish()
}
