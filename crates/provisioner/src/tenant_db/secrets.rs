//! Which column names look like they hold a secret.

/// Words that mark a secret on their own.
const SECRET_WORDS: &[&str] = &[
    "secret",
    "secrets",
    "token",
    "tokens",
    "password",
    "passwords",
    "passwd",
    "pwd",
    "passphrase",
    "key",
    "keys",
    "apikey",
    "apikeys",
    "privkey",
    "credential",
    "credentials",
    "creds",
    "jwt",
    "jwts",
    "otp",
    "totp",
    "hotp",
    "bearer",
];

/// Whether a column name has a word that marks a secret: `api_key`, `accessToken`,
/// `password_hash`, `client_secret`, `db_pwd`, `jwt`, `private_key`, `otp_code`,
/// `refresh_token` do; `monkey`, `keyboard_layout`, `tokenizer`, `secretary` do not. A
/// harmless name that has such a word (`jwt_issuer`) is let through by an allow-list entry.
/// Words are split at non-alphanumerics and at lower-to-upper case changes.
pub fn looks_secret(column: &str) -> bool {
    column_words(column)
        .iter()
        .any(|w| SECRET_WORDS.contains(&w.as_str()))
}

fn column_words(column: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut previous_lower = false;
    for ch in column.chars() {
        if !ch.is_alphanumeric() {
            if !current.is_empty() {
                words.push(std::mem::take(&mut current));
            }
            previous_lower = false;
            continue;
        }
        if ch.is_uppercase() && previous_lower && !current.is_empty() {
            words.push(std::mem::take(&mut current));
        }
        previous_lower = ch.is_lowercase() || ch.is_ascii_digit();
        current.extend(ch.to_lowercase());
    }
    if !current.is_empty() {
        words.push(current);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_words_are_whole_words() {
        for secret in [
            "api_key",
            "access_token",
            "refresh_token",
            "password",
            "password_hash",
            "client_secret",
            "webhook_secrets",
            "refreshToken",
            "APIKey",
            "apikey",
            "signing-key",
            "key",
            "private_key",
            "privateKey",
            "db_credential",
            "oauthCredentials",
            "user_pwd",
            "jwt",
            "supabase_jwt",
            "otp",
            "otp_code",
            "totp_seed",
        ] {
            assert!(looks_secret(secret), "{secret} should look secret");
        }
        for harmless in [
            "monkey",
            "keyboard_layout",
            "tokenizer",
            "donkeys",
            "turkey_count",
            "name",
            "secretary",
            "passworded",
            "credentialed_at",
            "hotpot",
            "otpr",
        ] {
            assert!(!looks_secret(harmless), "{harmless} should not look secret");
        }
    }
}
