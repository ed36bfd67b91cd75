//! The CSDL document (`$metadata`): one entity type per declared table (typed properties, the key, a
//! `_x_value` property and a single-valued navigation property per lookup, a collection-valued one per
//! 1:N and N:N relationship), one entity set per table with its navigation bindings, `WhoAmI` and every
//! Custom API as an action or function (with a complex type for its response).
//!
//! Owns the document's text. It must not decide names (`relationships` does) or serve HTTP.

use std::fmt::Write as _;

use quick_xml::escape::escape;
use weft_store::{AttributeKind, Schema, TableDef};

use crate::relationships::{self, Rel, lookup_navigation};
use crate::{Model, NAMESPACE, Operation, OperationBinding};

/// The EDM type of a column's value.
fn edm_type(kind: &AttributeKind) -> &'static str {
    match kind {
        AttributeKind::String { .. }
        | AttributeKind::Memo { .. }
        | AttributeKind::MultiSelectPicklist { .. } => "Edm.String",
        AttributeKind::Integer { .. }
        | AttributeKind::Picklist { .. }
        | AttributeKind::State { .. }
        | AttributeKind::Status { .. } => "Edm.Int32",
        AttributeKind::BigInt => "Edm.Int64",
        AttributeKind::Double => "Edm.Double",
        AttributeKind::Decimal { .. } | AttributeKind::Money => "Edm.Decimal",
        AttributeKind::Boolean => "Edm.Boolean",
        AttributeKind::DateTime => "Edm.DateTimeOffset",
        AttributeKind::Uniqueidentifier | AttributeKind::Lookup { .. } => "Edm.Guid",
    }
}

/// The CSDL document of `model`.
pub fn csdl(model: Model<'_>) -> String {
    let schema = model.schema;
    let rels = relationships::all(schema);
    let mut x = String::from(
        r#"<?xml version="1.0" encoding="utf-8"?>
<edmx:Edmx Version="4.0" xmlns:edmx="http://docs.oasis-open.org/odata/ns/edmx">
<edmx:DataServices>
<Schema Namespace="Microsoft.Dynamics.CRM" Alias="mscrm" xmlns="http://docs.oasis-open.org/odata/ns/edm">
<EntityType Name="crmbaseentity" Abstract="true"/>
"#,
    );
    for t in schema.tables() {
        entity_type(&mut x, t, &rels);
    }
    x.push_str(
        r#"<ComplexType Name="WhoAmIResponse">
<Property Name="BusinessUnitId" Type="Edm.Guid" Nullable="false"/>
<Property Name="UserId" Type="Edm.Guid" Nullable="false"/>
<Property Name="OrganizationId" Type="Edm.Guid" Nullable="false"/>
</ComplexType>
<Function Name="WhoAmI">
<ReturnType Type="mscrm.WhoAmIResponse" Nullable="false"/>
</Function>
"#,
    );
    for op in model.operations {
        operation(&mut x, schema, op);
    }
    x.push_str("<EntityContainer Name=\"System\">\n");
    for t in schema.tables() {
        let _ = writeln!(
            x,
            r#"<EntitySet Name="{}" EntityType="{NAMESPACE}.{}">"#,
            escape(&t.entity_set_name),
            escape(&t.logical_name)
        );
        for (nav, target) in navigations(t, &rels) {
            if let Some(target) = schema.table(&target) {
                let _ = writeln!(
                    x,
                    r#"<NavigationPropertyBinding Path="{}" Target="{}"/>"#,
                    escape(&nav),
                    escape(&target.entity_set_name)
                );
            }
        }
        x.push_str("</EntitySet>\n");
    }
    x.push_str(
        "<FunctionImport Name=\"WhoAmI\" Function=\"Microsoft.Dynamics.CRM.WhoAmI\" \
         IncludeInServiceDocument=\"false\"/>\n",
    );
    for op in model.operations {
        if op.binding == OperationBinding::Unbound {
            let (kind, attr) = if op.is_function {
                ("FunctionImport", "Function")
            } else {
                ("ActionImport", "Action")
            };
            let _ = writeln!(
                x,
                r#"<{kind} Name="{n}" {attr}="{NAMESPACE}.{n}"/>"#,
                n = escape(&op.name)
            );
        }
    }
    x.push_str("</EntityContainer>\n</Schema>\n</edmx:DataServices>\n</edmx:Edmx>\n");
    x
}

/// Every navigation property of table `t`, with its target table: (name, target logical name).
fn navigations(t: &TableDef, rels: &[Rel<'_>]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for r in rels {
        match r {
            Rel::OneToMany {
                name,
                referenced,
                referencing,
                attribute,
                ..
            } => {
                if referencing.logical_name == t.logical_name {
                    out.push((
                        lookup_navigation(referencing, attribute, &referenced.logical_name),
                        referenced.logical_name.clone(),
                    ));
                }
                if referenced.logical_name == t.logical_name {
                    out.push((name.clone(), referencing.logical_name.clone()));
                }
            }
            Rel::ManyToMany {
                name,
                entity1,
                entity2,
            } => {
                if entity1.logical_name == t.logical_name {
                    out.push(((*name).to_owned(), entity2.logical_name.clone()));
                } else if entity2.logical_name == t.logical_name {
                    out.push(((*name).to_owned(), entity1.logical_name.clone()));
                }
            }
        }
    }
    // A 1:N relationship from a table to itself gives it both navigation properties once each.
    out.dedup();
    out
}

fn entity_type(x: &mut String, t: &TableDef, rels: &[Rel<'_>]) {
    let _ = writeln!(
        x,
        r#"<EntityType Name="{}" BaseType="mscrm.crmbaseentity">"#,
        escape(&t.logical_name)
    );
    let _ = writeln!(
        x,
        r#"<Key><PropertyRef Name="{}"/></Key>"#,
        escape(&t.primary_id_attribute)
    );
    for a in &t.attributes {
        let name = match a.kind {
            AttributeKind::Lookup { .. } => format!("_{}_value", a.logical_name),
            _ => a.logical_name.clone(),
        };
        let _ = writeln!(
            x,
            r#"<Property Name="{}" Type="{}"/>"#,
            escape(&name),
            edm_type(&a.kind)
        );
    }
    for (nav, target) in navigations(t, rels) {
        let single = rels.iter().any(|r| {
            matches!(r, Rel::OneToMany { referencing, attribute, referenced, .. }
                if referencing.logical_name == t.logical_name
                    && lookup_navigation(referencing, attribute, &referenced.logical_name) == nav)
        });
        let ty = if single {
            format!("mscrm.{}", escape(&target))
        } else {
            format!("Collection(mscrm.{})", escape(&target))
        };
        let _ = writeln!(
            x,
            r#"<NavigationProperty Name="{}" Type="{ty}"/>"#,
            escape(&nav)
        );
    }
    x.push_str("</EntityType>\n");
}

fn operation(x: &mut String, schema: &Schema, op: &Operation) {
    let name = escape(&op.name);
    if !op.returns.is_empty() {
        let _ = writeln!(x, r#"<ComplexType Name="{name}Response">"#);
        for p in &op.returns {
            let _ = writeln!(
                x,
                r#"<Property Name="{}" Type="{}"/>"#,
                escape(&p.name),
                p.edm_type
            );
        }
        x.push_str("</ComplexType>\n");
    }
    let kind = if op.is_function { "Function" } else { "Action" };
    let bound = op.binding != OperationBinding::Unbound;
    let _ = writeln!(x, r#"<{kind} Name="{name}" IsBound="{bound}">"#);
    let bound_type = |t: &str| {
        schema.table(t).map_or_else(
            || "mscrm.crmbaseentity".to_owned(),
            |d| format!("mscrm.{}", escape(&d.logical_name)),
        )
    };
    match &op.binding {
        OperationBinding::Unbound => {}
        OperationBinding::Entity(t) => {
            let _ = writeln!(
                x,
                r#"<Parameter Name="entity" Type="{}" Nullable="false"/>"#,
                bound_type(t)
            );
        }
        OperationBinding::Collection(t) => {
            let _ = writeln!(
                x,
                r#"<Parameter Name="entityset" Type="Collection({})" Nullable="false"/>"#,
                bound_type(t)
            );
        }
    }
    for p in &op.parameters {
        let _ = writeln!(
            x,
            r#"<Parameter Name="{}" Type="{}" Nullable="{}"/>"#,
            escape(&p.name),
            p.edm_type,
            p.optional
        );
    }
    if !op.returns.is_empty() {
        let _ = writeln!(
            x,
            r#"<ReturnType Type="mscrm.{name}Response" Nullable="false"/>"#
        );
    }
    let _ = writeln!(x, "</{kind}>");
}
