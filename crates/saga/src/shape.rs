//! Decoding a step's recorded output into the type a build expects, with errors that are
//! safe to journal: they name the field that did not fit, and never quote a value from an
//! output that holds secrets (serde's messages quote what they found, e.g.
//! `invalid type: string "…"`).

use std::fmt;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::secret::holds_secret;

/// Why an output did not fit: where, and (only for outputs without secrets) serde's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ShapeError {
    /// The field as a path (`db.password`, `items[2]`), `.` for the whole value.
    pub(crate) field: String,
    /// `None` when withheld because the output holds secret fields.
    pub(crate) message: Option<String>,
}

impl fmt::Display for ShapeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.message {
            Some(message) => write!(f, "at field `{}`: {message}", self.field),
            None => write!(
                f,
                "at field `{}` (the output holds secret fields, so the decoder's message is not shown)",
                self.field
            ),
        }
    }
}

/// Decodes `value` (an unsealed output) into `T`.
pub(crate) fn decode<T: DeserializeOwned>(value: &Value) -> Result<T, ShapeError> {
    serde_path_to_error::deserialize(value).map_err(|e| ShapeError {
        field: e.path().to_string(),
        message: (!holds_secret(value)).then(|| e.inner().to_string()),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::secret::Secret;
    use serde::Deserialize;
    use serde_json::json;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Expected {
        id: String,
        db: Db,
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Db {
        password: Secret<u64>,
    }

    #[test]
    fn a_secret_output_that_does_not_fit_names_the_field_and_quotes_nothing() {
        let v = json!({"id": "p-1", "db": {"password": Secret::new("canary-77aa")}});
        let e = decode::<Expected>(&v).unwrap_err();
        assert!(e.field.starts_with("db.password"), "{e}");
        assert!(!e.to_string().contains("canary-77aa"), "{e}");
        // Without secrets the decoder's message helps and is kept.
        let e = decode::<Expected>(&json!({"id": 7})).unwrap_err();
        assert_eq!(e.field, "id");
        assert!(e.to_string().contains("expected a string"), "{e}");
    }
}
