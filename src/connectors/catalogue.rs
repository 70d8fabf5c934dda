//! The declarations of the built-in systems.

use super::params::Params;
use super::{dear, email, files, http, magento2, peoplevox, shopify, woocommerce};
use super::{Field, FieldKind as K, Function, HostRule as H, System, Trigger as T};

const fn f(name: &'static str, kind: K, required: bool, description: &'static str) -> Field {
    Field {
        name,
        kind,
        required,
        secret: false,
        host: H::None,
        description,
    }
}

const fn secret(name: &'static str, required: bool, description: &'static str) -> Field {
    Field {
        name,
        kind: K::String,
        required,
        secret: true,
        host: H::None,
        description,
    }
}

/// A field that says where the key's secrets are sent (see [`H`]).
const fn host(
    name: &'static str,
    kind: K,
    required: bool,
    rule: H,
    description: &'static str,
) -> Field {
    Field {
        name,
        kind,
        required,
        secret: false,
        host: rule,
        description,
    }
}

const PULL: &[T] = &[T::Manual, T::Scheduled];
const PUSH: &[T] = &[T::Webhook];

/// Every system Wharf can work with, in the order `/systems` lists them, with only the
/// functions the connector registry runs: a system or function is declared here when its
/// connector is built (a test keeps the two in step).
pub static SYSTEMS: &[System] = &[
    System {
        name: "http",
        title: "Generic HTTP",
        description: "Any JSON API: fetch records from a URL, send events to one, or receive pushes.",
        key_template: &[
            f("headers", K::Object, false, "Extra headers sent with every request; shown to every reader (put secret values in `secret_headers`)."),
            Field {
                name: "secret_headers",
                kind: K::Object,
                required: false,
                secret: true,
                host: H::None,
                description: "Headers sent with every request whose values are secret: sealed like the other secrets, shown as `********`.",
            },
            host("base_url", K::String, false, H::Any, "Where this key's credentials may be sent: a source or destination using the key must have its `url` under this URL. Without it, only an admin or owner may use a key holding secrets with a `url`."),
            secret("bearer_token", false, "Sent as `Authorization: Bearer …`."),
            f("basic.username", K::String, false, "HTTP Basic user name."),
            secret("basic.password", false, "HTTP Basic password."),
            secret("hmac_secret", false, "Secret for verifying signed pushes to an http webhook source."),
        ],
        key_required: false,
        sources: &[
            Function {
                name: "http.fetch",
                description: "GET a URL, take the records at `records_path`, follow pagination.",
                triggers: PULL,
                params: <http::FetchParams as Params>::FIELDS,
            },
            Function {
                name: "http.webhook",
                description: "Receive pushes at the source's webhook URL.",
                triggers: PUSH,
                params: <http::WebhookParams as Params>::FIELDS,
            },
        ],
        destinations: &[Function {
            name: "http.send",
            description: "Send each event's output (or an aggregate) with the key's auth.",
            triggers: &[],
            params: <http::SendParams as Params>::FIELDS,
        }],
        webhook_verification: "Optional HMAC of the raw body in a configured header (`hmac_secret` of the key); otherwise the URL token alone.",
    },
    System {
        name: "shopify",
        title: "Shopify",
        description: "Shopify stores through the Admin API and webhooks.",
        key_template: &[
            host("shop_domain", K::String, true, H::Vendor("myshopify.com"), "The store's domain, e.g. `example.myshopify.com`; any other domain only when an admin sets `base_url`."),
            secret("access_token", true, "Admin API access token of the store's app."),
            secret("webhook_secret", false, "The app's client secret, which signs webhooks (needed for webhook sources)."),
            f("api_version", K::String, false, "Admin API version, e.g. `2025-01`."),
            host("base_url", K::String, false, H::AdminOnly, "Admin API host, `https://<shop_domain>` when unset (for proxies and test servers); set by an admin or owner only."),
        ],
        key_required: true,
        sources: &[
            Function {
                name: "shopify.orders",
                description: "Read orders changed since the last run through the GraphQL Admin API (`updated_at` watermark, cursor pages, within the store's query budget); each order with all its line items.",
                triggers: PULL,
                params: <shopify::PullParams as Params>::FIELDS,
            },
            Function {
                name: "shopify.products",
                description: "Read products changed since the last run through the GraphQL Admin API; each product with all its variants and their inventory item ids.",
                triggers: PULL,
                params: <shopify::PullParams as Params>::FIELDS,
            },
            Function {
                name: "shopify.webhook",
                description: "Receive Shopify webhooks for the given topics (installed with `webhookSubscriptionCreate`).",
                triggers: PUSH,
                params: <shopify::WebhookParams as Params>::FIELDS,
            },
        ],
        destinations: &[
            Function {
                name: "shopify.fulfillment",
                description: "Fulfil an order's open fulfillment orders with tracking: the output names `order_id` or `order_name`, and any of `tracking` ({number, company, url}), `notify_customer`, `line_items` ([{sku, quantity}]; all that remains when absent).",
                triggers: &[],
                params: <shopify::FulfillmentParams as Params>::FIELDS,
            },
            Function {
                name: "shopify.inventory",
                description: "Set available quantities at a location: the output (or each item of a list) names `sku` or `inventory_item_id`, `available`, and may name `location_id`.",
                triggers: &[],
                params: <shopify::InventoryParams as Params>::FIELDS,
            },
        ],
        webhook_verification: "`X-Shopify-Hmac-Sha256` = base64 HMAC-SHA256 of the raw body with the key's `webhook_secret`, compared in constant time.",
    },
    System {
        name: "dear",
        title: "DEAR Systems / Cin7 Core",
        description: "Inventory and order management through the DEAR External API v2.",
        key_template: &[
            f("account_id", K::String, true, "Sent as `api-auth-accountid`."),
            secret("application_key", true, "Sent as `api-auth-applicationkey`."),
            host("base_url", K::String, false, H::AdminOnly, "API base; `https://inventory.dearsystems.com/ExternalApi/v2` when unset; set by an admin or owner only."),
            f("webhook_auth.type", K::Enum(&["basic", "bearer", "header"]), false, "How DEAR authenticates its pushes to Wharf."),
            f("webhook_auth.username", K::String, false, "Basic user name DEAR sends."),
            secret("webhook_auth.password", false, "Basic password DEAR sends."),
            secret("webhook_auth.token", false, "Bearer token DEAR sends."),
            f("webhook_auth.header_name", K::String, false, "Custom header name DEAR sends."),
            secret("webhook_auth.header_value", false, "Custom header value DEAR sends."),
        ],
        key_required: true,
        sources: &[
            Function {
                name: "dear.sales",
                description: "Read sales changed since the last run (`saleList` with `UpdatedSince`), page by page within DEAR's 60 calls a minute; each in full when `full`.",
                triggers: PULL,
                params: <dear::SalesParams as Params>::FIELDS,
            },
            Function {
                name: "dear.stock",
                description: "Read stock levels (`ref/productavailability`): one record per product, location, bin and batch row (`OnHand`, `Allocated`, `Available`, …), known by `SKU`; `location` and `sku` narrow it, `sum_by_sku` adds up a SKU's rows per location. Stock is a snapshot without a change filter, so every run reads all of it, page by page within DEAR's 60 calls a minute.",
                triggers: PULL,
                params: <dear::StockParams as Params>::FIELDS,
            },
            Function {
                name: "dear.webhook",
                description: "Receive DEAR webhooks; thin payloads are completed from the API.",
                triggers: PUSH,
                params: <dear::WebhookParams as Params>::FIELDS,
            },
        ],
        destinations: &[
            Function {
                name: "dear.sale",
                description: "Create a sale (or update the one the output's `ID` names), then add its order when the output has `Order.Lines`.",
                triggers: &[],
                params: <dear::SaleParams as Params>::FIELDS,
            },
            Function {
                name: "dear.fulfilment",
                description: "Fulfil a sale whose order is authorised: create its fulfilment task, pick, pack and ship. Output: `{\"SaleID\", \"TaskID\"?, \"pick\"?: \"auto\" | {\"Lines\": [{SKU, Quantity, Location, …}]}, \"pack\"?: {\"Lines\"?: […], \"Box\"?}, \"ship\"?: {\"Lines\": [{\"Carrier\", \"TrackingNumber\", \"TrackingURL\", \"ShipmentDate\"?, \"Box\"?}], \"RequireBy\"?, \"ShippingNotes\"?, \"ShippingAddress\"?}}` (or a list of them). Pick is DEAR's autopick unless lines are given; pack puts every picked line in one box (`box_name`) unless lines are given; a ship line without `Box` ships every packed box no other line names (`ShipmentDate` now when unset); without `ship` the task is picked and packed only. A retry goes on from the stage the sale's task reached: it reads the tasks first, skips stages already authorised, and knows a task shipped under the output's tracking numbers as done. DEAR's refusal is the attempt's message (`INVALID_SCHEMA`, or `NOT_FOUND` for an unknown sale or task).",
                triggers: &[],
                params: <dear::FulfilmentParams as Params>::FIELDS,
            },
        ],
        webhook_verification: "Basic or Bearer credentials, or a custom header and value, as set in the key's `webhook_auth`.",
    },
    System {
        name: "peoplevox",
        title: "Descartes Peoplevox",
        description: "Warehouse management through the IntegrationServiceV4 SOAP API: import orders through integration templates, read templates, receive despatch and stock callbacks.",
        key_template: &[
            f("client_id", K::String, true, "Peoplevox client id: the first path segment of the instance's address (`https://wms.peoplevox.net/<client_id>/…`)."),
            f("username", K::String, true, "The integration user's name (a Peoplevox user set up for the API)."),
            secret("password", true, "The integration user's password; Wharf sends it base64-encoded, as `Authenticate` expects."),
            f("password_encoding", K::Enum(&["base64", "plain"]), false, "How the password is sent to `Authenticate`: `base64` (the default) or `plain` (instances that want it in plain text, such as the US region)."),
            host("base_url", K::String, false, H::Vendor("peoplevox.net"), "Service URL of the client's Peoplevox instance, e.g. `https://wms.peoplevox.net` (the default), `https://emea.peoplevox.net` or the full `…/<client_id>/resources/integrationservicev4.asmx`; https, under `peoplevox.net` unless an admin sets it."),
        ],
        key_required: true,
        sources: &[
            Function {
                name: "peoplevox.data",
                description: "Read a template's rows (`GetData`) page by page, one record per CSV row keyed by column name; `search_clause` filters; with `since_field` only rows changed since the last run.",
                triggers: PULL,
                params: <peoplevox::DataParams as Params>::FIELDS,
            },
            Function {
                name: "peoplevox.webhook",
                description: "Receive Peoplevox event callbacks (despatches and tracking numbers, order status, stock, goods in): installing subscribes the event (`SubscribeEvent`) with a callback URL whose query string Peoplevox fills in; each callback is one record of its parameters.",
                triggers: PUSH,
                params: <peoplevox::WebhookParams as Params>::FIELDS,
            },
        ],
        destinations: &[Function {
            name: "peoplevox.import",
            description: "Import through integration templates (`SaveData`): the output is `{\"template\": \"Sales orders\", \"rows\": [{column: value}]}`, written as CSV with a header row, or `{\"template\", \"csv\"}` sent as it is; `{\"imports\": [...]}` sends several in order in one delivery (sales orders before their items). Peoplevox's refusals, partial imports included, are INVALID_SCHEMA with its words.",
            triggers: &[],
            params: <peoplevox::ImportParams as Params>::FIELDS,
        }],
        webhook_verification: "The URL token alone: Peoplevox callbacks carry no signature.",
    },
    System {
        name: "woocommerce",
        title: "WooCommerce",
        description: "WooCommerce stores through the REST API v3 (`/wp-json/wc/v3`) and webhooks.",
        key_template: &[
            host("base_url", K::String, true, H::Any, "The store's address, e.g. `https://shop.example.com`; the REST API is under `/wp-json/wc/v3`. Over https the key is sent with HTTP Basic; over plain http each request is signed with OAuth 1.0a instead, as WooCommerce requires."),
            f("consumer_key", K::String, true, "The REST API key's consumer key (`ck_…`, WooCommerce → Settings → Advanced → REST API)."),
            secret("consumer_secret", true, "The REST API key's consumer secret (`cs_…`)."),
            secret("webhook_secret", false, "The secret of the store's webhooks, which signs each delivery (needed for webhook sources)."),
        ],
        key_required: true,
        sources: &[
            Function {
                name: "woocommerce.orders",
                description: "Read orders changed since the last run (`modified_after`), page by page.",
                triggers: PULL,
                params: <woocommerce::PullParams as Params>::FIELDS,
            },
            Function {
                name: "woocommerce.products",
                description: "Read products changed since the last run (`modified_after`), page by page.",
                triggers: PULL,
                params: <woocommerce::PullParams as Params>::FIELDS,
            },
            Function {
                name: "woocommerce.webhook",
                description: "Receive the store's webhooks (orders, products, customers, coupons).",
                triggers: PUSH,
                params: <woocommerce::WebhookParams as Params>::FIELDS,
            },
        ],
        destinations: &[
            Function {
                name: "woocommerce.order_update",
                description: "Set an order's status and add a note (e.g. its tracking number): the output names `id` and any of `status`, `note`, `customer_note`.",
                triggers: &[],
                params: <woocommerce::OrderUpdateParams as Params>::FIELDS,
            },
            Function {
                name: "woocommerce.stock",
                description: "Set stock quantities: the output (or each item of a list) names `sku` or `product_id`, and `quantity`.",
                triggers: &[],
                params: <woocommerce::StockParams as Params>::FIELDS,
            },
        ],
        webhook_verification: "`X-WC-Webhook-Signature` = base64 HMAC-SHA256 of the raw body with the key's `webhook_secret`, compared in constant time.",
    },
    System {
        name: "magento2",
        title: "Magento 2 / Adobe Commerce",
        description: "Magento 2 and Adobe Commerce stores through the REST API (`/rest/V1`).",
        key_template: &[
            host("base_url", K::String, true, H::Any, "The store's address, e.g. `https://shop.example.com`; the REST API is under `/rest/V1`."),
            secret("access_token", true, "The integration's access token (System → Extensions → Integrations), sent as a bearer token; since 2.4.4 the store must allow integration tokens as bearer tokens (Stores → Configuration → Services → OAuth)."),
            f("store_code", K::String, false, "A store view code: requests go to `/rest/<store_code>/V1`; the default store view when unset."),
        ],
        key_required: true,
        sources: &[
            Function {
                name: "magento2.orders",
                description: "Read orders updated since the last run (`updated_at`), page by page.",
                triggers: PULL,
                params: <magento2::PullParams as Params>::FIELDS,
            },
            Function {
                name: "magento2.products",
                description: "Read products updated since the last run (`updated_at`), page by page.",
                triggers: PULL,
                params: <magento2::PullParams as Params>::FIELDS,
            },
        ],
        destinations: &[
            Function {
                name: "magento2.shipment",
                description: "Ship an order with its tracking numbers: the output names `order_id` (the entity id) and any of `items`, `tracks`, `comment`, `notify`.",
                triggers: &[],
                params: <magento2::ShipmentParams as Params>::FIELDS,
            },
            Function {
                name: "magento2.stock",
                description: "Set stock per SKU and source (MSI source items): the output (or each item of a list) names `sku`, `quantity`, and may name `source_code` and `status`.",
                triggers: &[],
                params: <magento2::StockParams as Params>::FIELDS,
            },
        ],
        webhook_verification: "None: Magento has no webhook source here (read orders on a schedule).",
    },
    System {
        name: "ftp",
        title: "FTP / FTPS",
        description: "Read files from an FTP server into records, and write outputs there as files; plain or over TLS.",
        key_template: &[
            host("host", K::String, true, H::Any, "The FTP server's host name, e.g. `ftp.example.com`."),
            f("port", K::Integer, false, "The server's port: 21, or 990 for implicit TLS, when unset."),
            f("username", K::String, false, "Login user name; `anonymous` when unset."),
            secret("password", false, "Login password."),
            f("tls", K::Enum(&["explicit", "implicit", "none"]), false, "`explicit` (the default): `AUTH TLS` on the plain port, then everything — login, commands and data — over TLS; `implicit`: TLS from the first byte (port 990); `none`: everything in the clear, the password too."),
            f("tls_ca", K::String, false, "A certificate (PEM) to trust besides the public roots, for a server with its own certificate."),
            f("passive", K::Boolean, false, "Passive mode (the default): Wharf opens each data connection, to the server's address. `false`: active mode, the server connects back to Wharf."),
        ],
        key_required: true,
        sources: &[Function {
            name: "ftp.files",
            description: "Read a folder's files (CSV, JSON, XML or text) into records, one event per record; archive, delete or keep each file once its records are stored.",
            triggers: PULL,
            params: <files::FilesParams as Params>::FIELDS,
        }],
        destinations: &[Function {
            name: "ftp.upload",
            description: "Write each event's output (or a job's combined output) as a file, under a temporary name, then renamed.",
            triggers: &[],
            params: <files::UploadParams as Params>::FIELDS,
        }],
        webhook_verification: "None: FTP has no webhook source.",
    },
    System {
        name: "sftp",
        title: "SFTP",
        description: "Read files from an SFTP server into records, and write outputs there as files, over SSH.",
        key_template: &[
            host("host", K::String, true, H::Any, "The SFTP server's host name, e.g. `sftp.example.com`."),
            f("port", K::Integer, false, "The server's port: 22 when unset."),
            f("username", K::String, true, "Login user name."),
            secret("password", false, "Login password (or a `private_key`)."),
            secret("private_key", false, "An OpenSSH private key (`-----BEGIN OPENSSH PRIVATE KEY-----`, Ed25519, ECDSA or RSA), used instead of the password."),
            secret("private_key_passphrase", false, "The private key's passphrase, if it has one."),
            f("host_key", K::String, true, "The server's host key, pinned: its public key (`ssh-ed25519 AAAA…`) or its fingerprint (`SHA256:…`, as `ssh-keygen -lf` prints it). A server showing another key is refused before any login is sent."),
        ],
        key_required: true,
        sources: &[Function {
            name: "sftp.files",
            description: "Read a folder's files (CSV, JSON, XML or text) into records, one event per record; archive, delete or keep each file once its records are stored.",
            triggers: PULL,
            params: <files::FilesParams as Params>::FIELDS,
        }],
        destinations: &[Function {
            name: "sftp.upload",
            description: "Write each event's output (or a job's combined output) as a file, under a temporary name, then renamed.",
            triggers: &[],
            params: <files::UploadParams as Params>::FIELDS,
        }],
        webhook_verification: "None: SFTP has no webhook source.",
    },
    System {
        name: "email",
        title: "E-mail (SMTP)",
        description: "Send outputs by e-mail through your SMTP server: as the body, or attached as a file.",
        key_template: &[
            host("host", K::String, true, H::Any, "The SMTP server's host name, e.g. `smtp.example.com`."),
            f("port", K::Integer, false, "The server's port: 587 for starttls, 465 for tls, 25 for none when unset."),
            f("security", K::Enum(&["starttls", "tls", "none"]), false, "`starttls` (the default) upgrades a plain connection and refuses to go on without TLS; `tls` speaks TLS from the first byte; `none` sends everything, the login too, in the clear."),
            f("username", K::String, false, "Login user name; no login when unset."),
            secret("password", false, "Login password."),
            f("from", K::String, true, "The sender, e.g. `Wharf <wharf@example.com>`."),
            f("tls_ca", K::String, false, "A certificate (PEM) to trust besides the public roots, for a server with its own certificate."),
        ],
        key_required: true,
        sources: &[],
        destinations: &[Function {
            name: "email.send",
            description: "Mail each event's output (or a job's combined output) as the body or as an attachment.",
            triggers: &[],
            params: <email::SendParams as Params>::FIELDS,
        }],
        webhook_verification: "None: e-mail has no webhook source.",
    },
];

/// The system with this name.
pub fn system(name: &str) -> Option<&'static System> {
    SYSTEMS.iter().find(|s| s.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_names_belong_to_their_system() {
        for s in SYSTEMS {
            for func in s.sources.iter().chain(s.destinations) {
                assert!(
                    func.name.starts_with(&format!("{}.", s.name)),
                    "{}",
                    func.name
                );
            }
            for func in s.sources {
                assert!(!func.triggers.is_empty(), "{}", func.name);
            }
        }
        for name in ["http", "shopify", "dear", "peoplevox"] {
            assert!(system(name).is_some(), "{name}");
        }
    }

    #[test]
    fn the_catalogue_declares_exactly_what_the_registry_runs() {
        let registry = crate::connectors::Registry::default();
        let mut declared = Vec::new();
        for s in SYSTEMS {
            assert!(
                !s.sources.is_empty() || !s.destinations.is_empty(),
                "{} has nothing to run",
                s.name
            );
            for func in s.sources.iter().chain(s.destinations) {
                assert!(registry.runs(func.name), "{} is not runnable", func.name);
                declared.push(func.name);
            }
            for func in s.sources {
                let push = func.triggers.contains(&T::Webhook);
                assert_eq!(registry.webhook(func.name).is_some(), push, "{}", func.name);
                assert_eq!(registry.source(func.name).is_some(), !push, "{}", func.name);
            }
            for func in s.destinations {
                assert!(registry.destination(func.name).is_some(), "{}", func.name);
            }
        }
        declared.sort();
        let mut registered = registry.functions();
        registered.sort();
        assert_eq!(declared, registered);
    }
}
