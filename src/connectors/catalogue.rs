//! The declarations of the built-in systems.

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
const FORMATS: K = K::Enum(&["json", "xml", "csv", "text"]);

/// Every system Wharf knows, in the order `/systems` lists them.
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
                params: &[
                    f("url", K::String, true, "The first page's URL."),
                    f("records_path", K::String, false, "Dotted path of the record array in the response; the body itself when unset."),
                    f("entity_id_path", K::String, false, "Dotted path of each record's entity id."),
                    f("pagination", K::Enum(&["none", "link", "cursor"]), false, "`link` follows `Link: rel=\"next\"`; `cursor` sends `cursor_param`."),
                    f("cursor_param", K::String, false, "Query parameter that carries the cursor."),
                    f("cursor_path", K::String, false, "Dotted path of the next cursor in the response."),
                    f("headers", K::Object, false, "Extra request headers."),
                ],
            },
            Function {
                name: "http.webhook",
                description: "Receive pushes at the source's webhook URL.",
                triggers: PUSH,
                params: &[
                    f("format", FORMATS, false, "Body format; json when unset."),
                    f("records_path", K::String, false, "Dotted path of the record array in a JSON body."),
                    f("entity_id_path", K::String, false, "Dotted path of each record's entity id."),
                    f("hmac_header", K::String, false, "Header carrying an HMAC of the raw body (key `hmac_secret`)."),
                    f("hmac_algorithm", K::Enum(&["sha256", "sha1", "sha512"]), false, "HMAC hash; sha256 when unset."),
                    f("hmac_encoding", K::Enum(&["base64", "hex"]), false, "HMAC encoding; base64 when unset."),
                    f("dedup_header", K::String, false, "Header carrying the sender's delivery id; `Idempotency-Key` when unset."),
                ],
            },
        ],
        destinations: &[Function {
            name: "http.send",
            description: "Send each event's output (or an aggregate) with the key's auth.",
            triggers: &[],
            params: &[
                f("url", K::String, true, "Where to send."),
                f("method", K::Enum(&["POST", "PUT", "PATCH"]), false, "POST when unset."),
                f("headers", K::Object, false, "Extra request headers."),
            ],
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
                description: "Pull orders from the Admin API.",
                triggers: PULL,
                params: &[
                    f("status", K::Enum(&["open", "closed", "cancelled", "any"]), false, "Order status filter; `any` when unset."),
                    f("financial_status", K::String, false, "Financial status filter, e.g. `paid`."),
                    f("created_at_min", K::String, false, "Only orders created at or after this time (ISO 8601)."),
                ],
            },
            Function {
                name: "shopify.products",
                description: "Pull products and their variants from the Admin API.",
                triggers: PULL,
                params: &[f("status", K::Enum(&["active", "archived", "draft"]), false, "Product status filter.")],
            },
            Function {
                name: "shopify.webhook",
                description: "Receive Shopify webhooks for the given topics.",
                triggers: PUSH,
                params: &[f("topics", K::StringList, true, "Webhook topics, e.g. `orders/create`.")],
            },
        ],
        destinations: &[
            Function {
                name: "shopify.fulfillment",
                description: "Create fulfillments (shipments) on orders.",
                triggers: &[],
                params: &[f("notify_customer", K::Boolean, false, "Whether Shopify e-mails the customer.")],
            },
            Function {
                name: "shopify.inventory",
                description: "Set inventory levels at a location.",
                triggers: &[],
                params: &[f("location_id", K::String, true, "The Shopify location to set levels at.")],
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
                description: "Pull sales from the DEAR API.",
                triggers: PULL,
                params: &[f("status", K::String, false, "Sale status filter, e.g. `AUTHORISED`.")],
            },
            Function {
                name: "dear.webhook",
                description: "Receive DEAR webhooks; thin payloads are completed from the API.",
                triggers: PUSH,
                params: &[f("topics", K::StringList, false, "Webhook types, e.g. `Sale/OrderAuthorised`.")],
            },
        ],
        destinations: &[
            Function {
                name: "dear.sale",
                description: "Create sales orders.",
                triggers: &[],
                params: &[f("location", K::String, false, "Default stock location.")],
            },
            Function {
                name: "dear.stock_adjustment",
                description: "Adjust stock levels.",
                triggers: &[],
                params: &[f("location", K::String, false, "Stock location.")],
            },
        ],
        webhook_verification: "Basic or Bearer credentials, or a custom header and value, as set in the key's `webhook_auth`.",
    },
    System {
        name: "peoplevox",
        title: "Descartes Peoplevox",
        description: "Warehouse management: send orders, receive despatch and stock callbacks.",
        key_template: &[
            f("client_id", K::String, true, "Peoplevox client id."),
            f("username", K::String, true, "Integration user name."),
            secret("password", true, "Integration user password."),
            host("base_url", K::String, false, H::Vendor("peoplevox.net"), "Service URL of the client's Peoplevox instance (https, under `peoplevox.net` unless an admin sets it)."),
        ],
        key_required: true,
        sources: &[Function {
            name: "peoplevox.webhook",
            description: "Receive Peoplevox event callbacks (despatches, goods in, stock).",
            triggers: PUSH,
            params: &[
                f("event_type", K::String, false, "Event subscribed to, e.g. `AvailabilityChanges` or `SalesOrderStatusChanges`."),
                f("format", FORMATS, false, "Callback body format."),
            ],
        }],
        destinations: &[Function {
            name: "peoplevox.sales_order",
            description: "Save sales orders through the Peoplevox integration service.",
            triggers: &[],
            params: &[f("template_name", K::String, false, "Import template; `Sales orders` when unset.")],
        }],
        webhook_verification: "The URL token alone: Peoplevox callbacks carry no signature.",
    },
    System {
        name: "ftp",
        title: "FTP",
        description: "Files on an FTP server.",
        key_template: &[
            host("host", K::String, true, H::Any, "Server host name."),
            host("port", K::Integer, false, H::Any, "Port; 21 when unset."),
            f("username", K::String, true, "Login name."),
            secret("password", true, "Login password."),
            f("passive", K::Boolean, false, "Passive mode; true when unset."),
            f("tls", K::Boolean, false, "Explicit FTPS."),
        ],
        key_required: true,
        sources: &[Function {
            name: "ftp.download",
            description: "Read matching files; each record of a file becomes an event.",
            triggers: PULL,
            params: &[
                f("directory", K::String, true, "Remote directory."),
                f("pattern", K::String, false, "File name glob, e.g. `*.csv`."),
                f("format", FORMATS, false, "File format."),
                f("move_to", K::String, false, "Directory processed files are moved to."),
            ],
        }],
        destinations: &[Function {
            name: "ftp.upload",
            description: "Write each event (or an aggregate) as a file.",
            triggers: &[],
            params: &[
                f("directory", K::String, true, "Remote directory."),
                f("filename", K::String, false, "File name template, e.g. `orders-{{job_id}}.csv`."),
            ],
        }],
        webhook_verification: "Not applicable.",
    },
    System {
        name: "sftp",
        title: "SFTP",
        description: "Files on an SFTP server.",
        key_template: &[
            host("host", K::String, true, H::Any, "Server host name."),
            host("port", K::Integer, false, H::Any, "Port; 22 when unset."),
            f("username", K::String, true, "Login name."),
            secret("password", false, "Login password."),
            secret("private_key", false, "OpenSSH private key."),
            f("host_key_fingerprint", K::String, false, "Expected SHA256 host key fingerprint."),
        ],
        key_required: true,
        sources: &[Function {
            name: "sftp.download",
            description: "Read matching files; each record of a file becomes an event.",
            triggers: PULL,
            params: &[
                f("directory", K::String, true, "Remote directory."),
                f("pattern", K::String, false, "File name glob."),
                f("format", FORMATS, false, "File format."),
                f("move_to", K::String, false, "Directory processed files are moved to."),
            ],
        }],
        destinations: &[Function {
            name: "sftp.upload",
            description: "Write each event (or an aggregate) as a file.",
            triggers: &[],
            params: &[
                f("directory", K::String, true, "Remote directory."),
                f("filename", K::String, false, "File name template."),
            ],
        }],
        webhook_verification: "Not applicable.",
    },
    System {
        name: "email",
        title: "E-mail",
        description: "Send events or aggregates as e-mail through SMTP.",
        key_template: &[
            host("smtp_host", K::String, true, H::Any, "SMTP server."),
            host("smtp_port", K::Integer, false, H::Any, "Port; 587 when unset."),
            f("username", K::String, false, "SMTP login."),
            secret("password", false, "SMTP password."),
            f("from", K::String, true, "Sender address."),
            f("tls", K::Enum(&["none", "starttls", "tls"]), false, "Transport security; starttls when unset."),
        ],
        key_required: true,
        sources: &[],
        destinations: &[Function {
            name: "email.send",
            description: "E-mail each event, or an aggregate as an attachment.",
            triggers: &[],
            params: &[
                f("to", K::StringList, true, "Recipients."),
                f("subject", K::String, false, "Subject line."),
                f("attachment_name", K::String, false, "Attach the output under this file name."),
            ],
        }],
        webhook_verification: "Not applicable.",
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
        for name in [
            "http",
            "shopify",
            "dear",
            "peoplevox",
            "ftp",
            "sftp",
            "email",
        ] {
            assert!(system(name).is_some(), "{name}");
        }
    }
}
