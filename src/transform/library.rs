//! The public transformation library, shipped in the binary and written to the store at
//! start-up with fixed ids, so streams can refer to them and copies can say where they came from.
//! The code lives beside this file; `library/samples/` holds the sample records each one is
//! tested on (shapes from the systems' public API documentation).

use uuid::Uuid;

use crate::domain::Timestamp;
use crate::store::Transformation;

/// Id of the passthrough transformation.
pub const PASSTHROUGH_ID: Uuid = Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0001);
/// Shopify order → generic sales order (JavaScript, JSON).
pub const SHOPIFY_SALES_ORDER_ID: Uuid = Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0002);
/// Shopify order → CSV, one line per line item (template).
pub const SHOPIFY_ORDER_LINES_CSV_ID: Uuid =
    Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0003);
/// Shopify order → Peoplevox-style sales order XML (template).
pub const SHOPIFY_PEOPLEVOX_XML_ID: Uuid =
    Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0004);
/// DEAR sale → Shopify fulfillments (JavaScript, one output per shipped fulfilment).
pub const DEAR_SHOPIFY_FULFILLMENT_ID: Uuid =
    Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0005);
/// Shopify product and variants → stock CSV (template).
pub const SHOPIFY_STOCK_CSV_ID: Uuid = Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0006);
/// Magento 2 order → Peoplevox-style sales order XML (template).
pub const MAGENTO_PEOPLEVOX_XML_ID: Uuid =
    Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0008);
/// WooCommerce order → CSV, one line per line item (template).
pub const WOOCOMMERCE_ORDER_LINES_CSV_ID: Uuid =
    Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0007);
/// Peoplevox despatch callback → Shopify fulfillment (JavaScript).
pub const PEOPLEVOX_SHOPIFY_FULFILLMENT_ID: Uuid =
    Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_000b);
/// Shopify order → Peoplevox import through the sales order templates (JavaScript).
pub const SHOPIFY_PEOPLEVOX_IMPORT_ID: Uuid =
    Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_000c);

/// Shopify order → the DEAR sale and order `dear.sale` takes (JavaScript, JSON).
pub const SHOPIFY_DEAR_SALE_ID: Uuid = Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0009);
/// DEAR stock row → the Shopify inventory level `shopify.inventory` takes (JavaScript, JSON).
pub const DEAR_SHOPIFY_INVENTORY_ID: Uuid =
    Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_000a);

struct Entry {
    id: Uuid,
    title: &'static str,
    description: &'static str,
    data_type: &'static str,
    language: &'static str,
    format: &'static str,
    code: &'static str,
}

const LIBRARY: [Entry; 12] = [
    Entry {
        id: PASSTHROUGH_ID,
        title: "Passthrough",
        description: "Sends each record on unchanged.",
        data_type: "any",
        language: "javascript",
        format: "json",
        code: "function transform(record, ctx) {\n  return record;\n}\n",
    },
    Entry {
        id: SHOPIFY_SALES_ORDER_ID,
        title: "Shopify order to sales order",
        description: "A Shopify order as a generic sales order: customer, addresses, shipping (service from the `shipping_methods` lookup table), lines with money rounded in decimal (SKUs through `sku_map`), totals. Cancelled orders are skipped. Settings: warehouse, timezone, channel.",
        data_type: "sales_order",
        language: "javascript",
        format: "json",
        code: include_str!("library/shopify_order_to_sales_order.js"),
    },
    Entry {
        id: SHOPIFY_ORDER_LINES_CSV_ID,
        title: "Shopify order to CSV lines",
        description: "A Shopify order as CSV, one line per line item, with a header; fields quoted as CSV needs. Settings: timezone.",
        data_type: "sales_order",
        language: "template",
        format: "csv",
        code: include_str!("library/shopify_order_lines.csv.j2"),
    },
    Entry {
        id: SHOPIFY_PEOPLEVOX_XML_ID,
        title: "Shopify order to Peoplevox sales order XML",
        description: "A Shopify order as a Peoplevox-style sales order document with its lines; service type from the `shipping_methods` lookup table. Settings: site_reference, timezone.",
        data_type: "sales_order",
        language: "template",
        format: "xml",
        code: include_str!("library/shopify_order_to_peoplevox.xml.j2"),
    },
    Entry {
        id: DEAR_SHOPIFY_FULFILLMENT_ID,
        title: "DEAR sale to Shopify fulfillment",
        description: "A DEAR (Cin7 Core) sale as Shopify fulfillments for `shopify.fulfillment`, one per shipped fulfilment, with tracking number, URL and company (through the `carriers` lookup table) and the shipped lines by SKU. Sales with nothing shipped are skipped. Settings: notify_customer.",
        data_type: "shipment",
        language: "javascript",
        format: "json",
        code: include_str!("library/dear_sale_to_shopify_fulfillment.js"),
    },
    Entry {
        id: SHOPIFY_STOCK_CSV_ID,
        title: "Shopify product to stock CSV",
        description: "A Shopify product as stock CSV, one line per variant: SKU, barcode, titles, location, quantity, price. Settings: location.",
        data_type: "stock",
        language: "template",
        format: "csv",
        code: include_str!("library/shopify_product_stock.csv.j2"),
    },
    Entry {
        id: WOOCOMMERCE_ORDER_LINES_CSV_ID,
        title: "WooCommerce order to CSV lines",
        description: "A WooCommerce order as CSV, one line per line item, with a header: number, date (in the settings' timezone), e-mail, SKU, item, quantity, prices, shipping name, address and method. Settings: timezone.",
        data_type: "sales_order",
        language: "template",
        format: "csv",
        code: include_str!("library/woocommerce_order_lines.csv.j2"),
    },
    Entry {
        id: MAGENTO_PEOPLEVOX_XML_ID,
        title: "Magento order to Peoplevox sales order XML",
        description: "A Magento 2 order as a Peoplevox-style sales order document: the shipping address of its shipping assignment, service type from the `shipping_methods` lookup table (by Magento's method code), one line per ordered product (child lines of configurable and bundle products left out). Settings: site_reference, timezone.",
        data_type: "sales_order",
        language: "template",
        format: "xml",
        code: include_str!("library/magento_order_to_peoplevox.xml.j2"),
    },
    Entry {
        id: PEOPLEVOX_SHOPIFY_FULFILLMENT_ID,
        title: "Peoplevox despatch to Shopify fulfillment",
        description: "A Peoplevox despatch or tracking callback (`peoplevox.webhook`) as the Shopify fulfillment of its order: order name (the sales order number with `order_prefix`, \"#\" by default), tracking number, and company and tracking URL through the `carriers` lookup table (`<carrier>` and `<carrier>.url`, `{number}` in the URL). Despatches without a tracking number are skipped. Settings: order_prefix, notify_customer.",
        data_type: "shipment",
        language: "javascript",
        format: "json",
        code: include_str!("library/peoplevox_despatch_to_shopify_fulfillment.js"),
    },
    Entry {
        id: SHOPIFY_PEOPLEVOX_IMPORT_ID,
        title: "Shopify order to Peoplevox import",
        description: "A Shopify order as one `peoplevox.import` output (`{\"imports\": [...]}`, delivered in order): one row for the \"Sales orders\" template (customer, shipping and invoice addresses, totals, service type from the `shipping_methods` lookup table), then its lines for \"Sales order items\" (item codes through `sku_map`). Cancelled orders are skipped. Settings: timezone, channel, payment_method, default_service.",
        data_type: "sales_order",
        language: "javascript",
        format: "json",
        code: include_str!("library/shopify_order_to_peoplevox_import.js"),
    },
    Entry {
        id: SHOPIFY_DEAR_SALE_ID,
        title: "Shopify order to DEAR sale",
        description: "A Shopify order as the DEAR (Cin7 Core) sale `dear.sale` creates: customer, contact, addresses, the order's name as `CustomerReference`, `SkipQuote`, and its order (`AUTHORISED`) with lines by SKU (through `sku_map`; discount as DEAR's percentage, tax, the total DEAR checks, a tax rule each) and shipping as an additional charge. Cancelled orders are skipped. Settings: location and tax_rule (required), tax_free_rule, customer, price_tier, shipping_product, timezone, order_status. Lookups: sku_map, tax_rules (Shopify tax title to DEAR tax rule), carriers.",
        data_type: "sales_order",
        language: "javascript",
        format: "json",
        code: include_str!("library/shopify_order_to_dear_sale.js"),
    },
    Entry {
        id: DEAR_SHOPIFY_INVENTORY_ID,
        title: "DEAR stock to Shopify inventory",
        description: "A `dear.stock` row (or a SKU's rows summed with `sum_by_sku`) as the inventory level `shopify.inventory` sets: `{sku, available}`, DEAR's `Available` rounded down and never below 0 (SKUs through `sku_map`). Settings: location (a DEAR location name; rows of other locations give no output).",
        data_type: "stock",
        language: "javascript",
        format: "json",
        code: include_str!("library/dear_stock_to_shopify_inventory.js"),
    },
];

/// Every public transformation.
pub fn public_transformations() -> Vec<Transformation> {
    // Changing this date re-stamps the library (and recompiles cached copies of it).
    let created = Timestamp::from_datetime(
        "2026-11-22T00:00:00Z"
            .parse()
            .expect("a valid constant timestamp"),
    );
    LIBRARY
        .iter()
        .map(|e| Transformation {
            id: e.id,
            org_id: None,
            visibility: "public".into(),
            title: e.title.into(),
            description: e.description.into(),
            data_type: e.data_type.into(),
            language: e.language.into(),
            format: e.format.into(),
            code: e.code.into(),
            copied_from: None,
            created_at: created,
            updated_at: created,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transform::{LogSink, Output, Program, RunContext};
    use serde_json::{json, Value};
    use std::sync::Arc;

    const ORDER: &str = include_str!("library/samples/shopify_order.json");
    const PRODUCT: &str = include_str!("library/samples/shopify_product.json");
    const SALE: &str = include_str!("library/samples/dear_sale.json");
    const WOO_ORDER: &str = include_str!("library/samples/woocommerce_order.json");
    const MAGENTO_ORDER: &str = include_str!("library/samples/magento_order.json");
    const PVX_DESPATCH: &str = include_str!("library/samples/peoplevox_despatch.json");

    #[test]
    fn peoplevox_despatch_to_shopify_fulfillment() {
        let carriers = crate::transform::lookups::Table {
            default: None,
            entries: [
                ("DPD", "DPD UK"),
                ("DPD.url", "https://track.dpd.co.uk/parcels/{number}"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        };
        let lookups = crate::transform::lookups::Lookups {
            tables: [("carriers".to_string(), carriers)].into_iter().collect(),
        };
        let (out, logs) = run_with(
            PEOPLEVOX_SHOPIFY_FULFILLMENT_ID,
            PVX_DESPATCH,
            json!({}),
            lookups.clone(),
        );
        assert_eq!(
            out,
            Output::Records(vec![json!({
                "order_name": "#1042",
                "tracking": {"number": "JD0002212345678", "company": "DPD UK",
                    "url": "https://track.dpd.co.uk/parcels/JD0002212345678"},
                "notify_customer": true
            })])
        );
        assert_eq!(
            logs,
            vec!["despatch D000456 of order 1042 tracking JD0002212345678"]
        );
        // A number that has its prefix keeps it; a carrier the table lacks passes as it is.
        let mut other: Value = serde_json::from_str(PVX_DESPATCH).unwrap();
        other["SalesOrderNumber"] = json!("SO-77");
        other["Carrier"] = json!("Royal Mail");
        let (out, _) = run_with(
            PEOPLEVOX_SHOPIFY_FULFILLMENT_ID,
            &other.to_string(),
            json!({"order_prefix": "SO-", "notify_customer": false}),
            lookups,
        );
        assert_eq!(
            out,
            Output::Records(vec![json!({
                "order_name": "SO-77",
                "tracking": {"number": "JD0002212345678", "company": "Royal Mail", "url": null},
                "notify_customer": false
            })])
        );
        other["TrackingNumber"] = json!("");
        let (out, _) = run(
            PEOPLEVOX_SHOPIFY_FULFILLMENT_ID,
            &other.to_string(),
            json!({}),
        );
        assert_eq!(
            out,
            Output::Skip("despatch D000456 has no tracking number yet".into())
        );
    }

    #[test]
    fn shopify_order_to_peoplevox_import() {
        let (out, logs) = run(
            SHOPIFY_PEOPLEVOX_IMPORT_ID,
            ORDER,
            json!({"timezone": "Europe/London"}),
        );
        assert_eq!(
            out,
            Output::Records(vec![json!({"imports": [
                {"template": "Sales orders", "rows": [{
                    "SalesOrderNumber": "1042",
                    "Customer": "Jo Bloggs",
                    "CustomerPurchaseOrderReferenceNumber": "5781543927000",
                    "ShippingAddressLine1": "1 High Street",
                    "ShippingAddressLine2": "Flat 2",
                    "ShippingAddressCity": "London",
                    "ShippingAddressRegion": "England",
                    "ShippingAddressPostcode": "SW1A 1AA",
                    "ShippingAddressCountry": "GB",
                    "InvoiceAddressLine1": "1 High Street",
                    "InvoiceAddressLine2": "Flat 2",
                    "InvoiceAddressCity": "London",
                    "InvoiceAddressRegion": "England",
                    "InvoiceAddressPostcode": "SW1A 1AA",
                    "InvoiceAddressCountry": "GB",
                    "ShippingCost": "3.95",
                    "Email": "jo.bloggs@example.com",
                    "ContactName": "Jo Bloggs",
                    "TotalSale": "66.44",
                    "Discount": "5.00",
                    "TaxPaid": "11.07",
                    "CreatedDate": "2024-07-01 23:30:12",
                    "PaymentMethod": 1,
                    "ServiceType": "Royal Mail Tracked 24",
                    "ChannelName": "Shopify"
                }]},
                {"template": "Sales order items", "rows": [
                    {"SalesOrderNumber": "1042", "ItemCode": "TEE-BLU-M", "QuantityOrdered": 2,
                     "Line": "1", "Sequence": 1, "SalePrice": "20.00"},
                    {"SalesOrderNumber": "1042", "ItemCode": "TOTE-HBR", "QuantityOrdered": 1,
                     "Line": "2", "Sequence": 2, "SalePrice": "27.50"}
                ]}
            ]})])
        );
        assert_eq!(logs, vec!["order 1042 with 2 lines"]);
        let mut cancelled: Value = serde_json::from_str(ORDER).unwrap();
        cancelled["cancelled_at"] = json!("2024-07-02T08:00:00+01:00");
        let (out, _) = run(
            SHOPIFY_PEOPLEVOX_IMPORT_ID,
            &cancelled.to_string(),
            json!({}),
        );
        assert_eq!(out, Output::Skip("order #1042 is cancelled".into()));
    }
    const STOCK: &str = include_str!("library/samples/dear_stock.json");

    #[test]
    fn magento_order_to_peoplevox_xml() {
        let (out, _) = run(
            MAGENTO_PEOPLEVOX_XML_ID,
            MAGENTO_ORDER,
            json!({"site_reference": "DETROIT", "timezone": "America/Detroit"}),
        );
        assert_eq!(
            text(out),
            r#"<?xml version="1.0" encoding="UTF-8"?>
<SalesOrders>
  <SalesOrder>
    <SalesOrderNumber>000000003</SalesOrderNumber>
    <CustomerPurchaseOrderReferenceNumber>3</CustomerPurchaseOrderReferenceNumber>
    <SiteReference>DETROIT</SiteReference>
    <RequestedDeliveryDate>2017-08-21</RequestedDeliveryDate>
    <ShippingCost>10.00</ShippingCost>
    <ServiceType>Best Way - Table Rate</ServiceType>
    <Email>jdoe@example.com</Email>
    <FirstName>Jane</FirstName>
    <LastName>Doe</LastName>
    <Company>Doe &amp; Daughters</Company>
    <Phone>(555) 229-3326</Phone>
    <ShippingAddressLine1>6146 Honey Bluff Parkway</ShippingAddressLine1>
    <ShippingAddressLine2>Suite 2</ShippingAddressLine2>
    <ShippingAddressCity>Calder</ShippingAddressCity>
    <ShippingAddressRegion>MI</ShippingAddressRegion>
    <ShippingAddressPostcode>49628-7978</ShippingAddressPostcode>
    <ShippingAddressCountry>US</ShippingAddressCountry>
    <Lines>
      <SalesOrderLine>
        <Line>1</Line>
        <ItemCode>MS10-L-Blue</ItemCode>
        <Description>Champ Tee Large</Description>
        <Quantity>2</Quantity>
        <SalePrice>24.00</SalePrice>
      </SalesOrderLine>
      <SalesOrderLine>
        <Line>2</Line>
        <ItemCode>24-WG080</ItemCode>
        <Description>Sprite Yoga Companion Kit</Description>
        <Quantity>1</Quantity>
        <SalePrice>48.00</SalePrice>
      </SalesOrderLine>
    </Lines>
  </SalesOrder>
</SalesOrders>"#
        );
    }

    #[test]
    fn woocommerce_order_to_csv_lines() {
        let (out, _) = run(
            WOOCOMMERCE_ORDER_LINES_CSV_ID,
            WOO_ORDER,
            json!({"timezone": "America/Los_Angeles"}),
        );
        assert_eq!(
            text(out),
            "order_number,order_date,email,sku,title,quantity,unit_price,line_total,currency,ship_name,ship_address1,ship_city,ship_postcode,ship_country,shipping_method\n\
             727,2017-03-22 12:28,john.doe@example.com,,Woo Single #1,2,3.00,6.00,USD,John Doe,969 Market,San Francisco,94103,US,Flat Rate\n\
             727,2017-03-22 12:28,john.doe@example.com,SYI-BLK-M,\"Ship Your Idea - Color: Black, Size: M Test\",1,12.00,12.00,USD,John Doe,969 Market,San Francisco,94103,US,Flat Rate\n"
        );
    }

    fn run(id: Uuid, sample: &str, settings: Value) -> (Output, Vec<String>) {
        run_with(id, sample, settings, Default::default())
    }

    fn run_with(
        id: Uuid,
        sample: &str,
        settings: Value,
        lookups: crate::transform::lookups::Lookups,
    ) -> (Output, Vec<String>) {
        let (out, logs) = attempt(id, sample, settings, lookups);
        (out.unwrap(), logs)
    }

    /// The message of a run that fails.
    fn failure(id: Uuid, sample: &str, settings: Value) -> String {
        match attempt(id, sample, settings, Default::default()).0 {
            Ok(out) => panic!("{out:?}"),
            Err(e) => e.message,
        }
    }

    fn attempt(
        id: Uuid,
        sample: &str,
        settings: Value,
        lookups: crate::transform::lookups::Lookups,
    ) -> (
        Result<Output, crate::transform::TransformError>,
        Vec<String>,
    ) {
        let t = public_transformations()
            .into_iter()
            .find(|t| t.id == id)
            .unwrap();
        let program = Program::of(&t).unwrap();
        let limits = crate::transform::Limits::from_config(&Default::default());
        let mut unit = crate::transform::compile(&program, &limits).unwrap();
        let ctx = RunContext {
            settings,
            job: json!({"id": "j", "trigger": "webhook"}),
            lookups: Arc::new(lookups),
        };
        let mut logs = LogSink::default();
        let record: Value = serde_json::from_str(sample).unwrap();
        let out = unit.run(&record, &ctx, &limits, &mut logs);
        (out, logs.take())
    }

    fn text(out: Output) -> String {
        match out {
            Output::Records(r) if r.len() == 1 => r[0].as_str().unwrap().to_string(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn every_entry_compiles() {
        let limits = crate::transform::Limits::from_config(&Default::default());
        for t in public_transformations() {
            let program = Program::of(&t).unwrap();
            assert!(
                crate::transform::compile(&program, &limits).is_ok(),
                "{}",
                t.title
            );
        }
    }

    #[test]
    fn shopify_order_to_sales_order() {
        let (out, logs) = run(
            SHOPIFY_SALES_ORDER_ID,
            ORDER,
            json!({"warehouse": "LON1", "timezone": "Europe/London"}),
        );
        let Output::Records(r) = out else { panic!() };
        assert_eq!(r.len(), 1);
        assert_eq!(
            r[0],
            json!({
                "order_number": "1042",
                "external_id": "5781543927000",
                "channel": "shopify",
                "warehouse": "LON1",
                "order_date": "2024-07-01T23:30:12+01:00",
                "currency": "GBP",
                "financial_status": "paid",
                "customer": {"email": "jo.bloggs@example.com", "name": "Jo Bloggs", "phone": "+447700900123"},
                "billing_address": {"name": "Jo Bloggs", "company": "Bloggs & Daughters, Ltd", "line1": "1 High Street",
                    "line2": "Flat 2", "city": "London", "region": "ENG", "postcode": "SW1A 1AA", "country": "GB", "phone": "+447700900123"},
                "shipping_address": {"name": "Jo Bloggs", "company": "Bloggs & Daughters, Ltd", "line1": "1 High Street",
                    "line2": "Flat 2", "city": "London", "region": "ENG", "postcode": "SW1A 1AA", "country": "GB", "phone": "+447700900123"},
                "shipping": {"method": "Royal Mail Tracked 24", "service": "RM-T24", "price": "3.95"},
                "lines": [
                    {"line": 1, "sku": "TEE-BLU-M", "name": "Organic Cotton Tee - Blue / M", "quantity": 2,
                     "unit_price": "20.00", "discount": "2.50", "tax": "6.25", "total": "37.49"},
                    {"line": 2, "sku": "TOTE-HBR", "name": "Canvas Tote \"Harbour\"", "quantity": 1,
                     "unit_price": "27.50", "discount": "2.50", "tax": "4.16", "total": "25.00"}
                ],
                "totals": {"subtotal": "62.49", "shipping": "3.95", "tax": "11.07", "discount": "5.00", "total": "66.44"},
                "notes": "Please leave with neighbour if out",
                "tags": ["wholesale", "VIP"]
            })
        );
        assert_eq!(logs, vec!["order #1042 with 2 lines"]);
        let mut cancelled: Value = serde_json::from_str(ORDER).unwrap();
        cancelled["cancelled_at"] = json!("2024-07-02T08:00:00+01:00");
        let (out, _) = run(SHOPIFY_SALES_ORDER_ID, &cancelled.to_string(), json!({}));
        assert_eq!(out, Output::Skip("order #1042 is cancelled".into()));
    }

    #[test]
    fn shopify_order_to_csv_lines() {
        let (out, _) = run(
            SHOPIFY_ORDER_LINES_CSV_ID,
            ORDER,
            json!({"timezone": "Europe/London"}),
        );
        assert_eq!(
            text(out),
            "order_number,order_date,email,sku,title,quantity,unit_price,line_total,currency,ship_name,ship_address1,ship_city,ship_postcode,ship_country\n\
             1042,2024-07-01 23:30,jo.bloggs@example.com,TEE-BLU-M,Organic Cotton Tee - Blue / M,2,20.00,39.99,GBP,Jo Bloggs,1 High Street,London,SW1A 1AA,GB\n\
             1042,2024-07-01 23:30,jo.bloggs@example.com,TOTE-HBR,\"Canvas Tote \"\"Harbour\"\"\",1,27.50,27.50,GBP,Jo Bloggs,1 High Street,London,SW1A 1AA,GB\n"
        );
    }

    #[test]
    fn shopify_order_to_peoplevox_xml() {
        let (out, _) = run(SHOPIFY_PEOPLEVOX_XML_ID, ORDER, json!({}));
        let xml = text(out);
        assert!(
            xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<SalesOrders>"),
            "{xml}"
        );
        for part in [
            "<SalesOrderNumber>1042</SalesOrderNumber>",
            "<CustomerPurchaseOrderReferenceNumber>5781543927000</CustomerPurchaseOrderReferenceNumber>",
            "<SiteReference>PrimarySite</SiteReference>",
            "<RequestedDeliveryDate>2024-07-01</RequestedDeliveryDate>",
            "<ShippingCost>3.95</ShippingCost>",
            "<ServiceType>Royal Mail Tracked 24</ServiceType>",
            "<Company>Bloggs &amp; Daughters, Ltd</Company>",
            "<ShippingAddressPostcode>SW1A 1AA</ShippingAddressPostcode>",
            "<Line>2</Line>",
            "<Description>Canvas Tote &quot;Harbour&quot;</Description>",
            "<SalePrice>20.00</SalePrice>",
        ] {
            assert!(xml.contains(part), "{part} missing from\n{xml}");
        }
        assert_eq!(xml.matches("<SalesOrderLine>").count(), 2);
        assert!(xml.trim_end().ends_with("</SalesOrders>"));
    }

    #[test]
    fn dear_sale_to_shopify_fulfillments() {
        let (out, logs) = run(
            DEAR_SHOPIFY_FULFILLMENT_ID,
            SALE,
            json!({"notify_customer": false}),
        );
        let Output::Records(r) = out else { panic!() };
        assert_eq!(
            r,
            vec![
                json!({"order_name": "#1042", "order_id": "5781543927000", "fulfilment_number": 1,
                    "shipped_at": "2024-07-02T00:00:00Z", "notify_customer": false,
                    "tracking": {"number": "RM123456785GB", "url": "https://www.royalmail.com/track-your-item#/tracking-results/RM123456785GB", "company": "Royal Mail"},
                    "line_items": [{"sku": "TEE-BLU-M", "quantity": 2}]}),
                json!({"order_name": "#1042", "order_id": "5781543927000", "fulfilment_number": 2,
                    "shipped_at": "2024-07-03T00:00:00Z", "notify_customer": false,
                    "tracking": {"number": "15501234567890", "url": null, "company": "DPD"},
                    "line_items": [{"sku": "TOTE-HBR", "quantity": 1}]}),
            ]
        );
        assert_eq!(logs.len(), 2);
        let mut unshipped: Value = serde_json::from_str(SALE).unwrap();
        unshipped["Fulfilments"] = json!([]);
        let (out, _) = run(
            DEAR_SHOPIFY_FULFILLMENT_ID,
            &unshipped.to_string(),
            json!({}),
        );
        assert_eq!(
            out,
            Output::Skip("sale SO-00731 has no shipped fulfilment yet".into())
        );
    }

    #[test]
    fn shopify_order_to_dear_sale() {
        let settings = json!({"location": "Main Warehouse", "tax_rule": "20% (VAT on Income)",
            "shipping_product": "Shipping", "timezone": "Europe/London"});
        let (out, logs) = run(SHOPIFY_DEAR_SALE_ID, ORDER, settings.clone());
        let Output::Records(r) = out else { panic!() };
        let vat = "20% (VAT on Income)";
        assert_eq!(
            r,
            vec![json!({
                "Customer": "Jo Bloggs",
                "Contact": "Jo Bloggs",
                "Email": "jo.bloggs@example.com",
                "Phone": "+447700900123",
                "BillingAddress": {"Line1": "1 High Street", "Line2": "Flat 2", "City": "London",
                    "State": "England", "Postcode": "SW1A 1AA", "Country": "United Kingdom"},
                "ShippingAddress": {"Line1": "1 High Street", "Line2": "Flat 2", "City": "London",
                    "State": "England", "Postcode": "SW1A 1AA", "Country": "United Kingdom",
                    "Company": "Bloggs & Daughters, Ltd", "Contact": "Jo Bloggs", "ShipToOther": false},
                "Location": "Main Warehouse",
                "CustomerReference": "#1042",
                "ExternalID": "5781543927000",
                "SaleOrderDate": "2024-07-01",
                "TaxInclusive": true,
                "SkipQuote": true,
                "Note": "Please leave with neighbour if out",
                "TaxRule": vat,
                "Order": {
                    "Status": "AUTHORISED",
                    "Memo": "Shopify order #1042",
                    "Lines": [
                        // 2.50 off 39.99 is 6.2516%: DEAR takes two places, and the total
                        // it checks follows from them.
                        {"SKU": "TEE-BLU-M", "Name": "Organic Cotton Tee - Blue / M", "Quantity": 2,
                         "Price": 19.995, "Discount": 6.25, "Tax": 6.25, "TaxRule": vat, "Total": 37.49},
                        {"SKU": "TOTE-HBR", "Name": "Canvas Tote \"Harbour\"", "Quantity": 1,
                         "Price": 27.5, "Discount": 9.09, "Tax": 4.16, "TaxRule": vat, "Total": 25}
                    ],
                    "AdditionalCharges": [
                        {"Description": "Shipping", "Quantity": 1, "Price": 3.95, "Discount": 0,
                         "Tax": 0.66, "TaxRule": vat, "Total": 3.95, "Comment": "Royal Mail Tracked 24"}
                    ]
                }
            })]
        );
        assert_eq!(logs, vec!["order #1042 as a DEAR sale with 2 lines"]);

        // A named DEAR customer and price tier; tax rules by Shopify's tax title, and for
        // untaxed lines; a carrier DEAR knows the shipping by.
        let mut order: Value = serde_json::from_str(ORDER).unwrap();
        order["customer"] = Value::Null;
        order["line_items"][1]["tax_lines"] = json!([]);
        let table = |k: &str, v: &str| crate::transform::lookups::Table {
            default: None,
            entries: [(k.to_string(), v.to_string())].into(),
        };
        let lookups = crate::transform::lookups::Lookups {
            tables: [
                ("tax_rules".to_string(), table("VAT", "VAT 20%")),
                (
                    "carriers".to_string(),
                    table("Royal Mail Tracked 24", "Royal Mail"),
                ),
            ]
            .into(),
        };
        let (out, _) = run_with(
            SHOPIFY_DEAR_SALE_ID,
            &order.to_string(),
            json!({"location": "Shop", "customer": "Shopify Customer", "price_tier": "Retail",
                "tax_free_rule": "Tax Exempt"}),
            lookups,
        );
        let Output::Records(r) = out else { panic!() };
        let sale = &r[0];
        assert_eq!(sale["Customer"], "Shopify Customer");
        assert_eq!(sale["Contact"], "Jo Bloggs", "from the billing address");
        assert_eq!(sale["PriceTier"], "Retail");
        assert_eq!(sale["Location"], "Shop");
        assert_eq!(sale["Carrier"], "Royal Mail");
        assert!(sale.get("TaxRule").is_none());
        let rules: Vec<&Value> = sale["Order"]["Lines"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| &l["TaxRule"])
            .collect();
        assert_eq!(rules, [&json!("VAT 20%"), &json!("Tax Exempt")]);
        assert_eq!(
            sale["Order"]["AdditionalCharges"][0]["Description"],
            "Royal Mail Tracked 24"
        );

        order["cancelled_at"] = json!("2024-07-02T08:00:00+01:00");
        let (out, _) = run(SHOPIFY_DEAR_SALE_ID, &order.to_string(), settings);
        assert_eq!(out, Output::Skip("order #1042 is cancelled".into()));
    }

    #[test]
    fn shopify_order_to_dear_sale_says_which_settings_dear_needs() {
        for (settings, needed) in [
            (json!({"tax_rule": "Tax on Sales"}), "settings.location"),
            (json!({"location": "Main Warehouse"}), "settings.tax_rule"),
        ] {
            let message = failure(SHOPIFY_DEAR_SALE_ID, ORDER, settings);
            assert!(message.contains(needed), "{message}");
        }
    }

    #[test]
    fn dear_stock_to_shopify_inventory() {
        // One bin's row is a part of the location's stock: refused, saying what to set.
        let message = failure(DEAR_SHOPIFY_INVENTORY_ID, STOCK, json!({}));
        assert!(message.contains("set `sum_by_sku`"), "{message}");
        // Summed (`sum_by_sku`), the location's whole quantity.
        let mut summed: Value = serde_json::from_str(STOCK).unwrap();
        summed["Bin"] = Value::Null;
        summed["Rows"] = json!(2);
        let summed = summed.to_string();
        let (out, _) = run(DEAR_SHOPIFY_INVENTORY_ID, &summed, json!({}));
        assert_eq!(
            out,
            Output::Records(vec![json!({"sku": "TEE-BLU-M", "available": 17})])
        );
        let (out, _) = run(
            DEAR_SHOPIFY_INVENTORY_ID,
            &summed,
            json!({"location": "Main Warehouse"}),
        );
        assert_eq!(
            out,
            Output::Records(vec![json!({"sku": "TEE-BLU-M", "available": 17})])
        );
        let (out, _) = run(
            DEAR_SHOPIFY_INVENTORY_ID,
            &summed,
            json!({"location": "Shop"}),
        );
        assert_eq!(
            out,
            Output::Skip("stock of TEE-BLU-M at Main Warehouse, not Shop".into())
        );
        // More allocated than on hand: none to sell.
        let mut row: Value = serde_json::from_str(&summed).unwrap();
        row["Available"] = json!(-2.5);
        let (out, _) = run(DEAR_SHOPIFY_INVENTORY_ID, &row.to_string(), json!({}));
        assert_eq!(
            out,
            Output::Records(vec![json!({"sku": "TEE-BLU-M", "available": 0})])
        );
    }

    #[test]
    fn shopify_product_to_stock_csv() {
        let (out, _) = run(SHOPIFY_STOCK_CSV_ID, PRODUCT, json!({"location": "LON1"}));
        assert_eq!(
            text(out),
            "sku,barcode,product_title,variant_title,location,quantity,price\n\
             TEE-BLU-S,5012345678900,\"Organic Cotton Tee, \"\"Classic\"\"\",Blue / S,LON1,14,20.00\n\
             TEE-BLU-M,,\"Organic Cotton Tee, \"\"Classic\"\"\",Blue / M,LON1,-2,20.00\n"
        );
    }
}
