//! Canonical CBOR: the form a bundle is hashed in.
//!
//! JSON values become CBOR with every map's keys in sorted order (byte order of the
//! key strings) and integers in their shortest form, so equal values always give
//! equal bytes, whatever order a parser kept.

use ciborium::Value as Cbor;
use serde_json::Value as Json;

/// The canonical CBOR value of a JSON value.
#[must_use]
pub fn to_cbor(v: &Json) -> Cbor {
    match v {
        Json::Null => Cbor::Null,
        Json::Bool(b) => Cbor::Bool(*b),
        Json::Number(n) => {
            if let Some(i) = n.as_i64() {
                Cbor::Integer(i.into())
            } else if let Some(u) = n.as_u64() {
                Cbor::Integer(u.into())
            } else {
                // Cedar has no floating point (a bundle with one fails validation), but
                // session contexts are keyed by this form: a float must never encode
                // like the string of its digits.
                Cbor::Float(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        Json::String(s) => Cbor::Text(s.clone()),
        Json::Array(a) => Cbor::Array(a.iter().map(to_cbor).collect()),
        Json::Object(m) => {
            let mut entries: Vec<(&String, &Json)> = m.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            Cbor::Map(
                entries
                    .into_iter()
                    .map(|(k, v)| (Cbor::Text(k.clone()), to_cbor(v)))
                    .collect(),
            )
        }
    }
}

/// The JSON value of a CBOR value made by [`to_cbor`] (`None` for CBOR that no
/// JSON value encodes to: bytes, tags, non-text keys, integers beyond 64 bits).
#[must_use]
pub fn to_json(v: &Cbor) -> Option<Json> {
    Some(match v {
        Cbor::Null => Json::Null,
        Cbor::Bool(b) => Json::Bool(*b),
        Cbor::Integer(i) => {
            let i = i128::from(*i);
            if let Ok(n) = i64::try_from(i) {
                Json::from(n)
            } else {
                Json::from(u64::try_from(i).ok()?)
            }
        }
        Cbor::Float(f) => Json::from(serde_json::Number::from_f64(*f)?),
        Cbor::Text(s) => Json::String(s.clone()),
        Cbor::Array(a) => Json::Array(a.iter().map(to_json).collect::<Option<_>>()?),
        Cbor::Map(m) => Json::Object(
            m.iter()
                .map(|(k, v)| Some((k.as_text()?.to_owned(), to_json(v)?)))
                .collect::<Option<_>>()?,
        ),
        _ => return None,
    })
}

/// The bytes of a CBOR value.
#[must_use]
pub fn bytes(v: &Cbor) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing into a Vec cannot fail for values built by `to_cbor`.
    if ciborium::into_writer(v, &mut out).is_err() {
        out.clear();
    }
    out
}

/// Sorts every array inside `v` by the canonical bytes of its elements (for JSON
/// whose arrays are sets, like a Cedar schema's `memberOfTypes`).
pub fn sort_arrays(v: &mut Json) {
    match v {
        Json::Array(a) => {
            for x in a.iter_mut() {
                sort_arrays(x);
            }
            a.sort_by_cached_key(|x| bytes(&to_cbor(x)));
        }
        Json::Object(m) => {
            for (_, x) in m.iter_mut() {
                sort_arrays(x);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_order_does_not_change_the_bytes() {
        let a: Json = serde_json::from_str(r#"{"b":1,"a":[1,{"y":2,"x":3}]}"#).unwrap();
        let b: Json = serde_json::from_str(r#"{"a":[1,{"x":3,"y":2}],"b":1}"#).unwrap();
        assert_eq!(bytes(&to_cbor(&a)), bytes(&to_cbor(&b)));
        let c: Json = serde_json::from_str(r#"{"a":[1,{"x":3,"y":2}],"b":2}"#).unwrap();
        assert_ne!(bytes(&to_cbor(&a)), bytes(&to_cbor(&c)));
    }
}
