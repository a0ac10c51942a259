//! Unit tests of the diff: desired `LambdaSpec` against a hand-built `Observed`, no server.

#![allow(clippy::unwrap_used)] // a failure here is a test failure

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use deployctl_core::{Action, FieldChange, ResourceChange};

use super::{Diff, diff, image_uri};
use crate::error::AwsError;
use crate::observe::{
    API_PERMISSION_SID, AliasState, ApiState, FunctionState, Observed, RoleState,
    URL_PERMISSION_SID,
};
use crate::spec::{LambdaScope, LambdaSpec};

const ACCOUNT: &str = "123456789012";
const REGION: &str = "us-east-1";
const SECRET: &str = "s3cr3t-value-123";
const OLD_SECRET: &str = "old-s3cr3t-456";

/// Everything the Lambda target can deploy, switched on.
const FULL: &str = "  function:
    memory: 256
    timeout: 20
    architecture: arm64
    reserved_concurrency: 3
    env:
      MODE: lambda
  iam:
    policies: [arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess]
    inline_policies:
      read-table:
        Version: '2012-10-17'
        Statement:
          - Effect: Allow
            Action: ['dynamodb:GetItem']
            Resource: '*'
  vpc:
    subnet_ids: [subnet-0b, subnet-0a]
    security_group_ids: [sg-0a1b2c3d]
  api_gateway:
    cors:
      enabled: true
      origins: ['https://shop.example.com', 'https://admin.example.com']
      methods: [GET, POST]
      headers: [content-type]
      max_age: 600
    throttling:
      rate_limit: 50
      burst_limit: 100
  function_url:
    enabled: true
    auth_type: NONE
";

fn lambda_spec(lambda: &str) -> LambdaSpec {
    let yaml = format!(
        "version: '1'\napp:\n  name: shop\n  port: 8080\n  health_check_path: /health\nenv:\n  GREETING: hello\nsecrets:\n  API_KEY: ${{API_KEY}}\nlambda:\n  enabled: true\n  region: {REGION}\n{lambda}"
    );
    let vars = HashMap::from([("API_KEY".to_owned(), SECRET.to_owned())]);
    let config = deployctl_config::load_str(
        &yaml,
        Path::new("deploy.yaml"),
        &deployctl_config::LoadOptions::new(&vars),
    )
    .unwrap_or_else(|e| panic!("{e:#?}"));
    LambdaSpec::from_config(
        &config,
        ACCOUNT,
        REGION,
        &format!("{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/shop"),
    )
}

fn image(spec: &LambdaSpec, n: u8) -> String {
    image_uri(spec, &format!("sha256:{}", format!("{n:02x}").repeat(32)))
}

/// What an account looks like right after `spec` was deployed with `image(spec, 1)`:
/// version 2 is $LATEST and the alias points at it.
fn converged(spec: &LambdaSpec) -> Observed {
    let api = spec.api.as_ref().map(|a| ApiState {
        id: "api123".into(),
        endpoint: Some("https://api123.execute-api.us-east-1.amazonaws.com".into()),
        cors: a.cors.clone(),
        integration: Some(("int1".into(), spec.alias_arn(), "2.0".into())),
        route: Some(("route1".into(), "integrations/int1".into())),
        stage: Some((true, a.throttling)),
    });
    let mut permissions = BTreeMap::new();
    if let Some(api) = &api {
        permissions.insert(API_PERMISSION_SID.to_owned(), api.source_arn(spec));
    }
    if spec.function_url.as_deref() == Some("NONE") {
        permissions.insert(URL_PERMISSION_SID.to_owned(), "*".to_owned());
    }
    let vpc = spec.vpc.clone().map(|(mut s, mut g)| {
        s.sort();
        g.sort();
        (s, g)
    });
    Observed {
        role: Some(RoleState {
            arn: spec.role_arn(),
            managed: spec.role.managed,
            trusts_lambda: true,
            policies: spec.role.policies.clone(),
            inline: spec.role.inline_policies.clone(),
        }),
        function: Some(FunctionState {
            managed: true,
            image_uri: Some(image(spec, 1)),
            memory: Some(spec.memory),
            timeout: Some(spec.timeout),
            architecture: Some(spec.architecture.to_owned()),
            ephemeral_storage: Some(spec.ephemeral_storage),
            environment: spec
                .environment
                .iter()
                .map(|(k, v)| (k.clone(), v.expose().to_owned()))
                .collect(),
            role: Some(spec.role_arn()),
            vpc,
            efs: spec.efs.clone(),
            revision_id: Some("rev-1".into()),
            state: Some("Active".into()),
            last_update_status: Some("Successful".into()),
            last_modified: None,
            fingerprint: "fp-2".into(),
        }),
        concurrency: spec.reserved_concurrency,
        alias: Some(AliasState {
            version: "2".into(),
            revision_id: None,
        }),
        versions: vec![(1, "fp-1".into()), (2, "fp-2".into())],
        api,
        permissions,
        url: spec
            .function_url
            .clone()
            .map(|auth| ("https://abc.lambda-url.us-east-1.on.aws/".to_owned(), auth)),
        log_group: Some(true),
        extra_apis: Vec::new(),
    }
}

fn function_mut(obs: &mut Observed) -> &mut FunctionState {
    obs.function.as_mut().unwrap()
}

fn run(spec: &LambdaSpec, obs: &Observed, image: Option<&str>) -> Diff {
    diff(spec, obs, image, LambdaScope::All).unwrap_or_else(|e| panic!("{e}"))
}

/// The one plan entry of `kind` named `name`.
fn entry<'a>(d: &'a Diff, kind: &str, name: &str) -> &'a ResourceChange {
    let found: Vec<_> = d
        .plan
        .changes
        .iter()
        .filter(|c| c.kind == kind && c.name == name)
        .collect();
    assert_eq!(found.len(), 1, "{kind} {name} in\n{}", d.plan);
    found[0]
}

fn fields(c: &ResourceChange) -> &[FieldChange] {
    match &c.action {
        Action::Update { fields } => fields,
        other => panic!("{} {} is {other:?}, not an update", c.kind, c.name),
    }
}

/// `(kind, name, action)` of every plan entry that changes something.
fn changed(d: &Diff) -> Vec<(String, String, &'static str)> {
    d.plan
        .changes
        .iter()
        .filter(|c| c.action.is_change())
        .map(|c| (c.kind.clone(), c.name.clone(), c.action.name()))
        .collect()
}

fn row(kind: &str, name: &str, action: &'static str) -> (String, String, &'static str) {
    (kind.to_owned(), name.to_owned(), action)
}

/// A diff that asks `apply` for no mutating call (`alias_exists` only describes).
fn is_no_work(d: &Diff) -> bool {
    *d == Diff {
        plan: d.plan.clone(),
        alias_exists: d.alias_exists,
        ..Diff::default()
    }
}

fn fc(field: &str, from: Option<&str>, to: Option<&str>) -> FieldChange {
    FieldChange::new(field, from.map(str::to_owned), to.map(str::to_owned))
}

#[test]
fn nothing_observed_creates_every_resource() {
    let spec = lambda_spec(FULL);
    let d = run(&spec, &Observed::default(), Some(&image(&spec, 1)));

    let alias = "shop:live";
    let alias_arn = spec.alias_arn();
    assert_eq!(
        changed(&d),
        vec![
            row("iam role", "shop-deployctl", "create"),
            row("lambda function", "shop", "create"),
            row("reserved concurrency", "shop", "create"),
            row("lambda version", "shop", "create"),
            row("lambda alias", alias, "create"),
            row("http api", "shop", "create"),
            row("api integration", &alias_arn, "create"),
            row("api route", "$default", "create"),
            row("api stage", "$default", "create"),
            row("lambda permission", API_PERMISSION_SID, "create"),
            row("function url", alias, "create"),
            row("lambda permission", URL_PERMISSION_SID, "create"),
            row("log group", "/aws/lambda/shop", "create"),
        ]
    );
    assert_eq!(
        d.plan.changes.len(),
        13,
        "nothing is unchanged:\n{}",
        d.plan
    );

    assert!(d.role.create);
    assert_eq!(d.role.attach, spec.role.policies);
    assert_eq!(d.role.put_inline, vec!["read-table".to_owned()]);
    assert!(d.create_function && !d.update_code && d.config_fields.is_empty());
    assert_eq!(d.concurrency, Some(Some(3)));
    assert!(d.publish && d.alias_to.is_none() && !d.alias_exists);
    assert!(d.create_api && d.integration && d.route && d.stage && d.api_permission);
    assert!(!d.update_cors && !d.delete_api);
    assert!(d.create_url && d.url_permission && !d.update_url && !d.delete_url);
    assert!(d.log_group);

    // Defaults: API on, function URL off, no reserved concurrency.
    let spec = lambda_spec("");
    let d = run(&spec, &Observed::default(), Some(&image(&spec, 1)));
    let kinds: Vec<&str> = d.plan.changes.iter().map(|c| c.kind.as_str()).collect();
    assert!(!kinds.contains(&"function url"), "{}", d.plan);
    assert!(!kinds.contains(&"reserved concurrency"), "{}", d.plan);
    assert!(kinds.contains(&"http api"), "{}", d.plan);
    assert!(!d.create_url && !d.url_permission && d.concurrency.is_none());
    assert!(d.create_api);
}

#[test]
fn converged_state_is_all_unchanged_and_mutates_nothing() {
    for lambda in [FULL, ""] {
        let spec = lambda_spec(lambda);
        let obs = converged(&spec);
        let d = run(&spec, &obs, Some(&image(&spec, 1)));
        assert!(d.plan.is_noop(), "{}", d.plan);
        assert!(
            d.plan.changes.iter().all(|c| c.action == Action::Unchanged),
            "{}",
            d.plan
        );
        assert!(is_no_work(&d), "{d:#?}");
        assert!(d.alias_exists);
        // The version entry names the version the alias already serves.
        entry(&d, "lambda version", "shop:2");
        assert_eq!(d.plan.counts().2, d.plan.changes.len());
    }
    // The full config lists every resource.
    let full = lambda_spec(FULL);
    let d = run(&full, &converged(&full), Some(&image(&full, 1)));
    assert_eq!(d.plan.changes.len(), 11, "{}", d.plan);
}

#[test]
fn memory_change_is_exactly_one_configuration_update() {
    let spec = lambda_spec("");
    let mut obs = converged(&spec);
    function_mut(&mut obs).memory = Some(128);
    let d = run(&spec, &obs, Some(&image(&spec, 1)));

    assert_eq!(
        d.config_fields,
        vec![fc("memory", Some("128"), Some("512"))]
    );
    assert!(!d.update_code && !d.create_function);
    assert_eq!(
        fields(entry(&d, "lambda function", "shop")),
        [fc("memory", Some("128"), Some("512"))]
    );
    // $LATEST changes, so a new version is published and the alias moves to it.
    assert!(d.publish && d.alias_to.is_none() && d.alias_exists);
    assert_eq!(
        fields(entry(&d, "lambda alias", "shop:live")),
        [fc("version", Some("2"), Some("(new version)"))]
    );
    assert_eq!(
        changed(&d),
        vec![
            row("lambda function", "shop", "update"),
            row("lambda version", "shop", "create"),
            row("lambda alias", "shop:live", "update"),
        ]
    );
    assert_eq!(d.role, super::RoleWork::default());
    assert!(!d.log_group && !d.create_api && !d.integration && !d.stage);
}

#[test]
fn code_changes_update_code_and_publish_a_version() {
    let spec = lambda_spec("");
    let obs = converged(&spec);
    let (old, new) = (image(&spec, 1), image(&spec, 2));
    let d = run(&spec, &obs, Some(&new));

    assert!(d.update_code);
    assert!(d.config_fields.is_empty(), "{:?}", d.config_fields);
    assert_eq!(
        fields(entry(&d, "lambda function", "shop")),
        [fc("image", Some(&old), Some(&new))]
    );
    assert!(d.publish);
    assert_eq!(
        changed(&d),
        vec![
            row("lambda function", "shop", "update"),
            row("lambda version", "shop", "create"),
            row("lambda alias", "shop:live", "update"),
        ]
    );

    // Before the build the image is unknown: a code update all the same.
    let d = run(&spec, &obs, None);
    assert!(d.update_code && d.publish);
    assert_eq!(
        fields(entry(&d, "lambda function", "shop")),
        [fc(
            "image",
            Some(&image(&spec, 1)),
            Some("(the image this deploy builds)")
        )]
    );

    // An architecture change is a code update, not a configuration update.
    let spec = lambda_spec(FULL); // arm64
    let mut obs = converged(&spec);
    function_mut(&mut obs).architecture = Some("x86_64".into());
    let d = run(&spec, &obs, Some(&image(&spec, 1)));
    assert!(d.update_code);
    assert!(d.config_fields.is_empty());
    assert_eq!(
        fields(entry(&d, "lambda function", "shop")),
        [fc("architecture", Some("x86_64"), Some("arm64"))]
    );
}

#[test]
fn env_changes_never_show_a_secret_value() {
    let spec = lambda_spec("");
    let mut obs = converged(&spec);
    let env = &mut function_mut(&mut obs).environment;
    env.insert("API_KEY".into(), OLD_SECRET.into());
    env.insert("GREETING".into(), "hi".into());
    env.insert("LEFTOVER".into(), "gone-value".into());
    let d = run(&spec, &obs, Some(&image(&spec, 1)));

    assert_eq!(
        d.config_fields,
        vec![
            fc("environment.API_KEY", Some("***"), Some("***")),
            fc("environment.GREETING", Some("hi"), Some("hello")),
            fc("environment.LEFTOVER", Some("(set)"), None),
        ]
    );
    assert!(!d.update_code && d.publish);
    let shown = format!("{}\n{:?}\n{d:?}", d.plan, d.plan);
    for value in [SECRET, OLD_SECRET, "gone-value"] {
        assert!(!shown.contains(value), "{value} in\n{shown}");
    }
    assert!(shown.contains("environment.API_KEY: *** -> ***"), "{shown}");

    // A secret added to a function without it is masked too.
    let mut obs = converged(&spec);
    function_mut(&mut obs).environment.remove("API_KEY");
    let d = run(&spec, &obs, Some(&image(&spec, 1)));
    assert_eq!(
        d.config_fields,
        vec![FieldChange::sensitive("environment.API_KEY")]
    );
    assert!(!d.plan.to_string().contains(SECRET));
}

#[test]
fn api_gateway_disabled_deletes_the_observed_api_only() {
    let with_api = lambda_spec("");
    let obs = converged(&with_api);
    let without = lambda_spec("  api_gateway:\n    enabled: false\n");
    let d = run(&without, &obs, Some(&image(&without, 1)));

    assert!(d.delete_api);
    assert!(!d.create_api && !d.integration && !d.route && !d.stage && !d.api_permission);
    assert_eq!(changed(&d), vec![row("http api", "api123", "delete")]);

    // Disabled and absent: no API entry at all.
    let mut none = obs.clone();
    none.api = None;
    none.permissions.clear();
    let d = run(&without, &none, Some(&image(&without, 1)));
    assert!(is_no_work(&d), "{d:#?}");
    assert!(d.plan.changes.iter().all(|c| !c.kind.starts_with("api")
        && c.kind != "http api"
        && c.kind != "lambda permission"));
}

#[test]
fn api_gateway_enabled_on_a_deployed_function_creates_the_api() {
    let without = lambda_spec("  api_gateway:\n    enabled: false\n");
    let obs = converged(&without);
    assert!(obs.api.is_none());
    let with_api = lambda_spec("");
    let d = run(&with_api, &obs, Some(&image(&with_api, 1)));
    assert!(d.create_api && d.integration && d.route && d.stage && d.api_permission);
    assert!(!d.publish && !d.update_code && d.config_fields.is_empty());
    assert_eq!(
        changed(&d),
        vec![
            row("http api", "shop", "create"),
            row("api integration", &with_api.alias_arn(), "create"),
            row("api route", "$default", "create"),
            row("api stage", "$default", "create"),
            row("lambda permission", API_PERMISSION_SID, "create"),
        ]
    );
}

#[test]
fn cors_change_updates_the_api_and_order_does_not_matter() {
    let spec = lambda_spec(FULL);
    let mut obs = converged(&spec);
    {
        let cors = obs.api.as_mut().unwrap().cors.as_mut().unwrap();
        cors.origins.reverse();
        cors.methods.reverse();
    }
    let d = run(&spec, &obs, Some(&image(&spec, 1)));
    assert!(!d.update_cors, "reordered lists are the same CORS");
    assert!(is_no_work(&d));

    obs.api.as_mut().unwrap().cors.as_mut().unwrap().max_age = Some(60);
    let d = run(&spec, &obs, Some(&image(&spec, 1)));
    assert!(d.update_cors);
    let f = fields(entry(&d, "http api", "shop"));
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].field, "cors");
    assert!(
        f[0].from.as_deref().unwrap().ends_with("max-age 60"),
        "{f:?}"
    );
    assert!(
        f[0].to.as_deref().unwrap().ends_with("max-age 600"),
        "{f:?}"
    );
    assert_eq!(changed(&d), vec![row("http api", "shop", "update")]);

    // CORS switched off in the config: the update removes it.
    let mut off = spec.clone();
    off.api.as_mut().unwrap().cors = None;
    let d = run(&off, &converged(&spec), Some(&image(&spec, 1)));
    assert!(d.update_cors);
    assert_eq!(fields(entry(&d, "http api", "shop"))[0].to, None);
}

#[test]
fn throttling_change_updates_the_stage() {
    let spec = lambda_spec(FULL);
    let mut obs = converged(&spec);
    obs.api.as_mut().unwrap().stage = Some((true, None));
    let d = run(&spec, &obs, Some(&image(&spec, 1)));
    assert!(d.stage && !d.route && !d.integration && !d.update_cors);
    assert_eq!(
        fields(entry(&d, "api stage", "$default")),
        [fc(
            "settings",
            Some("auto-deploy true"),
            Some("auto-deploy true, throttling 50/s burst 100")
        )]
    );
    assert_eq!(changed(&d), vec![row("api stage", "$default", "update")]);

    // Auto-deploy switched off behind deployctl's back is restored too.
    let mut obs = converged(&spec);
    obs.api.as_mut().unwrap().stage = Some((false, Some((50.0, 100))));
    assert!(run(&spec, &obs, Some(&image(&spec, 1))).stage);
}

#[test]
fn api_permission_for_another_api_is_replaced() {
    let spec = lambda_spec("");
    let mut obs = converged(&spec);
    obs.permissions.insert(
        API_PERMISSION_SID.into(),
        format!("arn:aws:execute-api:{REGION}:{ACCOUNT}:other/*"),
    );
    let d = run(&spec, &obs, Some(&image(&spec, 1)));
    assert!(d.api_permission);
    assert_eq!(
        changed(&d),
        vec![row("lambda permission", API_PERMISSION_SID, "create")]
    );
}

#[test]
fn integration_payload_version_change_names_that_field_and_keeps_the_route() {
    let spec = lambda_spec("");
    let mut obs = converged(&spec);
    obs.api.as_mut().unwrap().integration = Some(("int1".into(), spec.alias_arn(), "1.0".into()));
    let d = run(&spec, &obs, Some(&image(&spec, 1)));
    assert!(d.integration);
    assert_eq!(
        fields(entry(&d, "api integration", &spec.alias_arn())),
        [fc("payload_format_version", Some("1.0"), Some("2.0"))]
    );
    // The integration is updated in place: the route already targets it.
    assert!(!d.route, "{}", d.plan);
    assert_eq!(
        changed(&d),
        vec![row("api integration", &spec.alias_arn(), "update")]
    );
}

#[test]
fn integration_uri_change_and_stray_route_target() {
    let spec = lambda_spec("");
    let mut obs = converged(&spec);
    let stale = format!("{}:old", spec.function_arn());
    obs.api.as_mut().unwrap().integration = Some(("int1".into(), stale.clone(), "2.0".into()));
    let d = run(&spec, &obs, Some(&image(&spec, 1)));
    assert_eq!(
        fields(entry(&d, "api integration", &spec.alias_arn())),
        [fc("uri", Some(&stale), Some(&spec.alias_arn()))]
    );
    assert!(!d.route);

    // A route pointing elsewhere is re-targeted, the integration left alone.
    let mut obs = converged(&spec);
    obs.api.as_mut().unwrap().route = Some(("route1".into(), "integrations/other".into()));
    let d = run(&spec, &obs, Some(&image(&spec, 1)));
    assert!(d.route && !d.integration);
    assert_eq!(changed(&d), vec![row("api route", "$default", "update")]);

    // No integration: it is created and the route must follow it.
    let mut obs = converged(&spec);
    obs.api.as_mut().unwrap().integration = None;
    let d = run(&spec, &obs, Some(&image(&spec, 1)));
    assert!(d.integration && d.route);
    assert_eq!(
        changed(&d),
        vec![
            row("api integration", &spec.alias_arn(), "create"),
            row("api route", "$default", "update"),
        ]
    );
}

#[test]
fn function_url_on_off_and_auth_type() {
    let on = lambda_spec(FULL);
    let obs = converged(&on);
    let mut off = on.clone();
    off.function_url = None;
    let d = run(&off, &obs, Some(&image(&off, 1)));
    assert!(d.delete_url && d.remove_url_permission);
    assert!(!d.create_url && !d.update_url && !d.url_permission);
    assert_eq!(
        changed(&d),
        vec![row("function url", "shop:live", "delete")]
    );

    let off = lambda_spec("");
    let obs = converged(&off);
    let on = lambda_spec("  function_url:\n    enabled: true\n    auth_type: AWS_IAM\n");
    // Turned on with IAM auth: the URL only, no public permission.
    let d = run(&on, &obs, Some(&image(&on, 1)));
    assert!(d.create_url && !d.url_permission && !d.remove_url_permission);
    assert_eq!(
        changed(&d),
        vec![row("function url", "shop:live", "create")]
    );

    // NONE → AWS_IAM: auth updated, public permission removed.
    let public = lambda_spec("  function_url:\n    enabled: true\n");
    let d = run(&on, &converged(&public), Some(&image(&on, 1)));
    assert!(d.update_url && d.remove_url_permission && !d.url_permission);
    assert_eq!(
        fields(entry(&d, "function url", "shop:live")),
        [fc("auth_type", Some("NONE"), Some("AWS_IAM"))]
    );
    assert_eq!(
        changed(&d),
        vec![
            row("function url", "shop:live", "update"),
            row("lambda permission", URL_PERMISSION_SID, "delete"),
        ]
    );

    // AWS_IAM → NONE: auth updated, public permission added.
    let d = run(&public, &converged(&on), Some(&image(&on, 1)));
    assert!(d.update_url && d.url_permission && !d.remove_url_permission);
}

#[test]
fn named_role_is_used_as_is_and_must_exist_and_trust_lambda() {
    let spec = lambda_spec("  iam:\n    role: app-runner\n");
    assert!(!spec.role.managed);
    let mut obs = converged(&spec);
    let arn = format!("arn:aws:iam::{ACCOUNT}:role/path/app-runner");
    {
        let role = obs.role.as_mut().unwrap();
        role.arn = arn.clone();
        role.managed = false; // not deployctl's, and that is fine
        role.policies = vec!["arn:aws:iam::aws:policy/Whatever".into()];
    }
    let d = run(&spec, &obs, Some(&image(&spec, 1)));
    assert_eq!(d.role, super::RoleWork::default());
    assert_eq!(
        entry(&d, "iam role", "app-runner").action,
        Action::Unchanged
    );
    // The function is pointed at the role's real ARN.
    assert_eq!(
        d.config_fields,
        vec![fc("role", Some(&spec.role_arn()), Some(&arn))]
    );

    obs.role.as_mut().unwrap().trusts_lambda = false;
    let e = diff(&spec, &obs, None, LambdaScope::All).unwrap_err();
    assert!(
        matches!(&e, AwsError::Role { role, reason } if role == "app-runner" && reason.contains("trust")),
        "{e:?}"
    );
    obs.role = None;
    let e = diff(&spec, &obs, None, LambdaScope::All).unwrap_err();
    assert!(
        matches!(&e, AwsError::Role { reason, .. } if reason.contains("does not exist")),
        "{e:?}"
    );
}

#[test]
fn managed_role_drift_is_repaired() {
    let spec = lambda_spec(FULL);
    let mut obs = converged(&spec);
    let s3 = "arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess";
    let extra = "arn:aws:iam::aws:policy/AdministratorAccess";
    {
        let role = obs.role.as_mut().unwrap();
        role.trusts_lambda = false;
        role.policies.retain(|p| p != s3);
        role.policies.push(extra.into());
        role.inline
            .insert("read-table".into(), serde_json::json!({}));
        role.inline
            .insert("stray".into(), serde_json::json!({"a": 1}));
    }
    let d = run(&spec, &obs, Some(&image(&spec, 1)));
    assert!(!d.role.create && d.role.trust);
    assert_eq!(d.role.attach, vec![s3.to_owned()]);
    assert_eq!(d.role.detach, vec![extra.to_owned()]);
    assert_eq!(d.role.put_inline, vec!["read-table".to_owned()]);
    assert_eq!(d.role.delete_inline, vec!["stray".to_owned()]);
    let f = fields(entry(&d, "iam role", "shop-deployctl"));
    assert_eq!(f[0], fc("trust policy", None, Some("lambda.amazonaws.com")));
    assert_eq!(f[1], fc("policies", None, Some(s3)));
    assert_eq!(f[2], fc("policies", Some(extra), None));
    assert_eq!(f[3].field, "inline_policies.read-table");
    assert_eq!(f[4], fc("inline_policies.stray", Some("(set)"), None));
    assert_eq!(f.len(), 5);
    // Only the role changes: the function's code and configuration are as wanted.
    assert_eq!(
        changed(&d),
        vec![row("iam role", "shop-deployctl", "update")]
    );
}

#[test]
fn untagged_resources_are_not_deployctls() {
    let spec = lambda_spec("");
    let mut obs = converged(&spec);
    function_mut(&mut obs).managed = false;
    let e = diff(&spec, &obs, None, LambdaScope::All).unwrap_err();
    assert!(
        matches!(&e, AwsError::NotManaged { kind: "Lambda function", name } if name == "shop"),
        "{e:?}"
    );

    let mut obs = converged(&spec);
    obs.role.as_mut().unwrap().managed = false;
    let e = diff(&spec, &obs, None, LambdaScope::All).unwrap_err();
    assert!(
        matches!(&e, AwsError::NotManaged { kind: "IAM role", name } if name == "shop-deployctl"),
        "{e:?}"
    );
}

#[test]
fn function_scope_leaves_the_api_and_url_alone() {
    let before = lambda_spec(FULL);
    let obs = converged(&before);
    // The config now wants no API, no URL and more memory.
    let mut after = before.clone();
    after.api = None;
    after.function_url = None;
    after.memory = 1024;
    let d = diff(
        &after,
        &obs,
        Some(&image(&after, 1)),
        LambdaScope::from_flags(true, false),
    )
    .unwrap();
    assert!(!d.delete_api && !d.delete_url && !d.remove_url_permission);
    assert_eq!(
        d.config_fields,
        vec![fc("memory", Some("256"), Some("1024"))]
    );
    assert!(d.publish);
    assert!(
        d.plan.changes.iter().all(|c| ![
            "http api",
            "api integration",
            "api route",
            "api stage",
            "function url",
            "lambda permission"
        ]
        .contains(&c.kind.as_str())),
        "{}",
        d.plan
    );
    entry(&d, "log group", "/aws/lambda/shop");
}

#[test]
fn api_scope_touches_only_the_api_and_url() {
    let spec = lambda_spec(FULL);
    let mut obs = converged(&spec);
    obs.api = None;
    obs.url = None;
    obs.permissions.clear();
    obs.log_group = None;
    function_mut(&mut obs).memory = Some(128);
    obs.role.as_mut().unwrap().trusts_lambda = false;
    let d = diff(
        &spec,
        &obs,
        Some(&image(&spec, 2)),
        LambdaScope::from_flags(false, true),
    )
    .unwrap();
    assert_eq!(d.role, super::RoleWork::default());
    assert!(!d.update_code && d.config_fields.is_empty() && !d.publish);
    assert!(d.alias_to.is_none() && !d.log_group && d.concurrency.is_none());
    assert!(d.create_api && d.create_url && d.url_permission);
    let kinds: Vec<&str> = d.plan.changes.iter().map(|c| c.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "http api",
            "api integration",
            "api route",
            "api stage",
            "lambda permission",
            "function url",
            "lambda permission",
        ]
    );

    // The API scope needs the alias the API calls.
    let spec = lambda_spec("");
    let mut obs = converged(&spec);
    obs.alias = None;
    let e = diff(&spec, &obs, None, LambdaScope::Api).unwrap_err();
    assert!(
        matches!(&e, AwsError::Missing(m) if m.contains("`live` alias")),
        "{e:?}"
    );
    // The whole deployment creates the alias instead.
    let d = run(&spec, &obs, Some(&image(&spec, 1)));
    assert_eq!(
        entry(&d, "lambda alias", "shop:live").action,
        Action::Create
    );
    assert!(!d.alias_exists);
}

#[test]
fn alias_off_latest_moves_back_without_publishing() {
    // After a rollback: $LATEST is version 2, the alias serves version 1.
    let spec = lambda_spec("");
    let mut obs = converged(&spec);
    obs.alias.as_mut().unwrap().version = "1".into();
    let d = run(&spec, &obs, Some(&image(&spec, 1)));
    assert!(!d.publish);
    assert_eq!(d.alias_to.as_deref(), Some("2"));
    assert_eq!(
        fields(entry(&d, "lambda alias", "shop:live")),
        [fc("version", Some("1"), Some("2"))]
    );
    assert_eq!(
        changed(&d),
        vec![row("lambda alias", "shop:live", "update")]
    );

    // No published version matches $LATEST: one is published.
    let mut obs = converged(&spec);
    obs.versions = vec![(1, "fp-1".into())];
    obs.alias.as_mut().unwrap().version = "1".into();
    let d = run(&spec, &obs, Some(&image(&spec, 1)));
    assert!(d.publish && d.alias_to.is_none());
}

#[test]
fn reserved_concurrency_change_and_removal() {
    let spec = lambda_spec(FULL); // 3
    let mut obs = converged(&spec);
    obs.concurrency = Some(10);
    let d = run(&spec, &obs, Some(&image(&spec, 1)));
    assert_eq!(d.concurrency, Some(Some(3)));
    // Concurrency is not part of a version: nothing is published for it.
    assert!(!d.publish);
    assert_eq!(
        fields(entry(&d, "reserved concurrency", "shop")),
        [fc("reserved_concurrency", Some("10"), Some("3"))]
    );

    let mut none = spec.clone();
    none.reserved_concurrency = None;
    let d = run(&none, &converged(&spec), Some(&image(&spec, 1)));
    assert_eq!(d.concurrency, Some(None));
    assert_eq!(
        fields(entry(&d, "reserved concurrency", "shop")),
        [fc("reserved_concurrency", Some("3"), None)]
    );
}

#[test]
fn duplicate_apis_are_deleted_and_duplicate_statements_replaced_by_one() {
    // What concurrent deploys of an older deployctl left: two more APIs with the app's name
    // and tags, and the API's statement twice.
    let spec = lambda_spec("");
    let mut obs = converged(&spec);
    obs.extra_apis = vec!["api456".into(), "api789".into()];
    obs.permissions.insert(
        API_PERMISSION_SID.to_owned(),
        "(duplicate statements)".to_owned(),
    );
    let d = run(&spec, &obs, Some(&image(&spec, 1)));
    assert_eq!(d.delete_extra_apis, ["api456", "api789"]);
    assert!(d.api_permission, "the duplicates are replaced: {}", d.plan);
    assert!(!d.create_api && !d.delete_api);
    assert_eq!(
        changed(&d),
        vec![
            row("http api", "api456", "delete"),
            row("http api", "api789", "delete"),
            row("lambda permission", API_PERMISSION_SID, "create"),
        ]
    );
}
