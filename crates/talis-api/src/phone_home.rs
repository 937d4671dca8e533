//! The phone-home URL a machine's script posts to when it is up: the contract between the
//! workflows (which sign it into the script) and the component (which verifies it).
//!
//! `{public_url}/v1/phone-home/{instance}?task={task}&exp={unix seconds}&token={hex}` where
//! `token = HMAC-SHA256(internal_secret, "talis-phone-home:v2:{task}:{instance}:{exp}")`. The
//! token is bound to the task and instance it was made for and expires (the workflows set the
//! provision timeout); a multi-create batch shares its first member's URL, so the component
//! accepts a report for any machine of the token's task, and for nothing else.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// What the token signs.
fn message(task: i64, instance: i64, expires: i64) -> String {
    format!("talis-phone-home:v2:{task}:{instance}:{expires}")
}

fn mac(secret: &str) -> Hmac<Sha256> {
    Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length")
}

/// The hex token for `(task, instance, expires)`.
pub fn token(secret: &str, task: i64, instance: i64, expires: i64) -> String {
    let mut m = mac(secret);
    m.update(message(task, instance, expires).as_bytes());
    hex::encode(m.finalize().into_bytes())
}

/// The URL with its token.
pub fn url(public_url: &str, task: i64, instance: i64, expires: i64, token: &str) -> String {
    format!(
        "{}/v1/phone-home/{instance}?task={task}&exp={expires}&token={token}",
        public_url.trim_end_matches('/')
    )
}

/// The signed URL.
pub fn signed_url(
    public_url: &str,
    secret: &str,
    task: i64,
    instance: i64,
    expires: i64,
) -> String {
    url(
        public_url,
        task,
        instance,
        expires,
        &token(secret, task, instance, expires),
    )
}

/// Why a presented token is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// Wrong signature, or no usable secret configured (shorter than
    /// [`MIN_SECRET_LEN`](crate::rules::MIN_SECRET_LEN): a placeholder signs nothing).
    BadToken,
    /// Past its expiry.
    Expired,
}

/// Checks a presented token in constant time; `now` in Unix seconds.
pub fn verify(
    secret: &str,
    task: i64,
    instance: i64,
    expires: i64,
    token: &str,
    now: i64,
) -> Result<(), Refused> {
    let Ok(presented) = hex::decode(token) else {
        return Err(Refused::BadToken);
    };
    // A short secret is a placeholder (`CHANGE_ME`): anyone could compute its tokens.
    if secret.chars().count() < crate::rules::MIN_SECRET_LEN {
        return Err(Refused::BadToken);
    }
    let mut m = mac(secret);
    m.update(message(task, instance, expires).as_bytes());
    m.verify_slice(&presented).map_err(|_| Refused::BadToken)?;
    if now > expires {
        Err(Refused::Expired)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "a-phone-home-secret-of-32-chars!";

    #[test]
    fn tokens_are_bound_to_task_instance_and_expiry() {
        let t = token(SECRET, 7, 11, 1_000);
        assert_eq!(verify(SECRET, 7, 11, 1_000, &t, 999), Ok(()));
        assert_eq!(
            verify(SECRET, 7, 11, 1_000, &t, 1_001),
            Err(Refused::Expired)
        );
        for (task, inst, exp) in [(8, 11, 1_000), (7, 12, 1_000), (7, 11, 2_000)] {
            assert_eq!(
                verify(SECRET, task, inst, exp, &t, 0),
                Err(Refused::BadToken)
            );
        }
        let other = "another-phone-home-secret-32-chr";
        assert_eq!(verify(other, 7, 11, 1_000, &t, 0), Err(Refused::BadToken));
        assert_eq!(
            verify(SECRET, 7, 11, 1_000, "zz", 0),
            Err(Refused::BadToken)
        );
        assert_eq!(
            signed_url("http://h:1/", SECRET, 7, 11, 1_000),
            format!("http://h:1/v1/phone-home/11?task=7&exp=1000&token={t}")
        );
    }

    /// A placeholder secret (empty, `CHANGE_ME`, anything under 32 characters) verifies no
    /// token, not even one it signed itself: whoever guesses it could sign any.
    #[test]
    fn a_short_secret_verifies_nothing() {
        for weak in ["", "CHANGE_ME", &SECRET[..31]] {
            let t = token(weak, 7, 11, 1_000);
            assert_eq!(
                verify(weak, 7, 11, 1_000, &t, 0),
                Err(Refused::BadToken),
                "{weak:?}"
            );
        }
    }
}
