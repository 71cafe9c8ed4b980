//! Money is an integer count of minor units plus an ISO 4217 currency. Never floats.

use serde::{Deserialize, Serialize};

/// A currency Payloom accepts and how many decimals its minor unit has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Currency {
    pub code: &'static str,
    /// Digits after the decimal point: 2 for USD (cents), 0 for JPY, 3 for KWD.
    pub exponent: u8,
}

/// Current ISO 4217 codes with their minor-unit exponents, sorted by code for binary
/// search. Left out: fund codes other than the units of account CLF and UYW, and the
/// special codes (precious metals, SDR, bond-market units, test and no-currency codes).
/// A test checks this table against the `iso_currency` crate both ways, so an ISO
/// amendment is a version bump of that crate and the rows its test then names.
const CURRENCIES: &[(&str, u8)] = &[
    ("AED", 2),
    ("AFN", 2),
    ("ALL", 2),
    ("AMD", 2),
    ("AOA", 2),
    ("ARS", 2),
    ("AUD", 2),
    ("AWG", 2),
    ("AZN", 2),
    ("BAM", 2),
    ("BBD", 2),
    ("BDT", 2),
    ("BHD", 3),
    ("BIF", 0),
    ("BMD", 2),
    ("BND", 2),
    ("BOB", 2),
    ("BRL", 2),
    ("BSD", 2),
    ("BTN", 2),
    ("BWP", 2),
    ("BYN", 2),
    ("BZD", 2),
    ("CAD", 2),
    ("CDF", 2),
    ("CHF", 2),
    ("CLF", 4),
    ("CLP", 0),
    ("CNY", 2),
    ("COP", 2),
    ("CRC", 2),
    ("CUP", 2),
    ("CVE", 2),
    ("CZK", 2),
    ("DJF", 0),
    ("DKK", 2),
    ("DOP", 2),
    ("DZD", 2),
    ("EGP", 2),
    ("ERN", 2),
    ("ETB", 2),
    ("EUR", 2),
    ("FJD", 2),
    ("FKP", 2),
    ("GBP", 2),
    ("GEL", 2),
    ("GHS", 2),
    ("GIP", 2),
    ("GMD", 2),
    ("GNF", 0),
    ("GTQ", 2),
    ("GYD", 2),
    ("HKD", 2),
    ("HNL", 2),
    ("HTG", 2),
    ("HUF", 2),
    ("IDR", 2),
    ("ILS", 2),
    ("INR", 2),
    ("IQD", 3),
    ("IRR", 2),
    ("ISK", 0),
    ("JMD", 2),
    ("JOD", 3),
    ("JPY", 0),
    ("KES", 2),
    ("KGS", 2),
    ("KHR", 2),
    ("KMF", 0),
    ("KPW", 2),
    ("KRW", 0),
    ("KWD", 3),
    ("KYD", 2),
    ("KZT", 2),
    ("LAK", 2),
    ("LBP", 2),
    ("LKR", 2),
    ("LRD", 2),
    ("LSL", 2),
    ("LYD", 3),
    ("MAD", 2),
    ("MDL", 2),
    ("MGA", 2),
    ("MKD", 2),
    ("MMK", 2),
    ("MNT", 2),
    ("MOP", 2),
    ("MRU", 2),
    ("MUR", 2),
    ("MVR", 2),
    ("MWK", 2),
    ("MXN", 2),
    ("MYR", 2),
    ("MZN", 2),
    ("NAD", 2),
    ("NGN", 2),
    ("NIO", 2),
    ("NOK", 2),
    ("NPR", 2),
    ("NZD", 2),
    ("OMR", 3),
    ("PAB", 2),
    ("PEN", 2),
    ("PGK", 2),
    ("PHP", 2),
    ("PKR", 2),
    ("PLN", 2),
    ("PYG", 0),
    ("QAR", 2),
    ("RON", 2),
    ("RSD", 2),
    ("RUB", 2),
    ("RWF", 0),
    ("SAR", 2),
    ("SBD", 2),
    ("SCR", 2),
    ("SDG", 2),
    ("SEK", 2),
    ("SGD", 2),
    ("SHP", 2),
    ("SLE", 2),
    ("SOS", 2),
    ("SRD", 2),
    ("SSP", 2),
    ("STN", 2),
    ("SVC", 2),
    ("SYP", 2),
    ("SZL", 2),
    ("THB", 2),
    ("TJS", 2),
    ("TMT", 2),
    ("TND", 3),
    ("TOP", 2),
    ("TRY", 2),
    ("TTD", 2),
    ("TWD", 2),
    ("TZS", 2),
    ("UAH", 2),
    ("UGX", 0),
    ("USD", 2),
    ("UYU", 2),
    ("UYW", 4),
    ("UZS", 2),
    ("VED", 2),
    ("VES", 2),
    ("VND", 0),
    ("VUV", 0),
    ("WST", 2),
    ("XAF", 0),
    ("XCD", 2),
    ("XCG", 2),
    ("XOF", 0),
    ("XPF", 0),
    ("YER", 2),
    ("ZAR", 2),
    ("ZMW", 2),
    ("ZWG", 2),
];

/// Every code Payloom knows, in order.
pub fn codes() -> impl Iterator<Item = &'static str> {
    CURRENCIES.iter().map(|(code, _)| *code)
}

/// The currency for an upper-case ISO 4217 code, if Payloom knows it.
pub fn currency(code: &str) -> Option<Currency> {
    CURRENCIES
        .binary_search_by(|(c, _)| (*c).cmp(code))
        .ok()
        .map(|i| Currency {
            code: CURRENCIES[i].0,
            exponent: CURRENCIES[i].1,
        })
}

/// An amount in minor units of a currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Money {
    pub amount_minor: i64,
    pub currency: String,
}

impl Money {
    /// `12.34 USD`, `1200 JPY`: for humans (logs, the CLI), never for arithmetic.
    pub fn display(&self) -> String {
        let exponent = currency(&self.currency).map_or(2, |c| c.exponent) as u32;
        if exponent == 0 {
            return format!("{} {}", self.amount_minor, self.currency);
        }
        let unit = 10i64.pow(exponent);
        let sign = if self.amount_minor < 0 { "-" } else { "" };
        let abs = self.amount_minor.unsigned_abs();
        format!(
            "{sign}{}.{:0width$} {}",
            abs / unit as u64,
            abs % unit as u64,
            self.currency,
            width = exponent as usize
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_exponents_are_right() {
        assert!(CURRENCIES.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(currency("USD").unwrap().exponent, 2);
        assert_eq!(currency("JPY").unwrap().exponent, 0);
        assert_eq!(currency("KWD").unwrap().exponent, 3);
        assert!(currency("usd").is_none());
        assert!(currency("XXX").is_none());
    }

    /// Table rows that `iso_currency` sees otherwise, and why the table keeps them.
    const KEPT_DESPITE_THE_CRATE: &[(&str, &str)] = &[(
        "VES",
        "ISO 4217 lists VES (928) beside VED (926); iso_currency marks it superseded by VED",
    )];

    #[test]
    fn table_matches_the_maintained_iso_4217_data_both_ways() {
        use iso_currency::{Currency as Iso, IntoEnumIterator};
        for (code, exponent) in CURRENCIES {
            let iso = Iso::from_code(code).unwrap_or_else(|| panic!("{code} is not ISO 4217"));
            let kept = KEPT_DESPITE_THE_CRATE.iter().any(|(c, _)| c == code);
            if let Some(successor) = iso.is_superseded() {
                assert!(kept, "{code} is superseded by {}", successor.code());
            }
            assert_eq!(iso.exponent(), Some(u16::from(*exponent)), "{code}");
        }
        for iso in Iso::iter() {
            // Special codes (precious metals, SDR, bond-market units, XTS, XXX) are not
            // money a merchant charges in; fund codes are accounting units.
            if iso.is_superseded().is_some() || iso.is_fund() || iso.is_special() {
                continue;
            }
            assert!(
                currency(iso.code()).is_some(),
                "{} ({}) is current ISO 4217 and missing from the table",
                iso.code(),
                iso.name()
            );
        }
    }

    #[test]
    fn withdrawn_codes_are_refused_and_their_successors_accepted() {
        for withdrawn in ["ANG", "BGN", "HRK", "SLL", "ZWL", "CUC"] {
            assert!(currency(withdrawn).is_none(), "{withdrawn}");
        }
        for successor in ["XCG", "EUR", "SLE", "ZWG", "VED"] {
            assert_eq!(
                currency(successor).map(|c| c.exponent),
                Some(2),
                "{successor}"
            );
        }
    }

    #[test]
    fn display_uses_the_exponent() {
        let m = |a, c: &str| {
            Money {
                amount_minor: a,
                currency: c.into(),
            }
            .display()
        };
        assert_eq!(m(1234, "USD"), "12.34 USD");
        assert_eq!(m(-5, "EUR"), "-0.05 EUR");
        assert_eq!(m(1200, "JPY"), "1200 JPY");
        assert_eq!(m(1001, "KWD"), "1.001 KWD");
    }
}
