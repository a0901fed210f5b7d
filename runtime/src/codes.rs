//! Sign-in codes (RFC 6238 TOTP: SHA-1, 6 digits, 30-second steps, the defaults every
//! authenticator app reads), shared by the node's console and the broker's regulator page:
//! the code generator of a secret, the check of a typed code, the `otpauth://` address an
//! app enrolls from and its QR code as SVG.

/// The code generator of a secret.
pub fn totp(secret: &[u8]) -> Result<totp_rs::Totp, String> {
    totp_rs::Builder::new()
        .with_secret(secret)
        .build()
        .map_err(|e| format!("code secret unusable: {e}"))
}

/// Check a typed `code` against `secret` at `now` (one step either side): the step it
/// belongs to, which the caller must not accept twice; or why it is refused.
pub fn check(secret: &[u8], code: &str, now: i64) -> Result<u64, String> {
    let code = code.trim();
    if code.is_empty() {
        return Err("no code was typed".into());
    }
    totp(secret)?
        .check(code, now.max(0) as u64)
        .ok_or_else(|| "the code is wrong or too old".to_string())
}

/// The secret in base32, as people type it into an app.
pub fn base32(secret: &[u8]) -> String {
    totp_rs::Secret::from(secret).to_base32()
}

/// The `otpauth://totp/` address of `account` at `issuer` (both percent-encoded here).
pub fn otpauth_uri(issuer: &str, account: &str, secret: &[u8]) -> String {
    let enc = |s: &str| -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'@' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    format!(
        "otpauth://totp/{}:{}?secret={}&issuer={}&algorithm=SHA1&digits=6&period=30",
        enc(issuer),
        enc(account),
        base32(secret),
        enc(issuer)
    )
}

/// A QR code of `text` as an SVG element (its markup holds only numbers and fixed
/// attribute values, so it can be put into a page unescaped); `None` when `text` is too
/// long for a QR code.
pub fn qr_svg(text: &str) -> Option<String> {
    let qr = qrcodegen::QrCode::encode_text(text, qrcodegen::QrCodeEcc::Medium).ok()?;
    let n = qr.size();
    let mut d = String::new();
    for y in 0..n {
        for x in 0..n {
            if qr.get_module(x, y) {
                d.push_str(&format!("M{},{}h1v1h-1z", x + 4, y + 4));
            }
        }
    }
    let side = n + 8;
    Some(format!(
        r##"<svg class="qr" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {side} {side}" width="200" height="200" role="img" aria-label="QR code"><rect width="100%" height="100%" fill="#fff"></rect><path d="{d}" fill="#000"></path></svg>"##
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_of_the_secret_passes_once_per_step_and_others_fail() {
        let secret = b"12345678901234567890";
        let now = 1_800_000_000;
        let code = totp(secret).unwrap().generate(now as u64).to_string();
        let step = check(secret, &code, now).unwrap();
        assert_eq!(step, now as u64 / 30);
        // One step either side is accepted (clock drift), two are not.
        assert!(check(secret, &code, now + 30).is_ok());
        assert!(check(secret, &code, now + 90).is_err());
        let wrong = format!("{:06}", (code.parse::<u32>().unwrap() + 1) % 1_000_000);
        assert_eq!(
            check(secret, &wrong, now).unwrap_err(),
            "the code is wrong or too old"
        );
        assert_eq!(check(secret, "  ", now).unwrap_err(), "no code was typed");
        // A secret too short for RFC 4226 is refused, not used.
        assert!(
            check(b"short", &code, now)
                .unwrap_err()
                .starts_with("code secret unusable")
        );
    }

    #[test]
    fn the_enrollment_address_is_encoded_and_its_qr_code_is_plain_svg() {
        let uri = otpauth_uri("ALPR US-CA", "reg-ca@US-CA", b"12345678901234567890");
        assert_eq!(
            uri,
            "otpauth://totp/ALPR%20US-CA:reg-ca@US-CA?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=ALPR%20US-CA&algorithm=SHA1&digits=6&period=30"
        );
        let svg = qr_svg(&uri).unwrap();
        assert!(svg.starts_with("<svg class=\"qr\""), "{svg}");
        assert_eq!(svg.matches('<').count(), 6, "{svg}");
        assert!(qr_svg(&"x".repeat(10_000)).is_none());
    }
}
