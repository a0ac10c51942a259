//! The one table of what the stand-in serves: entity kinds ([`KINDS`]) with their fields,
//! and the plugins it knows ([`PLUGINS`]) with their `config` fields. Validation, defaults,
//! `/schemas/...` and the node info's plugin list are all read from here.

/// The Kong version the stand-in reports (`GET /`, the `Server` header, each bundled
/// plugin's version): the 3.4 long-term-support line, whose schemas these tables follow.
pub const KONG_VERSION: &str = "3.4.2";

/// A field's type, as Kong's schema library names them.
#[derive(Debug, Clone, Copy)]
pub enum Ty {
    Str,
    Int,
    Num,
    Bool,
    /// `set` / `array` of strings.
    Strs,
    /// A reference to an entity of this collection: `{"id": …}` (or its endpoint key).
    Foreign(&'static str),
    /// A nested record.
    Record(&'static [Field]),
    /// A map of string to string (`headers` of routes).
    Map,
}

/// The default a missing field gets (`Null` when it has none).
#[derive(Debug, Clone, Copy)]
pub enum Def {
    Null,
    Int(i64),
    Bool(bool),
    Str(&'static str),
    Strs(&'static [&'static str]),
    /// A record: its fields' defaults.
    Record,
}

/// One field of a schema.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    pub name: &'static str,
    pub ty: Ty,
    pub def: Def,
    pub required: bool,
    /// Allowed values of a string (or string set) field; empty: any.
    pub one_of: &'static [&'static str],
    /// Allowed values of an integer field; empty: any.
    pub int_one_of: &'static [i64],
    /// Inclusive bounds of an integer field.
    pub between: Option<(i64, i64)>,
}

const fn f(name: &'static str, ty: Ty, def: Def) -> Field {
    Field {
        name,
        ty,
        def,
        required: false,
        one_of: &[],
        int_one_of: &[],
        between: None,
    }
}

const fn req(mut fl: Field) -> Field {
    fl.required = true;
    fl
}

const fn one_of(mut fl: Field, v: &'static [&'static str]) -> Field {
    fl.one_of = v;
    fl
}

const fn between(mut fl: Field, lo: i64, hi: i64) -> Field {
    fl.between = Some((lo, hi));
    fl
}

/// What happens to an entity when the one its foreign field points at is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnDelete {
    /// It goes too (plugins of a service, credentials of a consumer).
    Cascade,
    /// The delete is refused with a `foreign key violation` (routes of a service).
    Restrict,
}

/// An entity kind of the Admin API.
#[derive(Debug)]
pub struct Kind {
    /// The collection path: `/services`.
    pub collection: &'static str,
    /// The schema name (`/schemas/<name>`, `entity_name` in `/tags`).
    pub schema: &'static str,
    /// The path segment under a parent (`/consumers/{c}/key-auth`).
    pub nested: &'static str,
    /// The field a path may name instead of the id (`/services/{name}`).
    pub endpoint_key: Option<&'static str>,
    /// Fields whose value is unique among entities of the kind.
    pub unique: &'static [&'static str],
    /// Foreign fields: (field, parent collection, on delete of the parent).
    pub foreign: &'static [(&'static str, &'static str, OnDelete)],
    /// A field generated when missing (`key` of key-auth credentials).
    pub generated: &'static [&'static str],
    pub fields: &'static [Field],
}

const PROTOCOLS: &[&str] = &[
    "grpc",
    "grpcs",
    "http",
    "https",
    "tcp",
    "tls",
    "tls_passthrough",
    "udp",
    "ws",
    "wss",
];
const METHODS_ANY: &[&str] = &[];

const TIMESTAMPS: [Field; 2] = [
    f("created_at", Ty::Int, Def::Null),
    f("updated_at", Ty::Int, Def::Null),
];

const SERVICE_FIELDS: &[Field] = &[
    f("id", Ty::Str, Def::Null),
    TIMESTAMPS[0],
    TIMESTAMPS[1],
    f("name", Ty::Str, Def::Null),
    between(f("retries", Ty::Int, Def::Int(5)), 0, 32767),
    req(one_of(
        f("protocol", Ty::Str, Def::Str("http")),
        &[
            "grpc",
            "grpcs",
            "http",
            "https",
            "tcp",
            "tls",
            "tls_passthrough",
            "udp",
            "ws",
            "wss",
        ],
    )),
    req(f("host", Ty::Str, Def::Null)),
    req(between(f("port", Ty::Int, Def::Int(80)), 0, 65535)),
    f("path", Ty::Str, Def::Null),
    between(
        f("connect_timeout", Ty::Int, Def::Int(60000)),
        1,
        2_147_483_646,
    ),
    between(
        f("write_timeout", Ty::Int, Def::Int(60000)),
        1,
        2_147_483_646,
    ),
    between(
        f("read_timeout", Ty::Int, Def::Int(60000)),
        1,
        2_147_483_646,
    ),
    f("tags", Ty::Strs, Def::Null),
    f("client_certificate", Ty::Foreign("certificates"), Def::Null),
    f("tls_verify", Ty::Bool, Def::Null),
    between(f("tls_verify_depth", Ty::Int, Def::Null), 0, 64),
    f("ca_certificates", Ty::Strs, Def::Null),
    req(f("enabled", Ty::Bool, Def::Bool(true))),
];

const ROUTE_FIELDS: &[Field] = &[
    f("id", Ty::Str, Def::Null),
    TIMESTAMPS[0],
    TIMESTAMPS[1],
    f("name", Ty::Str, Def::Null),
    req(one_of(
        f("protocols", Ty::Strs, Def::Strs(&["http", "https"])),
        PROTOCOLS,
    )),
    one_of(f("methods", Ty::Strs, Def::Null), METHODS_ANY),
    f("hosts", Ty::Strs, Def::Null),
    f("paths", Ty::Strs, Def::Null),
    f("headers", Ty::Map, Def::Null),
    req(Field {
        int_one_of: &[426, 301, 302, 307, 308],
        ..f("https_redirect_status_code", Ty::Int, Def::Int(426))
    }),
    f("regex_priority", Ty::Int, Def::Int(0)),
    req(f("strip_path", Ty::Bool, Def::Bool(true))),
    one_of(f("path_handling", Ty::Str, Def::Str("v0")), &["v0", "v1"]),
    req(f("preserve_host", Ty::Bool, Def::Bool(false))),
    req(f("request_buffering", Ty::Bool, Def::Bool(true))),
    req(f("response_buffering", Ty::Bool, Def::Bool(true))),
    f("snis", Ty::Strs, Def::Null),
    f("sources", Ty::Strs, Def::Null),
    f("destinations", Ty::Strs, Def::Null),
    f("tags", Ty::Strs, Def::Null),
    f("service", Ty::Foreign("services"), Def::Null),
];

const CONSUMER_FIELDS: &[Field] = &[
    f("id", Ty::Str, Def::Null),
    TIMESTAMPS[0],
    TIMESTAMPS[1],
    f("username", Ty::Str, Def::Null),
    f("custom_id", Ty::Str, Def::Null),
    f("tags", Ty::Strs, Def::Null),
];

const PLUGIN_FIELDS: &[Field] = &[
    f("id", Ty::Str, Def::Null),
    TIMESTAMPS[0],
    TIMESTAMPS[1],
    req(f("name", Ty::Str, Def::Null)),
    f("instance_name", Ty::Str, Def::Null),
    f("route", Ty::Foreign("routes"), Def::Null),
    f("service", Ty::Foreign("services"), Def::Null),
    f("consumer", Ty::Foreign("consumers"), Def::Null),
    // `config` is checked against the plugin's own schema (PLUGINS).
    f("config", Ty::Record(&[]), Def::Record),
    req(one_of(
        f(
            "protocols",
            Ty::Strs,
            Def::Strs(&["grpc", "grpcs", "http", "https"]),
        ),
        PROTOCOLS,
    )),
    req(f("enabled", Ty::Bool, Def::Bool(true))),
    f("tags", Ty::Strs, Def::Null),
    f("ordering", Ty::Map, Def::Null),
];

const KEY_AUTH_FIELDS: &[Field] = &[
    f("id", Ty::Str, Def::Null),
    TIMESTAMPS[0],
    req(f("consumer", Ty::Foreign("consumers"), Def::Null)),
    req(f("key", Ty::Str, Def::Null)),
    f("ttl", Ty::Int, Def::Null),
    f("tags", Ty::Strs, Def::Null),
];

const JWT_FIELDS: &[Field] = &[
    f("id", Ty::Str, Def::Null),
    TIMESTAMPS[0],
    req(f("consumer", Ty::Foreign("consumers"), Def::Null)),
    req(f("key", Ty::Str, Def::Null)),
    f("secret", Ty::Str, Def::Null),
    f("rsa_public_key", Ty::Str, Def::Null),
    one_of(
        f("algorithm", Ty::Str, Def::Str("HS256")),
        &[
            "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384", "ES512",
            "PS256", "PS384", "PS512", "EdDSA",
        ],
    ),
    f("tags", Ty::Strs, Def::Null),
];

const BASIC_AUTH_FIELDS: &[Field] = &[
    f("id", Ty::Str, Def::Null),
    TIMESTAMPS[0],
    req(f("consumer", Ty::Foreign("consumers"), Def::Null)),
    req(f("username", Ty::Str, Def::Null)),
    req(f("password", Ty::Str, Def::Null)),
    f("tags", Ty::Strs, Def::Null),
];

const ACL_FIELDS: &[Field] = &[
    f("id", Ty::Str, Def::Null),
    TIMESTAMPS[0],
    req(f("consumer", Ty::Foreign("consumers"), Def::Null)),
    req(f("group", Ty::Str, Def::Null)),
    f("tags", Ty::Strs, Def::Null),
];

const CONSUMER_FK: &[(&str, &str, OnDelete)] = &[("consumer", "consumers", OnDelete::Cascade)];

/// Every entity kind served, parents before children.
pub const KINDS: &[Kind] = &[
    Kind {
        collection: "services",
        schema: "services",
        nested: "service",
        endpoint_key: Some("name"),
        unique: &["name"],
        foreign: &[],
        generated: &[],
        fields: SERVICE_FIELDS,
    },
    Kind {
        collection: "routes",
        schema: "routes",
        nested: "routes",
        endpoint_key: Some("name"),
        unique: &["name"],
        foreign: &[("service", "services", OnDelete::Restrict)],
        generated: &[],
        fields: ROUTE_FIELDS,
    },
    Kind {
        collection: "consumers",
        schema: "consumers",
        nested: "consumer",
        endpoint_key: Some("username"),
        unique: &["username", "custom_id"],
        foreign: &[],
        generated: &[],
        fields: CONSUMER_FIELDS,
    },
    Kind {
        collection: "plugins",
        schema: "plugins",
        nested: "plugins",
        endpoint_key: Some("instance_name"),
        unique: &["instance_name"],
        foreign: &[
            ("route", "routes", OnDelete::Cascade),
            ("service", "services", OnDelete::Cascade),
            ("consumer", "consumers", OnDelete::Cascade),
        ],
        generated: &[],
        fields: PLUGIN_FIELDS,
    },
    Kind {
        collection: "key-auths",
        schema: "keyauth_credentials",
        nested: "key-auth",
        endpoint_key: Some("key"),
        unique: &["key"],
        foreign: CONSUMER_FK,
        generated: &["key"],
        fields: KEY_AUTH_FIELDS,
    },
    Kind {
        collection: "jwts",
        schema: "jwt_secrets",
        nested: "jwt",
        endpoint_key: Some("key"),
        unique: &["key"],
        foreign: CONSUMER_FK,
        generated: &["key", "secret"],
        fields: JWT_FIELDS,
    },
    Kind {
        collection: "basic-auths",
        schema: "basicauth_credentials",
        nested: "basic-auth",
        endpoint_key: Some("username"),
        unique: &["username"],
        foreign: CONSUMER_FK,
        generated: &[],
        fields: BASIC_AUTH_FIELDS,
    },
    Kind {
        collection: "acls",
        schema: "acls",
        nested: "acls",
        endpoint_key: None,
        unique: &[],
        foreign: CONSUMER_FK,
        generated: &[],
        fields: ACL_FIELDS,
    },
];

/// Collections a real Kong serves that the stand-in does not model: listed empty (deck
/// reads them all), writes refused with 405.
pub const EMPTY_COLLECTIONS: &[&str] = &[
    "certificates",
    "ca_certificates",
    "snis",
    "upstreams",
    "targets",
    "hmac-auths",
    "oauth2",
    "oauth2s",
    "oauth2_credentials",
    "mtls-auths",
    "vaults",
    "consumer_groups",
    "workspaces",
];

/// The kind served at `/<collection>`.
pub fn kind(collection: &str) -> Option<&'static Kind> {
    KINDS.iter().find(|k| k.collection == collection)
}

/// A plugin the stand-in knows: its name, priority (node info) and `config` fields.
#[derive(Debug)]
pub struct Plugin {
    pub name: &'static str,
    pub version: &'static str,
    pub priority: i64,
    pub config: &'static [Field],
    /// At least one of these `config` fields must be set (rate-limiting's limits).
    pub at_least_one_of: &'static [&'static str],
}

const STRS_EMPTY: Def = Def::Strs(&[]);

const RT_PARTS: &[Field] = &[
    f("body", Ty::Strs, STRS_EMPTY),
    f("headers", Ty::Strs, STRS_EMPTY),
    f("querystring", Ty::Strs, STRS_EMPTY),
];
const RT_REPLACE: &[Field] = &[
    f("body", Ty::Strs, STRS_EMPTY),
    f("headers", Ty::Strs, STRS_EMPTY),
    f("querystring", Ty::Strs, STRS_EMPTY),
    f("uri", Ty::Str, Def::Null),
];

/// Every plugin the stand-in accepts; any other name is `plugin '<name>' not enabled`.
pub const PLUGINS: &[Plugin] = &[
    Plugin {
        name: "rate-limiting",
        version: KONG_VERSION,
        priority: 910,
        at_least_one_of: &["second", "minute", "hour", "day", "month", "year"],
        config: &[
            f("second", Ty::Num, Def::Null),
            f("minute", Ty::Num, Def::Null),
            f("hour", Ty::Num, Def::Null),
            f("day", Ty::Num, Def::Null),
            f("month", Ty::Num, Def::Null),
            f("year", Ty::Num, Def::Null),
            one_of(
                f("limit_by", Ty::Str, Def::Str("consumer")),
                &[
                    "consumer",
                    "credential",
                    "ip",
                    "service",
                    "header",
                    "path",
                    "consumer-group",
                ],
            ),
            f("header_name", Ty::Str, Def::Null),
            f("path", Ty::Str, Def::Null),
            one_of(
                f("policy", Ty::Str, Def::Str("local")),
                &["local", "cluster", "redis"],
            ),
            req(f("fault_tolerant", Ty::Bool, Def::Bool(true))),
            f("redis_host", Ty::Str, Def::Null),
            between(f("redis_port", Ty::Int, Def::Int(6379)), 0, 65535),
            f("redis_password", Ty::Str, Def::Null),
            f("redis_username", Ty::Str, Def::Null),
            req(f("redis_ssl", Ty::Bool, Def::Bool(false))),
            req(f("redis_ssl_verify", Ty::Bool, Def::Bool(false))),
            f("redis_server_name", Ty::Str, Def::Null),
            f("redis_timeout", Ty::Num, Def::Int(2000)),
            f("redis_database", Ty::Int, Def::Int(0)),
            req(f("hide_client_headers", Ty::Bool, Def::Bool(false))),
            f("error_code", Ty::Num, Def::Int(429)),
            f(
                "error_message",
                Ty::Str,
                Def::Str("API rate limit exceeded"),
            ),
            req(f("sync_rate", Ty::Num, Def::Int(-1))),
        ],
    },
    Plugin {
        name: "cors",
        version: KONG_VERSION,
        priority: 2000,
        at_least_one_of: &[],
        config: &[
            f("origins", Ty::Strs, Def::Null),
            f("headers", Ty::Strs, Def::Null),
            f("exposed_headers", Ty::Strs, Def::Null),
            one_of(
                f(
                    "methods",
                    Ty::Strs,
                    Def::Strs(&[
                        "GET", "HEAD", "PUT", "PATCH", "POST", "DELETE", "OPTIONS", "TRACE",
                        "CONNECT",
                    ]),
                ),
                &[
                    "GET", "HEAD", "PUT", "PATCH", "POST", "DELETE", "OPTIONS", "TRACE", "CONNECT",
                ],
            ),
            f("max_age", Ty::Num, Def::Null),
            req(f("credentials", Ty::Bool, Def::Bool(false))),
            req(f("preflight_continue", Ty::Bool, Def::Bool(false))),
        ],
    },
    Plugin {
        name: "key-auth",
        version: KONG_VERSION,
        priority: 1250,
        at_least_one_of: &[],
        config: &[
            req(f("key_names", Ty::Strs, Def::Strs(&["apikey"]))),
            req(f("hide_credentials", Ty::Bool, Def::Bool(false))),
            f("anonymous", Ty::Str, Def::Null),
            req(f("key_in_header", Ty::Bool, Def::Bool(true))),
            req(f("key_in_query", Ty::Bool, Def::Bool(true))),
            req(f("key_in_body", Ty::Bool, Def::Bool(false))),
            req(f("run_on_preflight", Ty::Bool, Def::Bool(true))),
        ],
    },
    Plugin {
        name: "jwt",
        version: KONG_VERSION,
        priority: 1450,
        at_least_one_of: &[],
        config: &[
            f("uri_param_names", Ty::Strs, Def::Strs(&["jwt"])),
            f("cookie_names", Ty::Strs, Def::Strs(&[])),
            f("key_claim_name", Ty::Str, Def::Str("iss")),
            f("secret_is_base64", Ty::Bool, Def::Bool(false)),
            one_of(f("claims_to_verify", Ty::Strs, Def::Null), &["exp", "nbf"]),
            f("anonymous", Ty::Str, Def::Null),
            f("run_on_preflight", Ty::Bool, Def::Bool(true)),
            between(f("maximum_expiration", Ty::Num, Def::Int(0)), 0, 31_536_000),
            f("header_names", Ty::Strs, Def::Strs(&["authorization"])),
        ],
    },
    Plugin {
        name: "basic-auth",
        version: KONG_VERSION,
        priority: 1100,
        at_least_one_of: &[],
        config: &[
            f("anonymous", Ty::Str, Def::Null),
            req(f("hide_credentials", Ty::Bool, Def::Bool(false))),
        ],
    },
    Plugin {
        name: "request-transformer",
        version: KONG_VERSION,
        priority: 801,
        at_least_one_of: &[],
        config: &[
            f("http_method", Ty::Str, Def::Null),
            req(f("remove", Ty::Record(RT_PARTS), Def::Record)),
            req(f("rename", Ty::Record(RT_PARTS), Def::Record)),
            req(f("replace", Ty::Record(RT_REPLACE), Def::Record)),
            req(f("add", Ty::Record(RT_PARTS), Def::Record)),
            req(f("append", Ty::Record(RT_PARTS), Def::Record)),
        ],
    },
    Plugin {
        name: "acl",
        version: KONG_VERSION,
        priority: 950,
        at_least_one_of: &[],
        config: &[
            f("allow", Ty::Strs, Def::Null),
            f("deny", Ty::Strs, Def::Null),
            req(f("hide_groups_header", Ty::Bool, Def::Bool(false))),
        ],
    },
];

/// The plugin named `name`.
pub fn plugin(name: &str) -> Option<&'static Plugin> {
    PLUGINS.iter().find(|p| p.name == name)
}
