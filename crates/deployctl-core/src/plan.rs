//! What a deploy will do, per resource.

use std::fmt;

/// One field that differs between what is deployed and what is wanted.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct FieldChange {
    /// Field path, e.g. `memory` or `spec.replicas`.
    pub field: String,
    /// Current value, if known. `***` for a sensitive field.
    pub from: Option<String>,
    /// Wanted value. `***` for a sensitive field.
    pub to: Option<String>,
}

impl FieldChange {
    /// A change of `field` from `from` to `to`.
    pub fn new(field: impl Into<String>, from: Option<String>, to: Option<String>) -> Self {
        Self {
            field: field.into(),
            from,
            to,
        }
    }

    /// A change of a sensitive field: both values print as `***`.
    pub fn sensitive(field: impl Into<String>) -> Self {
        Self::new(
            field,
            Some(crate::secret::REDACTED.into()),
            Some(crate::secret::REDACTED.into()),
        )
    }
}

/// What will happen to one resource.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Action {
    /// It does not exist and will be created.
    Create,
    /// It exists and these fields will change.
    Update {
        /// The differing fields.
        fields: Vec<FieldChange>,
    },
    /// It exists as wanted; no call will be made.
    Unchanged,
    /// It exists, is deployctl's, and will be deleted.
    Delete,
}

impl Action {
    /// The action's name: `create`, `update`, `unchanged`, `delete`.
    pub fn name(&self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update { .. } => "update",
            Action::Unchanged => "unchanged",
            Action::Delete => "delete",
        }
    }

    /// Whether carrying it out changes anything remotely.
    pub fn is_change(&self) -> bool {
        !matches!(self, Action::Unchanged)
    }
}

/// One resource in a plan.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct ResourceChange {
    /// Resource kind, e.g. `ecr repository`, `Deployment`.
    pub kind: String,
    /// Resource name.
    pub name: String,
    /// What will happen.
    #[serde(flatten)]
    pub action: Action,
    /// Why, in a few words.
    pub reason: String,
}

impl ResourceChange {
    /// A change to the resource `kind`/`name`.
    pub fn new(
        kind: impl Into<String>,
        name: impl Into<String>,
        action: Action,
        reason: impl Into<String>,
    ) -> Self {
        Self {
            kind: kind.into(),
            name: name.into(),
            action,
            reason: reason.into(),
        }
    }
}

/// Everything one target will do.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
#[non_exhaustive]
pub struct Plan {
    /// Target name (`lambda`, `k8s`, `local`, or `image` for build and push).
    pub target: String,
    /// Resource changes, in the order they will be carried out.
    pub changes: Vec<ResourceChange>,
    /// The hook steps run around them, in order: phase, where each runs, its command or
    /// event, its timeout.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hooks: Vec<crate::hooks::PlannedHook>,
}

impl Plan {
    /// An empty plan for `target`.
    pub fn new(target: impl Into<String>) -> Self {
        Self {
            target: target.into(),
            changes: Vec::new(),
            hooks: Vec::new(),
        }
    }

    /// Adds a change.
    pub fn push(&mut self, change: ResourceChange) {
        self.changes.push(change);
    }

    /// Whether applying it changes nothing.
    pub fn is_noop(&self) -> bool {
        self.changes.iter().all(|c| !c.action.is_change())
    }

    /// Counts per action: (create, update, unchanged, delete).
    pub fn counts(&self) -> (usize, usize, usize, usize) {
        let mut n = (0, 0, 0, 0);
        for c in &self.changes {
            match c.action {
                Action::Create => n.0 += 1,
                Action::Update { .. } => n.1 += 1,
                Action::Unchanged => n.2 += 1,
                Action::Delete => n.3 += 1,
            }
        }
        n
    }
}

impl fmt::Display for Plan {
    /// The plan as the CLI prints it: one line per resource, `+` create, `~` update,
    /// `=` unchanged, `-` delete; changed fields indented below an update; then one `>`
    /// line per hook step.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}:", self.target)?;
        if self.changes.is_empty() {
            writeln!(f, "  (no resources)")?;
        }
        for c in &self.changes {
            let sign = match c.action {
                Action::Create => '+',
                Action::Update { .. } => '~',
                Action::Unchanged => '=',
                Action::Delete => '-',
            };
            writeln!(
                f,
                "  {sign} {:<9} {} {} ({})",
                c.action.name(),
                c.kind,
                c.name,
                c.reason
            )?;
            if let Action::Update { fields } = &c.action {
                for fc in fields {
                    writeln!(
                        f,
                        "      {}: {} -> {}",
                        fc.field,
                        fc.from.as_deref().unwrap_or("(none)"),
                        fc.to.as_deref().unwrap_or("(none)")
                    )?;
                }
            }
        }
        for h in &self.hooks {
            writeln!(f, "  > hook      {h}")?;
        }
        let (c, u, n, d) = self.counts();
        write!(
            f,
            "  {c} to create, {u} to update, {n} unchanged, {d} to delete"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_and_counts() {
        let mut p = Plan::new("lambda");
        p.push(ResourceChange::new(
            "iam role",
            "app-role",
            Action::Create,
            "not found",
        ));
        p.push(ResourceChange::new(
            "lambda function",
            "app",
            Action::Update {
                fields: vec![FieldChange::new(
                    "memory",
                    Some("128".into()),
                    Some("512".into()),
                )],
            },
            "configuration differs",
        ));
        p.push(ResourceChange::new(
            "api",
            "app-api",
            Action::Unchanged,
            "matches",
        ));
        assert!(!p.is_noop());
        assert_eq!(p.counts(), (1, 1, 1, 0));
        let text = p.to_string();
        assert!(
            text.contains("+ create    iam role app-role (not found)"),
            "{text}"
        );
        assert!(text.contains("      memory: 128 -> 512"), "{text}");
        assert!(
            text.ends_with("1 to create, 1 to update, 1 unchanged, 0 to delete"),
            "{text}"
        );
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(json["changes"][1]["action"], "update");
        assert_eq!(json["changes"][1]["fields"][0]["to"], "512");
    }

    #[test]
    fn sensitive_changes_do_not_carry_values() {
        let fc = FieldChange::sensitive("env.DB_PASSWORD");
        assert_eq!(fc.from.as_deref(), Some("***"));
        assert_eq!(fc.to.as_deref(), Some("***"));
    }
}
