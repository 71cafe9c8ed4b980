//! The request and response types of merchant API v1. The OpenAPI document is generated
//! from these definitions, so they are the contract: each constraint the checks below
//! enforce is declared on its field. Lengths are counted in characters (Unicode scalar
//! values), as JSON Schema counts them.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use payloom_platform::{ApiError, ApiResult, money};
use serde::{Deserialize, Serialize};
use serde_json::{Number, Value, json};
use utoipa::ToSchema;
use utoipa::openapi::schema::Schema;

// The objects the API answers with are the gateway's contract, shared with the consumers
// of its events.
pub use payloom_gateway_contract::model::{
    CaptureMode, Customer, NextAction, PaymentOut, PaymentStatus, RefundOut, RefundStatus,
};

/// Largest amount accepted, in minor units (10 billion major units of a 2-decimal currency).
pub const AMOUNT_MINOR_MAX: i64 = 1_000_000_000_000;
const ORDER_NO_LEN_MAX: usize = 64;
const CHANNEL_LEN_MAX: usize = 64;
const METHOD_LEN_MAX: usize = 32;
const DESCRIPTION_LEN_MAX: usize = 1_000;
const URL_LEN_MAX: usize = 2_048;
const EMAIL_LEN_MAX: usize = 254;
const DEVICE_ID_LEN_MAX: usize = 128;
const PHONE_LEN_MAX: usize = 32;
const METADATA_KEYS_MAX: usize = 50;
const METADATA_KEY_LEN_MAX: usize = 40;
const METADATA_VALUE_LEN_MAX: usize = 500;
const METHOD_DATA_KEYS_MAX: usize = 20;
const REFUND_REASON_LEN_MAX: usize = 500;

/// What `char::is_whitespace` matches (Unicode White_Space), spelled out as a pattern
/// class: regex engines disagree on what `\s` covers, and the document must say exactly
/// what the checks refuse. The patterns below carry it literally; a test keeps them in step.
#[cfg(test)]
const WHITESPACE_CLASS: &str =
    r"\t\n\x0B\f\r \x85\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000";

/// `POST /v1/payments`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PaymentIn {
    /// The merchant's order number, printable ASCII without spaces; one payment per
    /// order number.
    #[schema(min_length = 1, max_length = 64, pattern = "^[!-~]{1,64}$")]
    pub order_no: String,
    /// Integer minor units (cents for USD, yen for JPY). A whole-number JSON float such
    /// as `90.0` counts as the integer.
    #[schema(minimum = 1, maximum = 1000000000000_i64)]
    pub amount: i64,
    #[schema(schema_with = currency_schema)]
    pub currency: String,
    /// A channel id; unset lets the merchant policy route.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 64)]
    pub channel: Option<String>,
    /// Payment method, `card` unless set.
    #[serde(default)]
    #[schema(pattern = "^[a-z_]{1,32}$")]
    pub method: Option<String>,
    #[serde(default)]
    pub capture: Option<CaptureMode>,
    #[serde(default)]
    pub customer: Option<Customer>,
    /// Free text without U+0000, which no text column can hold.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 1000, pattern = r"^[^\u0000]*$")]
    pub description: Option<String>,
    /// Where the customer comes back to: an http(s) URL without whitespace or U+0000.
    #[serde(default)]
    #[schema(
        max_length = 2048,
        pattern = r"^https?://[^\t\n\x0B\f\r \x85\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000\u0000]*$"
    )]
    pub return_url: Option<String>,
    /// String pairs kept with the payment.
    #[serde(default)]
    #[schema(schema_with = metadata_schema)]
    pub metadata: Option<BTreeMap<String, String>>,
    /// Seconds until an unpaid payment expires; the maximum is the operator's
    /// `gateway.expires_in_max_secs`.
    #[serde(default)]
    #[schema(minimum = 1)]
    pub expires_in: Option<i64>,
    /// Method details passed to the channel as-is (the sandbox reads `card.number`).
    #[serde(default)]
    #[schema(schema_with = method_data_schema)]
    pub method_data: Option<BTreeMap<String, String>>,
}

/// `POST /v1/payments/{id}/capture`. The body may be left out: that captures it all.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CaptureIn {
    /// Minor units to capture, at most what was authorized; the whole authorized amount
    /// when unset.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 1000000000000_i64)]
    pub amount: Option<i64>,
}

/// `POST /v1/payments/{id}/refunds`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefundIn {
    /// Minor units; at most what is captured and not yet refunded.
    #[schema(minimum = 1, maximum = 1000000000000_i64)]
    pub amount: i64,
    /// Free text without U+0000.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 500, pattern = r"^[^\u0000]*$")]
    pub reason: Option<String>,
}

impl RefundIn {
    pub fn validate(&self) -> ApiResult<()> {
        check_amount("amount", self.amount)?;
        if let Some(reason) = &self.reason {
            check_text("reason", reason, REFUND_REASON_LEN_MAX)?;
        }
        Ok(())
    }
}

/// A page of webhook endpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WebhookEndpointList {
    pub data: Vec<payloom_notification_contract::EndpointOut>,
    pub has_more: bool,
}

/// A page of a list, newest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PaymentList {
    pub data: Vec<PaymentOut>,
    pub has_more: bool,
}

/// The error shape.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorOut {
    pub error: ErrorBody,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// `invalid_request_error`, `authentication_error`, `idempotency_error`, `rate_limit_error`,
    /// `quota_error`, `channel_error` or `api_error`.
    #[serde(rename = "type")]
    pub kind: String,
    pub code: String,
    pub message: String,
    /// The parameter at fault, as a dotted path (`customer.email`), when one is.
    pub param: Option<String>,
}

/// An integer field of a JSON body: what it counts and the values it takes.
pub struct IntegerField<'a> {
    pub name: &'a str,
    /// `minor units`, `seconds`: for messages that say what was wrong.
    pub unit: &'a str,
    pub min: i64,
    pub max: i64,
    pub required: bool,
}

impl IntegerField<'_> {
    /// An amount of minor units, 1 to [`AMOUNT_MINOR_MAX`].
    pub fn amount(required: bool) -> IntegerField<'static> {
        IntegerField {
            name: "amount",
            unit: "minor units",
            min: 1,
            max: AMOUNT_MINOR_MAX,
            required,
        }
    }

    /// Checks the field of a JSON object and writes it back as an integer. JSON Schema
    /// counts a whole-number float such as `90.0` as the integer 90, so the API does too.
    pub fn check(&self, body: &mut Value) -> ApiResult<()> {
        // Not an object: `from_body` says so.
        let Some(object) = body.as_object_mut() else {
            return Ok(());
        };
        let name = self.name;
        let value = match object.get(name) {
            None | Some(Value::Null) if self.required => {
                return Err(ApiError::invalid(name, format!("{name} is required")));
            }
            None | Some(Value::Null) => return Ok(()),
            Some(Value::Number(n)) => self.whole_in_range(n)?,
            Some(Value::String(_)) => {
                return Err(ApiError::invalid(
                    name,
                    format!("{name} must be a JSON number, not a string"),
                ));
            }
            Some(_) => return Err(self.not_whole()),
        };
        object.insert(name.to_owned(), Value::from(value));
        Ok(())
    }

    fn whole_in_range(&self, n: &Number) -> ApiResult<i64> {
        if let Some(whole) = n.as_i64() {
            return self.in_range(whole);
        }
        if n.is_u64() {
            return Err(self.out_of_range());
        }
        let float = n.as_f64().unwrap_or(f64::NAN);
        if float.fract() != 0.0 {
            return Err(self.not_whole());
        }
        // Compared as floats first: a huge whole number does not fit an i64.
        if float < self.min as f64 || float > self.max as f64 {
            return Err(self.out_of_range());
        }
        self.in_range(float as i64)
    }

    fn in_range(&self, value: i64) -> ApiResult<i64> {
        match (self.min..=self.max).contains(&value) {
            true => Ok(value),
            false => Err(self.out_of_range()),
        }
    }

    fn not_whole(&self) -> ApiError {
        let (name, unit) = (self.name, self.unit);
        ApiError::invalid(name, format!("{name} must be a whole number of {unit}"))
    }

    fn out_of_range(&self) -> ApiError {
        let (name, unit, min, max) = (self.name, self.unit, self.min, self.max);
        ApiError::invalid(name, format!("{name} must be {min} to {max} {unit}"))
    }
}

/// Deserializes a checked body, naming the parameter serde complains about.
pub fn from_body<T: serde::de::DeserializeOwned>(body: Value) -> ApiResult<T> {
    if !body.is_object() {
        return Err(ApiError::bad_request(
            "body_invalid",
            "the body must be a JSON object",
        ));
    }
    // From text: serde_json's own deserializer lets the path of a bad field be tracked.
    let text = body.to_string();
    let mut deserializer = serde_json::Deserializer::from_str(&text);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string();
        // A missing field is reported at its parent, named only in the message.
        let missing = message
            .split("missing field `")
            .nth(1)
            .and_then(|rest| rest.split('`').next());
        let param = match (path.as_str(), missing) {
            (".", Some(field)) => Some(field.to_owned()),
            (parent, Some(field)) => Some(format!("{parent}.{field}")),
            (".", None) => None,
            (path, None) => Some(path.to_owned()),
        };
        let message = match &param {
            Some(p) => format!("{p}: {message}"),
            None => message,
        };
        ApiError {
            param,
            ..ApiError::bad_request("parameter_invalid", message)
        }
    })
}

pub fn check_amount(field: &str, amount: i64) -> ApiResult<()> {
    if !(1..=AMOUNT_MINOR_MAX).contains(&amount) {
        return Err(ApiError::invalid(
            field,
            format!("{field} must be 1 to {AMOUNT_MINOR_MAX} minor units"),
        ));
    }
    Ok(())
}

fn check_len(field: &str, value: &str, max: usize) -> ApiResult<()> {
    if value.is_empty() || value.chars().count() > max {
        return Err(ApiError::invalid(
            field,
            format!("{field} must be 1 to {max} characters"),
        ));
    }
    Ok(())
}

/// Free text stored as such: PostgreSQL's text columns cannot hold U+0000.
fn check_text(field: &str, value: &str, max: usize) -> ApiResult<()> {
    check_len(field, value, max)?;
    if value.contains('\0') {
        return Err(ApiError::invalid(
            field,
            format!("{field} cannot contain the character U+0000"),
        ));
    }
    Ok(())
}

fn check_url(field: &str, value: &str) -> ApiResult<()> {
    check_len(field, value, URL_LEN_MAX)?;
    if !(value.starts_with("https://") || value.starts_with("http://"))
        || value.contains(|c: char| c.is_whitespace() || c == '\0')
    {
        return Err(ApiError::invalid(
            field,
            format!("{field} must be an http(s) URL without whitespace or U+0000"),
        ));
    }
    Ok(())
}

fn check_map(field: &str, map: &BTreeMap<String, String>, keys_max: usize) -> ApiResult<()> {
    if map.len() > keys_max {
        return Err(ApiError::invalid(
            field,
            format!("{field} holds at most {keys_max} keys"),
        ));
    }
    for (k, v) in map {
        if k.is_empty() || k.chars().count() > METADATA_KEY_LEN_MAX {
            return Err(ApiError::invalid(
                field,
                format!("{field} keys must be 1 to {METADATA_KEY_LEN_MAX} characters"),
            ));
        }
        if v.chars().count() > METADATA_VALUE_LEN_MAX {
            return Err(ApiError::invalid(
                field,
                format!("{field} values are at most {METADATA_VALUE_LEN_MAX} characters"),
            ));
        }
    }
    Ok(())
}

fn check_customer(c: &Customer) -> ApiResult<()> {
    if let Some(email) = &c.email
        && (email.chars().count() > EMAIL_LEN_MAX
            || !email.contains('@')
            || email.contains(|c: char| c.is_whitespace() || c == '\0'))
    {
        return Err(ApiError::invalid(
            "customer.email",
            "customer.email is not an email address",
        ));
    }
    if let Some(ip) = &c.ip
        && ip.parse::<std::net::IpAddr>().is_err()
    {
        return Err(ApiError::invalid(
            "customer.ip",
            "customer.ip is not an IP address",
        ));
    }
    if let Some(country) = &c.country
        && (country.len() != 2 || !country.bytes().all(|b| b.is_ascii_uppercase()))
    {
        return Err(ApiError::invalid(
            "customer.country",
            "customer.country is an ISO 3166-1 alpha-2 code like US",
        ));
    }
    if let Some(device) = &c.device_id {
        check_len("customer.device_id", device, DEVICE_ID_LEN_MAX)?;
    }
    if let Some(phone) = &c.phone {
        check_len("customer.phone", phone, PHONE_LEN_MAX)?;
    }
    Ok(())
}

/// Whether a payment can have `order_no`: 1 to 64 printable ASCII characters, no spaces.
pub fn is_order_no(order_no: &str) -> bool {
    (1..=ORDER_NO_LEN_MAX).contains(&order_no.len())
        && order_no.bytes().all(|b| b.is_ascii_graphic())
}

/// The supported code for `code`, which is one in the money table written wholly in
/// upper or wholly in lower case.
fn supported_currency(code: &str) -> Option<String> {
    let upper = code.to_ascii_uppercase();
    let one_case = code == upper || code == code.to_ascii_lowercase();
    (one_case && money::currency(&upper).is_some()).then_some(upper)
}

impl PaymentIn {
    /// Checks every field; normalises the currency to upper case.
    pub fn validate(&mut self, expires_in_max_secs: i64) -> ApiResult<()> {
        check_len("order_no", &self.order_no, ORDER_NO_LEN_MAX)?;
        if !is_order_no(&self.order_no) {
            return Err(ApiError::invalid(
                "order_no",
                "order_no is printable ASCII without spaces",
            ));
        }
        check_amount("amount", self.amount)?;
        let Some(currency) = supported_currency(&self.currency) else {
            return Err(ApiError::new(
                400,
                "invalid_request_error",
                "currency_invalid",
                format!(
                    "'{}' is not a supported ISO 4217 currency code (upper or lower case)",
                    self.currency
                ),
            )
            .with_param("currency"));
        };
        self.currency = currency;
        if let Some(channel) = &self.channel {
            check_len("channel", channel, CHANNEL_LEN_MAX)?;
        }
        if let Some(method) = &self.method
            && (method.is_empty()
                || method.len() > METHOD_LEN_MAX
                || !method.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
        {
            return Err(ApiError::invalid(
                "method",
                format!("method is 1 to {METHOD_LEN_MAX} lower-case letters or underscores"),
            ));
        }
        if let Some(c) = &self.customer {
            check_customer(c)?;
        }
        if let Some(d) = &self.description {
            check_text("description", d, DESCRIPTION_LEN_MAX)?;
        }
        if let Some(url) = &self.return_url {
            check_url("return_url", url)?;
        }
        if let Some(m) = &self.metadata {
            check_map("metadata", m, METADATA_KEYS_MAX)?;
        }
        if let Some(m) = &self.method_data {
            check_map("method_data", m, METHOD_DATA_KEYS_MAX)?;
        }
        if let Some(secs) = self.expires_in
            && !(1..=expires_in_max_secs).contains(&secs)
        {
            return Err(ApiError::invalid(
                "expires_in",
                format!("expires_in must be 1 to {expires_in_max_secs} seconds"),
            ));
        }
        Ok(())
    }
}

/// A schema written as JSON. Only the literals below go through it, and a test renders
/// each of them, so a malformed one cannot ship.
pub(crate) fn schema(literal: Value) -> Schema {
    serde_json::from_value(literal).expect("a schema literal of this module is valid")
}

/// Every code of the money table, upper case then lower case (either is accepted).
static CURRENCY_CODES: LazyLock<Vec<String>> = LazyLock::new(|| {
    let upper = money::codes().map(str::to_owned);
    let lower = money::codes().map(str::to_ascii_lowercase);
    upper.chain(lower).collect()
});

fn currency_schema() -> Schema {
    schema(json!({
        "type": "string",
        "description": "ISO 4217 code, upper or lower case.",
        "enum": &*CURRENCY_CODES,
    }))
}

fn string_map_schema(keys_max: usize) -> Schema {
    schema(json!({
        "type": ["object", "null"],
        "description": format!(
            "At most {keys_max} keys of 1 to {METADATA_KEY_LEN_MAX} characters, values of at \
             most {METADATA_VALUE_LEN_MAX}."
        ),
        "maxProperties": keys_max,
        "propertyNames": {"type": "string", "minLength": 1, "maxLength": METADATA_KEY_LEN_MAX},
        "additionalProperties": {"type": "string", "maxLength": METADATA_VALUE_LEN_MAX},
    }))
}

fn metadata_schema() -> Schema {
    string_map_schema(METADATA_KEYS_MAX)
}

fn method_data_schema() -> Schema {
    string_map_schema(METHOD_DATA_KEYS_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_errors_name_the_parameter() {
        let wrong_type = from_body::<PaymentIn>(
            serde_json::json!({"order_no": "a", "amount": 1, "currency": 840}),
        )
        .unwrap_err();
        assert_eq!(
            wrong_type.param.as_deref(),
            Some("currency"),
            "{wrong_type:?}"
        );
        let missing = from_body::<PaymentIn>(serde_json::json!({"amount": 1, "currency": "USD"}))
            .unwrap_err();
        assert_eq!(missing.param.as_deref(), Some("order_no"));
        let nested = from_body::<PaymentIn>(serde_json::json!({"order_no": "a", "amount": 1, "currency": "USD", "customer": {"email": 5}})).unwrap_err();
        assert_eq!(nested.param.as_deref(), Some("customer.email"));
        let unknown = from_body::<PaymentIn>(serde_json::json!({"order_no": "a", "amount": 1, "currency": "USD", "customer": {"shoe": "9"}})).unwrap_err();
        assert_eq!(unknown.param.as_deref(), Some("customer.shoe"));
    }

    #[test]
    fn whole_number_floats_are_integers_and_messages_fit_the_field() {
        let expires_in = IntegerField {
            name: "expires_in",
            unit: "seconds",
            min: 1,
            max: 60,
            required: false,
        };
        let message = |field: &IntegerField<'_>, value: Value| {
            let mut body = json!({ field.name: value });
            match field.check(&mut body) {
                Ok(()) => Ok(body[field.name].clone()),
                Err(e) => Err(e.message),
            }
        };
        let amount = IntegerField::amount(true);
        assert_eq!(message(&amount, json!(90.0)), Ok(json!(90)));
        assert_eq!(message(&amount, json!(90)), Ok(json!(90)));
        assert_eq!(message(&expires_in, json!(60.0)), Ok(json!(60)));
        assert_eq!(message(&expires_in, Value::Null), Ok(Value::Null));
        let refused = [
            (
                &amount,
                json!(90.5),
                "amount must be a whole number of minor units",
            ),
            (
                &expires_in,
                json!(0.5),
                "expires_in must be a whole number of seconds",
            ),
            (
                &amount,
                json!(1e30),
                "amount must be 1 to 1000000000000 minor units",
            ),
            (
                &amount,
                json!(u64::MAX),
                "amount must be 1 to 1000000000000 minor units",
            ),
            (
                &amount,
                json!(-0.0),
                "amount must be 1 to 1000000000000 minor units",
            ),
            (&expires_in, json!(61), "expires_in must be 1 to 60 seconds"),
            (
                &amount,
                json!("9"),
                "amount must be a JSON number, not a string",
            ),
            (
                &amount,
                json!(true),
                "amount must be a whole number of minor units",
            ),
            (&amount, Value::Null, "amount is required"),
        ];
        for (field, value, said) in refused {
            assert_eq!(
                message(field, value.clone()),
                Err(said.to_owned()),
                "{value}"
            );
        }
    }

    #[test]
    fn currencies_are_one_case_or_the_other() {
        assert_eq!(supported_currency("usd").as_deref(), Some("USD"));
        assert_eq!(supported_currency("USD").as_deref(), Some("USD"));
        assert_eq!(supported_currency("Usd"), None);
        assert_eq!(supported_currency("XYZ"), None);
        assert!(CURRENCY_CODES.contains(&"usd".to_owned()));
        assert!(CURRENCY_CODES.len() > 300, "{}", CURRENCY_CODES.len());
    }

    #[test]
    fn lengths_count_characters() {
        assert!(check_len("d", &"é".repeat(10), 10).is_ok());
        assert!(check_len("d", &"é".repeat(11), 10).is_err());
        assert!(check_len("d", "", 10).is_err());
    }

    /// The document states what the checks enforce: its numbers are this module's
    /// limits, and its whitespace patterns spell out what `char::is_whitespace` matches.
    #[test]
    fn the_document_states_these_limits() {
        use utoipa::OpenApi;
        let doc = serde_json::to_value(crate::api::ApiDoc::openapi()).unwrap();
        let schemas = &doc["components"]["schemas"];
        let payment = &schemas["PaymentIn"]["properties"];
        let customer = &schemas["Customer"]["properties"];
        let limits = [
            (&payment["order_no"]["maxLength"], ORDER_NO_LEN_MAX),
            (&payment["channel"]["maxLength"], CHANNEL_LEN_MAX),
            (&payment["description"]["maxLength"], DESCRIPTION_LEN_MAX),
            (&payment["return_url"]["maxLength"], URL_LEN_MAX),
            (&payment["metadata"]["maxProperties"], METADATA_KEYS_MAX),
            (
                &payment["metadata"]["propertyNames"]["maxLength"],
                METADATA_KEY_LEN_MAX,
            ),
            (
                &payment["metadata"]["additionalProperties"]["maxLength"],
                METADATA_VALUE_LEN_MAX,
            ),
            (
                &payment["method_data"]["maxProperties"],
                METHOD_DATA_KEYS_MAX,
            ),
            (&customer["email"]["maxLength"], EMAIL_LEN_MAX),
            (&customer["device_id"]["maxLength"], DEVICE_ID_LEN_MAX),
            (&customer["phone"]["maxLength"], PHONE_LEN_MAX),
            (
                &schemas["RefundIn"]["properties"]["reason"]["maxLength"],
                REFUND_REASON_LEN_MAX,
            ),
        ];
        for (stated, limit) in limits {
            assert_eq!(stated, &json!(limit));
        }
        assert_eq!(
            payment["method"]["pattern"],
            format!("^[a-z_]{{1,{METHOD_LEN_MAX}}}$")
        );
        assert_eq!(payment["amount"]["maximum"], json!(AMOUNT_MINOR_MAX));
        assert_eq!(
            schemas["CaptureIn"]["properties"]["amount"]["maximum"],
            json!(AMOUNT_MINOR_MAX)
        );
        assert_eq!(
            schemas["RefundIn"]["properties"]["amount"]["maximum"],
            json!(AMOUNT_MINOR_MAX)
        );
        let no_space = format!("[^{WHITESPACE_CLASS}\\u0000]*");
        assert_eq!(
            customer["email"]["pattern"],
            format!("^{no_space}@{no_space}$")
        );
        assert_eq!(
            payment["return_url"]["pattern"],
            format!("^https?://{no_space}$")
        );
        let alert_email = &schemas["EndpointIn"]["properties"]["alert_email"]["pattern"];
        assert_eq!(alert_email, &customer["email"]["pattern"]);
        // The class holds every character `char::is_whitespace` matches, and only those.
        let spaces: Vec<char> = (0..=0x10FFFF_u32)
            .filter_map(char::from_u32)
            .filter(|c| c.is_whitespace())
            .collect();
        assert_eq!(class_members(WHITESPACE_CLASS), spaces);
    }

    /// The characters a regex class body like `\t \x85\u2000-\u200A` holds, in order.
    fn class_members(class: &str) -> Vec<char> {
        let mut chars = class.chars().peekable();
        let mut single = Vec::new();
        while let Some(c) = chars.next() {
            let hex = |chars: &mut std::iter::Peekable<std::str::Chars<'_>>, n| {
                let digits: String = chars.by_ref().take(n).collect();
                char::from_u32(u32::from_str_radix(&digits, 16).unwrap()).unwrap()
            };
            let member = match c {
                '\\' => match chars.next() {
                    Some('t') => '\t',
                    Some('n') => '\n',
                    Some('f') => '\u{c}',
                    Some('r') => '\r',
                    Some('x') => hex(&mut chars, 2),
                    Some('u') => hex(&mut chars, 4),
                    other => panic!("escape {other:?}"),
                },
                '-' => '-',
                c => c,
            };
            single.push(member);
        }
        // Expand `a-b` ranges (the class has no literal hyphen).
        let mut members = Vec::new();
        let mut i = 0;
        while i < single.len() {
            if single.get(i + 1) == Some(&'-') {
                members.extend(single[i]..=single[i + 2]);
                i += 3;
            } else {
                members.push(single[i]);
                i += 1;
            }
        }
        members
    }
}
