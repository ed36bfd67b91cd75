//! Dataverse value types as plug-in authors use them: [`Value`], [`Entity`],
//! [`EntityReference`], [`EntityCollection`] and the ordered [`Parameters`]
//! collections. Plain Rust types: nothing here touches the WIT bindings.

use crate::Guid;

/// An attribute value (`object` in the .NET SDK).
///
/// ```
/// use weft_sdk::Value;
/// let v: Value = "Contoso".into();
/// assert_eq!(v.as_str(), Some("Contoso"));
/// assert_eq!(Value::from(42).as_i32(), Some(42));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// No value.
    Null,
    /// Two options (`bool`).
    Boolean(bool),
    /// Whole number (`int`).
    Integer(i32),
    /// Big integer (`long`).
    BigInteger(i64),
    /// Floating point number (`double`).
    Double(f64),
    /// Decimal number as exact text, e.g. `"10.12"`.
    Decimal(String),
    /// Currency amount as exact decimal text.
    Money(String),
    /// Text.
    String(String),
    /// Milliseconds since the Unix epoch, UTC.
    DateTime(i64),
    /// Unique identifier.
    Guid(Guid),
    /// Lookup.
    EntityReference(EntityReference),
    /// Choice.
    OptionSetValue(i32),
    /// Multi-select choice.
    OptionSetValueCollection(Vec<i32>),
    /// A list of lookups.
    EntityReferenceCollection(Vec<EntityReference>),
    /// A list of strings.
    StringArray(Vec<String>),
}

impl Value {
    /// The text of a [`Value::String`].
    ///
    /// ```
    /// # use weft_sdk::Value;
    /// assert_eq!(Value::Integer(1).as_str(), None);
    /// ```
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The number of a [`Value::Integer`].
    ///
    /// ```
    /// # use weft_sdk::Value;
    /// assert_eq!(Value::Integer(7).as_i32(), Some(7));
    /// ```
    pub fn as_i32(&self) -> Option<i32> {
        match self {
            Value::Integer(n) => Some(*n),
            _ => None,
        }
    }

    /// The number of a [`Value::BigInteger`] or [`Value::Integer`].
    ///
    /// ```
    /// # use weft_sdk::Value;
    /// assert_eq!(Value::Integer(7).as_i64(), Some(7));
    /// ```
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::BigInteger(n) => Some(*n),
            Value::Integer(n) => Some(i64::from(*n)),
            _ => None,
        }
    }

    /// The number of a [`Value::Double`].
    ///
    /// ```
    /// # use weft_sdk::Value;
    /// assert_eq!(Value::Double(0.5).as_f64(), Some(0.5));
    /// ```
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Double(n) => Some(*n),
            _ => None,
        }
    }

    /// The flag of a [`Value::Boolean`].
    ///
    /// ```
    /// # use weft_sdk::Value;
    /// assert_eq!(Value::Boolean(true).as_bool(), Some(true));
    /// ```
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Boolean(b) => Some(*b),
            _ => None,
        }
    }

    /// The decimal text of a [`Value::Decimal`] or [`Value::Money`].
    ///
    /// ```
    /// # use weft_sdk::Value;
    /// assert_eq!(Value::Money("100.00".into()).as_decimal(), Some("100.00"));
    /// ```
    pub fn as_decimal(&self) -> Option<&str> {
        match self {
            Value::Decimal(s) | Value::Money(s) => Some(s),
            _ => None,
        }
    }

    /// The id of a [`Value::Guid`].
    ///
    /// ```
    /// # use weft_sdk::{Guid, Value};
    /// assert_eq!(Value::Guid(Guid::NIL).as_guid(), Some(Guid::NIL));
    /// ```
    pub fn as_guid(&self) -> Option<Guid> {
        match self {
            Value::Guid(g) => Some(*g),
            _ => None,
        }
    }

    /// The reference of a [`Value::EntityReference`].
    ///
    /// ```
    /// # use weft_sdk::{EntityReference, Guid, Value};
    /// let r = EntityReference::new("account", Guid::NIL);
    /// assert_eq!(Value::EntityReference(r.clone()).as_reference(), Some(&r));
    /// ```
    pub fn as_reference(&self) -> Option<&EntityReference> {
        match self {
            Value::EntityReference(r) => Some(r),
            _ => None,
        }
    }

    /// The number of a [`Value::OptionSetValue`].
    ///
    /// ```
    /// # use weft_sdk::Value;
    /// assert_eq!(Value::OptionSetValue(1).as_option_set(), Some(1));
    /// ```
    pub fn as_option_set(&self) -> Option<i32> {
        match self {
            Value::OptionSetValue(n) => Some(*n),
            _ => None,
        }
    }

    /// Whether this is [`Value::Null`].
    ///
    /// ```
    /// # use weft_sdk::Value;
    /// assert!(Value::Null.is_null());
    /// ```
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::String(s.to_owned())
    }
}
impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::String(s)
    }
}
impl From<i32> for Value {
    fn from(n: i32) -> Value {
        Value::Integer(n)
    }
}
impl From<i64> for Value {
    fn from(n: i64) -> Value {
        Value::BigInteger(n)
    }
}
impl From<f64> for Value {
    fn from(n: f64) -> Value {
        Value::Double(n)
    }
}
impl From<bool> for Value {
    fn from(b: bool) -> Value {
        Value::Boolean(b)
    }
}
impl From<Guid> for Value {
    fn from(g: Guid) -> Value {
        Value::Guid(g)
    }
}
impl From<EntityReference> for Value {
    fn from(r: EntityReference) -> Value {
        Value::EntityReference(r)
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Value {
        v.map_or(Value::Null, Into::into)
    }
}

/// `EntityReference`: a pointer to a row.
///
/// ```
/// use weft_sdk::{EntityReference, Guid};
/// let r = EntityReference::new("serviceendpoint", Guid::from_u128(5));
/// assert_eq!(r.logical_name, "serviceendpoint");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntityReference {
    /// Logical name of the table.
    pub logical_name: String,
    /// Id of the row.
    pub id: Guid,
    /// Primary name of the row, when known.
    pub name: Option<String>,
}

impl EntityReference {
    /// A reference without a name.
    ///
    /// ```
    /// # use weft_sdk::{EntityReference, Guid};
    /// assert_eq!(EntityReference::new("account", Guid::NIL).name, None);
    /// ```
    pub fn new(logical_name: impl Into<String>, id: Guid) -> EntityReference {
        EntityReference {
            logical_name: logical_name.into(),
            id,
            name: None,
        }
    }
}

/// `Entity`: a row, or the part of a row a request carries. Attributes keep
/// their order.
///
/// ```
/// use weft_sdk::Entity;
/// let mut account = Entity::new("account");
/// account.set("name", "Contoso");
/// account.set("numberofemployees", 12);
/// assert_eq!(account.get_str("name"), Some("Contoso"));
/// assert_eq!(account.get_i32("numberofemployees"), Some(12));
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Entity {
    /// Logical name of the table.
    pub logical_name: String,
    /// Id of the row; `None` for a Create that lets the platform choose.
    pub id: Option<Guid>,
    /// Attributes in order.
    pub attributes: Vec<(String, Value)>,
    /// Display text per attribute (`FormattedValues`).
    pub formatted_values: Vec<(String, String)>,
    /// Row version, when known.
    pub row_version: Option<String>,
}

impl Entity {
    /// An empty entity of a table.
    ///
    /// ```
    /// # use weft_sdk::Entity;
    /// assert!(Entity::new("contact").attributes.is_empty());
    /// ```
    pub fn new(logical_name: impl Into<String>) -> Entity {
        Entity {
            logical_name: logical_name.into(),
            ..Entity::default()
        }
    }

    /// An empty entity of a table with an id.
    ///
    /// ```
    /// # use weft_sdk::{Entity, Guid};
    /// assert_eq!(Entity::with_id("contact", Guid::NIL).id, Some(Guid::NIL));
    /// ```
    pub fn with_id(logical_name: impl Into<String>, id: Guid) -> Entity {
        Entity {
            logical_name: logical_name.into(),
            id: Some(id),
            ..Entity::default()
        }
    }

    /// The value of an attribute, if present.
    ///
    /// ```
    /// # use weft_sdk::{Entity, Value};
    /// let mut e = Entity::new("contact");
    /// e.set("firstname", Value::Null);
    /// assert_eq!(e.get("firstname"), Some(&Value::Null));
    /// assert_eq!(e.get("lastname"), None);
    /// ```
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.attributes
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
    }

    /// Whether an attribute is present (even if null).
    ///
    /// ```
    /// # use weft_sdk::Entity;
    /// assert!(!Entity::new("contact").contains("firstname"));
    /// ```
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Sets an attribute, replacing it in place or appending it.
    ///
    /// ```
    /// # use weft_sdk::Entity;
    /// let mut e = Entity::new("contact");
    /// e.set("firstname", "Ann");
    /// e.set("firstname", "Bo");
    /// assert_eq!(e.attributes.len(), 1);
    /// ```
    pub fn set(&mut self, name: impl Into<String>, value: impl Into<Value>) {
        let name = name.into();
        let value = value.into();
        match self.attributes.iter_mut().find(|(n, _)| *n == name) {
            Some((_, slot)) => *slot = value,
            None => self.attributes.push((name, value)),
        }
    }

    /// Removes an attribute, returning its value.
    ///
    /// ```
    /// # use weft_sdk::Entity;
    /// let mut e = Entity::new("contact");
    /// e.set("firstname", "Ann");
    /// assert!(e.remove("firstname").is_some());
    /// assert!(!e.contains("firstname"));
    /// ```
    pub fn remove(&mut self, name: &str) -> Option<Value> {
        let at = self.attributes.iter().position(|(n, _)| n == name)?;
        Some(self.attributes.remove(at).1)
    }

    /// Text attribute.
    ///
    /// ```
    /// # use weft_sdk::Entity;
    /// let mut e = Entity::new("contact");
    /// e.set("firstname", "Ann");
    /// assert_eq!(e.get_str("firstname"), Some("Ann"));
    /// ```
    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(Value::as_str)
    }

    /// Whole-number attribute.
    ///
    /// ```
    /// # use weft_sdk::Entity;
    /// let mut e = Entity::new("account");
    /// e.set("numberofemployees", 3);
    /// assert_eq!(e.get_i32("numberofemployees"), Some(3));
    /// ```
    pub fn get_i32(&self, name: &str) -> Option<i32> {
        self.get(name).and_then(Value::as_i32)
    }

    /// Two-options attribute.
    ///
    /// ```
    /// # use weft_sdk::Entity;
    /// let mut e = Entity::new("contact");
    /// e.set("donotemail", true);
    /// assert_eq!(e.get_bool("donotemail"), Some(true));
    /// ```
    pub fn get_bool(&self, name: &str) -> Option<bool> {
        self.get(name).and_then(Value::as_bool)
    }

    /// Decimal or money attribute, as exact text.
    ///
    /// ```
    /// # use weft_sdk::{Entity, Value};
    /// let mut e = Entity::new("account");
    /// e.set("revenue", Value::Money("10.50".into()));
    /// assert_eq!(e.get_decimal("revenue"), Some("10.50"));
    /// ```
    pub fn get_decimal(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(Value::as_decimal)
    }

    /// Lookup attribute.
    ///
    /// ```
    /// # use weft_sdk::{Entity, EntityReference, Guid};
    /// let mut e = Entity::new("contact");
    /// e.set("parentcustomerid", EntityReference::new("account", Guid::NIL));
    /// assert_eq!(e.get_reference("parentcustomerid").unwrap().logical_name, "account");
    /// ```
    pub fn get_reference(&self, name: &str) -> Option<&EntityReference> {
        self.get(name).and_then(Value::as_reference)
    }

    /// Choice attribute.
    ///
    /// ```
    /// # use weft_sdk::{Entity, Value};
    /// let mut e = Entity::new("account");
    /// e.set("statuscode", Value::OptionSetValue(1));
    /// assert_eq!(e.get_option_set("statuscode"), Some(1));
    /// ```
    pub fn get_option_set(&self, name: &str) -> Option<i32> {
        self.get(name).and_then(Value::as_option_set)
    }

    /// A reference to this row (requires an id).
    ///
    /// ```
    /// # use weft_sdk::{Entity, Guid};
    /// assert!(Entity::new("contact").to_reference().is_none());
    /// assert!(Entity::with_id("contact", Guid::NIL).to_reference().is_some());
    /// ```
    pub fn to_reference(&self) -> Option<EntityReference> {
        Some(EntityReference::new(self.logical_name.clone(), self.id?))
    }
}

/// `EntityCollection`: rows returned by RetrieveMultiple.
///
/// ```
/// use weft_sdk::{Entity, EntityCollection};
/// let c = EntityCollection { entity_name: "account".into(), entities: vec![Entity::new("account")], ..Default::default() };
/// assert_eq!(c.entities.len(), 1);
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EntityCollection {
    /// Logical name of the rows' table.
    pub entity_name: String,
    /// The rows.
    pub entities: Vec<Entity>,
    /// Whether more rows exist beyond this page.
    pub more_records: bool,
    /// Paging cookie for the next page.
    pub paging_cookie: Option<String>,
    /// Total row count, or -1 when not computed.
    pub total_record_count: i32,
}

/// A value in a parameter collection.
///
/// ```
/// use weft_sdk::{Entity, ParameterValue, Value};
/// let p: ParameterValue = Entity::new("account").into();
/// assert!(p.as_entity().is_some());
/// assert_eq!(ParameterValue::from(Value::from(1)).as_value(), Some(&Value::Integer(1)));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum ParameterValue {
    /// A plain value.
    Value(Value),
    /// An entity (e.g. `Target`).
    Entity(Entity),
    /// An entity collection (e.g. `BusinessEntityCollection`).
    EntityCollection(EntityCollection),
}

impl ParameterValue {
    /// The plain value, if this is one.
    ///
    /// ```
    /// # use weft_sdk::{ParameterValue, Value};
    /// assert!(ParameterValue::Value(Value::Null).as_value().is_some());
    /// ```
    pub fn as_value(&self) -> Option<&Value> {
        match self {
            ParameterValue::Value(v) => Some(v),
            _ => None,
        }
    }

    /// The entity, if this is one.
    ///
    /// ```
    /// # use weft_sdk::{Entity, ParameterValue};
    /// assert!(ParameterValue::Entity(Entity::new("a")).as_entity().is_some());
    /// ```
    pub fn as_entity(&self) -> Option<&Entity> {
        match self {
            ParameterValue::Entity(e) => Some(e),
            _ => None,
        }
    }

    /// The entity, mutably, if this is one.
    ///
    /// ```
    /// # use weft_sdk::{Entity, ParameterValue};
    /// let mut p = ParameterValue::Entity(Entity::new("a"));
    /// p.as_entity_mut().unwrap().set("name", "x");
    /// ```
    pub fn as_entity_mut(&mut self) -> Option<&mut Entity> {
        match self {
            ParameterValue::Entity(e) => Some(e),
            _ => None,
        }
    }
}

impl<T: Into<Value>> From<T> for ParameterValue {
    fn from(v: T) -> ParameterValue {
        ParameterValue::Value(v.into())
    }
}
impl From<Entity> for ParameterValue {
    fn from(e: Entity) -> ParameterValue {
        ParameterValue::Entity(e)
    }
}
impl From<EntityCollection> for ParameterValue {
    fn from(c: EntityCollection) -> ParameterValue {
        ParameterValue::EntityCollection(c)
    }
}

/// An ordered parameter collection (InputParameters, OutputParameters,
/// SharedVariables): names are unique, order is kept.
///
/// ```
/// use weft_sdk::{Parameters, Value};
/// let mut p = Parameters::default();
/// p.set("tag", "import-2024");
/// assert_eq!(p.get_value("tag").and_then(Value::as_str), Some("import-2024"));
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Parameters(pub Vec<(String, ParameterValue)>);

impl Parameters {
    /// The parameter with this name.
    ///
    /// ```
    /// # use weft_sdk::Parameters;
    /// assert!(Parameters::default().get("Target").is_none());
    /// ```
    pub fn get(&self, name: &str) -> Option<&ParameterValue> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// The parameter with this name, mutably.
    ///
    /// ```
    /// # use weft_sdk::Parameters;
    /// let mut p = Parameters::default();
    /// p.set("n", 1);
    /// *p.get_mut("n").unwrap() = 2.into();
    /// ```
    pub fn get_mut(&mut self, name: &str) -> Option<&mut ParameterValue> {
        self.0.iter_mut().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// The plain value of the parameter with this name.
    ///
    /// ```
    /// # use weft_sdk::{Parameters, Value};
    /// let mut p = Parameters::default();
    /// p.set("n", 1);
    /// assert_eq!(p.get_value("n"), Some(&Value::Integer(1)));
    /// ```
    pub fn get_value(&self, name: &str) -> Option<&Value> {
        self.get(name).and_then(ParameterValue::as_value)
    }

    /// Sets a parameter, replacing it in place or appending it.
    ///
    /// ```
    /// # use weft_sdk::Parameters;
    /// let mut p = Parameters::default();
    /// p.set("n", 1);
    /// p.set("n", 2);
    /// assert_eq!(p.len(), 1);
    /// ```
    pub fn set(&mut self, name: impl Into<String>, value: impl Into<ParameterValue>) {
        let name = name.into();
        let value = value.into();
        match self.get_mut(&name) {
            Some(slot) => *slot = value,
            None => self.0.push((name, value)),
        }
    }

    /// Removes a parameter, returning its value.
    ///
    /// ```
    /// # use weft_sdk::Parameters;
    /// let mut p = Parameters::default();
    /// p.set("n", 1);
    /// assert!(p.remove("n").is_some());
    /// assert!(p.is_empty());
    /// ```
    pub fn remove(&mut self, name: &str) -> Option<ParameterValue> {
        let at = self.0.iter().position(|(n, _)| n == name)?;
        Some(self.0.remove(at).1)
    }

    /// Number of parameters.
    ///
    /// ```
    /// # use weft_sdk::Parameters;
    /// assert_eq!(Parameters::default().len(), 0);
    /// ```
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no parameters.
    ///
    /// ```
    /// # use weft_sdk::Parameters;
    /// assert!(Parameters::default().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The parameters in order.
    ///
    /// ```
    /// # use weft_sdk::Parameters;
    /// let mut p = Parameters::default();
    /// p.set("a", 1);
    /// assert_eq!(p.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), ["a"]);
    /// ```
    pub fn iter(&self) -> impl Iterator<Item = &(String, ParameterValue)> {
        self.0.iter()
    }
}
