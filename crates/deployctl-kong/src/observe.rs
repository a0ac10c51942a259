//! Reading what deployctl owns in Kong: every entity tagged `deployctl:<app>`, by kind.
//! Reads only.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::admin::AdminApi;
use crate::desired::{Kind, tag};
use crate::error::KongError;

/// The tagged entities of one app, by kind and ID (Kong's JSON as read).
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct Observed {
    /// The entities, by kind, then ID.
    pub entities: BTreeMap<Kind, BTreeMap<String, Value>>,
}

impl Observed {
    /// The entity `id` of `kind`, when deployctl owns it.
    pub fn get(&self, kind: Kind, id: &str) -> Option<&Value> {
        self.entities.get(&kind).and_then(|m| m.get(id))
    }

    /// Every tagged entity of `kind`.
    pub fn of(&self, kind: Kind) -> impl Iterator<Item = (&String, &Value)> {
        self.entities.get(&kind).into_iter().flatten()
    }

    /// Whether nothing is tagged for the app.
    pub fn is_empty(&self) -> bool {
        self.entities.values().all(BTreeMap::is_empty)
    }

    /// The Routes as `METHODS paths` lines, sorted (for `status`).
    pub fn route_lines(&self) -> Vec<String> {
        let join = |v: &Value| {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default()
        };
        let mut out: Vec<String> = self
            .of(Kind::Route)
            .map(|(_, r)| format!("{} {}", join(&r["methods"]), join(&r["paths"])))
            .collect();
        out.sort();
        out
    }
}

/// Reads every entity tagged `deployctl:<app>` (all pages). Only entities carrying the
/// tag are returned: untagged ones are never deployctl's.
pub async fn observe(api: &AdminApi, app: &str) -> Result<Observed, KongError> {
    let tag = tag(app);
    let mut out = Observed::default();
    for kind in Kind::ALL {
        let items = api.list(kind.collection(), &tag).await?;
        let map = out.entities.entry(kind).or_default();
        for item in items {
            let tagged = item["tags"]
                .as_array()
                .is_some_and(|t| t.iter().any(|x| x.as_str() == Some(tag.as_str())));
            if let (true, Some(id)) = (tagged, item["id"].as_str()) {
                map.insert(id.to_owned(), item.clone());
            }
        }
    }
    Ok(out)
}
